"""What a host set up by infr looks like, as data: users, keys, sshd, names, packages, network.

Pure functions from state to FileSpecs and package lists; infr.engine.steps makes a host match.
"""

from __future__ import annotations

import ipaddress

from infr.engine.steps import FileSpec
from infr.engine.templating import fill
from infr.state.admin import require_admin_key
from infr.state.model import Host, Inventory

MANAGER = "manager"
BRIDGE = "infrbr0"
HOST_PACKAGES = (
    "sudo",
    "openssh-server",
    "btrfs-progs",
    "lxc",
    "lxc-templates",
    # lxc-create -t download checks the images' signatures with gpg
    "gnupg",
    "dirmngr",
    "debootstrap",
    "dnsmasq-base",
    "nftables",
    "haproxy",
    "certbot",
    "btrbk",
    "wireguard-tools",
    "openssl",
    "rsync",
    "curl",
    # the HAProxy apply script talks to the master CLI through socat
    "socat",
)


def authorized_keys(inv: Inventory) -> bytes:
    require_admin_key(inv)
    lines = [fill("{admin_key}\n", admin_key=key.key) for key in sorted(inv.keys.values(), key=lambda k: k.name)]
    return "".join(lines).encode()


def manager_files(inv: Inventory) -> list[FileSpec]:
    """The manager account's keys and passwordless sudo; written while still logged in as root."""
    return [
        FileSpec(f"/home/{MANAGER}/.ssh/authorized_keys", authorized_keys(inv), MANAGER, MANAGER, 0o600),
        FileSpec(
            f"/etc/sudoers.d/infr-{MANAGER}",
            f"# infr: the shared admin account\n{MANAGER} ALL=(ALL) NOPASSWD:ALL\n".encode(),
            mode=0o440,
            precheck=("visudo", "-c", "-q", "-f", "{}"),
        ),
    ]


def sshd_file() -> FileSpec:
    """Key-only logins, and none as root: everyone comes in as manager with their own key."""
    text = (
        "# infr: logins with admin keys only, as manager\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin no\n"
    )
    # sshd takes the first value it reads and reads drop-ins in name order: "00-" puts
    # ours before a provider's (e.g. cloud-init's 50-cloud-init.conf allowing passwords).
    return FileSpec(
        "/etc/ssh/sshd_config.d/00-infr.conf",
        text.encode(),
        postcheck=("sshd", "-t"),
        on_change=(("systemctl", "reload", "ssh"),),
    )


def fqdn(name: str, settings: dict) -> str:
    """The public name of a host or LXC."""
    return f"{name}.{settings['dnsPrefix']}.{settings['dnsDomain']}"


def name_files(name: str, settings: dict) -> list[FileSpec]:
    """/etc/hostname and /etc/hosts of the host or LXC `name`; the hostname is set live too."""
    hosts = fill(
        "127.0.0.1\tlocalhost\n"
        "127.0.1.1\t{fqdn} {name}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        fqdn=fqdn(name, settings),
        name=name,
    )
    return [
        FileSpec("/etc/hostname", fill("{name}\n", name=name).encode(), on_change=(("hostname", name),)),
        FileSpec("/etc/hosts", hosts.encode()),
    ]


# sh -c KEEP_ONLY_ADDRESS - DEVICE ADDRESS/PREFIX: drop every other IPv4 address of DEVICE.
# Deleting a primary address takes its secondaries with it: the kept one is put back last.
KEEP_ONLY_ADDRESS = (
    'ip -4 -o address show dev "$1" | while read -r _ _ _ address _; do'
    ' [ "$address" = "$2" ] || ip address del "$address" dev "$1"; done; ip address replace "$2" dev "$1"'
)


def network_files(host: Host, settings: dict) -> list[FileSpec]:
    """The containers' bridge with the host's vnet address, and NAT to the world (lxc-net).

    lxc-net owns the bridge, its nftables NAT and a dnsmasq that answers DNS for the
    containers; containers get static addresses, so DHCP only serves static leases.
    """
    network = ipaddress.IPv4Network(settings["vnetNetwork"])
    lxc_net = fill(
        "# infr: the containers' bridge\n"
        'USE_LXC_BRIDGE="true"\n'
        'LXC_BRIDGE="{bridge}"\n'
        'LXC_ADDR="{vnet_ip}"\n'
        'LXC_NETMASK="{netmask}"\n'
        'LXC_NETWORK="{network}"\n'
        'LXC_DHCP_RANGE="{network_address},static"\n'
        'LXC_DHCP_MAX="1"\n'
        'LXC_USE_NFT="true"\n',
        bridge=BRIDGE,
        vnet_ip=host.vnet_ip,
        netmask=network.netmask,
        network=network,
        network_address=network.network_address,
    )
    default_conf = (
        "# infr: new containers join the vnet bridge\n"
        "lxc.net.0.type = veth\n"
        f"lxc.net.0.link = {BRIDGE}\n"
        "lxc.net.0.flags = up\n"
        "lxc.apparmor.profile = generated\n"
        "lxc.apparmor.allow_nesting = 1\n"
    )
    return [
        FileSpec(
            "/etc/default/lxc-net",
            lxc_net.encode(),
            on_change=(
                ("systemctl", "restart", "lxc-net"),
                # lxc-net adds the new address but keeps a bridge's old one: a host whose
                # vnet address changed would answer for its old one, another host's now.
                ("sh", "-c", KEEP_ONLY_ADDRESS, "-", BRIDGE, f"{host.vnet_ip}/{network.prefixlen}"),
            ),
        ),
        FileSpec("/etc/lxc/default.conf", default_conf.encode()),
        FileSpec("/etc/sysctl.d/60-infr.conf", b"net.ipv4.ip_forward = 1\n", on_change=(("sysctl", "--system"),)),
    ]
