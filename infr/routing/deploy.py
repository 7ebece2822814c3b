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
from infr.state.model import HOST_READY, Host
from infr.state.session import Session

Report = Callable[[str], None]

CONFIG = "/etc/haproxy/haproxy.cfg"
STAGED = "/etc/haproxy/haproxy.cfg.infr-new"
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
    """The apply script, certbot's deploy hook and renewal timer, as packaged."""
    return [steps.FileSpec(f.path, f.text().encode(), mode=f.mode) for f in HOST_FILES]


def deploy(conn: SSHConnection, session: Session, host: Host, report: Callable[[str], None]) -> list[str]:
    """Make the host's HAProxy serve the config state asks for; returns what changed."""
    inv, settings = session.inventory(), settings_for(session)
    new = render_haproxy(host, inv.lxcs_on(host.name), settings)
    changes = [line for spec in host_files() for line in steps.ensure_file(conn, spec)]
    if any(".timer" in line or ".service" in line for line in changes):
        # infr's timer renews with the deploy hook that feeds HAProxy; Debian's own would not.
        conn.run(["systemctl", "daemon-reload"])
        conn.run(["systemctl", "disable", "--now", "certbot.timer"], check=False)
        conn.run(["systemctl", "enable", "--now", "infr-certbot-renew.timer"])
    changes += _put_live(conn, host, new, report)
    # After the config is live: the HTTP-01 challenge reaches certbot through it.
    return [*changes, *certificates.ensure(conn, session, host, settings, report)]


def _put_live(conn: SSHConnection, host: Host, new: str, report: Callable[[str], None]) -> list[str]:
    current = conn.run(["cat", "--", CONFIG], check=False)
    old = current.text if current.exit_status == 0 else ""
    if old == new:
        return []
    conn.put_file(STAGED, new.encode(), owner="root", group="haproxy", mode=0o640)
    result = conn.run([APPLY_SCRIPT, STAGED], check=False)
    if result.exit_status != 0:
        meaning = EXIT_MEANINGS.get(result.exit_status, "the apply script failed")
        raise RemoteError(f"{host.name}: {meaning}: {result.stderr.decode().strip()}")
    summary = summarize_changes(old, new) or ["config rewritten"]
    report(f"haproxy: {'; '.join(summary)}")
    return [f"haproxy {line}" for line in summary]


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
            report(f"{name}: not applied (marked down); later: infr host {name} reconfigure")
            continue
        with SSHConnection.connect(fleet.target(session, host)) as conn:
            done = deploy(conn, session, host, _prefixed(report, name))
        report(f"{name}: {'applied' if done else 'haproxy already up to date'}")
        changes += done
    return changes
