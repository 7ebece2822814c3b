"""The private network on real machines: host keys, deploying the mesh, admins' peers, status.

What is rendered comes from desired.py; files reach hosts through steps.ensure_file,
several hosts at once through connector.run_parallel (hosts marked down are skipped).

Entry points:
  deploy(session, report)                  `infr vnet apply`: every ready host joins, all applied
  join_host(session, conn, host, report)   host adopt/reconfigure: this host joins, members learn it
  after_lxc_change(session, report)        after an LXC is added, removed or moved: members updated
  after_host_removed(session, report)      after a host left state: members drop it
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from infr.connector import SSHConnection, run_parallel
from infr.engine import steps
from infr.engine.fleet import target
from infr.engine.steps import Runner
from infr.errors import RemoteError
from infr.state import validate
from infr.state.model import HOST_READY, Host
from infr.state.session import Session
from infr.vnet import desired

Report = Callable[[str], None]


R = TypeVar("R")


# Made on the host, once; only the public half is printed and leaves it.
KEYGEN = (
    f"umask 077; mkdir -p {posixpath.dirname(desired.KEY_PATH)}; "
    f"[ -s {desired.KEY_PATH} ] || wg genkey > {desired.KEY_PATH}; wg pubkey < {desired.KEY_PATH}"
)


NO_ZONE = validate.NO_ZONE


def new_key_pair() -> tuple[str, str]:
    """A WireGuard key pair (private, public) in wg's base64 form, made on this machine."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def host_public_key(conn: Runner) -> str:
    """The host's WireGuard public key, making its key pair there first if it has none."""
    key = conn.run(["sh", "-c", KEYGEN]).text.strip()
    if problem := desired.public_key_problem(key):
        raise RemoteError(f"no WireGuard public key from the host: {problem}", "is wireguard-tools installed there?")
    return key


def record_key(session: Session, name: str, key: str) -> Host:
    with session.change() as change:
        host = change.inv.hosts[name]
        if host.wg_public_key != key:
            old = host.wg_public_key
            host = replace(host, wg_public_key=key)
            change.put_host(host)
            change.note(f"host {name}: WireGuard public key {key}" + (f" (was {old})" if old else ""))
        return host


def run_unit(conn: Runner, *, reload: bool, restart: bool) -> list[str]:
    """Enable the unit at boot and (re)run it when asked to or when it is not up.

    The unit runs the up script: `wg syncconf` (live tunnels stay up), routes, and the
    zones loaded in one nftables transaction. `reload` rereads the unit files first.
    """
    changes: list[str] = []
    if reload:
        conn.run(["systemctl", "daemon-reload"])
    if conn.run(["systemctl", "is-enabled", "--quiet", desired.UNIT_NAME], check=False).exit_status != 0:
        conn.run(["systemctl", "enable", desired.UNIT_NAME])
        changes.append(f"enabled {desired.UNIT_NAME}")
    if restart or conn.run(["systemctl", "is-active", "--quiet", desired.UNIT_NAME], check=False).exit_status != 0:
        conn.run(["systemctl", "restart", desired.UNIT_NAME])
        changes.append(f"ran {desired.UNIT_NAME}")
    return changes


def _apply(conn: Runner, session: Session, host: Host) -> list[str]:
    """Converge the host's mesh files (the zones ruleset checked with `nft -c` first); (re)run
    the unit when anything changed or it is not up."""
    port = int(session.settings()["vnetListenPort"])
    changes: list[str] = []
    for spec in desired.host_files(session.inventory(), host, port):
        changes += steps.ensure_file(conn, spec)
    return changes + run_unit(conn, reload=bool(changes), restart=bool(changes))


def _on_hosts(session: Session, hosts: dict[str, Host], work: Callable[[SSHConnection, Host], R]) -> dict[str, Any]:
    """Run `work` on each host at once; returns host -> result, or the exception it failed with."""

    def one(host: Host, step: Report) -> R:
        with SSHConnection.connect(target(session, host)) as conn:
            return work(conn, host)

    outcomes = run_parallel(hosts, one, skip=session.down_hosts)
    return {name: o.value if o.ok else o.error for name, o in outcomes.items() if name not in session.down_hosts}


def _ready(session: Session, exclude: set[str]) -> dict[str, Host]:
    hosts = session.inventory().hosts
    return {n: h for n, h in sorted(hosts.items()) if h.status == HOST_READY and n not in exclude}


def _ready_members(session: Session, exclude: set[str]) -> dict[str, Host]:
    """Ready hosts already in the mesh (their key is in state)."""
    return {n: h for n, h in _ready(session, exclude).items() if h.wg_public_key}


def _apply_on(session: Session, hosts: dict[str, Host], report: Report) -> tuple[list[str], dict[str, str]]:
    """Apply the mesh on `hosts` at once; returns what changed ("host: line") and host -> error."""
    changes: list[str] = []
    failed: dict[str, str] = {}
    for name, result in _on_hosts(session, hosts, lambda conn, host: _apply(conn, session, host)).items():
        if isinstance(result, Exception):
            failed[name] = str(result)
            report(f"{name}: mesh not applied: {result}")
            continue
        changes += [f"{name}: {line}" for line in result]
        report(f"{name}: mesh {'applied' if result else 'up to date'}")
    for name in sorted(session.down_hosts & set(hosts)):
        report(f"{name}: mesh skipped (marked down); apply it later with: infr apply {name}")
    return changes, failed


def join_host(session: Session, conn: Runner, host: Host, report: Report) -> list[str]:
    """Put `host` in the mesh, for adopt and reconfigure (over their connection, lock held or not).

    Its key pair is made there (the private key stays), its public key is recorded, its
    mesh files go on and its unit runs; then the ready hosts already in the mesh are told
    about it. A member that cannot be reached is reported, not raised: the host itself
    is done, and `infr vnet apply` finishes the rest.
    """
    with session.locked():
        key = host_public_key(conn)
        new_key = key != host.wg_public_key
        if new_key:
            host = record_key(session, host.name, key)
        changes = [f"WireGuard public key {key}"] if new_key else []
        changes += _apply(conn, session, host)
        if new_key:  # the other members list this host by its key
            others, failed = _apply_on(session, _ready_members(session, {host.name}), report)
            changes += others
            for name in sorted(failed):
                report(f"{name} does not know {host.name} yet; later: infr vnet apply")
    return changes


def refresh_members(session: Session, report: Report) -> list[str]:
    """Bring every ready member of the mesh to what state says; nothing when there is no mesh.

    Only ready hosts already in the mesh are touched (no keys are made here). Unreachable
    hosts are reported, not raised (`infr vnet apply` catches them up). Returns what
    changed, as "host: line".
    """
    with session.locked():
        members = _ready_members(session, set())
        if not members:
            return []
        changes, _ = _apply_on(session, members, report)
    return changes


def after_lxc_change(session: Session, report: Report) -> list[str]:
    """After an LXC was added, removed or moved (state already saved): update the mesh's members.

    Its host's peer entry on the other hosts (AllowedIPs), their routes and every host's
    zone rules change. See refresh_members.
    """
    return refresh_members(session, report)


def after_host_removed(session: Session, report: Report) -> list[str]:
    """After a host left state: the remaining members drop its peer entry and routes."""
    return refresh_members(session, report)


def deploy(session: Session, report: Report) -> dict[str, str]:
    """Put the mesh as state says on every ready host; returns host -> error for failures.

    First every ready host is asked for its public key (made there if missing): hosts
    not in the mesh yet join it, and a host whose key changed (reinstalled) is recorded
    anew. Then every ready host gets its files, all at once.
    """
    with session.locked():
        failed: dict[str, str] = {}
        keys = _on_hosts(session, _ready(session, set()), lambda conn, host: host_public_key(conn))
        for name, key in keys.items():
            if isinstance(key, Exception):
                failed[name] = str(key)
                report(f"{name}: failed: {key}")
            elif key != session.inventory().hosts[name].wg_public_key:
                record_key(session, name, key)
        hosts = {n: h for n, h in _ready(session, set()).items() if n not in failed and h.wg_public_key}
        _, not_applied = _apply_on(session, hosts, report)
        return {**failed, **not_applied}
