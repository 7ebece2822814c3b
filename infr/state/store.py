"""The state directory: reviewable TOML files, written through a journal, read through a cache.

Layout (docs/state.md):
    infr.toml            schema version
    config.toml          settings (never secrets)
    secrets.toml         secret settings, mode 0600, git-ignored
    ipam.toml            the IPAM cursor
    hosts/NAME.toml      one file per host, lxcs/NAME.toml per LXC, peers/NAME.toml per peer
    keys/NAME.pub        one admin SSH public key per file
    backups.toml         backup pairs
    log                  the operation log (git-ignored)

A change is a set of whole-file writes. It is staged in `.journal/`, committed by
writing `.journal/manifest.json` (the commit point), then applied by renames. A
crash before the manifest leaves the old state; after it, the next infr process
rolls the change forward. Readers hold a shared lock on `.apply.lock`, writers an
exclusive one while applying, so nobody reads a half-applied change.

`.cache/inventory.json` holds the parsed inventory, keyed on a digest of the bytes of
every file it was parsed from: JSON parses ten times faster than TOML, which keeps
commands quick with thousands of LXCs. The cache is never a source of truth: any
change to any file, by infr, git or a text editor, changes the digest and the cache
is rebuilt from the TOML; and the cache's first line is a checksum of the rest, so an
edited or damaged cache is rebuilt too. Hashing 11,000 files on every load would cost
0.1 s, so, as git does, a file whose stat (inode, size, mtime and ctime, which no one
can set back) is the one recorded with its digest is not read again, unless it
changed too soon before it was hashed for its stat to tell two versions apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infr.errors import StateError, ValidationError
from infr.state.cache import (
    CACHE_VERSION,
    REHASHED_BEFORE_REWRITE,
    _blake2b,
    _cached_inventory,
    _Files,
    _fingerprint,
    _inventory_to_cache,
    _unchanged,
)
from infr.state.files import _listdir, _toml, fsync_dir, read_key_file, write_atomic
from infr.state.model import Backup, Host, Inventory, Key, Lxc, Peer

# Reading the state from the cache needs none of schema, settings, tomllib or shutil:
# they are imported where used, so `infr hosts` starts quickly.
if TYPE_CHECKING:
    from infr.state.settings import Value

ENTITY_DIRS = ("hosts", "lxcs", "keys", "peers")
TOP_FILES = ("infr.toml", "config.toml", "ipam.toml", "backups.toml")


# .*.tmp: a temp file of write_atomic left behind when infr is killed mid-write
GITIGNORE = "secrets.toml\nlog\n.lock\n.lock.info\n.apply.lock\n.cache/\n.journal/\nlab/\n.*.tmp\n"


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = root / ".journal"
        self.cache_path = root / ".cache" / "inventory.json"
        # The stat and digest of every inventory file, as last seen by load().
        self._files: _Files | None = None

    # ---- existence and layout -------------------------------------------------------

    def exists(self) -> bool:
        return (self.root / "infr.toml").exists()

    def require(self) -> None:
        if not self.exists():
            raise StateError(
                f"no infr state in {self.root}",
                "run 'infr init' first, or point -w / INFR_DIR at your state directory",
            )

    def create(self) -> None:
        """Lay out an empty state directory (infr init writes the config after)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in ENTITY_DIRS:
            (self.root / name).mkdir(exist_ok=True)
            (self.root / name / ".gitkeep").touch()
        write_atomic(self.root / ".gitignore", GITIGNORE.encode())

    # ---- locking ------------------------------------------------------------------

    @contextmanager
    def _apply_lock(self, exclusive: bool) -> Iterator[None]:
        fd = os.open(self.root / ".apply.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # ---- reading ------------------------------------------------------------------

    def load(self) -> Inventory:
        """The whole inventory, validated; from the cache when no file changed."""
        self.require()
        if (self.journal / "manifest.json").exists():
            with self._apply_lock(exclusive=True):
                self._roll_forward()
        with self._apply_lock(exclusive=False):
            cache = self._read_cache()
            known = _Files(cache.get("files", {}), cache.get("checked_ns", 0))
            self._files = self._scan(known)
            fingerprint = _fingerprint(self._files.records)
            if cache.get("fingerprint") == fingerprint:
                cached = _cached_inventory(cache)
                if cached is not None:
                    if self._files.rehashed > REHASHED_BEFORE_REWRITE:  # settle them: quick again next time
                        self._write_cache(cached, fingerprint)
                    return cached
            # Problems in the files' fields and in their values, references and uniqueness
            # are reported together: a hand-broken file shows everything wrong at once.
            problems: list[str] = []
            inventory = self._parse(problems, _unchanged(cache, self._files.records))
        from infr.state import schema

        problems += schema.check_inventory(inventory)
        if problems:
            raise ValidationError(problems, "fix these files by hand, or restore them with git")
        self._write_cache(inventory, fingerprint)
        return inventory

    def config_file(self) -> dict[str, Value]:
        """Settings as stored in config.toml, unchecked (for `config validate`)."""
        path = self.root / "config.toml"
        return _toml(path) if path.exists() else {}

    def secrets_file(self) -> dict[str, Value]:
        """Secret settings as stored in secrets.toml."""
        path = self.root / "secrets.toml"
        return _toml(path) if path.exists() else {}

    def secrets(self) -> dict[str, Value]:
        """Secret settings: the environment wins over secrets.toml."""
        from infr.state.settings import SETTINGS

        values = self.secrets_file()
        for setting in SETTINGS.values():
            if setting.secret and setting.env and os.environ.get(setting.env):
                values[setting.key] = os.environ[setting.env]
        return values

    def _scan(self, known: _Files) -> _Files:
        """The stat and a digest of the bytes of every file the inventory is read from.

        A file is read and hashed unless `known` (the cache's record) has its digest for
        the very same stat, taken long enough after the file last changed (see _Files).
        """
        files = _Files({}, time.time_ns())
        root = str(self.root)
        for name in TOP_FILES:
            files.add(name, f"{root}/{name}", known)
        for directory in ENTITY_DIRS:
            try:
                entries = list(os.scandir(f"{root}/{directory}"))
            except FileNotFoundError:
                continue
            for entry in entries:  # DirEntry: its path is a str, no Path built per file (0.1 s on 11,000)
                files.add(f"{directory}/{entry.name}", entry.path, known)
        return files

    def _read_cache(self) -> dict[str, Any]:
        """The cache's contents; empty when it is missing, damaged, edited or from another infr."""
        try:
            checksum, _, body = self.cache_path.read_bytes().partition(b"\n")
        except OSError:
            return {}
        if checksum != _blake2b(body, digest_size=16).hexdigest().encode():
            return {}  # edited or damaged: the files say what the state is
        try:
            data = json.loads(body)
        except ValueError:
            return {}
        return data if isinstance(data, dict) and data.get("version") == CACHE_VERSION else {}

    def save_cache(self, inventory: Inventory, writes: dict[str, bytes | None] | None = None) -> None:
        """Record `inventory` as what the files now hold, right after commit(`writes`).

        Given `writes`, the digests of the written files come from their bytes; the rest
        are what load() read, under the state lock the caller still holds. A file someone
        else edited in between keeps its old digest here, so the next load notices and
        rebuilds: the cache is never stale.
        """
        with self._apply_lock(exclusive=False):
            if writes is None or self._files is None:
                self._files = self._scan(_Files({}, 0))
            else:
                for rel, data in writes.items():
                    if rel in TOP_FILES or (rel.count("/") == 1 and rel.split("/")[0] in ENTITY_DIRS):
                        self._files.put(self.root, rel, data)
            self._write_cache(inventory, _fingerprint(self._files.records))

    def _write_cache(self, inventory: Inventory, fingerprint: str) -> None:
        assert self._files is not None
        data = {
            "version": CACHE_VERSION,
            "fingerprint": fingerprint,
            "checked_ns": self._files.checked_ns,
            "files": self._files.records,
            "inventory": _inventory_to_cache(inventory),
        }
        # The cache only saves time; a read-only state dir still works without it. No fsync:
        # a cache lost or emptied by a crash is rebuilt (fsync of 2.6 MB took 25-880 ms).
        with contextlib.suppress(OSError):
            body = json.dumps(data, separators=(",", ":"), default=vars).encode()  # vars: the TcpForwards
            checksum = _blake2b(body, digest_size=16).hexdigest().encode()
            write_atomic(self.cache_path, checksum + b"\n" + body, 0o600, durable=False)

    def _parse(self, problems: list[str] | None = None, unchanged: dict[str, Any] | None = None) -> Inventory:
        """The inventory in the files; field problems go to `problems`, or are raised without it.

        `unchanged` (path -> host, LXC or peer) are records read before from the very same
        bytes: they are taken as they are instead of parsing their files again.
        """
        unchanged = unchanged or {}
        from infr.state import schema

        collect = problems is not None
        problems = [] if problems is None else problems
        meta = _toml(self.root / "infr.toml")
        if meta.get("schema_version") != schema.SCHEMA_VERSION:
            raise StateError(
                f"infr.toml: state schema version {meta.get('schema_version')!r} is not {schema.SCHEMA_VERSION}",
                "upgrade infr to a version that knows this state, or restore infr.toml with git",
            )
        config_path = self.root / "config.toml"
        inventory = Inventory(config=_toml(config_path) if config_path.exists() else {})
        ipam = self.root / "ipam.toml"
        inventory.ipam_last = _toml(ipam).get("last", "") if ipam.exists() else ""
        kinds: tuple[tuple[type, str, dict[str, Any]], ...] = (
            (Host, "hosts", inventory.hosts),
            (Lxc, "lxcs", inventory.lxcs),
            (Peer, "peers", inventory.peers),
        )
        for cls, directory, target in kinds:
            # What glob("*.toml") finds, sorted as strings: sorting 10,000 Paths took 0.08 s.
            names = sorted(n for n in _listdir(self.root / directory) if n.endswith(".toml") and n[0] != ".")
            folder = f"{self.root}/{directory}/"
            for name in names:
                stem = name[: -len(".toml")]
                item = unchanged.get(f"{directory}/{name}")
                if item is None:
                    item = schema.from_dict(cls, _toml(folder + name), f"{directory}/{name}", problems)
                if item is not None:
                    if item.name != stem:
                        problems.append(f"{directory}/{name}: name field differs from the file name")
                    target[stem] = item
        for path in sorted((self.root / "keys").glob("*.pub")):
            try:
                inventory.keys[path.stem] = Key(path.stem, read_key_file(path))
            except ValueError as exc:
                problems.append(f"keys/{path.name} {exc}")
            except OSError as exc:
                problems.append(f"keys/{path.name} cannot be read: {exc.strerror}")
        backups = self.root / "backups.toml"
        for i, row in enumerate(_toml(backups).get("backup", []) if backups.exists() else []):
            item = schema.from_dict(Backup, row, f"backups.toml entry {i + 1}", problems)
            if item is not None:
                inventory.backups.append(item)
        if problems and not collect:
            raise ValidationError(problems, "fix these files by hand, or restore them with git")
        return inventory

    # ---- writing ------------------------------------------------------------------

    def commit(self, writes: dict[str, bytes | None]) -> None:
        """Apply whole-file writes (None deletes) atomically as one change."""
        import shutil

        with self._apply_lock(exclusive=True):
            try:
                self._stage(writes)
            except OSError as exc:  # a full disk, most likely: the staged files are not the change yet
                shutil.rmtree(self.journal, ignore_errors=True)
                raise StateError(
                    f"could not save the change in {self.root}: {exc.strerror}",
                    "nothing was changed; make room on that disk and run the command again",
                ) from None
            try:
                self._roll_forward()
            except OSError as exc:
                raise StateError(
                    f"could not finish saving the change in {self.root}: {exc.strerror}",
                    "it is in .journal/ and the next infr command finishes it; fix the disk first",
                ) from None

    def _stage(self, writes: dict[str, bytes | None]) -> None:
        """Write the change into the journal, ending with its manifest: the commit point."""
        import shutil

        if self.journal.exists():
            shutil.rmtree(self.journal)
        self.journal.mkdir()
        ops = []
        for i, (rel, data) in enumerate(sorted(writes.items())):
            if data is None:
                ops.append({"op": "delete", "path": rel})
                continue
            staged = self.journal / str(i)
            with staged.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            ops.append({"op": "put", "path": rel, "staged": str(i)})
        fsync_dir(self.journal)
        write_atomic(self.journal / "manifest.json", json.dumps(ops).encode())

    def _roll_forward(self) -> None:
        """Finish a committed change: idempotent, so a crash half-way is finished next time."""
        import shutil

        manifest = self.journal / "manifest.json"
        if manifest.exists():
            touched: set[Path] = set()
            for op in self._manifest_ops(manifest):
                target = self.root / op["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                if op["op"] == "delete":
                    target.unlink(missing_ok=True)
                elif (self.journal / op["staged"]).exists():
                    mode = 0o600 if op["path"] == "secrets.toml" else 0o644
                    os.chmod(self.journal / op["staged"], mode)
                    os.replace(self.journal / op["staged"], target)
                touched.add(target.parent)
            for directory in touched:
                fsync_dir(directory)
        shutil.rmtree(self.journal, ignore_errors=True)
        fsync_dir(self.root)


    def _manifest_ops(self, manifest: Path) -> list[dict[str, str]]:
        """The operations of a manifest, each confined to a state file, or an error naming it.

        The manifest is written by commit() alone; one that says anything else (garbage, a
        hand edit, a path like ../x) is refused before a single file is touched.
        """
        try:
            ops = json.loads(manifest.read_bytes())
            problem = _manifest_problem(ops)
        except ValueError as exc:  # not JSON, or not UTF-8
            problem = f"not JSON ({exc})"
        if problem:
            raise StateError(
                f"{manifest} is not a change infr wrote: {problem}",
                f"remove {self.journal} (the interrupted change in it is lost), then run 'infr config validate'",
            )
        return ops  # its shape was checked by _manifest_problem


def _manifest_problem(ops: object) -> str | None:
    if not isinstance(ops, list):
        return "not a list of operations"
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("put", "delete"):
            return f"{op!r:.60} is not a put or a delete"
        if not is_state_file(op.get("path")):
            return f"{op.get('path')!r:.60} is not a file of the state"
        if op["op"] == "put" and not (isinstance(op.get("staged"), str) and op["staged"].isdigit()):
            return f"{op.get('staged')!r:.60} is not a staged file of the journal"
    return None


def is_state_file(rel: object) -> bool:
    """True for a path (relative to the state directory) that a change may write."""
    if not isinstance(rel, str):
        return False
    if rel in TOP_FILES or rel == "secrets.toml":
        return True
    directory, slash, name = rel.partition("/")
    suffix = ".pub" if directory == "keys" else ".toml"
    return (
        directory in ENTITY_DIRS
        and bool(slash)
        and name.endswith(suffix)
        and len(name) > len(suffix)
        and not name.startswith(".")
        and "/" not in name
        and "\0" not in name
    )


def entity_path(kind: str, name: str) -> str:
    return f"keys/{name}.pub" if kind == "keys" else f"{kind}/{name}.toml"
