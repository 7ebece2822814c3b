"""One schema for the inventory files: every problem in the whole state reported at once."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from infr.state import validate
from infr.state.model import (
    BACKUP_ACTIVE,
    BACKUP_ARCHIVED,
    HOST_INSTALLING,
    HOST_READY,
    HTTP_MODES,
    HTTPS_MODES,
    LXC_CREATING,
    LXC_READY,
    RESERVED_HOST_PORTS,
    Backup,
    Host,
    Inventory,
    Key,
    Lxc,
    Peer,
    TcpForward,
)

SCHEMA_VERSION = 1
T = TypeVar("T")

_TYPES = {"str": str, "int": int, "bool": bool, "list[str]": list, "list[TcpForward]": list}


def from_dict(cls: type[T], data: dict[str, Any], source: str, problems: list[str]) -> T | None:
    """Build a dataclass from a TOML table, noting unknown, missing and mistyped fields."""
    fields, required = _field_specs(cls)
    unknown = data.keys() - fields.keys()
    for key in unknown:
        problems.append(f"{source}: unknown field {key!r}")
    ok = True
    for name in required:
        if name in data:
            continue
        problems.append(f"{source}: missing field {name!r}")
        ok = False
    for name, value in data.items():
        spec = fields.get(name)
        if spec is None:
            continue
        expected, items_ok, type_name = spec
        # type() is, not isinstance: TOML gives exactly str, int, bool or list, and a bool is not a number here
        if type(value) is not expected or (items_ok is not None and not items_ok(value)):
            problems.append(f"{source}: field {name!r} must be {type_name}")
            ok = False
    if not ok:
        return None
    values = {k: v for k, v in data.items() if k not in unknown} if unknown else dict(data)
    if cls is Lxc:
        values["tcp_forwards"] = [TcpForward(f["host_port"], f["lxc_port"]) for f in values.get("tcp_forwards", [])]
    return cls(**values)


# Per class: each field's Python type, the check of a list's items and the type's name
# for messages, and the fields a file must give. Worked out once per class:
# dataclasses.fields() and str(type) for every field of 11,000 files took a fifth of a cold load.
_Spec = tuple[type, Callable[[Any], bool] | None, str]
_SPECS: dict[type, tuple[dict[str, _Spec], tuple[str, ...]]] = {}


def _field_specs(cls: type) -> tuple[dict[str, _Spec], tuple[str, ...]]:
    if cls not in _SPECS:
        fields = dataclasses.fields(cls)
        specs = {f.name: (_TYPES[str(f.type)], _ITEM_CHECKS.get(str(f.type)), str(f.type)) for f in fields}
        required = tuple(
            f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        _SPECS[cls] = (specs, required)
    return _SPECS[cls]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: list[Any]) -> bool:
    return all(isinstance(item, str) for item in value)


def _forwards(value: list[Any]) -> bool:
    """{host_port, lxc_port} tables of whole numbers."""
    return all(
        isinstance(f, dict) and f.keys() == {"host_port", "lxc_port"} and all(_is_int(v) for v in f.values())
        for f in value
    )


_ITEM_CHECKS: dict[str, Callable[[Any], bool]] = {"list[str]": _strings, "list[TcpForward]": _forwards}


_FIELDS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def to_dict(item: Any) -> dict[str, Any]:
    """`dataclasses.asdict` for the model's dataclasses (fields of str and int, and lists of
    those or of dataclasses) without its deepcopy of every value: 10x faster, which counts
    when the cache of 10,000 LXCs is written."""
    cls = type(item)
    if cls not in _FIELDS:
        fields = dataclasses.fields(cls)
        _FIELDS[cls] = (tuple(f.name for f in fields), tuple(f.name for f in fields if str(f.type).startswith("list")))
    names, lists = _FIELDS[cls]
    out = {name: getattr(item, name) for name in names}
    for name in lists:
        out[name] = [to_dict(v) if dataclasses.is_dataclass(v) else v for v in out[name]]
    return out


def _problems(*checks: str | None) -> list[str]:
    return [problem for problem in checks if problem]


def _vnet_ip(address: str, network: ipaddress.IPv4Network | None, where: str) -> str | None:
    if network is None:  # vnetNetwork itself is wrong (reported with config.toml) or unset
        return validate.ipv4(address, f"{where}: vnet_ip")
    return validate.usable_address(address, network, f"{where}: vnet_ip")


def _check_host(host: Host, network: ipaddress.IPv4Network | None) -> list[str]:
    where = f"hosts/{host.name}.toml"
    problems = _problems(
        validate.dns_label(host.name, f"{where}: name"),
        validate.host_address(host.public_ip, f"{where}: public_ip"),
        _vnet_ip(host.vnet_ip, network, where),
        validate.port(host.ssh_port, f"{where}: ssh_port"),
        validate.timestamp(host.added, f"{where}: added"),
        host.host_key and validate.ssh_host_key(host.host_key, f"{where}: host_key"),
        host.wg_public_key and validate.wireguard_key(host.wg_public_key, f"{where}: wg_public_key"),
    )
    if host.status not in (HOST_INSTALLING, HOST_READY):
        problems.append(f"{where}: status must be {HOST_INSTALLING} or {HOST_READY}")
    return problems


def _check_lxc(lxc: Lxc, network: ipaddress.IPv4Network | None, managed: tuple[str, ...]) -> list[str]:
    where = f"lxcs/{lxc.name}.toml"
    problems = _problems(
        validate.dns_label(lxc.name, f"{where}: name"),
        validate.distro(lxc.distro, f"{where}: distro"),
        validate.release(lxc.release, f"{where}: release"),
        _vnet_ip(lxc.vnet_ip, network, where),
        validate.port(lxc.http_port, f"{where}: http_port"),
        validate.port(lxc.https_port, f"{where}: https_port"),
        validate.timestamp(lxc.added, f"{where}: added"),
        lxc.zone and validate.zone(lxc.zone, f"{where}: zone"),
    )
    if lxc.status not in (LXC_CREATING, LXC_READY):
        problems.append(f"{where}: status must be {LXC_CREATING} or {LXC_READY}")
    if lxc.http not in HTTP_MODES:
        problems.append(f"{where}: http must be one of {', '.join(HTTP_MODES)}")
    if lxc.https not in HTTPS_MODES:
        problems.append(f"{where}: https must be one of {', '.join(HTTPS_MODES)}")
    for alias in lxc.aliases:
        problems += _problems(validate.alias(alias, managed, f"{where}: alias"))
    if len(set(lxc.aliases)) != len(lxc.aliases):
        problems.append(f"{where}: an alias is listed twice")
    return problems + _check_forwards(lxc, where)


def _check_forwards(lxc: Lxc, where: str) -> list[str]:
    problems = []
    for forward in lxc.tcp_forwards:
        for value, what in ((forward.host_port, "host_port"), (forward.lxc_port, "lxc_port")):
            if problem := validate.port(value, f"{where}: tcp forward {what}"):
                problems.append(problem)
        if forward.host_port in RESERVED_HOST_PORTS:
            problems.append(f"{where}: tcp forward host_port {forward.host_port} is reserved for sshd and HAProxy")
    host_ports = [f.host_port for f in lxc.tcp_forwards]
    if len(set(host_ports)) != len(host_ports):
        problems.append(f"{where}: a tcp forward host_port is listed twice")
    return problems


def _check_peer(peer: Peer, network: ipaddress.IPv4Network | None) -> list[str]:
    where = f"peers/{peer.name}.toml"
    return _problems(
        validate.dns_label(peer.name, f"{where}: name"),
        validate.wireguard_key(peer.public_key, f"{where}: public_key"),
        _vnet_ip(peer.vnet_ip, network, where),
        validate.timestamp(peer.added, f"{where}: added"),
    )


def _check_key(key: Key) -> list[str]:
    where = f"keys/{key.name}.pub"
    return [f"{where}: {p}" for p in _problems(validate.key_name(key.name), validate.ssh_public_key(key.key))]


def _check_unique(inv: Inventory) -> list[str]:
    problems = _names_unique(inv)
    seen: dict[str, str] = {}
    items: list[tuple[str, str]] = [(f"host {h.name}", h.vnet_ip) for h in inv.hosts.values()]
    items += [(f"lxc {c.name}", c.vnet_ip) for c in inv.lxcs.values()]
    items += [(f"peer {p.name}", p.vnet_ip) for p in inv.peers.values()]
    for holder, address in items:
        if address in seen:
            problems.append(f"vnet address {address} is held by both {seen[address]} and {holder}")
        seen[address] = holder
    ports: dict[tuple[str, int], str] = {}
    for lxc in inv.lxcs.values():
        for forward in lxc.tcp_forwards:
            slot = (lxc.host, forward.host_port)
            if slot in ports and ports[slot] != lxc.name:
                problems.append(
                    f"host port {forward.host_port} on {lxc.host} is forwarded to both {ports[slot]} and {lxc.name}"
                )
            ports[slot] = lxc.name
    routes: dict[str, str] = {}  # HAProxy routes each alias to one LXC
    for lxc in inv.lxcs.values():
        for alias in lxc.aliases:
            if alias in routes and routes[alias] != lxc.name:
                problems.append(f"alias {alias} routes to both {routes[alias]} and {lxc.name}")
            routes[alias] = lxc.name
    return problems + _keys_unique(inv)


def _names_unique(inv: Inventory) -> list[str]:
    """Hosts, LXCs and peers share one namespace: each has NAME.<vnetPrefix>.<dnsDomain>."""
    kinds: tuple[tuple[str, dict[str, Any]], ...] = (("host", inv.hosts), ("LXC", inv.lxcs), ("peer", inv.peers))
    problems = []
    for i, (kind, items) in enumerate(kinds):
        for other, other_items in kinds[i + 1 :]:
            clashes = sorted(items.keys() & other_items)
            problems += [f"name {n!r} is used by both a {kind} and a {other}" for n in clashes]
    return problems


def _keys_unique(inv: Inventory) -> list[str]:
    """A WireGuard key names one machine of the mesh; an SSH key is one admin's."""
    problems = []
    wireguard: dict[str, str] = {}
    holders = [(f"host {h.name}", h.wg_public_key) for h in inv.hosts.values() if h.wg_public_key]
    holders += [(f"peer {p.name}", p.public_key) for p in inv.peers.values()]
    for holder, public in holders:
        if public in wireguard:
            problems.append(f"{wireguard[public]} and {holder} have the same WireGuard public key")
        wireguard.setdefault(public, holder)
    blobs: dict[str, str] = {}
    for key in inv.keys.values():
        blob = key.key.split(" ")[1] if " " in key.key else key.key
        if blob in blobs:
            problems.append(f"keys/{blobs[blob]}.pub and keys/{key.name}.pub hold the same key")
        blobs.setdefault(blob, key.name)
    return problems


def _check_backups(inv: Inventory) -> list[str]:
    problems = []
    pairs: set[tuple[str, str]] = set()
    for i, backup in enumerate(inv.backups):
        where = f"backups.toml entry {i + 1}"
        for field, name in (("from_host", backup.from_host), ("to_host", backup.to_host)):
            if name not in inv.hosts:
                problems.append(f"{where}: {field} {name!r} is not a host")
        if backup.status not in (BACKUP_ACTIVE, BACKUP_ARCHIVED):
            problems.append(f"{where}: status must be {BACKUP_ACTIVE} or {BACKUP_ARCHIVED}")
        if backup.from_host == backup.to_host:
            problems.append(f"{where}: a host cannot back up onto itself")
        if backup.pair in pairs:
            problems.append(f"{where}: {backup.from_host} -> {backup.to_host} is listed twice")
        pairs.add(backup.pair)
        problems += _problems(validate.timestamp(backup.started, f"{where}: started"))
    return problems


def _check_ipam(inv: Inventory) -> list[str]:
    last = inv.ipam_last
    if not isinstance(last, str):
        return ["ipam.toml: last must be text (an IPv4 address)"]
    return _problems(last and validate.ipv4(last, "ipam.toml: last"))


def _network(config: dict[str, Any]) -> ipaddress.IPv4Network | None:
    value = config.get("vnetNetwork")
    if not isinstance(value, str) or validate.ipv4_network(value):
        return None
    return ipaddress.IPv4Network(value)


def managed_suffixes(config: dict[str, Any]) -> tuple[str, ...]:
    """The zones whose names infr gives out (NAME.<dnsPrefix>.<dnsDomain> and the vnet's)."""
    domain = config.get("dnsDomain")
    prefixes = [config.get("dnsPrefix"), config.get("vnetPrefix")]
    if not isinstance(domain, str):
        return ()
    return tuple(f"{prefix}.{domain}" for prefix in prefixes if isinstance(prefix, str))


def check_inventory(inv: Inventory, changed: Collection[str] | None = None) -> list[str]:
    """Every problem in the inventory: fields, references and uniqueness.

    `changed` (paths such as "lxcs/web.toml") limits the field checks of hosts, LXCs and
    peers to those files, for a change to an inventory that was valid before: on a one-LXC
    change to 10,000 LXCs, parsing every address again took most of the command's time.
    References and uniqueness are always checked across the whole inventory (cheap).
    """
    network = _network(inv.config)
    managed = managed_suffixes(inv.config)
    every = changed is None or "config.toml" in changed
    touched = frozenset(changed or ())
    problems: list[str] = []
    if every:
        from infr.state.settings import check_stored

        problems += check_stored(inv.config)
    for host in inv.hosts.values():
        if every or f"hosts/{host.name}.toml" in touched:
            problems += _check_host(host, network)
    for lxc in inv.lxcs.values():
        if every or f"lxcs/{lxc.name}.toml" in touched:
            problems += _check_lxc(lxc, network, managed)
        if lxc.host not in inv.hosts:
            problems.append(f"lxcs/{lxc.name}.toml: host {lxc.host!r} does not exist")
    for peer in inv.peers.values():
        problems += _check_peer(peer, network)
    for key in inv.keys.values():
        problems += _check_key(key)
    return problems + _check_unique(inv) + _check_backups(inv) + _check_ipam(inv)


__all__ = ["SCHEMA_VERSION", "Backup", "Host", "Key", "Lxc", "Peer", "check_inventory", "from_dict", "to_dict"]
