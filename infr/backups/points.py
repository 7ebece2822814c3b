"""Restore points: the backups a backup host holds, listed, parsed and picked."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from infr.backups.btrbk import BackupSettings, backup_dir

# btrbk's `timestamp_format long`: YYYYMMDDTHHMM, with _N for the N-th run in a minute.
_BACKUP_NAME = re.compile(r"^(?P<subvol>.+)\.(?P<stamp>\d{8}T\d{4})(?:_(?P<seq>\d+))?$")


_STAMP = "%Y%m%dT%H%M"


@dataclass(frozen=True, order=True)
class RestorePoint:
    """A complete backup on TO; sorts oldest first."""

    at: datetime
    seq: int  # btrbk's _N: several backups in one minute
    subvol: str  # "host" or "lxc-<name>"
    name: str  # the subvolume's directory name under the pair's backup directory


def list_restore_points_argv(from_host: str, settings: BackupSettings) -> tuple[str, ...]:
    """Run on TO: FROM's restore points (parse with `parse_restore_points(output, directory)`)."""
    return list_points_argv(backup_dir(from_host, settings))


def list_points_argv(directory: str) -> tuple[str, ...]:
    """Run on TO. Read-only subvolumes with their received UUID: a half-received one is
    neither, which `ls` and `btrbk list` cannot tell.

    `btrfs subvolume list -o` lists every subvolume of the *subvolume* holding
    `directory`, not of the directory: the other FROM hosts' backups and the archive
    too, under paths relative to the filesystem's top. So findmnt first says where
    `directory` sits in the filesystem, and the parser keeps only what is directly in it.
    """
    return ("sh", "-c", 'findmnt -n -r -o TARGET,FSROOT -T "$1" && btrfs subvolume list -o -r -R "$1"', "sh", directory)


def parse_backup_name(name: str) -> tuple[str, datetime, int] | None:
    """`host.20261122T2045_1` -> ("host", 2026-11-22 20:45 UTC, 1); None if not a backup."""
    match = _BACKUP_NAME.match(name)
    if not match:
        return None
    try:
        at = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    return match["subvol"], at, int(match["seq"] or 0)


def parse_restore_points(output: str, directory: str | None = None) -> list[RestorePoint]:
    """Restore points from `list_points_argv(directory)` output, oldest first: only the
    subvolumes directly in `directory`.

    Without `directory`, every backup listed counts; that also reads bare directory
    names (`ls`), which cannot show a half-received backup: use them only where no
    transfer can be running.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    inside = None
    if directory is not None and lines and " path " not in lines[0]:
        inside = _path_in_filesystem(directory, lines.pop(0))
    points = [_restore_point(line, inside) for line in lines]
    return sorted(p for p in points if p is not None)


def _path_in_filesystem(directory: str, mount: str) -> str:
    """`directory` relative to the top of its btrfs, from findmnt's "TARGET FSROOT"."""
    target, _, fsroot = mount.partition(" ")
    relative = posixpath.relpath(posixpath.normpath(directory), _unescape(target))
    inside = posixpath.join(_unescape(fsroot) or "/", relative)
    return posixpath.normpath(inside).strip("/")


def _unescape(text: str) -> str:
    # findmnt -r writes a space in a path as \x20 (and so on).
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m[1], 16)), text)


def _restore_point(line: str, inside: str | None = None) -> RestorePoint | None:
    path = line.rpartition(" path ")[2] if " path " in line else line
    if " received_uuid - " in f"{line} " or not path:
        return None  # receive never finished: not a backup
    if inside is not None and posixpath.dirname(path.strip("/")) != inside:
        return None  # another directory's (another FROM host's, or the archive)
    name = posixpath.basename(path)
    parsed = parse_backup_name(name)
    return RestorePoint(parsed[1], parsed[2], parsed[0], name) if parsed else None


def newest_by_subvol(points: Iterable[RestorePoint]) -> dict[str, RestorePoint]:
    newest: dict[str, RestorePoint] = {}
    for point in sorted(points):
        newest[point.subvol] = point
    return newest


def pick_restore_point(points: Iterable[RestorePoint], subvol: str, at: datetime | None = None) -> RestorePoint | None:
    """The newest backup of `subvol` taken at or before `at` (default: the newest)."""
    candidates = [p for p in points if p.subvol == subvol and (at is None or p.at <= at)]
    return max(candidates, default=None)


def root_subvolume_uuid(show_output: str) -> str:
    """The subvolume's own UUID from `btrfs subvolume show` output ("" if none is shown)."""
    for line in show_output.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "UUID":
            value = value.strip()
            return "" if value == "-" else value
    return ""
