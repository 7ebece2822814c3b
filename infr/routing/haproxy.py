"""A host's HAProxy config, rendered from state, and what differs between two configs.

Pure: no I/O but reading the packaged templates. Jinja2 is imported only when a config is
rendered, so commands that never render (listings, completion) do not pay for it.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from infr.engine.templating import render
from infr.errors import ValidationError
from infr.routing.certs import DEPLOY_HOOK, CertRequest
from infr.state import validate
from infr.state.model import HTTP_MODES, HTTPS_MODES, RESERVED_HOST_PORTS, Host, Lxc

TEMPLATE = "haproxy/haproxy.cfg.j2"
APPLY_SCRIPT = "/usr/local/sbin/infr-haproxy-apply"
ACME_PATH = "/.well-known/acme-challenge/"


@dataclass(frozen=True)
class HostFile:
    """A file infr installs on every host, copied verbatim from infr/templates."""

    template: str
    path: str
    mode: int

    def text(self) -> str:
        return resources.files("infr").joinpath("templates", self.template).read_text()


HOST_FILES = (
    HostFile("haproxy/infr-haproxy-apply", APPLY_SCRIPT, 0o755),
    HostFile("certbot/certbot-deploy-haproxy", DEPLOY_HOOK, 0o755),
    HostFile("certbot/infr-certbot-renew.service", "/etc/systemd/system/infr-certbot-renew.service", 0o644),
    HostFile("certbot/infr-certbot-renew.timer", "/etc/systemd/system/infr-certbot-renew.timer", 0o644),
)


@dataclass(frozen=True)
class HaproxySettings:
    """Everything the config needs that is not in the LXCs themselves.

    The defaults are the paths of a Debian host set up by infr.
    """

    dns_domain: str
    dns_prefix: str = "infr"
    vnet_prefix: str = "vnet"
    # "*" is every IPv4 address; "::" with a "v4v6" suffix would add IPv6.
    bind_addresses: tuple[str, ...] = ("*",)
    http_port: int = 80
    https_port: int = 443
    certs_dir: str = "/etc/haproxy/certs"
    # Served to unknown names and before the first certificate is issued; kept outside
    # certs_dir because HAProxy loads the first `crt` given as the default.
    default_cert: str = "/etc/haproxy/infr-default.pem"
    # certbot (standalone or a webroot server) answers HTTP-01 challenges here.
    acme_address: str = "127.0.0.1"
    acme_port: int = 8888
    # A unix socket, not abns@: an abstract socket cannot be paused, and HAProxy 2.6 then
    # soft-stops the old worker during a reload that fails, leaving nothing serving.
    terminate_socket: str = "/run/haproxy/infr-terminate.sock"
    stats_socket: str = "/run/haproxy/admin.sock"
    log_target: str = "/dev/log local0"
    user: str | None = "haproxy"
    group: str | None = "haproxy"
    # Old workers keep serving long connections after a reload; this bounds how long.
    hard_stop_after: str = "1h"


@dataclass(frozen=True)
class Site:
    """One LXC as the template sees it: modes, names and where to reach it."""

    name: str
    ip: str
    http: str
    https: str
    http_port: int
    https_port: int
    fqdns: tuple[str, ...]

    @property
    def http_backend(self) -> bool:
        """Plain HTTP to the LXC is needed for http FORWARD and for https TERMINATE."""
        return self.http == "FORWARD" or self.https == "TERMINATE"


@dataclass(frozen=True)
class Forward:
    lxc: str
    ip: str
    host_port: int
    lxc_port: int


@dataclass(frozen=True)
class _Plan:
    sites: tuple[Site, ...]
    forwards: tuple[Forward, ...]
    problems: list[str] = field(default_factory=list)


def lxc_fqdns(lxc: Lxc, *, dns_domain: str, dns_prefix: str, vnet_prefix: str, vnet: bool = True) -> list[str]:
    """The names routed to an LXC: public name, vnet name (unless `vnet=False`), aliases.

    Lowercased and without duplicates, in that order.
    """
    names = [f"{lxc.name}.{dns_prefix}.{dns_domain}"]
    if vnet:
        names.append(f"{lxc.name}.{vnet_prefix}.{dns_domain}")
    names.extend(lxc.aliases)
    return list(dict.fromkeys(n.lower().rstrip(".") for n in names))


def _settings_fqdns(lxc: Lxc, settings: HaproxySettings, *, vnet: bool = True) -> list[str]:
    return lxc_fqdns(
        lxc,
        dns_domain=settings.dns_domain,
        dns_prefix=settings.dns_prefix,
        vnet_prefix=settings.vnet_prefix,
        vnet=vnet,
    )


def certificate_requests(lxcs: list[Lxc], settings: HaproxySettings) -> list[CertRequest]:
    """One certificate per TERMINATE LXC, named after the LXC.

    The vnet name is left out: it resolves to a private address, so no public CA can
    validate it.
    """
    return [
        CertRequest(lxc.name, tuple(_settings_fqdns(lxc, settings, vnet=False)))
        for lxc in sorted(lxcs, key=lambda c: c.name)
        if lxc.https == "TERMINATE"
    ]


def render_haproxy(host: Host, lxcs: list[Lxc], settings: HaproxySettings) -> str:
    """The complete haproxy.cfg for `host`; raises ValidationError listing every problem."""
    plan = _plan(host, lxcs, settings)
    if plan.problems:
        raise ValidationError(plan.problems, "fix the LXC settings, then apply again")
    return render(TEMPLATE, host=host, settings=settings, **_context(plan, settings))


def summarize_changes(old: str, new: str) -> list[str]:
    """Human-sized summary of a config change, one line per section added, removed or edited."""
    before, after = _sections(old), _sections(new)
    lines = [f"added {name}" for name in after if name not in before]
    lines += [f"removed {name}" for name in before if name not in after]
    for name in after:
        if name in before and before[name] != after[name]:
            lines.append(f"changed {name} ({_line_delta(before[name], after[name])})")
    return lines


def config_diff(old: str, new: str, *, old_name: str = "running", new_name: str = "new") -> str:
    """A unified diff of two configs, for `--verbose` output and the operation log."""
    return "".join(
        difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name)
    )




def _plan(host: Host, lxcs: list[Lxc], settings: HaproxySettings) -> _Plan:
    problems = _settings_problems(settings)
    sites: list[Site] = []
    forwards: list[Forward] = []
    for lxc in sorted(lxcs, key=lambda c: c.name):
        lxc_problems = _lxc_problems(host, lxc)
        problems += lxc_problems
        if not lxc_problems:
            site = Site(
                lxc.name,
                lxc.vnet_ip,
                lxc.http,
                lxc.https,
                lxc.http_port,
                lxc.https_port,
                tuple(_settings_fqdns(lxc, settings)),
            )
            sites.append(site)
            forwards += [Forward(lxc.name, lxc.vnet_ip, f.host_port, f.lxc_port) for f in lxc.tcp_forwards]
    problems += _name_clashes(sites) + _port_clashes(forwards, settings)
    forwards.sort(key=lambda f: f.host_port)
    return _Plan(tuple(sites), tuple(forwards), problems)


def _settings_problems(settings: HaproxySettings) -> list[str]:
    """Settings end up in the config too: one stray newline would add a directive."""
    problems = [
        f"HAProxy setting {f.name} {value!r} spans lines"
        for f in dataclasses.fields(settings)
        if isinstance(value := getattr(settings, f.name), str) and not value.isprintable()
    ]
    for part in ("dns_domain", "dns_prefix", "vnet_prefix"):
        problems.append(_hostname_problem(getattr(settings, part), part, labels=1) or "")
    return [problem for problem in problems if problem]


def _lxc_problems(host: Host, lxc: Lxc) -> list[str]:
    """Everything that would make the config wrong or let text escape into it."""
    checks = [
        None if lxc.host == host.name else f"LXC {lxc.name} is on {lxc.host}, not {host.name}",
        # It names backends and ACLs, and is the first label of the LXC's names.
        validate.dns_label(lxc.name, "LXC name"),
        validate.ipv4(lxc.vnet_ip, f"LXC {lxc.name} vnet_ip"),
        None if lxc.http in HTTP_MODES else f"LXC {lxc.name}: unknown http mode {lxc.http!r}",
        None if lxc.https in HTTPS_MODES else f"LXC {lxc.name}: unknown https mode {lxc.https!r}",
        validate.port(lxc.http_port, f"LXC {lxc.name} http_port"),
        validate.port(lxc.https_port, f"LXC {lxc.name} https_port"),
    ]
    for forward in lxc.tcp_forwards:
        checks.append(validate.port(forward.host_port, f"LXC {lxc.name} tcp forward host port"))
        checks.append(validate.port(forward.lxc_port, f"LXC {lxc.name} tcp forward LXC port"))
    checks += [_hostname_problem(alias, f"LXC {lxc.name}: alias") for alias in lxc.aliases]
    return [problem for problem in checks if problem]


def _hostname_problem(name: str, what: str, labels: int = 2) -> str | None:
    # Syntax only: anything else could inject HAProxy directives. Whether the name is under
    # a public suffix is the CLI's business (test domains such as .test must render).
    parts = name.lower().rstrip(".").split(".")
    if len(parts) < labels or any(validate.dns_label(part) for part in parts):
        return f"{what} {name!r} is not a host name"
    return None


def _name_clashes(sites: list[Site]) -> list[str]:
    owner: dict[str, str] = {}
    problems = []
    for site in sites:
        for fqdn in site.fqdns:
            if fqdn in owner:
                problems.append(f"{fqdn} is routed to both {owner[fqdn]} and {site.name}")
            owner.setdefault(fqdn, site.name)
    return problems


def _port_clashes(forwards: list[Forward], settings: HaproxySettings) -> list[str]:
    reserved = {*RESERVED_HOST_PORTS, settings.http_port, settings.https_port}
    seen: dict[int, str] = {}
    problems = []
    for forward in forwards:
        if forward.host_port in reserved:
            problems.append(f"LXC {forward.lxc}: host port {forward.host_port} is reserved")
        elif forward.host_port in seen:
            problems.append(
                f"host port {forward.host_port} is forwarded to both {seen[forward.host_port]} and {forward.lxc}"
            )
        seen.setdefault(forward.host_port, forward.lxc)
    return problems


def _context(plan: _Plan, settings: HaproxySettings) -> dict[str, Any]:
    sites = plan.sites
    return {
        # Names on port 80: those served there, and TERMINATE ones for their ACME challenges.
        "http_sites": [s for s in sites if s.http != "NONE" or s.https == "TERMINATE"],
        "redirects": [s for s in sites if s.http == "REDIRECT-HTTPS"],
        "http_forwards": [s for s in sites if s.http == "FORWARD"],
        "passthrough": [s for s in sites if s.https == "FORWARD"],
        "terminate": [s for s in sites if s.https == "TERMINATE"],
        "http_backends": [s for s in sites if s.http_backend],
        "forwards": plan.forwards,
        "acme_path": ACME_PATH,
        # Redirects drop the client's :port; only a non-standard HTTPS port is added back.
        "https_suffix": "" if settings.https_port == 443 else f":{settings.https_port}",
    }


def _sections(config: str) -> dict[str, list[str]]:
    """Top-level sections ("frontend http", "backend lxc_web_http") and their lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in config.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and current is not None:
            current.append(line.strip())
        else:
            current = sections.setdefault(line.strip(), [])
    return sections


def _line_delta(old: list[str], new: list[str]) -> str:
    added = removed = 0
    for op in difflib.ndiff(old, new):
        added += op.startswith("+ ")
        removed += op.startswith("- ")
    return f"+{added} -{removed} lines"
