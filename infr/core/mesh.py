"""The private network as data: WireGuard configs, boot setup, zones and status, from state.

Pure functions; meshops.py puts them on hosts. Design:

* Hosts form a full mesh on `infrwg0`. A host's [Peer] entry carries its own vnet
  address and its containers' addresses as /32s (Apex's child prefixes), so
  containers reach the mesh without running WireGuard themselves.
* Routing: the bridge infrbr0 holds the whole vnetNetwork prefix, so a container
  believes every vnet address is on its own link and ARPs for it. Each host
  therefore routes every other member's /32 via infrwg0 and answers ARP on infrbr0
  for them (proxy_arp: the kernel answers for addresses routed out of another
  interface). Local containers stay reachable directly on the bridge; nothing
  inside the containers changes.
* Changes are applied with `wg syncconf`, which leaves live tunnels up. A oneshot
  systemd unit runs the same script at boot, so the mesh needs neither infr nor any
  other host to come back after a reboot.
* Zones: one nftables ruleset, the same on every host, in two families: inet sees
  traffic routed across the mesh, bridge sees traffic between containers of one host.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable
from typing import Any

from infr.core.converge import FileSpec
from infr.state.model import Host, Inventory, Lxc, Peer

INTERFACE = "infrwg0"
BRIDGE = "infrbr0"
KEEPALIVE = 25
# An active tunnel handshakes every 2 minutes; past 3 it is not working.
STALE_SECONDS = 180
KEY_PATH = f"/etc/wireguard/{INTERFACE}.key"
CONF_PATH = f"/etc/wireguard/{INTERFACE}.conf"
UP_SCRIPT = "/usr/local/sbin/infr-mesh-up"
ZONES_PATH = "/etc/infr/zones.nft"
UNIT_NAME = "infr-mesh.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
HOSTS_BEGIN = "# infr vnet: begin"
HOSTS_END = "# infr vnet: end"


def public_key_problem(key: str) -> str | None:
    """Why `key` is not a WireGuard public key (base64 of 32 bytes), or None."""
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32 or len(key) != 44:
        return f"{key!r} is not a WireGuard public key (44 characters of base64, as 'wg pubkey' prints)"
    return None


def _by_address(addresses: Iterable[str]) -> list[str]:
    return sorted(addresses, key=lambda a: int(ipaddress.IPv4Address(a)))


def members(inv: Inventory) -> list[Host]:
    """Hosts in the mesh: those whose key is known (made on the host when it is set up)."""
    return sorted((h for h in inv.hosts.values() if h.wg_public_key), key=lambda h: h.name)


def addresses_behind(inv: Inventory, host: Host) -> list[str]:
    """The host's own vnet address, then its containers': what its peer entry routes to it."""
    return [host.vnet_ip, *_by_address(c.vnet_ip for c in inv.lxcs_on(host.name))]


def _allowed(addresses: Iterable[str]) -> str:
    return ", ".join(f"{a}/32" for a in addresses)


def _host_peer(inv: Inventory, host: Host, port: int) -> list[str]:
    return [
        f"# host {host.name}",
        "[Peer]",
        f"PublicKey = {host.wg_public_key}",
        f"Endpoint = {host.public_ip}:{port}",
        f"AllowedIPs = {_allowed(addresses_behind(inv, host))}",
        f"PersistentKeepalive = {KEEPALIVE}",
        "",
    ]


def _admin_peer(peer: Peer) -> list[str]:
    # No endpoint: laptops sit behind NAT and come to the hosts (their keepalives).
    return [f"# admin {peer.name}", "[Peer]", f"PublicKey = {peer.public_key}", f"AllowedIPs = {peer.vnet_ip}/32", ""]


def host_config(inv: Inventory, host: Host, port: int) -> str:
    """The host's config for `wg syncconf`; its private key is set apart (it never leaves the host)."""
    lines = ["# infr: the WireGuard mesh, rendered from state", "[Interface]", f"ListenPort = {port}", ""]
    for other in members(inv):
        if other.name != host.name:
            lines += _host_peer(inv, other, port)
    for peer in sorted(inv.peers.values(), key=lambda p: p.name):
        lines += _admin_peer(peer)
    return "\n".join(lines)


def routed_addresses(inv: Inventory, host: Host) -> list[str]:
    """Every vnet address reached through infrwg0 from `host`: other members' and admins'."""
    remote = [a for h in members(inv) if h.name != host.name for a in addresses_behind(inv, h)]
    return _by_address([*remote, *(p.vnet_ip for p in inv.peers.values())])


def up_script(inv: Inventory, host: Host) -> str:
    wanted = " ".join(routed_addresses(inv, host))
    return f"""#!/bin/sh
# infr: brings up the WireGuard mesh on {INTERFACE}, at boot and after every change.
# Rendered from state: change state and let infr rewrite this file.
set -eu
dev={INTERFACE}
ip link show dev "$dev" >/dev/null 2>&1 || ip link add dev "$dev" type wireguard
# The private key was made here and stays here; infr only ships the public part.
wg set "$dev" private-key {KEY_PATH}
# syncconf changes only what differs: live tunnels stay up.
wg syncconf "$dev" {CONF_PATH}
ip address replace {host.vnet_ip}/32 dev "$dev"
ip link set dev "$dev" up
wanted="{wanted}"
for address in $wanted; do
    ip route replace "$address/32" dev "$dev" src {host.vnet_ip}
done
# Routes to members that have left ('ip route' prints a /32 as a bare address).
ip -4 route show dev "$dev" | while read -r address _; do
    case " $wanted " in *" $address "*) ;; *) ip route del "$address" dev "$dev" ;; esac
done
# Containers think all of vnetNetwork is on the bridge: answer ARP for what is routed away.
if [ -e /proc/sys/net/ipv4/conf/{BRIDGE} ]; then
    sysctl -q -w net.ipv4.conf.{BRIDGE}.proxy_arp=1
fi
nft -f {ZONES_PATH}
"""


def unit() -> str:
    return f"""# infr: the WireGuard mesh, up at boot without infr or any other host
[Unit]
Description=infr WireGuard mesh ({INTERFACE})
Wants=network-online.target
After=network-online.target lxc-net.service nftables.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={UP_SCRIPT}

[Install]
WantedBy=multi-user.target
"""


def _set(name: str, addresses: list[str]) -> list[str]:
    elements = f" elements = {{ {', '.join(addresses)} }};" if addresses else ""
    return [f"    set {name} {{ type ipv4_addr;{elements} }}"]


def zones(inv: Inventory) -> dict[str, list[Lxc]]:
    grouped: dict[str, list[Lxc]] = {}
    for lxc in sorted(inv.lxcs.values(), key=lambda c: c.name):
        if lxc.zone:
            grouped.setdefault(lxc.zone, []).append(lxc)
    return dict(sorted(grouped.items()))


def _zone_table(family: str, inv: Inventory) -> list[str]:
    grouped = zones(inv)
    table = f"{family} infr_zones"
    # Declaring then deleting makes the file replace the table whether or not it exists.
    lines = [f"table {table}", f"delete table {table}", f"table {table} {{"]
    lines += _set("containers", _by_address(c.vnet_ip for c in inv.lxcs.values()))
    lines += _set("zoned", _by_address(c.vnet_ip for members in grouped.values() for c in members))
    for index, (zone, members) in enumerate(grouped.items()):
        lines += [f"    # zone {zone}", *_set(f"zone{index}", _by_address(c.vnet_ip for c in members))]
    lines += ["    chain forward {", "        type filter hook forward priority filter; policy accept;"]
    if grouped:
        lines += [f"        ip saddr @zone{i} ip daddr @zone{i} accept" for i in range(len(grouped))]
        # Hosts and admins are in neither set, so they reach every zone and are reached.
        lines += [
            "        ip saddr @zoned ip daddr @containers drop",
            "        ip saddr @containers ip daddr @zoned drop",
        ]
    return [*lines, "    }", "}"]


def zones_ruleset(inv: Inventory) -> str:
    """nftables rules isolating zones: members reach each other, hosts and admins' peers only."""
    lines = ["# infr: zones ('infr lxc NAME zone ZONE'), rendered from state; the same on every host"]
    lines += ["# routed traffic (across the mesh):", *_zone_table("inet", inv)]
    lines += ["# bridged traffic (containers of one host):", *_zone_table("bridge", inv)]
    return "\n".join(lines) + "\n"


def host_files(inv: Inventory, host: Host, port: int) -> list[FileSpec]:
    """Everything the mesh needs on `host` besides its private key."""
    return [
        FileSpec(ZONES_PATH, zones_ruleset(inv).encode(), precheck=("nft", "-c", "-f", "{}")),
        FileSpec(CONF_PATH, host_config(inv, host, port).encode(), mode=0o600),
        FileSpec(UP_SCRIPT, up_script(inv, host).encode(), mode=0o755),
        FileSpec(UNIT_PATH, unit().encode()),
    ]


def admin_config(inv: Inventory, peer: Peer, private_key: str, port: int) -> str:
    """A wg-quick config for an admin's machine: every host, keepalives so NAT needs no open port."""
    lines = [
        f"# infr: admin peer {peer.name} on the private network; keep this file private",
        "[Interface]",
        f"PrivateKey = {private_key}",
        f"Address = {peer.vnet_ip}/32",
        "",
    ]
    for host in members(inv):
        lines += _host_peer(inv, host, port)
    return "\n".join(lines)


def hosts_block(inv: Inventory, settings: dict[str, Any]) -> str:
    """An /etc/hosts block with every vnet name, for machines without infr's DNS."""
    suffix = f"{settings['vnetPrefix']}.{settings['dnsDomain']}"
    named: list[tuple[str, str]] = [(h.vnet_ip, h.name) for h in inv.hosts.values()]
    named += [(c.vnet_ip, c.name) for c in inv.lxcs.values()]
    named += [(p.vnet_ip, p.name) for p in inv.peers.values()]
    order = {a: i for i, a in enumerate(_by_address(a for a, _ in named))}
    lines = [f"{a}\t{n}.{suffix} {n}" for a, n in sorted(named, key=lambda x: order[x[0]])]
    return "\n".join([HOSTS_BEGIN, *lines, HOSTS_END]) + "\n"


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
    """Status rows from `wg show all dump` on `host`: one per peer line (9 tab-separated fields).

    Interface lines (5 fields, with the private key) are skipped; meshops filters them
    out on the host already. A handshake time of 0 means there was none ("never").
    """
    whois = _whois(inv)
    rows = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 9:
            continue
        _, key, _, endpoint, allowed, handshake, rx, tx, _ = fields
        name, address = whois.get(key, (f"unknown {key[:8]}", allowed.split("/")[0]))
        age = max(0, now - int(handshake)) if handshake != "0" else None
        stale = age is None or age > STALE_SECONDS
        text_age = "never" if age is None else _age_text(age)
        rows.append(
            {
                "host": host,
                "peer": name,
                "vnet_ip": address,
                "endpoint": "" if endpoint == "(none)" else endpoint,
                "handshake_age": age,
                "handshake": text_age + (" (stale)" if stale else ""),
                "stale": stale,
                "rx_bytes": int(rx),
                "tx_bytes": int(tx),
            }
        )
    return rows
