"""The private network on real machines: host keys, deploying the mesh, admins' peers, status.

What is rendered comes from mesh.py; files reach hosts through converge.ensure_file,
several hosts at once through connector.run_parallel (hosts marked down are skipped).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from infr.connector import SSHConnection, run_parallel
from infr.core import converge, mesh
from infr.core.hostops import now, target
from infr.core.lxcs import get_lxc
from infr.core.session import Session
from infr.errors import ConflictError, NotFoundError, UsageError
from infr.state import validate
from infr.state.change import Change
from infr.state.model import HOST_READY, Host, Peer

Report = Callable[[str], None]
R = TypeVar("R")

# Made on the host, once; only the public half is printed and leaves it.
KEYGEN = f"umask 077; [ -s {mesh.KEY_PATH} ] || wg genkey > {mesh.KEY_PATH}; wg pubkey < {mesh.KEY_PATH}"
# The host's clock with the dump (handshake times are the host's); interface lines,
# which hold the private key, are dropped on the host.
DUMP = "date +%s; wg show all dump | awk -F '\\t' 'NF == 9'"
# Where `vnet join` keeps the admin's wg-quick configs: in the state directory but
# never in git (the directory ignores itself).
JOIN_DIR = "wireguard"
NO_ZONE = "none"


def new_key_pair() -> tuple[str, str]:
    """A WireGuard key pair (private, public) in wg's base64 form, made on this machine."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def host_public_key(conn: SSHConnection) -> str:
    return conn.run(["sh", "-c", KEYGEN]).text.strip()


def record_key(session: Session, name: str, key: str) -> Host:
    with session.change() as change:
        host = change.inv.hosts[name]
        if host.wg_public_key != key:
            host = replace(host, wg_public_key=key)
            change.put_host(host)
            change.note(f"host {name}: WireGuard public key {key}")
        return host


def _apply(conn: SSHConnection, session: Session, host: Host) -> list[str]:
    """Converge the host's mesh files; (re)run the unit when anything changed."""
    port = int(session.settings()["vnetListenPort"])
    changes: list[str] = []
    for spec in mesh.host_files(session.inventory(), host, port):
        changes += converge.ensure_file(conn, spec)
    if changes:
        conn.run(["systemctl", "daemon-reload"])
        conn.run(["systemctl", "enable", mesh.UNIT_NAME])
        conn.run(["systemctl", "restart", mesh.UNIT_NAME])
    return changes


def setup_host(conn: SSHConnection, session: Session, host: Host, report: Report) -> list[str]:
    """Part of configuring a host: its key, its mesh; the other hosts learn a new key."""
    key = host_public_key(conn)
    new_key = key != host.wg_public_key
    if new_key:
        host = record_key(session, host.name, key)
    changes = ["made its WireGuard key"] if new_key else []
    changes += _apply(conn, session, host)
    if new_key:  # the other hosts' configs list this host by its key
        for name, error in deploy(session, report, exclude={host.name}).items():
            report(f"{name} does not know this host yet ({error}); later: infr vnet apply")
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


def deploy(session: Session, report: Report, exclude: set[str] | None = None) -> dict[str, str]:
    """Put the mesh as state says on every ready host; returns host -> error for failures."""
    with session.locked():
        keyless = {n: h for n, h in _ready(session, exclude or set()).items() if not h.wg_public_key}
        for name, key in _on_hosts(session, keyless, lambda conn, host: host_public_key(conn)).items():
            if isinstance(key, str):
                record_key(session, name, key)
        hosts = _ready(session, exclude or set())
        failed = {}
        for name, result in _on_hosts(session, hosts, lambda conn, host: _apply(conn, session, host)).items():
            if isinstance(result, Exception):
                failed[name] = str(result)
            report(f"{name}: {'failed: ' + str(result) if name in failed else 'applied' if result else 'up to date'}")
        for name in sorted(session.down_hosts & set(hosts)):
            report(f"{name}: skipped (down); later: infr vnet apply")
        return failed


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
        rows += mesh.parse_dump(peers, inv, name, int(clock))
    return rows, failed


def _check_peer_name(change: Change, name: str) -> None:
    if problem := validate.dns_label(name, "peer name"):
        raise UsageError(problem, "e.g. alice-laptop")
    if name in change.inv.names_in_use():
        raise ConflictError(f"{name} is already a host or LXC", "peers share the vnet names: pick another")


def _check_key_free(change: Change, name: str, key: str) -> None:
    if problem := mesh.public_key_problem(key):
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
        peer = Peer(name, key, change.allocate_address(ip), added=now())
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
    return root / JOIN_DIR / name / f"{mesh.INTERFACE}.conf"


def join(session: Session, name: str, ip: str | None) -> Path:
    """Make this machine the peer NAME: key pair here, wg-quick config beside the state, 0600."""
    from infr.state.files import write_atomic

    private, public = new_key_pair()
    path = join_config_path(session.root, name)
    with session.change() as change:
        peer = add_peer(change, name, public, ip)
        port = int(session.settings()["vnetListenPort"])
        write_atomic(session.root / JOIN_DIR / ".gitignore", b"*\n")
        write_atomic(path, mesh.admin_config(change.inv, peer, private, port).encode(), 0o600)
    return path


def set_zone(change: Change, name: str, zone: str) -> None:
    """Put an LXC in a zone ('none' takes it out)."""
    lxc = get_lxc(change.inv, name)
    zone = "" if zone == NO_ZONE else zone
    if zone and (problem := validate.dns_label(zone, "zone")):
        raise UsageError(problem, f"e.g. infr lxc {name} zone shop, or 'zone {NO_ZONE}'")
    if lxc.zone == zone:
        change.note(f"{name}: already in zone {zone or NO_ZONE}; nothing changed")
        return
    change.put_lxc(replace(lxc, zone=zone))
    change.note(f"{name}: zone {lxc.zone or NO_ZONE} -> {zone or NO_ZONE}")
