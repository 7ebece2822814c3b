"""A session: one infr command's view of the state, its lock, and how its changes are saved."""

from __future__ import annotations

import threading
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
    # A dry run (--dry-run): each change is checked as for real, then kept in memory only.
    dry_run: bool = False

    def __post_init__(self) -> None:
        self.store = Store(self.root)
        self._inventory: Inventory | None = None
        self._saved: Inventory | None = None
        # What a dry run's changes would have told the user, and whether any would write.
        self.dry_notes: list[str] = []
        self.dry_writes: set[str] = set()
        self._lock: StateLock | None = None
        self._lock_depth = 0
        # `infr apply` runs steps on many hosts in threads, and a step may record what it made
        # (a host's WireGuard key): one change at a time, or two commits race for git's index.
        self._changing = threading.RLock()

    @property
    def log_file(self) -> Path:
        return self.root / "log"

    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = self.store.load()
        return self._inventory

    def saved_inventory(self) -> Inventory:
        """The inventory as its files hold it: in a dry run, without the changes kept in memory
        (what the plan of those changes compares with)."""
        if not self.dry_run:
            return self.inventory()
        if self._saved is None:
            self._saved = self.store.load()  # objects of its own: the dry changes edit the other copy
        return self._saved

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
        """Hold the state lock (re-entrant within this process); a dry run writes nothing, so
        it reads as any reader does, without the lock (no lock file is made)."""
        if self.dry_run:
            self.store.require()
            yield
            return
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
        In a dry run nothing is written either way (see _dry_change).
        """
        if self.dry_run:
            with self._dry_change() as change:
                yield change
            return
        from infr.state import history, schema
        from infr.state.change import Change

        with self._changing, self.locked():
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

    @contextmanager
    def _dry_change(self) -> Iterator[Change]:
        """A change checked exactly as a real one is, then kept in this session's inventory
        for planning: no file, git commit, journal, cache or lock is written."""
        from infr.state import history, schema
        from infr.state.change import Change

        self.store.require()
        self.saved_inventory()  # before the first edit: what the plan compares with
        change = Change(self.inventory(), dict(self.store.secrets_file()))
        try:
            yield change
        except BaseException:
            self._inventory = None  # the body may have edited it: back to the saved state
            raise
        if change.writes:
            problems = schema.check_inventory(change.inv, change.writes)
            if problems:
                self._inventory = None
                raise ValidationError(problems, "nothing was changed")
            history.ready(self.root)  # read-only: would git refuse the commit?
            self.dry_writes.update(change.writes)
        self.dry_notes += change.notes
