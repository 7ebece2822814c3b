"""A session: one infr command's view of the state, its lock, and how its changes are saved."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infr.errors import ValidationError
from infr.state.store import Store

# A command that only reads needs the store alone: locking, validation, changes and
# git load when a command changes something (this keeps `infr hosts` quick).
if TYPE_CHECKING:
    from infr.state.change import Change
    from infr.state.lock import StateLock
    from infr.state.model import Config, Inventory


@dataclass
class Session:
    root: Path
    command_line: str = "infr"
    lock_timeout: float = 60.0
    on_wait: Callable[[str], None] = field(default=lambda message: None)
    # Hosts the user said are down (-D): commands skip them.
    down_hosts: frozenset[str] = frozenset()
    identity_file: str | None = None

    def __post_init__(self) -> None:
        self.store = Store(self.root)
        self._inventory: Inventory | None = None
        self._lock: StateLock | None = None
        self._lock_depth = 0

    @property
    def log_file(self) -> Path:
        return self.root / "log"

    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = self.store.load()
        return self._inventory

    def settings(self) -> Config:
        """Every setting's effective value: defaults, then config.toml, then secrets.

        A setting that is not set is a MissingSettingError naming it when read by key.
        """
        from infr.state.model import Config
        from infr.state.settings import SETTINGS

        values = {k: s.default for k, s in SETTINGS.items() if s.default is not None}
        return Config({**values, **self.inventory().config, **self.store.secrets()})

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state lock (re-entrant within this process)."""
        if self._lock_depth == 0:
            from infr.state.lock import StateLock

            self.store.require()  # the lock file lives in the state directory
            self._lock = StateLock(self.root, self.command_line)
            self._lock.acquire(self.lock_timeout, self.on_wait)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock is not None:
                self._lock.release()
                self._lock = None

    @contextmanager
    def change(self) -> Iterator[Change]:
        """Edit the inventory; on success the edits are saved atomically and committed to git.

        If the body raises, nothing is written: the state stays as it was.
        """
        from infr.state import history, schema
        from infr.state.change import Change

        with self.locked():
            self.store.require()
            self._inventory = None  # re-read under the lock: another process may have written
            change = Change(self.inventory(), dict(self.store.secrets_file()))
            history.finish_interrupted(self.root)  # after the load above rolled its files forward
            try:
                yield change
            except BaseException:
                self._inventory = None  # the body may have edited it before failing
                raise
            if not change.writes:
                return
            # The inventory was valid when loaded: check the files this change writes, and
            # references and uniqueness across everything.
            problems = schema.check_inventory(change.inv, change.writes)
            if problems:
                self._inventory = None
                raise ValidationError(problems, "nothing was changed")
            history.ready(self.root)  # a git that cannot commit is found before, not after, saving
            committed = [p for p in change.writes if p != "secrets.toml"]
            history.begin(self.root, committed, self.command_line)
            self.store.commit(change.writes)
            self.store.save_cache(change.inv, change.writes)
            history.commit(self.root, committed, self.command_line)
            history.end(self.root)
