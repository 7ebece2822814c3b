"""What a connection is to and what a command returned: Target, Result, and the default timeouts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infr.oplog import get_logger

DEFAULT_CONNECT_TIMEOUT = 15.0


DEFAULT_COMMAND_TIMEOUT = 300.0


# Below the idle timeouts of common NAT gateways and firewalls (often 60 s or more).
KEEPALIVE_INTERVAL = 15


log = get_logger("remote")


@dataclass(frozen=True)
class Result:
    """What a remote command returned."""

    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        """stdout as text."""
        return self.stdout.decode("utf-8", "replace")


@dataclass(frozen=True)
class Target:
    """How to reach one host: address, login and the host key pinned in state.

    Authentication: `password` if given (and only it: `-p` means the admin wants a
    password login); otherwise `key_file` and ~/.ssh/config's IdentityFile (or the
    default keys), and the ssh-agent. `first_login` (logging in to a server infr does
    not manage yet) lets ~/.ssh/config's User replace `user`.
    """

    name: str
    host: str
    port: int = 22
    user: str = "manager"
    key_file: Path | None = None
    password: str | None = field(default=None, repr=False)
    use_agent: bool = True
    pinned_key: str | None = None
    timeout: float = DEFAULT_CONNECT_TIMEOUT
    first_login: bool = False
