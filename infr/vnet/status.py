"""The mesh as its hosts see it: `wg show all dump` parsed into one row per peer, and read on every member."""

from __future__ import annotations

from typing import Any

from infr.state.model import Inventory
from infr.state.session import Session
from infr.vnet import desired
from infr.vnet.members import _on_hosts, _ready

# An active tunnel handshakes every 2 minutes; past 3 it is not working.
STALE_SECONDS = 180


def _age_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _whois(inv: Inventory) -> dict[str, tuple[str, str]]:
    known = {h.wg_public_key: (h.name, h.vnet_ip) for h in inv.hosts.values() if h.wg_public_key}
    known.update({p.public_key: (p.name, p.vnet_ip) for p in inv.peers.values()})
    return known


def parse_dump(text: str, inv: Inventory, host: str, now: int) -> list[dict[str, Any]]:
    """Status rows from `wg show all dump` on `host`: one per peer line.

    A handshake time of 0 means there was none ("never").
    """
    whois = _whois(inv)
    rows = []
    for peer in desired.dump_peers(text):
        first = peer.allowed[0].split("/")[0] if peer.allowed else ""
        name, address = whois.get(peer.public_key, (f"unknown {peer.public_key[:8]}", first))
        age = max(0, now - peer.handshake) if peer.handshake else None
        stale = age is None or age > STALE_SECONDS
        text_age = "never" if age is None else _age_text(age)
        rows.append(
            {
                "host": host,
                "peer": name,
                "vnet_ip": address,
                "endpoint": peer.endpoint,
                "handshake_age": age,
                "handshake": text_age + (" (stale)" if stale else ""),
                "stale": stale,
                "rx_bytes": peer.rx,
                "tx_bytes": peer.tx,
            }
        )
    return rows


# The host's clock with the dump (handshake times are the host's); interface lines,
# which hold the private key, are dropped on the host.
DUMP = "date +%s; wg show all dump | awk -F '\\t' 'NF == 9'"


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
        rows += parse_dump(peers, inv, name, int(clock))
    return rows, failed
