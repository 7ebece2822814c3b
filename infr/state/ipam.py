"""IPAM: vnet addresses for hosts, LXCs and peers.

Addresses are handed out in order from vnetPoolStart, skipping those in use, the
network and broadcast addresses, and any ending in .0 or .255 (valid in a /16, but
they confuse people and some software). The cursor only moves forward: a freed
address is not reused until the pool wraps (Infr's behaviour), so a stale DNS
record never points at a new machine by surprise.
"""

from __future__ import annotations

import ipaddress

from infr.errors import ConflictError, InfrError, UsageError
from infr.state.model import Inventory


def _usable(address: ipaddress.IPv4Address, network: ipaddress.IPv4Network) -> bool:
    last_octet = int(address) & 0xFF
    return (
        address in network
        and address not in (network.network_address, network.broadcast_address)
        and last_octet not in (0, 255)
    )


def allocate(inv: Inventory, requested: str | None = None) -> str:
    """A free vnet address: `requested` if given and free, else the next one in the pool."""
    network = ipaddress.IPv4Network(inv.config["vnetNetwork"])
    in_use = {h.vnet_ip for h in inv.hosts.values()}
    in_use |= {c.vnet_ip for c in inv.lxcs.values()}
    in_use |= {p.vnet_ip for p in inv.peers.values()}
    if requested is not None:
        return _check_requested(inv, requested, network, in_use)
    start = int(ipaddress.IPv4Address(inv.config["vnetPoolStart"]))
    end = int(network.broadcast_address)
    cursor = int(ipaddress.IPv4Address(inv.ipam_last)) + 1 if inv.ipam_last else start
    if not start <= cursor <= end:
        cursor = start
    # From the cursor to the end of the pool, then wrap round to its start.
    for candidate in (*range(cursor, end + 1), *range(start, cursor)):
        address = ipaddress.IPv4Address(candidate)
        if str(address) not in in_use and _usable(address, network):
            return str(address)
    raise InfrError(
        f"the vnet pool {inv.config['vnetPoolStart']}-{network.broadcast_address} is full",
        "remove unused LXCs, or widen vnetNetwork with 'infr config set vnetNetwork CIDR'",
    )


def _check_requested(inv: Inventory, requested: str, network: ipaddress.IPv4Network, in_use: set[str]) -> str:
    try:
        address = ipaddress.IPv4Address(requested)
    except ValueError:
        raise UsageError(f"--ip {requested!r} is not an IPv4 address", "give an address such as 10.8.1.50") from None
    if address not in network or address in (network.network_address, network.broadcast_address):
        raise UsageError(
            f"--ip {requested} is not a usable address in vnetNetwork {network}",
            "pick an address inside the network, not its first or last",
        )
    if requested in in_use:
        raise ConflictError(
            f"--ip {requested} is already held by {inv.holder_of(requested)}",
            "pick another address, or leave out --ip to get the next free one",
        )
    return requested


def take(inv: Inventory, requested: str | None = None) -> str:
    """Allocate an address and, when it came from the pool, move the cursor onto it."""
    address = allocate(inv, requested)
    if requested is None:
        inv.ipam_last = address
    return address
