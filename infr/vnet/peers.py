"""Admin peers and zones in state: the edits `infr vnet` makes."""

from __future__ import annotations

from dataclasses import replace

from infr.engine.fleet import get_lxc
from infr.errors import ConflictError, NotFoundError, UsageError
from infr.state import validate
from infr.state.change import Change
from infr.state.model import Peer, timestamp
from infr.vnet import desired
from infr.vnet.members import NO_ZONE


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
