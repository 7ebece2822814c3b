"""The routing feature: HAProxy and its certificates on each ready host.

Desired state is what `infr.routing.deploy.deploy` puts on a host (pure, from state): the
rendered haproxy.cfg, the packaged host files (apply script, certbot's deploy hook, infr's
renewal timer), HAProxy and infr's timer running but not Debian's certbot.timer, and one
certificate per TERMINATE LXC. Facts are those files in one read, the units in one
`systemctl show`, and certbot's listing. The config goes live as ONE step through the apply
script (`haproxy -c`, atomic swap, reload, rollback); certificates come after it, because
the HTTP-01 challenge reaches certbot through HAProxy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from infr.engine import facts
from infr.engine.decide import UnitWant, file_diff, file_steps, unit_steps
from infr.engine.facts import FileFact, UnitFact
from infr.engine.plan import Runner, Step
from infr.engine.run import Context
from infr.engine.steps import FileSpec
from infr.routing import certificates, deploy
from infr.routing.certs import CertbotSettings, CertInfo, CertRequest, Resolver
from infr.routing.haproxy import HaproxySettings, certificate_requests, summarize_changes
from infr.state.model import Host, Inventory, Lxc

NAME = "routing"
CONFIG = deploy.CONFIG
UNITS = (
    UnitWant("haproxy"),
    UnitWant(deploy.RENEW_TIMER),
    UnitWant(deploy.DEBIAN_RENEW_TIMER, running=False),
)
# Settings the config or the certificates follow: a change to one touches every host.
_SETTINGS = ("dnsDomain", "dnsPrefix", "vnetPrefix", "acmeServer", "acmeCaCert", "adminEmail")
# A step's description names this many config sections, then counts the rest.
_SECTIONS_SHOWN = 3

Report = Callable[[str], None]


@dataclass(frozen=True)
class Desired:
    """What routing should hold on one host."""

    config: str
    files: Sequence[FileSpec]
    certs: Sequence[CertRequest]
    # The private ACME CA to trust (acmeCaCert), None to trust none; only with certificates.
    ca: bytes | None = None
    units: Sequence[UnitWant] = UNITS


@dataclass(frozen=True)
class Found:
    """What routing holds on one host now."""

    files: Mapping[str, FileFact | None]
    units: Mapping[str, UnitFact]
    certs: Sequence[CertInfo]


@dataclass(frozen=True)
class Certbot:
    """How certificate steps ask the CA: certbot's settings, the DNS pre-flight, progress lines."""

    settings: CertbotSettings
    resolver: Callable[[], Resolver]  # made when a step runs, not while planning
    report: Report


def desired(inv: Inventory, host: Host, settings: HaproxySettings, ca: bytes | None = None) -> Desired:
    """Pure: the config, host files and certificates state asks for on `host`."""
    config = deploy.desired_config(inv, host, settings)
    return Desired(config, deploy.host_files(), certificate_requests(inv.lxcs_on(host.name), settings), ca)


def read(runner: Runner, want: Desired, certbot: CertbotSettings) -> Found:
    """The host's routing facts: files in one read, units in one `systemctl show`, certbot's listing."""
    paths = [CONFIG, *(spec.path for spec in want.files), certificates.CA_FILE]
    units = facts.read_units(runner, [unit.name for unit in want.units])
    return Found(facts.read_files(runner, paths), units, certificates.installed(runner, certbot))


def decide(host: Host, want: Desired, found: Found, certbot: Certbot) -> list[Step]:
    """Pure: host files, then the config, then units (HAProxy starts on the new config), then certificates."""
    steps = file_steps(NAME, host.name, want.files, found.files)
    steps += config_steps(host.name, want.config, found.files.get(CONFIG))
    steps += unit_steps(NAME, host.name, want.units, found.units)
    return steps + cert_steps(host, want, found, certbot)


def config_steps(host: str, new: str, have: FileFact | None) -> list[Step]:
    """One step putting haproxy.cfg live, described by the sections it changes."""
    old = have.content.decode(errors="replace") if have is not None else ""
    if old == new:
        return []
    summary = summarize_changes(old, new) or ["config rewritten"]
    if len(summary) > _SECTIONS_SHOWN + 1:
        summary = [*summary[:_SECTIONS_SHOWN], f"{len(summary) - _SECTIONS_SHOWN} more sections"]
    diff = file_diff(CONFIG, have.content if have is not None else None, new.encode())
    return [Step(NAME, host, f"update haproxy.cfg: {'; '.join(summary)}", diff, _puts_live(host, old, new))]


def _puts_live(host: str, old: str, new: str) -> Callable[[Runner], list[str]]:
    return lambda runner: deploy.put_live(runner, host, old, new)


def cert_steps(host: Host, want: Desired, found: Found, certbot: Certbot) -> list[Step]:
    """Trust the private CA, drop certificates no LXC wants, obtain missing ones (as certificates.ensure)."""
    steps = _ca_steps(host.name, want.ca, found.files.get(certificates.CA_FILE)) if want.certs else []
    todo = certificates.plan(list(want.certs), list(found.certs))
    steps += [
        Step(NAME, host.name, f"delete certificate {name}", run=_deleter(name, certbot.settings))
        for name in todo.delete
    ]
    return steps + [
        Step(NAME, host.name, f"obtain certificate {r.name} for {','.join(r.domains)}", run=_obtainer(host, r, certbot))
        for r in todo.obtain
    ]


def _ca_steps(host: str, ca: bytes | None, have: FileFact | None) -> list[Step]:
    path = certificates.CA_FILE
    if ca is None:
        return [Step(NAME, host, f"stop trusting a private ACME CA: remove {path}", run=_trusts(None))] if have else []
    return [replace(step, run=_trusts(ca)) for step in file_steps(NAME, host, [certificates.ca_spec(ca)], {path: have})]


def _trusts(ca: bytes | None) -> Callable[[Runner], list[str]]:
    return lambda runner: certificates.trust_ca(runner, ca)


def _deleter(name: str, settings: CertbotSettings) -> Callable[[Runner], list[str]]:
    return lambda runner: certificates.delete(runner, name, settings)


def _obtainer(host: Host, request: CertRequest, certbot: Certbot) -> Callable[[Runner], list[str]]:
    def run(runner: Runner) -> list[str]:
        return certificates.obtain(runner, host, request, certbot.settings, certbot.resolver(), certbot.report)

    return run


def _routing_inputs(lxc: Lxc) -> tuple[object, ...]:
    """Everything about an LXC the config and its certificates are made from."""
    return (lxc.host, lxc.vnet_ip, lxc.http, lxc.https, lxc.http_port, lxc.https_port, lxc.aliases, lxc.tcp_forwards)


def _host_inputs(host: Host | None) -> tuple[object, ...]:
    """A host's own part: whether it is ready, and the address its names must resolve to."""
    return (host.status, host.public_ip) if host is not None else ()


class Routing:
    name = NAME

    def manages(self, inv: Inventory, host: Host) -> bool:
        return True  # every ready host runs HAProxy, with no LXC behind it at first

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        session = ctx.session
        want = desired(ctx.inv, host, deploy.settings_for(session), certificates.ca_content(session))
        settings = certificates.certbot_settings(session)
        certbot = Certbot(settings, lambda: certificates.resolver_for(session), _prefixed(ctx.report, host.name))
        return decide(host, want, read(runner, want, settings), certbot)

    def touched(self, before: Inventory, after: Inventory) -> set[str]:
        if any(before.config.get(key) != after.config.get(key) for key in _SETTINGS):
            return set(after.hosts)
        was = before.hosts.get
        hosts = {name for name, host in after.hosts.items() if _host_inputs(was(name)) != _host_inputs(host)}
        for name in before.lxcs.keys() | after.lxcs.keys():
            old, new = before.lxcs.get(name), after.lxcs.get(name)
            if old is None or new is None or _routing_inputs(old) != _routing_inputs(new):
                hosts.update(lxc.host for lxc in (old, new) if lxc is not None)
        return hosts


def _prefixed(report: Report, host: str) -> Report:
    return lambda line: report(f"{host}: {NAME}: {line}")


FEATURE = Routing()
