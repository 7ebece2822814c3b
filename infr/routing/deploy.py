"""Putting a host's HAProxy config live: render, upload, check, swap, reload, or roll back.

The host-side half is templates/haproxy/infr-haproxy-apply: it runs `haproxy -c`,
swaps the file atomically, reloads the master-worker HAProxy without dropping a
connection, and puts the previous config back if the reload fails.
"""

from __future__ import annotations

from collections.abc import Callable

from infr.connector import SSHConnection
from infr.engine import fleet, steps
from infr.errors import RemoteError
from infr.routing import certificates
from infr.routing.haproxy import APPLY_SCRIPT, HOST_FILES, HaproxySettings, render_haproxy, summarize_changes
from infr.state.model import HOST_READY, Host, Inventory
from infr.state.session import Session

Report = Callable[[str], None]

CONFIG = "/etc/haproxy/haproxy.cfg"
STAGED = "/etc/haproxy/haproxy.cfg.infr-new"
# infr's timer renews with the deploy hook that feeds HAProxy; Debian's own would not.
RENEW_TIMER = "infr-certbot-renew.timer"
DEBIAN_RENEW_TIMER = "certbot.timer"
EXIT_MEANINGS = {
    2: "the new config failed 'haproxy -c'; nothing changed",
    3: "the new config did not load; the previous config is back and serving",
    4: "the new config did not load, and the previous one could not be restored",
}


def settings_for(session: Session) -> HaproxySettings:
    values = session.settings()
    return HaproxySettings(
        dns_domain=str(values["dnsDomain"]),
        dns_prefix=str(values["dnsPrefix"]),
        vnet_prefix=str(values["vnetPrefix"]),
    )


def host_files() -> list[steps.FileSpec]:
    """The apply script, certbot's deploy hook and renewal timer, as packaged.

    systemd rereads its unit files when one of them changes, before anything starts them.
    """
    return [
        steps.FileSpec(f.path, f.text().encode(), mode=f.mode, on_change=_reload_units(f.path)) for f in HOST_FILES
    ]


def _reload_units(path: str) -> tuple[steps.Argv, ...]:
    return (("systemctl", "daemon-reload"),) if path.endswith((".service", ".timer")) else ()


def desired_config(inv: Inventory, host: Host, settings: HaproxySettings) -> str:
    """The haproxy.cfg state asks for on `host` (raises ValidationError listing every problem)."""
    return render_haproxy(host, inv.lxcs_on(host.name), settings)


def deploy(conn: SSHConnection, session: Session, host: Host, report: Callable[[str], None]) -> list[str]:
    """Make the host's HAProxy serve the config state asks for; returns what changed."""
    inv, settings = session.inventory(), settings_for(session)
    new = desired_config(inv, host, settings)
    changes = [line for spec in host_files() for line in steps.ensure_file(conn, spec)]
    if any(".timer" in line or ".service" in line for line in changes):
        conn.run(["systemctl", "disable", "--now", DEBIAN_RENEW_TIMER], check=False)
        conn.run(["systemctl", "enable", "--now", RENEW_TIMER])
    current = conn.run(["cat", "--", CONFIG], check=False)
    done = put_live(conn, host.name, current.text if current.exit_status == 0 else "", new)
    if done:
        report(f"haproxy: {'; '.join(done)}")
    # After the config is live: the HTTP-01 challenge reaches certbot through it.
    certs = certificates.ensure(conn, session, host, settings, report)
    return [*changes, *(f"haproxy {line}" for line in done), *certs]


def put_live(runner: steps.Runner, host_name: str, old: str, new: str) -> list[str]:
    """Check, swap in and reload `new` through the apply script (which rolls back a reload
    that fails); returns what changed in the config against `old`, nothing when equal."""
    if old == new:
        return []
    runner.put_file(STAGED, new.encode(), owner="root", group="haproxy", mode=0o640)
    result = runner.run([APPLY_SCRIPT, STAGED], check=False)
    if result.exit_status != 0:
        meaning = EXIT_MEANINGS.get(result.exit_status, "the apply script failed")
        raise RemoteError(f"{host_name}: {meaning}: {result.stderr.decode().strip()}")
    return summarize_changes(old, new) or ["config rewritten"]


def _prefixed(report: Report, name: str) -> Report:
    return lambda line: report(f"{name}: {line}")


def apply_routing(session: Session, host_names: set[str], report: Report) -> list[str]:
    """Re-deploy HAProxy on each named host that is ready and not marked down; returns what changed."""
    inv = session.inventory()
    changes: list[str] = []
    for name in sorted(host_names):
        host = inv.hosts[name]
        if host.status != HOST_READY:
            continue  # adopting it deploys HAProxy from state when it finishes
        if name in session.down_hosts:
            report(f"{name}: not applied (marked down); apply it later with: infr apply {name}")
            continue
        with SSHConnection.connect(fleet.target(session, host)) as conn:
            done = deploy(conn, session, host, _prefixed(report, name))
        report(f"{name}: {'applied' if done else 'haproxy already up to date'}")
        changes += done
    return changes
