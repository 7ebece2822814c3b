"""What a container infr keeps looks like, as data: its LXC config and the files set up inside.

Pure, from state. `infr lxcs add` makes a container to this (infr.lxcs.containers) and the
lxcs feature compares each container on its host with it, so the two never disagree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from infr.engine.steps import FileSpec
from infr.engine.templating import fill
from infr.hosts import desired as hosts_desired
from infr.state.model import LXC_READY, Host, Inventory, Lxc

LXC_ROOT = "/var/lib/lxc"
# Written last when a container's rootfs is complete: without it a container is a
# leftover of a cut-off run, destroyed and made again.
CREATED_MARK = "infr-created"
CONTAINER_PACKAGES = ("openssh-server", "sudo")


def container_config(lxc: Lxc, host: Host, settings: dict) -> bytes:
    """The whole LXC config: infr owns it, whichever image the rootfs came from."""
    prefix = ipaddress.IPv4Network(str(settings["vnetNetwork"])).prefixlen
    # A fixed MAC from the address: the same on every run, unique on the bridge.
    mac = "00:16:3e:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(lxc.vnet_ip).packed[1:])
    text = fill(
        "# infr: LXC {name} ({distro} {release})\n"
        "lxc.include = /usr/share/lxc/config/common.conf\n"
        "lxc.arch = linux64\n"
        "lxc.rootfs.path = btrfs:{root}/{name}/rootfs\n"
        "lxc.uts.name = {name}\n"
        "lxc.start.auto = 1\n"
        "lxc.net.0.type = veth\n"
        "lxc.net.0.link = {bridge}\n"
        "lxc.net.0.flags = up\n"
        "lxc.net.0.hwaddr = {mac}\n"
        "lxc.net.0.ipv4.address = {vnet_ip}/{prefix}\n"
        "lxc.net.0.ipv4.gateway = {gateway}\n"
        "lxc.apparmor.profile = generated\n"
        "lxc.apparmor.allow_nesting = 1\n",
        name=lxc.name,
        distro=lxc.distro,
        release=lxc.release,
        root=LXC_ROOT,
        bridge=hosts_desired.BRIDGE,
        mac=mac,
        vnet_ip=lxc.vnet_ip,
        prefix=prefix,
        gateway=host.vnet_ip,
    )
    return text.encode()


def config_file(lxc: Lxc, host: Host, settings: dict) -> FileSpec:
    return FileSpec(f"{LXC_ROOT}/{lxc.name}/config", container_config(lxc, host, settings))


def system_files(lxc: Lxc, host: Host, settings: dict) -> list[FileSpec]:
    """The host's dnsmasq as resolver, and the container's own names (an image carries the
    name of the machine that built it; systemd would set that at boot)."""
    resolv = FileSpec("/etc/resolv.conf", fill("nameserver {vnet_ip}\n", vnet_ip=host.vnet_ip).encode())
    return [resolv, *hosts_desired.name_files(lxc.name, settings)]


def account_files(inv: Inventory) -> list[FileSpec]:
    """The manager account's admin keys and sudo, and sshd's drop-in: as on the hosts."""
    return [*hosts_desired.manager_files(inv), hosts_desired.sshd_file()]


@dataclass(frozen=True)
class Container:
    """One container as state wants it on its host: running, with this config and these files inside."""

    lxc: Lxc
    config: FileSpec
    inside: tuple[FileSpec, ...]


def containers(inv: Inventory, host: Host, settings: dict) -> list[Container]:
    """Every finished (ready) LXC state puts on the host; one still "creating" is its `lxcs add`'s."""
    lxcs = sorted((lxc for lxc in inv.lxcs_on(host.name) if lxc.status == LXC_READY), key=lambda lxc: lxc.name)
    if not lxcs:
        return []
    account = account_files(inv)
    return [
        Container(lxc, config_file(lxc, host, settings), (*system_files(lxc, host, settings), *account))
        for lxc in lxcs
    ]
