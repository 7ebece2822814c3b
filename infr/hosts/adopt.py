"""Hosts on real machines: adopt an existing server, reconfigure, remove, push keys, ssh in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from infr.connector import SSHConnection, fingerprint
from infr.engine import steps as engine_steps
from infr.engine.fleet import get_host, target
from infr.errors import ConflictError, HostKeyError, RemoteError, UsageError
from infr.hosts import desired
from infr.state import validate
from infr.state.admin import require_admin_key
from infr.state.change import Change
from infr.state.model import HOST_INSTALLING, HOST_READY, Host, Inventory, timestamp
from infr.state.session import Session

Report = Callable[[str], None]
# What configure does on the host after its base system (the mesh, HAProxy): given by the
# caller (infr.followups), so this module needs no other feature.
HostFeatures = Callable[[SSHConnection, Host], list[str]]


@dataclass(frozen=True)
class Steps:
    """Which parts of a host to (re)configure; Infr's reconfigure flags."""

    network: bool = True
    software: bool = True
    haproxy: bool = True


def _check_new_host(inv: Inventory, name: str, ip: str) -> None:
    problems = [p for p in (validate.dns_label(name, "host name"), validate.host_address(ip, "IP")) if p]
    if problems:
        raise UsageError("; ".join(problems), "give the server's own IP, e.g. infr hosts add --adopt bob 203.0.113.10")
    if (kind := inv.kind_of(name)) and kind != "host":
        raise ConflictError(f"{name} is already a {kind}'s name", "hosts, LXCs and peers share names: pick another")
    for other in inv.hosts.values():
        if other.public_ip == ip and other.name != name:
            raise ConflictError(f"{ip} is already host {other.name}", "each host needs its own public IP")


def _check_add(inv: Inventory, name: str, ip: str) -> Host | None:
    """The host `name` if it is already recorded at `ip` (a cut-off add to resume), None if new."""
    if name not in inv.hosts:
        _check_new_host(inv, name, ip)
        return None
    host = inv.hosts[name]
    if host.public_ip != ip:
        raise ConflictError(
            f"host {name} already exists with IP {host.public_ip}",
            f"pick another name, or remove it first: infr host {name} remove",
        )
    return host


def check_add(session: Session, name: str, ip: str) -> None:
    """What `hosts add` can check before it records anything or touches the server:
    the name, the address, clashes with other hosts and LXCs, and the -i key file."""
    inv = session.inventory()
    require_admin_key(inv)
    _check_add(inv, name, ip)
    if session.identity_file and not Path(session.identity_file).expanduser().is_file():
        raise UsageError(f"no SSH private key at {session.identity_file}", "give your key's path with -i KEY")


def record_host(session: Session, name: str, ip: str) -> Host:
    """The host as recorded in state, recording it (as installing) if new; resumes a cut-off add."""
    with session.change() as change:
        inv = change.inv
        require_admin_key(inv)  # before the host is recorded: its root login is about to go
        if (existing := _check_add(inv, name, ip)) is not None:
            return existing
        host = Host(name, ip, change.allocate_address(), status=HOST_INSTALLING, added=timestamp())
        change.put_host(host)
        change.note(f"host {name} recorded with vnet address {host.vnet_ip}")
        return host


def pin_host_key(session: Session, host: Host, conn: SSHConnection, report: Report) -> Host:
    if host.host_key == conn.host_key:
        return host
    report(f"pinned host key {fingerprint(conn.host_key)}")
    with session.change() as change:
        host = replace(change.inv.hosts[host.name], host_key=conn.host_key)
        change.put_host(host)
    return host


def _bootstrap_manager(session: Session, host: Host, password: str | None, report: Report) -> Host:
    """As root: the manager account with the admin keys and sudo. Skipped once manager works."""
    try:
        with SSHConnection.connect(target(session, host)) as conn:
            if conn.run(["true"], check=False).exit_status == 0:
                return pin_host_key(session, host, conn, report)
    except HostKeyError:
        raise
    except RemoteError:
        pass  # no manager yet (a fresh server): set it up as root
    report("logging in as root")
    with SSHConnection.connect(target(session, host, user="root", password=password)) as root:
        host = pin_host_key(session, host, root, report)
        inv = session.inventory()
        changes = engine_steps.ensure_packages(root, ["sudo"])
        changes += engine_steps.ensure_user(root, desired.MANAGER, ["sudo"])
        root.run(["install", "-d", "-m", "700", "-o", "manager", "-g", "manager", "--", "/home/manager/.ssh"])
        for spec in desired.manager_files(inv):
            changes += engine_steps.ensure_file(root, spec)
    for line in changes:
        report(line)
    return host


def configure(
    conn: SSHConnection, session: Session, host: Host, steps: Steps, report: Report, features: HostFeatures
) -> list[str]:
    """Bring a host whose manager login works to what state says; returns what changed."""
    inv = session.inventory()
    settings = session.settings()
    changes: list[str] = []
    files = [*desired.manager_files(inv), desired.sshd_file(), *desired.name_files(host.name, settings)]
    if steps.software:
        report("installing software")
        changes += engine_steps.ensure_packages(conn, desired.HOST_PACKAGES)
    if steps.network:
        files += desired.network_files(host, settings)
    for spec in files:
        changes += engine_steps.ensure_file(conn, spec)
    changes += features(conn, host)
    for line in changes:
        report(line)
    return changes


def adopt(
    session: Session, name: str, ip: str, password: str | None, report: Report, features: HostFeatures
) -> list[str]:
    """Take over an existing Debian server without reinstalling it; safe to run again."""
    with session.locked():
        host = record_host(session, name, ip)
        host = _bootstrap_manager(session, host, password, report)
        with SSHConnection.connect(target(session, host)) as conn:
            conn.run(["true"])  # sudo works for manager: only now is root login turned off
            changes = configure(conn, session, host, Steps(), report, features)
        if host.status != HOST_READY:
            with session.change() as change:
                change.put_host(replace(change.inv.hosts[name], status=HOST_READY))
                change.note(f"host {name} is ready")
                changes.append("marked ready")
    return changes


def reconfigure(
    session: Session, name: str, steps: Steps, repin: bool, report: Report, features: HostFeatures
) -> list[str]:
    with session.locked():
        host = get_host(session.inventory(), name)
        if repin:
            host = replace(host, host_key="")
        with SSHConnection.connect(target(session, host)) as conn:
            host = pin_host_key(session, host, conn, report)
            return configure(conn, session, host, steps, report, features)


def push_keys(session: Session, names: list[str], report: Callable[[str, str], None]) -> dict[str, str]:
    """Write the admin keys to every listed host; returns host -> error for those that failed."""
    from infr.connector import run_parallel

    inv = session.inventory()
    spec = desired.manager_files(inv)[0]
    hosts = {n: inv.hosts[n] for n in names if inv.hosts[n].status == HOST_READY}

    def push(host: Host, step: Callable[[str], None]) -> list[str]:
        with SSHConnection.connect(target(session, host)) as conn:
            changes = engine_steps.ensure_file(conn, spec)
            for lxc in inv.lxcs_on(host.name):
                changes += _push_into_container(conn, lxc.name, spec)
            return changes

    outcomes = run_parallel(hosts, push, skip=session.down_hosts)
    failed = {}
    for host_name, outcome in outcomes.items():
        if outcome.error:
            failed[host_name] = str(outcome.error)
        if host_name in session.down_hosts:
            report(host_name, "skipped (down)")
        elif outcome.error:
            report(host_name, str(outcome.error))
        else:
            written = len(outcome.value or [])
            report(host_name, f"keys written ({written} places)" if written else "keys up to date")
    return failed


def _push_into_container(conn: SSHConnection, name: str, spec: engine_steps.FileSpec) -> list[str]:
    """The keys inside a running container; a stopped one gets them at `infr lxcs add` again."""
    from infr.engine.container import Attached

    state = conn.run(["lxc-info", "-n", name, "-s", "-H"], check=False).text.strip()
    if state != "RUNNING":
        return []
    return [f"{name}: {line}" for line in engine_steps.ensure_file(Attached(conn, name), spec)]


def remove(session: Session, name: str, force: bool) -> list[str]:
    """Forget a host; refuses while LXCs or backups use it unless forced, never leaving orphans."""
    with session.change() as change:
        record_removal(change, name, force)
    return change.notes


def record_removal(change: Change, name: str, force: bool) -> None:
    """Forget the host `name` in `change` (and, forced, its LXCs and backups)."""
    get_host(change.inv, name)
    lxcs = sorted(c.name for c in change.inv.lxcs_on(name))
    backups = [f"{b.from_host}->{b.to_host}" for b in change.inv.backups_of(name)]
    if (lxcs or backups) and not force:
        used = ", ".join([*(f"LXC {n}" for n in lxcs), *(f"backup {b}" for b in backups)])
        raise ConflictError(f"host {name} is still used by {used}", "remove those first, or pass --force")
    for lxc in lxcs:
        change.delete_lxc(lxc)
    if backups:
        change.set_backups([b for b in change.inv.backups if name not in b.pair])
    change.delete_host(name)
    change.note(
        f"host {name} removed" + (f" with {', '.join(lxcs + backups)}" if force and (lxcs or backups) else "")
    )
