"""What a container should be, from state: its LXC config and the packages inside it."""

from __future__ import annotations

import ipaddress

from infr.engine.templating import fill
from infr.hosts import desired
from infr.state.model import Host, Lxc

LXC_ROOT = "/var/lib/lxc"


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
        bridge=desired.BRIDGE,
        mac=mac,
        vnet_ip=lxc.vnet_ip,
        prefix=prefix,
        gateway=host.vnet_ip,
    )
    return text.encode()
