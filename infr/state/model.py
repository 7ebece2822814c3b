"""The inventory: plain dataclasses, no I/O.

Field names are the keys of the TOML files and of `-o json` output (docs/json.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HTTP_MODES = ("NONE", "FORWARD", "REDIRECT-HTTPS")
HTTPS_MODES = ("NONE", "FORWARD", "TERMINATE")
# Host ports HAProxy itself or sshd listens on: never a tcp forward (Infr's rule).
RESERVED_HOST_PORTS = (22, 80, 443)

HOST_INSTALLING = "installing"
HOST_READY = "ready"

# An LXC is "creating" from when `lxcs add` records it until the container runs with
# sshd and manager inside; a failed or cut-off add stays "creating" until run again.
LXC_CREATING = "creating"
LXC_READY = "ready"

BACKUP_ACTIVE = "active"
BACKUP_ARCHIVED = "archived"


def timestamp() -> str:
    """Now, as state records times (`added`): UTC to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class TcpForward:
    host_port: int
    lxc_port: int


@dataclass
class Host:
    name: str
    public_ip: str
    vnet_ip: str
    status: str = HOST_INSTALLING
    added: str = ""
    # Pinned SSH host key, "<type> <base64>"; empty until first contact.
    host_key: str = ""
    ssh_port: int = 22
    # WireGuard public key of the host; the private key never leaves the host.
    wg_public_key: str = ""


@dataclass
class Lxc:
    name: str
    host: str
    distro: str
    release: str
    vnet_ip: str
    # Files written before the field existed are of LXCs that infr finished making.
    status: str = LXC_READY
    added: str = ""
    http: str = "NONE"
    https: str = "NONE"
    http_port: int = 80
    https_port: int = 443
    aliases: list[str] = field(default_factory=list)
    tcp_forwards: list[TcpForward] = field(default_factory=list)
    zone: str = ""
    # Stopped on purpose (`infr lxc NAME stop`): a plan leaves it stopped; `start` clears it.
    stopped: bool = False


@dataclass
class Key:
    """An admin's SSH public key; `name` is how commands refer to it."""

    name: str
    key: str


@dataclass
class Backup:
    from_host: str
    to_host: str
    status: str = BACKUP_ACTIVE
    started: str = ""

    @property
    def pair(self) -> tuple[str, str]:
        return (self.from_host, self.to_host)


@dataclass
class Peer:
    """An admin's machine on the private network (a WireGuard peer)."""

    name: str
    public_key: str
    vnet_ip: str
    added: str = ""


class Config(dict[str, Any]):
    """Settings by key: a missing one is an error naming it and how to set it, never a bare KeyError.

    Every read of a setting goes through here (Inventory.config, Session.settings()), so a
    config.toml emptied by a bad merge fails every command in one clear line.
    """

    def __missing__(self, key: str) -> Any:
        from infr.errors import MissingSettingError

        raise MissingSettingError(key)


@dataclass
class Inventory:
    """Everything infr knows, as loaded from the state directory."""

    config: dict[str, Any]
    hosts: dict[str, Host] = field(default_factory=dict)
    lxcs: dict[str, Lxc] = field(default_factory=dict)
    keys: dict[str, Key] = field(default_factory=dict)
    backups: list[Backup] = field(default_factory=list)
    peers: dict[str, Peer] = field(default_factory=dict)
    # IPAM cursor: the last address handed out (Infr's vnetLast).
    ipam_last: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.config, Config):
            self.config = Config(self.config)

    def lxcs_on(self, host: str) -> list[Lxc]:
        return [lxc for lxc in self.lxcs.values() if lxc.host == host]

    def backups_of(self, host: str) -> list[Backup]:
        return [b for b in self.backups if host in b.pair]

    def find_backup(self, from_host: str, to_host: str) -> Backup | None:
        return next((b for b in self.backups if b.pair == (from_host, to_host)), None)

    def holder_of(self, address: str) -> str | None:
        """Name of the host, LXC or peer holding a vnet address, if any."""
        for kind, items in (("host", self.hosts), ("lxc", self.lxcs), ("peer", self.peers)):
            for item in items.values():
                if item.vnet_ip == address:
                    return f"{kind} {item.name}"
        return None

    def kind_of(self, name: str) -> str | None:
        """Which kind of machine holds `name`: hosts, LXCs and peers share one namespace
        (each is NAME.<vnetPrefix>.<dnsDomain>)."""
        for kind, items in (("host", self.hosts), ("LXC", self.lxcs), ("peer", self.peers)):
            if name in items:
                return kind
        return None
