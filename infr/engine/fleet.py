"""Hosts named in state, and how to reach them: the lowest layer of every remote operation.

Every feature comes here for a host's record and its SSH target, so none of them needs
another feature for that (hostops, now infr.hosts.adopt, was that place, which tied the
features in circles).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from infr.connector import SSHConnection, Target
from infr.errors import NotFoundError, RemoteError
from infr.state.admin import require_admin_key
from infr.state.model import Host, Inventory, Lxc
from infr.state.session import Session


def get_host(inv: Inventory, name: str) -> Host:
    if name not in inv.hosts:
        hint = f"{name} is an LXC: use 'infr lxc {name}'" if name in inv.lxcs else "list them with 'infr hosts'"
        raise NotFoundError(f"no host named {name!r}", hint)
    return inv.hosts[name]


def get_lxc(inv: Inventory, name: str) -> Lxc:
    if name not in inv.lxcs:
        hint = "list them with 'infr lxcs'"
        if name in inv.hosts:
            hint = f"{name} is a host: use 'infr host {name}'"
        raise NotFoundError(f"no LXC named {name!r}", hint)
    return inv.lxcs[name]


def target(session: Session, host: Host, *, user: str = "manager", password: str | None = None) -> Target:
    require_admin_key(session.inventory())  # every command that reaches a host comes here first
    key = Path(session.identity_file).expanduser() if session.identity_file else None
    return Target(
        host.name,
        host.public_ip,
        port=host.ssh_port,
        user=user,
        key_file=key,
        password=password,
        pinned_key=host.host_key or None,
        # Logging in with a key to a server infr has not set up yet: ~/.ssh/config may
        # name the provider's sudo account (admin, debian) instead of root.
        first_login=user == "root" and password is None,
    )


@contextlib.contextmanager
def connect(session: Session, name: str) -> Iterator[SSHConnection]:
    """A connection to the host; a host that does not answer says how to go on without it."""
    host = session.inventory().hosts[name]
    try:
        conn = SSHConnection.connect(target(session, host))
    except RemoteError as e:
        if e.hint:
            raise
        raise RemoteError(e.message, f"if {name} is down, skip it with: infr -D {name} ...") from None
    with conn:
        yield conn
