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
from pathlib import Path
from typing import Any, TypeVar

from infr.connector import SSHConnection, run_parallel
from infr.engine import steps
from infr.engine.fleet import get_lxc, target
from infr.engine.steps import Runner
from infr.errors import ConflictError, NotFoundError, RemoteError, UsageError
from infr.state import validate
from infr.state.change import Change
from infr.state.model import HOST_READY, Host, Peer, timestamp
from infr.state.session import Session
from infr.vnet import desired

Report = Callable[[str], None]
R = TypeVar("R")

# Made on the host, once; only the public half is printed and leaves it.
KEYGEN = (
    f"umask 077; mkdir -p {posixpath.dirname(desired.KEY_PATH)}; "
    f"[ -s {desired.KEY_PATH} ] || wg genkey > {desired.KEY_PATH}; wg pubkey < {desired.KEY_PATH}"
)
# The host's clock with the dump (handshake times are the host's); interface lines,
# which hold the private key, are dropped on the host.
DUMP = "date +%s; wg show all dump | awk -F '\\t' 'NF == 9'"
# Where `vnet join` keeps the admin's wg-quick configs: in the state directory but
# never in git (the directory ignores itself).
JOIN_DIR = "wireguard"
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


def _apply(conn: Runner, session: Session, host: Host) -> list[str]:
    """Converge the host's mesh files; (re)run the unit when anything changed or it is not up.

    The unit runs the up script: `wg syncconf` (live tunnels stay up), routes, and the
    zones loaded in one nftables transaction. Enabled, it does the same at boot.
    """
    port = int(session.settings()["vnetListenPort"])
    changes: list[str] = []
    for spec in desired.host_files(session.inventory(), host, port):
        changes += steps.ensure_file(conn, spec)
    if changes:
        conn.run(["systemctl", "daemon-reload"])
    if conn.run(["systemctl", "is-enabled", "--quiet", desired.UNIT_NAME], check=False).exit_status != 0:
        conn.run(["systemctl", "enable", desired.UNIT_NAME])
        changes.append(f"enabled {desired.UNIT_NAME}")
    if changes or conn.run(["systemctl", "is-active", "--quiet", desired.UNIT_NAME], check=False).exit_status != 0:
        conn.run(["systemctl", "restart", desired.UNIT_NAME])
        changes.append(f"ran {desired.UNIT_NAME}")
    return changes


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
        report(f"{name}: mesh skipped (marked down); later: infr vnet apply")
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


def status(session: Session) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Rows of `wg show all dump` from every ready host, and host -> error for those unreachable."""
    inv = session.inventory()
    dumps = _on_hosts(session, _ready(session, set()), lambda conn, host: conn.run(["sh", "-c", DUMP]).text)
    rows, failed = [], {}
    for name, dump in dumps.items():
        if isinstance(dump, Exception):
            failed[name] = str(dump)
            continue
        clock, _, peers = dump.partition("\n")
        rows += desired.parse_dump(peers, inv, name, int(clock))
    return rows, failed


def _check_peer_name(change: Change, name: str) -> None:
    if problem := validate.dns_label(name, "peer name"):
        raise UsageError(problem, "e.g. alice-laptop")
    if kind := change.inv.kind_of(name):
        raise ConflictError(f"{name} is already a {kind}'s name", "hosts, LXCs and peers share names: pick another")


def _check_key_free(change: Change, name: str, key: str) -> None:
    if problem := desired.public_key_problem(key):
        raise UsageError(problem, "give the output of 'wg pubkey' on that machine")
    holders = [f"host {h.name}" for h in change.inv.hosts.values() if h.wg_public_key == key]
    holders += [f"peer {p.name}" for p in change.inv.peers.values() if p.public_key == key and p.name != name]
    if holders:
        raise ConflictError(f"that public key is already {holders[0]}'s", "each machine needs its own key pair")


def add_peer(change: Change, name: str, key: str, ip: str | None) -> Peer:
    """Add an admin's machine, or give an existing one a new key: it keeps its address."""
    _check_key_free(change, name, key)
    old = change.inv.peers.get(name)
    if old is None:
        _check_peer_name(change, name)
        peer = Peer(name, key, change.allocate_address(ip), added=timestamp())
        change.note(f"peer {name} added with vnet address {peer.vnet_ip}")
    elif ip is not None and ip != old.vnet_ip:
        raise ConflictError(f"peer {name} already has {old.vnet_ip}", "remove it first to change its address")
    else:
        peer = replace(old, public_key=key)
        change.note(f"peer {name}: new key, same address {peer.vnet_ip}")
    change.put_peer(peer)
    return peer


def remove_peer(change: Change, name: str) -> None:
    if name not in change.inv.peers:
        known = ", ".join(sorted(change.inv.peers)) or "none"
        raise NotFoundError(f"no peer named {name!r}", f"known peers: {known}")
    change.delete_peer(name)
    change.note(f"peer {name} removed")


def join_config_path(root: Path, name: str) -> Path:
    # wg-quick names the interface after the file: one directory per peer.
    return root / JOIN_DIR / name / f"{desired.INTERFACE}.conf"


def _local_private_key(path: Path) -> str | None:
    """The private key in an existing wg-quick config of ours, if there is one."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return next((line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("PrivateKey")), None)


def _key_to_keep(path: Path, peer: Peer | None, ip: str | None) -> str | None:
    """The private key of this machine's config when it is still `peer`'s (same key, same address)."""
    private = _local_private_key(path)
    if peer is None or private is None or ip not in (None, peer.vnet_ip):
        return None
    try:
        return private if public_key_of(private) == peer.public_key else None
    except ValueError:  # not a key (binascii.Error is a ValueError)
        return None


def public_key_of(private: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def join(session: Session, name: str, ip: str | None) -> tuple[Path, list[str]]:
    """Make this machine the peer NAME: key pair here, wg-quick config beside the state, 0600.

    Run again on the same machine, it keeps the key and rewrites the config (new hosts
    and LXCs); on another machine it makes a new key and keeps the address (IP mobility).
    Returns the config's path and what changed.
    """
    from infr.state.files import write_atomic

    path = join_config_path(session.root, name)
    with session.change() as change:
        peer = change.inv.peers.get(name)
        private = _key_to_keep(path, peer, ip)
        if peer is None or private is None:
            private, public = new_key_pair()
            peer = add_peer(change, name, public, ip)
        else:
            change.note(f"peer {name}: same key, same address {peer.vnet_ip}; config rewritten")
        port = int(session.settings()["vnetListenPort"])
        write_atomic(session.root / JOIN_DIR / ".gitignore", b"*\n")
        write_atomic(path, desired.admin_config(change.inv, peer, private, port).encode(), 0o600)
    return path, change.notes


def set_zone(change: Change, name: str, zone: str) -> None:
    """Put an LXC in a zone ('none' takes it out)."""
    lxc = get_lxc(change.inv, name)
    zone = "" if zone == NO_ZONE else zone
    if zone and (problem := validate.dns_label(zone, "zone")):
        raise UsageError(problem, f"e.g. infr lxc {name} zone shop, or 'zone {NO_ZONE}'")
    if lxc.zone == zone:
        change.note(f"{name}: already in zone {zone or NO_ZONE}")
        return
    change.put_lxc(replace(lxc, zone=zone))
    change.note(f"{name}: zone {lxc.zone or NO_ZONE} -> {zone or NO_ZONE}")
