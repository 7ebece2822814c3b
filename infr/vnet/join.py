"""This machine as a mesh peer: its key kept locally and its wg-quick config."""

from __future__ import annotations

import base64
from pathlib import Path

from infr.state.model import Peer
from infr.state.session import Session
from infr.vnet import desired
from infr.vnet.members import new_key_pair
from infr.vnet.peers import add_peer

# Where `vnet join` keeps the admin's wg-quick configs: in the state directory but
# never in git (the directory ignores itself).
JOIN_DIR = "wireguard"


def join_config_path(root: Path, name: str) -> Path:
    # wg-quick names the interface after the file: one directory per peer.
    return root / JOIN_DIR / name / f"{desired.INTERFACE}.conf"


def _local_private_key(path: Path) -> str | None:
    """The private key in an existing wg-quick config of ours, if there is one."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return next((line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("PrivateKey")), None)


def _key_to_keep(path: Path, peer: Peer | None, ip: str | None) -> str | None:
    """The private key of this machine's config when it is still `peer`'s (same key, same address)."""
    private = _local_private_key(path)
    if peer is None or private is None or ip not in (None, peer.vnet_ip):
        return None
    try:
        return private if public_key_of(private) == peer.public_key else None
    except ValueError:  # not a key (binascii.Error is a ValueError)
        return None


def public_key_of(private: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def join(session: Session, name: str, ip: str | None) -> tuple[Path, list[str]]:
    """Make this machine the peer NAME: key pair here, wg-quick config beside the state, 0600.

    Run again on the same machine, it keeps the key and rewrites the config (new hosts
    and LXCs); on another machine it makes a new key and keeps the address (IP mobility).
    Returns the config's path and what changed.
    """
    from infr.state.files import write_atomic

    path = join_config_path(session.root, name)
    with session.change() as change:
        peer = change.inv.peers.get(name)
        private = _key_to_keep(path, peer, ip)
        if peer is None or private is None:
            private, public = new_key_pair()
            peer = add_peer(change, name, public, ip)
        else:
            change.note(f"peer {name}: same key, same address {peer.vnet_ip}; config rewritten")
        port = int(session.settings()["vnetListenPort"])
        write_atomic(session.root / JOIN_DIR / ".gitignore", b"*\n")
        write_atomic(path, desired.admin_config(change.inv, peer, private, port).encode(), 0o600)
    return path, change.notes
