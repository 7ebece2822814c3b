"""A change to the inventory: edits to an in-memory Inventory plus the file writes they mean."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infr.state.files import dump_toml
from infr.state.model import Backup, Config, Host, Inventory, Key, Lxc, Peer
from infr.state.store import entity_path

if TYPE_CHECKING:
    from infr.state.settings import Value


def _toml_of(item: Any) -> bytes:
    # schema (and its validators) loads only when something is written, not when a
    # command module that can change state is merely imported.
    from infr.state.schema import to_dict

    return dump_toml(to_dict(item))


class Change:
    """Collects edits; the session turns them into one atomic commit and one git commit."""

    def __init__(self, inventory: Inventory, secrets: dict[str, Value]) -> None:
        self.inv = inventory
        self.secrets = secrets
        self.writes: dict[str, bytes | None] = {}
        # What the user is told changed, one line each.
        self.notes: list[str] = []
        self.touched_hosts: set[str] = set()

    def note(self, line: str) -> None:
        self.notes.append(line)

    def put_host(self, host: Host) -> None:
        self.inv.hosts[host.name] = host
        self.writes[entity_path("hosts", host.name)] = _toml_of(host)

    def delete_host(self, name: str) -> None:
        del self.inv.hosts[name]
        self.writes[entity_path("hosts", name)] = None

    def put_lxc(self, lxc: Lxc) -> None:
        self.inv.lxcs[lxc.name] = lxc
        self.touched_hosts.add(lxc.host)
        self.writes[entity_path("lxcs", lxc.name)] = _toml_of(lxc)

    def delete_lxc(self, name: str) -> None:
        self.touched_hosts.add(self.inv.lxcs.pop(name).host)
        self.writes[entity_path("lxcs", name)] = None

    def put_key(self, key: Key) -> None:
        self.inv.keys[key.name] = key
        self.writes[entity_path("keys", key.name)] = (key.key + "\n").encode()

    def delete_key(self, name: str) -> None:
        del self.inv.keys[name]
        self.writes[entity_path("keys", name)] = None

    def put_peer(self, peer: Peer) -> None:
        self.inv.peers[peer.name] = peer
        self.writes[entity_path("peers", peer.name)] = _toml_of(peer)

    def delete_peer(self, name: str) -> None:
        del self.inv.peers[name]
        self.writes[entity_path("peers", name)] = None

    def set_backups(self, backups: list[Backup]) -> None:
        self.inv.backups = backups
        from infr.state.schema import to_dict

        self.writes["backups.toml"] = dump_toml({"backup": [to_dict(b) for b in backups]})

    def allocate_address(self, requested: str | None = None) -> str:
        """A vnet address from IPAM; the cursor is saved when the pool was used."""
        from infr.state import ipam

        before = self.inv.ipam_last
        address = ipam.take(self.inv, requested)
        if self.inv.ipam_last != before:
            self.writes["ipam.toml"] = dump_toml({"last": self.inv.ipam_last})
        return address

    def rewind_addresses(self, last: str) -> None:
        """Put the IPAM cursor back where it was before an add that was then refused."""
        if last and last != self.inv.ipam_last:
            self.inv.ipam_last = last
            self.writes["ipam.toml"] = dump_toml({"last": last})

    def set_config(self, config: dict[str, Value], config_text: bytes) -> None:
        self.inv.config = Config(config)
        self.writes["config.toml"] = config_text

    def set_secrets(self, secrets: dict[str, Value]) -> None:
        self.secrets = secrets
        self.writes["secrets.toml"] = dump_toml(dict(sorted(secrets.items())))
