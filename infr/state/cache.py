"""The inventory cache: a digest of every state file's bytes, and the inventory as JSON."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, TypeVar

from infr.state.model import Backup, Host, Inventory, Key, Lxc, Peer

try:  # hashlib.blake2b is _blake2's; importing hashlib also sets up OpenSSL (~3 ms)
    from _blake2 import blake2b as _blake2b
except ImportError:  # pragma: no cover - CPython always has _blake2
    from hashlib import blake2b as _blake2b



T = TypeVar("T")


CACHE_VERSION = 3


# A file's stat is trusted to stand for its bytes only when the file last changed (its
# ctime, which no user can set back) this long before its bytes were hashed: file times
# tick in steps of up to 10 ms, so two writes of the same size within one step keep the
# same stat (git's "racy clean" files). Those are hashed again on every load.
SETTLED_NS = 2_000_000_000


# A cache hit that had to hash this many files again is rewritten, so they settle.
REHASHED_BEFORE_REWRITE = 256


class _Files:
    """Per inventory file: [inode, size, mtime, ctime, blake2b of its bytes], and when they were checked."""

    def __init__(self, records: dict[str, list[Any]], checked_ns: int) -> None:
        self.records = records
        self.checked_ns = checked_ns
        self.rehashed = 0

    def add(self, rel: str, path: str, known: _Files) -> None:
        """Record `rel` (at `path`) as it is now: stat first, so a write after it shows in the next stat."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode):
            return
        stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        record = known.records.get(rel)
        if record is not None and record[:4] == stamp and st.st_ctime_ns + SETTLED_NS < known.checked_ns:
            self.records[rel] = record
            return
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return
        self.records[rel] = [*stamp, _blake2b(data, digest_size=16).hexdigest()]
        self.rehashed += 1

    def put(self, root: Path, rel: str, data: bytes | None) -> None:
        """Record `rel` as just written with `data` (None: deleted). Its fresh ctime is not
        settled yet, so the next load hashes it again rather than trust this stat."""
        if data is None:
            self.records.pop(rel, None)
            return
        try:
            st = os.stat(root / rel)
        except FileNotFoundError:
            self.records.pop(rel, None)
            return
        stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        self.records[rel] = [*stamp, _blake2b(data, digest_size=16).hexdigest()]


def _fingerprint(records: dict[str, list[Any]]) -> str:
    """A digest of every file's name and bytes: equal fingerprints, equal files."""
    names = sorted(records)
    digest = _blake2b(digest_size=16)
    # A name that is not UTF-8 comes from os.listdir as surrogates: hash its bytes, and let
    # the parser refuse the file by name.
    digest.update("\0".join(names).encode("utf-8", "surrogateescape"))
    digest.update("".join(records[name][4] for name in names).encode())
    return digest.hexdigest()


def _unchanged(cache: dict[str, Any], records: dict[str, list[Any]]) -> dict[str, Any]:
    """The cache's hosts, LXCs and peers whose files hold the bytes they were parsed from.

    The cache is written only for a state that passed every check, so these passed the
    field checks of their files: after a pull that changed a few files, only those are
    parsed again (11,000 TOML files took half a cold load). The value checks, references
    and uniqueness still run on everything, since they depend on settings and on the
    other files.
    """
    then = cache.get("files")
    cached = _cached_inventory(cache) if isinstance(then, dict) else None
    if cached is None or not isinstance(then, dict):
        return {}
    kept = {}
    for directory, items in (("hosts", cached.hosts), ("lxcs", cached.lxcs), ("peers", cached.peers)):
        for name, item in items.items():
            rel = f"{directory}/{name}.toml"
            now, before = records.get(rel), then.get(rel)
            if now is not None and isinstance(before, list) and len(before) == 5 and now[4] == before[4]:
                kept[rel] = item
    return kept


def _cached_inventory(cache: dict[str, Any]) -> Inventory | None:
    try:
        return _inventory_from_cache(cache["inventory"])
    except (KeyError, TypeError, AttributeError):  # not what this infr writes: rebuild it
        return None


def _inventory_to_cache(inv: Inventory) -> dict[str, Any]:
    # The model's dataclasses hold exactly their fields in __dict__ (no slots, nothing
    # else is set on them), so json.dumps can read them in place: copying 11,000 objects
    # into dicts first (schema.to_dict) took 0.06 s of a one-LXC change on 10,000 LXCs.
    return {
        "config": inv.config,
        "hosts": [vars(h) for h in inv.hosts.values()],
        "lxcs": [vars(c) for c in inv.lxcs.values()],
        "keys": [vars(k) for k in inv.keys.values()],
        "peers": [vars(p) for p in inv.peers.values()],
        "backups": [vars(b) for b in inv.backups],
        "ipam_last": inv.ipam_last,
    }


def _inventory_from_cache(data: dict[str, Any]) -> Inventory:
    from infr.state.model import TcpForward

    lxcs = _objects(Lxc, data["lxcs"])
    for lxc in lxcs:
        if lxc.tcp_forwards:
            lxc.tcp_forwards = [TcpForward(**f) for f in lxc.tcp_forwards]  # type: ignore[arg-type]  # dicts here
    return Inventory(
        config=data["config"],
        hosts={h.name: h for h in _objects(Host, data["hosts"])},
        lxcs={c.name: c for c in lxcs},
        keys={k.name: k for k in _objects(Key, data["keys"])},
        peers={p.name: p for p in _objects(Peer, data["peers"])},
        backups=_objects(Backup, data["backups"]),
        ipam_last=data["ipam_last"],
    )


def _objects(cls: type[T], rows: list[dict[str, Any]]) -> list[T]:
    """Model objects from cache rows, read back as _inventory_to_cache wrote them: each row
    becomes an object's __dict__, which halves the time of calling the constructor (0.04 s
    for 10,000 LXCs). Rows whose keys are not the class's fields (a cache written by
    another version of infr) raise KeyError, and the cache is rebuilt."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    new = object.__new__
    objects = []
    for row in rows:
        if row.keys() != fields:
            raise KeyError(cls.__name__)
        item = new(cls)
        item.__dict__ = row
        objects.append(item)
    return objects
