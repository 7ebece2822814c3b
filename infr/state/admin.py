"""The admin keys a state must hold before it is applied to any host."""

from __future__ import annotations

from infr.errors import StateError
from infr.state.model import Inventory


def require_admin_key(inv: Inventory) -> None:
    """Refuse to apply a state with no admin key: its authorized_keys would be empty and, with
    root's login off, lock everyone out of every host (e.g. after a teammate's commit deleted
    every keys/*.pub)."""
    if not inv.keys:
        raise StateError(
            "the state has no admin key (keys/*.pub): applying it would lock everyone out of every host",
            "add one with 'infr keys add FILE', or restore keys/ from git",
        )
