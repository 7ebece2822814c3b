"""How traffic reaches an LXC: HTTP/HTTPS modes, ports, aliases and tcp forwards.

Each function validates first and edits the Change only when everything is right,
so bad input changes nothing. Asking for what state already says is not an error: it
changes nothing, and the command still applies state to the host (a change saved while
the host was unreachable is applied by running the command again).
"""

from __future__ import annotations

from typing import Any

from infr.engine.fleet import get_lxc
from infr.errors import ConflictError, UsageError
from infr.state import validate
from infr.state.change import Change
from infr.state.model import (
    HTTP_MODES,
    HTTPS_MODES,
    RESERVED_HOST_PORTS,
    Lxc,
    TcpForward,
)


def fqdns(lxc: Lxc, config: dict[str, Any]) -> list[str]:
    """The names HAProxy routes to this LXC: its public and vnet names, then its aliases."""
    from infr.routing.haproxy import lxc_fqdns

    return lxc_fqdns(
        lxc, dns_domain=config["dnsDomain"], dns_prefix=config["dnsPrefix"], vnet_prefix=config["vnetPrefix"]
    )


def _choose(value: str, modes: tuple[str, ...], what: str) -> str:
    upper = value.upper()
    if upper not in modes:
        raise UsageError(
            f"{what} mode {value!r} is not one of {', '.join(modes)}", f"e.g. infr lxc NAME {what} {modes[1]}"
        )
    return upper


def set_http(change: Change, name: str, mode: str) -> None:
    lxc = get_lxc(change.inv, name)
    mode = _choose(mode, HTTP_MODES, "http")
    _update(change, lxc, "http", mode)


def set_https(change: Change, name: str, mode: str) -> None:
    lxc = get_lxc(change.inv, name)
    mode = _choose(mode, HTTPS_MODES, "https")
    _update(change, lxc, "https", mode)


def set_port(change: Change, name: str, which: str, port: int) -> None:
    lxc = get_lxc(change.inv, name)
    if problem := validate.port(port, f"{which} port"):
        raise UsageError(problem, "ports are 1-65535")
    _update(change, lxc, f"{which}_port", port)


def _update(change: Change, lxc: Lxc, field: str, value: object) -> None:
    old = getattr(lxc, field)
    if old == value:
        change.note(f"{lxc.name}: {field} is already {value}")
        return
    setattr(lxc, field, value)
    change.put_lxc(lxc)
    change.note(f"{lxc.name}: {field} {old} -> {value}")


def add_alias(change: Change, name: str, alias: str) -> None:
    lxc = get_lxc(change.inv, name)
    alias = alias.lower().rstrip(".")
    if problem := validate.fqdn(alias, "alias"):
        raise UsageError(problem, "give a full domain name such as www.example.org")
    for other in change.inv.lxcs.values():
        if alias in fqdns(other, change.inv.config):
            if other.name == name:
                change.note(f"{name}: alias {alias} is already there")
                return
            raise ConflictError(
                f"{alias} already routes to {other.name}",
                f"remove it there first: infr lxc {other.name} remove-alias {alias}",
            )
    from infr.state.schema import managed_suffixes

    if problem := validate.alias(alias, managed_suffixes(change.inv.config)):
        raise UsageError(problem, "infr gives out the names there itself: pick a name in another zone")
    lxc.aliases = [*lxc.aliases, alias]
    change.put_lxc(lxc)
    change.note(f"{name}: alias {alias} added")


def remove_alias(change: Change, name: str, alias: str) -> None:
    lxc = get_lxc(change.inv, name)
    alias = alias.lower().rstrip(".")
    if alias not in lxc.aliases and (problem := validate.fqdn(alias, "alias")):
        raise UsageError(problem, f"its aliases: {', '.join(lxc.aliases) or 'none'}")
    if alias not in lxc.aliases:
        change.note(f"{name}: has no alias {alias} (its aliases: {', '.join(lxc.aliases) or 'none'})")
        return
    lxc.aliases = [a for a in lxc.aliases if a != alias]
    change.put_lxc(lxc)
    change.note(f"{name}: alias {alias} removed")


def add_tcp_forward(change: Change, name: str, host_port: int, lxc_port: int) -> None:
    lxc = get_lxc(change.inv, name)
    for port, what in ((host_port, "host port"), (lxc_port, "LXC port")):
        if problem := validate.port(port, what):
            raise UsageError(problem, "ports are 1-65535")
    if host_port in RESERVED_HOST_PORTS:
        raise UsageError(
            f"host port {host_port} is reserved (22 is sshd, 80 and 443 are HAProxy's HTTP and HTTPS)",
            "use another host port, e.g. 2222",
        )
    if TcpForward(host_port, lxc_port) in lxc.tcp_forwards:
        change.note(f"{name}: {lxc.host}:{host_port} -> {name}:{lxc_port} is already there")
        return
    for other in change.inv.lxcs_on(lxc.host):
        if any(f.host_port == host_port for f in other.tcp_forwards):
            raise ConflictError(
                f"host port {host_port} on {lxc.host} is already forwarded to {other.name}",
                f"use another host port, or: infr lxc {other.name} remove-tcp-forward {host_port}",
            )
    lxc.tcp_forwards = [*lxc.tcp_forwards, TcpForward(host_port, lxc_port)]
    change.put_lxc(lxc)
    change.note(f"{name}: {lxc.host}:{host_port} -> {name}:{lxc_port}")


def remove_tcp_forward(change: Change, name: str, host_port: int) -> None:
    lxc = get_lxc(change.inv, name)
    if not any(f.host_port == host_port for f in lxc.tcp_forwards):
        ports = ", ".join(str(f.host_port) for f in lxc.tcp_forwards) or "none"
        change.note(f"{name}: has no tcp forward from host port {host_port} (its forwarded host ports: {ports})")
        return
    lxc.tcp_forwards = [f for f in lxc.tcp_forwards if f.host_port != host_port]
    change.put_lxc(lxc)
    change.note(f"{name}: tcp forward from {lxc.host}:{host_port} removed")
