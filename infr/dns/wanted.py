"""The DNS records infr wants, computed from state (Infr's four kinds)."""

from __future__ import annotations

from dataclasses import dataclass

from infr.state.model import Inventory
from infr.state.settings import Value

HOST_PUBLIC = "HOST PUBLIC IP"
HOST_VNET = "HOST PRIVATE IP"
LXC_PUBLIC = "LXC HOST PUBLIC IP"
LXC_VNET = "LXC PRIVATE IP"


@dataclass(frozen=True)
class WantedRecord:
    fqdn: str
    type: str
    value: str
    ttl: int
    purpose: str


def managed_suffixes(settings: dict[str, Value]) -> tuple[str, str]:
    domain = settings["dnsDomain"]
    return (f"{settings['dnsPrefix']}.{domain}", f"{settings['vnetPrefix']}.{domain}")


def wanted_records(inv: Inventory, settings: dict[str, Value]) -> list[WantedRecord]:
    public, vnet = managed_suffixes(settings)
    ttl = int(settings.get("dnsTTL", 3600))
    records = []
    for host in sorted(inv.hosts.values(), key=lambda h: h.name):
        records.append(WantedRecord(f"{host.name}.{public}", "A", host.public_ip, ttl, HOST_PUBLIC))
        records.append(WantedRecord(f"{host.name}.{vnet}", "A", host.vnet_ip, ttl, HOST_VNET))
    for lxc in sorted(inv.lxcs.values(), key=lambda c: c.name):
        host_ip = inv.hosts[lxc.host].public_ip
        records.append(WantedRecord(f"{lxc.name}.{public}", "A", host_ip, ttl, LXC_PUBLIC))
        records.append(WantedRecord(f"{lxc.name}.{vnet}", "A", lxc.vnet_ip, ttl, LXC_VNET))
    return records
