"""The state lock: one writer at a time; a second infr process waits and says who holds it."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from infr.errors import LockTimeoutError
from infr.state.files import write_atomic

POLL_SECONDS = 0.1


class StateLock:
    """An exclusive flock on `<state>/.lock`, with who/when/what in `<state>/.lock.info`.

    flock is released by the kernel when the process dies, so a crashed infr never
    leaves a stale lock behind; the info file is only ever advisory.
    """

    def __init__(self, state_dir: Path, command: str) -> None:
        self.path = state_dir / ".lock"
        self.info_path = state_dir / ".lock.info"
        self.command = command
        self._fd: int | None = None

    def acquire(self, timeout: float, on_wait: Callable[[str], None]) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self.holder()
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeoutError(
                        f"state is locked by {holder}",
                        "wait for that command to finish, or raise --lock-timeout",
                    ) from None
                if not told:
                    on_wait(f"waiting for the state lock held by {holder}")
                    told = True
                time.sleep(POLL_SECONDS)
        self._fd = fd
        info = {
            "pid": os.getpid(),
            "user": getpass.getuser(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": self.command,
        }
        # Only advisory: a disk too full to take it must not stop the command here.
        with contextlib.suppress(OSError):
            write_atomic(self.info_path, json.dumps(info).encode(), 0o600)

    def holder(self) -> str:
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return "another infr process"
        return f"{info['user']}@{info['host']} (pid {info['pid']}) since {info['since']} running '{info['command']}'"

    def release(self) -> None:
        if self._fd is not None:
            self.info_path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
