"""The private network as data: WireGuard configs, boot setup, zones and status, from state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infr.dns.wanted import managed_suffixes
from infr.engine.steps import FileSpec
from infr.engine.templating import fill, render
from infr.state import validate
from infr.state.model import Host, Inventory, Lxc, Peer

INTERFACE = "infrwg0"


BRIDGE = "infrbr0"


KEEPALIVE = 25


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
    return validate.wireguard_key(key, "key")


def _by_address(addresses: Iterable[str]) -> list[str]:
    # State holds dotted quads only (validated): their numbers sort them, ten times faster
    # than ipaddress, which counts with thousands of containers.
    return sorted(addresses, key=lambda a: tuple(int(part) for part in a.split(".")))


def members(inv: Inventory) -> list[Host]:
    """Hosts in the mesh: those whose key is known (made on the host when it is set up)."""
    return sorted((h for h in inv.hosts.values() if h.wg_public_key), key=lambda h: h.name)


def addresses_behind(inv: Inventory) -> dict[str, list[str]]:
    """Each member's own vnet address, then its containers': what its peer entry routes to it.

    One pass over the containers for all members (a fleet has thousands of them).
    """
    lxcs: dict[str, list[str]] = {}
    for lxc in inv.lxcs.values():
        lxcs.setdefault(lxc.host, []).append(lxc.vnet_ip)
    return {h.name: [h.vnet_ip, *_by_address(lxcs.get(h.name, []))] for h in members(inv)}


def _host_peer(host: Host, behind: list[str], port: int) -> dict[str, Any]:
    return {
        "name": host.name,
        "public_key": host.wg_public_key,
        "endpoint": f"{host.public_ip}:{port}",
        "allowed": [f"{a}/32" for a in behind],
    }


def host_peers(inv: Inventory, host: Host, port: int) -> list[dict[str, Any]]:
    """The other members as `host`'s config lists them: name, public_key, endpoint, allowed."""
    behind = addresses_behind(inv)
    return [_host_peer(other, behind[other.name], port) for other in members(inv) if other.name != host.name]


def host_config(inv: Inventory, host: Host, port: int) -> str:
    """The host's config for `wg syncconf`; its private key is set apart (it never leaves the host)."""
    return render(
        "mesh/host.conf.j2",
        port=port,
        keepalive=KEEPALIVE,
        hosts=host_peers(inv, host, port),
        admins=sorted(inv.peers.values(), key=lambda p: p.name),
    )


def routed_addresses(inv: Inventory, host: Host) -> list[str]:
    """Every vnet address reached through infrwg0 from `host`: other members' and admins'."""
    remote = [a for name, behind in addresses_behind(inv).items() if name != host.name for a in behind]
    return _by_address([*remote, *(p.vnet_ip for p in inv.peers.values())])


def up_script(inv: Inventory, host: Host) -> str:
    return render(
        "mesh/infr-mesh-up.j2",
        interface=INTERFACE,
        bridge=BRIDGE,
        key_path=KEY_PATH,
        conf_path=CONF_PATH,
        zones_path=ZONES_PATH,
        vnet_ip=host.vnet_ip,
        wanted=routed_addresses(inv, host),
    )


def unit() -> str:
    return render("mesh/infr-mesh.service.j2", interface=INTERFACE, up_script=UP_SCRIPT)


def zones(inv: Inventory) -> dict[str, list[Lxc]]:
    """Zone name -> its containers, for the containers that are in one."""
    grouped: dict[str, list[Lxc]] = {}
    for lxc in sorted(inv.lxcs.values(), key=lambda c: c.name):
        if lxc.zone:
            grouped.setdefault(lxc.zone, []).append(lxc)
    return dict(sorted(grouped.items()))


def zones_ruleset(inv: Inventory) -> str:
    """nftables rules isolating zones: members reach each other, hosts and admins' peers only.

    Two families: inet sees traffic routed across the mesh, bridge sees traffic between
    containers of one host. Containers in no zone reach each other (as before zones).
    """
    grouped = zones(inv)
    return render(
        "mesh/zones.nft.j2",
        families=(("inet", "routed traffic (across the mesh)"), ("bridge", "bridged traffic (containers of one host)")),
        containers=_by_address(c.vnet_ip for c in inv.lxcs.values()),
        zoned=_by_address(c.vnet_ip for members in grouped.values() for c in members),
        zones=[{"name": z, "addresses": _by_address(c.vnet_ip for c in m)} for z, m in grouped.items()],
    )


def host_files(inv: Inventory, host: Host, port: int) -> list[FileSpec]:
    """Everything the mesh needs on `host` besides its private key.

    The zones file is checked with `nft -c` on the host before it replaces the old one;
    the up script loads it (one transaction) when the unit (re)starts.
    """
    return [
        FileSpec(ZONES_PATH, zones_ruleset(inv).encode(), precheck=("nft", "-c", "-f", "{}")),
        FileSpec(CONF_PATH, host_config(inv, host, port).encode(), mode=0o600),
        FileSpec(UP_SCRIPT, up_script(inv, host).encode(), mode=0o755),
        FileSpec(UNIT_PATH, unit().encode()),
    ]


def admin_config(inv: Inventory, peer: Peer, private_key: str, port: int) -> str:
    """A wg-quick config for an admin's machine: every host, keepalives so NAT needs no open port."""
    behind = addresses_behind(inv)
    return render(
        "mesh/admin.conf.j2",
        name=peer.name,
        private_key=private_key,
        vnet_ip=peer.vnet_ip,
        keepalive=KEEPALIVE,
        hosts=[_host_peer(host, behind[host.name], port) for host in members(inv)],
    )


def hosts_block(inv: Inventory, settings: dict[str, Any]) -> str:
    """An /etc/hosts block with every vnet name (as `infr dns` makes them), for machines without that DNS."""
    _, suffix = managed_suffixes(settings)
    named: list[tuple[str, str]] = [(h.vnet_ip, h.name) for h in inv.hosts.values()]
    named += [(c.vnet_ip, c.name) for c in inv.lxcs.values()]
    named += [(p.vnet_ip, p.name) for p in inv.peers.values()]
    order = {a: i for i, a in enumerate(_by_address(a for a, _ in named))}
    lines = [
        fill("{address}\t{name}.{suffix} {name}", address=a, name=n, suffix=suffix)
        for a, n in sorted(named, key=lambda x: order[x[0]])
    ]
    return "\n".join([HOSTS_BEGIN, *lines, HOSTS_END]) + "\n"


@dataclass(frozen=True)
class DumpPeer:
    """One peer line of `wg show all dump`, as the live interface has it."""

    interface: str
    public_key: str
    endpoint: str  # "" when it has none
    allowed: tuple[str, ...]  # "10.8.1.2/32", ... in wg's order
    handshake: int  # seconds since the epoch, 0 for never
    rx: int
    tx: int


def dump_peers(text: str) -> list[DumpPeer]:
    """The peer lines (9 tab-separated fields) of `wg show all dump`.

    Interface lines (5 fields, with the private key) are skipped; they are best dropped
    on the host already, as the readers in infr do.
    """
    peers = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 9:
            continue
        interface, key, _, endpoint, allowed, handshake, rx, tx, _ = fields
        peers.append(
            DumpPeer(
                interface,
                key,
                "" if endpoint == "(none)" else endpoint,
                () if allowed == "(none)" else tuple(allowed.split(",")),
                int(handshake),
                int(rx),
                int(tx),
            )
        )
    return peers
