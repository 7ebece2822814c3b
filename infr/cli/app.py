"""What every command gets: the global options and the session built from them (`App`),
and `printable`, which every line echoed from input or state goes through.

Its own module, below main and every command module, so they import it without a circle.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click


def default_state_dir() -> Path:
    return Path(os.environ.get("INFR_DIR") or Path.home() / ".infr")


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with each control character written as its escape (\\n, \\x1b): a name or path
    echoed from the command line or a state file can never start a line or drive the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


class App:
    """What every command gets: global options, and the session built from them on demand."""

    def __init__(
        self, state_dir: Path, verbose: bool, identity: str | None, down: str, lock_timeout: float, command_line: str
    ) -> None:
        self.state_dir = state_dir
        self.verbose = verbose
        self.identity = identity
        self.down = frozenset(h for h in down.split(",") if h)
        self.lock_timeout = lock_timeout
        self.command_line = command_line
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            from infr.state.session import Session

            self._session = Session(
                self.state_dir,
                command_line=self.command_line,
                lock_timeout=self.lock_timeout,
                on_wait=lambda message: click.echo(f"infr: {message}", err=True),
                down_hosts=self.down,
                identity_file=self.identity,
            )
            # Only a state directory gets a log: -w naming a file, or a directory that is
            # not a state, is refused by the command without leaving a 'log' file in it.
            if (self.state_dir / "infr.toml").is_file():
                from infr import oplog

                oplog.setup(self.state_dir / "log", self.verbose)
                oplog.get_logger("cli").info("run: %s", self.command_line)
        return self._session
