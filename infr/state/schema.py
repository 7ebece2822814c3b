"""One schema for the inventory files: every problem in the whole state reported at once."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Collection
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

_TYPES = {"str": str, "int": int, "list[str]": list, "list[TcpForward]": list}


def from_dict(cls: type[T], data: dict[str, Any], source: str, problems: list[str]) -> T | None:
    """Build a dataclass from a TOML table, noting unknown, missing and mistyped fields."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data.keys() - fields.keys():
        problems.append(f"{source}: unknown field {key!r}")
    ok = True
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                problems.append(f"{source}: missing field {name!r}")
                ok = False
            continue
        expected = _TYPES[str(spec.type)]
        if not isinstance(data[name], expected) or isinstance(data[name], bool) or not _items_ok(spec, data[name]):
            problems.append(f"{source}: field {name!r} must be {spec.type}")
            ok = False
    if not ok:
        return None
    values = {k: v for k, v in data.items() if k in fields}
    if cls is Lxc:
        values["tcp_forwards"] = [TcpForward(f["host_port"], f["lxc_port"]) for f in values.get("tcp_forwards", [])]
    return cls(**values)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _items_ok(spec: dataclasses.Field[Any], value: Any) -> bool:
    """The items of a list field: text, or {host_port, lxc_port} tables of whole numbers."""
    if str(spec.type) == "list[str]":
        return all(isinstance(item, str) for item in value)
    if str(spec.type) == "list[TcpForward]":
        return all(
            isinstance(f, dict) and f.keys() == {"host_port", "lxc_port"} and all(_is_int(v) for v in f.values())
            for f in value
        )
    return True


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


def _check_host(host: Host, network: ipaddress.IPv4Network | None) -> list[str]:
    where = f"hosts/{host.name}.toml"
    problems = [
        p
        for p in (
            validate.dns_label(host.name, "host name"),
            validate.ipv4(host.public_ip, f"{where}: public_ip"),
            validate.ipv4(host.vnet_ip, f"{where}: vnet_ip"),
            validate.port(host.ssh_port, f"{where}: ssh_port"),
        )
        if p
    ]
    if host.status not in (HOST_INSTALLING, HOST_READY):
        problems.append(f"{where}: status must be {HOST_INSTALLING} or {HOST_READY}")
    return problems + _check_in_network(host.vnet_ip, network, where)


def _check_in_network(address: str, network: ipaddress.IPv4Network | None, where: str) -> list[str]:
    if network is None or validate.ipv4(address):
        return []
    if ipaddress.IPv4Address(address) not in network:
        return [f"{where}: vnet_ip {address} is outside vnetNetwork {network}"]
    return []


def _check_lxc(lxc: Lxc, network: ipaddress.IPv4Network | None) -> list[str]:
    where = f"lxcs/{lxc.name}.toml"
    problems = [
        p
        for p in (
            validate.dns_label(lxc.name, "LXC name"),
            validate.ipv4(lxc.vnet_ip, f"{where}: vnet_ip"),
            validate.port(lxc.http_port, f"{where}: http_port"),
            validate.port(lxc.https_port, f"{where}: https_port"),
        )
        if p
    ]
    if lxc.status not in (LXC_CREATING, LXC_READY):
        problems.append(f"{where}: status must be {LXC_CREATING} or {LXC_READY}")
    if lxc.http not in HTTP_MODES:
        problems.append(f"{where}: http must be one of {', '.join(HTTP_MODES)}")
    if lxc.https not in HTTPS_MODES:
        problems.append(f"{where}: https must be one of {', '.join(HTTPS_MODES)}")
    for forward in lxc.tcp_forwards:
        for value, what in ((forward.host_port, "host_port"), (forward.lxc_port, "lxc_port")):
            if problem := validate.port(value, f"{where}: tcp forward {what}"):
                problems.append(problem)
    return problems + _check_in_network(lxc.vnet_ip, network, where)


def _check_unique(inv: Inventory) -> list[str]:
    problems = [f"name {n!r} is used by both a host and an LXC" for n in inv.hosts.keys() & inv.lxcs.keys()]
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
    return problems


def _check_backups(inv: Inventory) -> list[str]:
    problems = []
    for backup in inv.backups:
        for name in backup.pair:
            if name not in inv.hosts:
                problems.append(f"backups.toml: host {name!r} does not exist")
        if backup.status not in (BACKUP_ACTIVE, BACKUP_ARCHIVED):
            problems.append(f"backups.toml: status must be {BACKUP_ACTIVE} or {BACKUP_ARCHIVED}")
    return problems


def _check_keys_and_peers(inv: Inventory) -> list[str]:
    problems = []
    for key in inv.keys.values():
        if problem := validate.ssh_public_key(key.key):
            problems.append(f"keys/{key.name}.pub: {problem}")
    for peer in inv.peers.values():
        if problem := validate.ipv4(peer.vnet_ip, f"peers/{peer.name}.toml: vnet_ip"):
            problems.append(problem)
    return problems


def check_inventory(inv: Inventory, changed: Collection[str] | None = None) -> list[str]:
    """Every problem in the inventory: fields, references and uniqueness.

    `changed` (paths such as "lxcs/web.toml") limits the field checks of hosts and LXCs
    to those files, for a change to an inventory that was valid before: on a one-LXC
    change to 10,000 LXCs, parsing every address again took most of the command's time.
    References and uniqueness are always checked across the whole inventory (cheap).
    """
    try:
        network: ipaddress.IPv4Network | None = ipaddress.IPv4Network(inv.config["vnetNetwork"])
    except (KeyError, ValueError):
        network = None
    every = changed is None or "config.toml" in changed
    touched = frozenset(changed or ())
    problems: list[str] = []
    for host in inv.hosts.values():
        if every or f"hosts/{host.name}.toml" in touched:
            problems += _check_host(host, network)
    for lxc in inv.lxcs.values():
        if every or f"lxcs/{lxc.name}.toml" in touched:
            problems += _check_lxc(lxc, network)
        if lxc.host not in inv.hosts:
            problems.append(f"lxcs/{lxc.name}.toml: host {lxc.host!r} does not exist")
    return problems + _check_unique(inv) + _check_backups(inv) + _check_keys_and_peers(inv)


__all__ = ["SCHEMA_VERSION", "Backup", "Host", "Key", "Lxc", "Peer", "check_inventory", "from_dict", "to_dict"]
