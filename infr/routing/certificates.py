"""Certificates on a host: obtain what TERMINATE LXCs need, drop what they no longer need.

Runs after the host's HAProxy config is live, because the HTTP-01 challenge reaches certbot
through it (`/.well-known/acme-challenge/` of TERMINATE names goes to certbot's standalone
server on 127.0.0.1:8888). certbot's deploy hook (templates/certbot/certbot-deploy-haproxy)
puts each new or renewed certificate into HAProxy; renewals run on infr's systemd timer.

Before asking the CA, every name is looked up (setting dnsCheckResolver) and must point at
the host: a failed validation counts against Let's Encrypt's rate limits, a lookup does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from infr.connector import SSHConnection
from infr.connector.target import Result
from infr.engine import steps
from infr.engine.fleet import target
from infr.engine.steps import Runner
from infr.errors import DnsNotReadyError, RemoteError
from infr.routing.certs import (
    CertbotSettings,
    CertInfo,
    CertRequest,
    Resolver,
    acme_server_url,
    certificates_argv,
    certonly_argv,
    check_names_resolve,
    delete_argv,
    dns_resolver,
    parse_certbot_certificates,
    system_resolver,
)
from infr.routing.haproxy import APPLY_SCRIPT, HaproxySettings, certificate_requests
from infr.state.model import HOST_READY, Host
from infr.state.session import Session

Report = Callable[[str], None]
CERTS_DIR = "/etc/haproxy/certs"
# Debian's certifi and OpenSSL read the system store: certbot's first run and its renewals
# both trust a private CA put here.
CA_FILE = "/usr/local/share/ca-certificates/infr-acme-ca.crt"
CERTBOT_TIMEOUT = 600


@dataclass(frozen=True)
class CertPlan:
    """What a host's certificates need: requests to make, lineages to delete."""

    obtain: list[CertRequest]
    delete: list[str]


def plan(wanted: list[CertRequest], existing: list[CertInfo]) -> CertPlan:
    """Obtain what is missing or covers other names; delete lineages no LXC wants."""
    have = {info.name: set(info.domains) for info in existing}
    obtain = [request for request in wanted if have.get(request.name) != set(request.domains)]
    wanted_names = {request.name for request in wanted}
    return CertPlan(obtain, sorted(name for name in have if name not in wanted_names))


def certbot_settings(session: Session) -> CertbotSettings:
    values = session.settings()
    return CertbotSettings(server=acme_server_url(str(values["acmeServer"])), email=str(values["adminEmail"]))


def resolver_for(session: Session) -> Resolver:
    setting = str(session.settings()["dnsCheckResolver"])
    return system_resolver if setting == "system" else dns_resolver(setting)


def ca_content(session: Session) -> bytes | None:
    """The private ACME CA named by acmeCaCert (None when the CA is a public one)."""
    path = str(session.settings()["acmeCaCert"])
    return Path(path).expanduser().read_bytes() if path else None


def ca_spec(ca: bytes) -> steps.FileSpec:
    return steps.FileSpec(CA_FILE, ca)


def trust_ca(runner: Runner, ca: bytes | None) -> list[str]:
    """Trust the private ACME CA `ca` on the host, or stop trusting one (None)."""
    if ca is not None:
        changes = steps.ensure_file(runner, ca_spec(ca))
    elif runner.run(["test", "-e", CA_FILE], check=False).exit_status == 0:
        runner.run(["rm", "-f", "--", CA_FILE])
        changes = [f"removed {CA_FILE}"]
    else:
        changes = []
    if changes:
        runner.run(["update-ca-certificates", "--fresh"], timeout=120)
    return changes


def installed(runner: Runner, settings: CertbotSettings) -> list[CertInfo]:
    """The host's certbot lineages (none on a host that never asked for one).

    certbot itself starts slowly on a small host: it is only asked when a renewal config
    says there is something to list.
    """
    renewal = f"{settings.config_dir}/renewal"
    found = runner.run(["find", renewal, "-maxdepth", "1", "-name", "*.conf"], check=False)
    if not found.text.strip():
        return []
    return parse_certbot_certificates(runner.run(certificates_argv(settings), timeout=120).text)


def ensure(
    conn: SSHConnection, session: Session, host: Host, haproxy: HaproxySettings, report: Report
) -> list[str]:
    """Make the host's certificates match its TERMINATE LXCs; returns what changed."""
    wanted = certificate_requests(session.inventory().lxcs_on(host.name), haproxy)
    settings = certbot_settings(session)
    changes = trust_ca(conn, ca_content(session)) if wanted else []
    todo = plan(wanted, installed(conn, settings))
    resolve = resolver_for(session)
    for request in todo.obtain:
        try:
            changes += obtain(conn, host, request, settings, resolve, report)
        except DnsNotReadyError as e:
            report(f"warning: {e.message} (fix DNS, e.g. infr dns fix, then: infr host {host.name} reconfigure)")
    for name in todo.delete:
        changes += delete(conn, name, settings)
    return changes


def obtain(
    runner: Runner, host: Host, request: CertRequest, settings: CertbotSettings, resolve: Resolver, report: Report
) -> list[str]:
    """Ask the CA for one certificate, once every name points at the host; returns what changed.

    Raises DnsNotReadyError before asking when a name does not resolve to the host.
    """
    problems = check_names_resolve(request.domains, host.public_ip, resolve)
    if problems:
        raise DnsNotReadyError(
            f"no certificate for {request.name} yet: {'; '.join(problems)}", "fix DNS (infr dns fix), then apply again"
        )
    report(f"asking {settings.server} for a certificate: {', '.join(request.domains)}")
    result = runner.run(certonly_argv(request, settings), timeout=CERTBOT_TIMEOUT, check=False)
    if result.exit_status != 0:
        raise RemoteError(
            f"{host.name}: certbot could not get a certificate for {request.name}: {_last_line(result)}",
            f"see /var/log/letsencrypt/letsencrypt.log on {host.name}",
        )
    return [f"certificate {request.name} for {', '.join(request.domains)}"]


def delete(runner: Runner, name: str, settings: CertbotSettings) -> list[str]:
    """Delete a certificate lineage and take its file out of HAProxy."""
    runner.run(delete_argv(name, settings), timeout=120)
    runner.run(["rm", "-f", "--", f"{CERTS_DIR}/{name}.pem"])
    runner.run([APPLY_SCRIPT, "--reload"])
    return [f"certificate {name} deleted"]


def _last_line(result: Result) -> str:
    text = result.stderr.decode("utf-8", "replace") + result.text
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Saving debug log")]
    return lines[-1] if lines else "no output"


@dataclass(frozen=True)
class HostCert:
    """One certificate as `infr certs` lists it."""

    host: str
    name: str
    domains: tuple[str, ...]
    expiry: datetime


def fleet(session: Session) -> tuple[list[HostCert], dict[str, str]]:
    """Every certificate on every ready host, and host -> error for hosts that did not answer."""
    from infr.connector import run_parallel

    inv = session.inventory()
    hosts = {name: host for name, host in sorted(inv.hosts.items()) if host.status == HOST_READY}
    settings = certbot_settings(session)

    def read(host: Host, step: Report) -> list[CertInfo]:
        with SSHConnection.connect(target(session, host)) as conn:
            return installed(conn, settings)

    rows: list[HostCert] = []
    failed: dict[str, str] = {}
    for name, outcome in run_parallel(hosts, read, skip=session.down_hosts).items():
        if name in session.down_hosts:
            failed[name] = "skipped (marked down)"
        elif outcome.error or outcome.value is None:
            failed[name] = str(outcome.error)
        else:
            rows += [HostCert(name, c.name, c.domains, c.expiry) for c in outcome.value]
    return rows, failed
