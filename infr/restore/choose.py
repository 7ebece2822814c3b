"""Restoring from backups: which backup to use, and the commands that bring it back. Pure.

What a restore point is and how a backup host lists them: infr.backups.btrbk. The
commands below run through infr.restore.container, over the admin's own SSH logins
(`manager` with sudo) to each host; a backup host needs no way into other hosts.

A container restore, onto target host T from backup host B:
1. stage, while the current container keeps running: T:/var/lib/lxc/.infr-restore/NAME.new
   receives the backup read-only (`btrfs send` on B, streamed through the admin's
   machine into `btrfs receive` on T; on B itself a snapshot does), then gets a writable
   snapshot of it as `rootfs` (never `btrfs property set ro false`, which leaves a stale
   received UUID that breaks later incrementals), its config and infr's created mark;
2. swap: stop the current container, move its directory aside to NAME.old, move
   NAME.new in, start it. If it does not start, the old one is moved back (and started
   again if it ran);
3. only then is the old container deleted.
Whatever fails before step 2 leaves the current container untouched and running. LXC
looks for containers one level down only, so nothing in .infr-restore ever autostarts.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from infr.backups.btrbk import BackupSettings, RestorePoint, parse_backup_name
from infr.errors import NotFoundError, UsageError

LXC_ROOT = "/var/lib/lxc"
WORK_DIR = ".infr-restore"  # in LXC_ROOT: on the containers' filesystem, so moves are renames
SUBVOLUME_INODE = 256  # the top directory of every btrfs subvolume has this inode number
RUNNING = "RUNNING"

_STAMP = re.compile(r"^(?P<stamp>\d{8}T\d{4})(?:_(?P<seq>\d+))?$")
AT_HINT = "give an ISO time (2026-11-22T20:45, UTC unless it has an offset) or a backup's stamp (20261122T2045)"


# --- which backup -------------------------------------------------------------------------


@dataclass(frozen=True)
class At:
    """`--at`: the newest backup taken at or before `moment`. From a btrbk stamp, `seq`
    is its run number in that minute (`_1`), 0 without one; None from an ISO time,
    which takes every run of its minute."""

    moment: datetime
    seq: int | None = None
    text: str = ""

    def admits(self, point: RestorePoint) -> bool:
        if self.seq is None:
            return point.at <= self.moment
        return (point.at, point.seq) <= (self.moment, self.seq)


def parse_at(text: str) -> At:
    """An ISO time (naive means UTC, as backups are named), a btrbk stamp
    (20261122T2045, 20261122T2045_1), or a whole backup name (host.20261122T2045)."""
    value = text.strip()
    named = parse_backup_name(f"x.{value}" if _STAMP.match(value) else value)
    if named is not None:
        return At(named[1], named[2], value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--at {text!r} is not a time", AT_HINT) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return At(moment, None, value)


@dataclass(frozen=True, order=True)
class Located:
    """A restore point and where it lies: in `directory` on backup host `to_host`,
    taken from `from_host`. Sorts by the point (oldest first)."""

    point: RestorePoint
    to_host: str
    from_host: str
    directory: str = field(compare=False)

    @property
    def path(self) -> str:
        return posixpath.join(self.directory, self.point.name)


def choose(
    points: Iterable[Located], subvol: str, at: At | None, what: str, hint: str, prefer: str | None = None
) -> Located:
    """The newest backup of `subvol` that `at` admits; of equal ones, one on `prefer`
    (the target host: nothing to transfer). NotFoundError (with `hint` when there is
    no backup at all) otherwise."""
    mine = [p for p in points if p.point.subvol == subvol]
    if not mine:
        raise NotFoundError(f"no backup of {what} found", hint)
    fitting = [p for p in mine if at is None or at.admits(p.point)]
    if not fitting:
        assert at is not None
        oldest = min(mine).point
        hint = f"the oldest is {oldest.name}, {when(oldest.at)}"
        raise NotFoundError(f"no backup of {what} at or before {at.text}", hint)
    return max(fitting, key=lambda p: (p.point.at, p.point.seq, p.to_host == prefer, p.to_host))


def when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def age_text(age: timedelta) -> str:
    minutes = max(0, int(age.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h{minutes % 60:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24:02d}h"


# --- container restore --------------------------------------------------------------------


@dataclass(frozen=True)
class LxcPaths:
    """Where a container lives on its host, and where a restore stages it."""

    name: str
    root: str = LXC_ROOT

    @property
    def container(self) -> str:
        return posixpath.join(self.root, self.name)

    @property
    def work(self) -> str:
        return posixpath.join(self.root, WORK_DIR)

    @property
    def staged(self) -> str:
        return posixpath.join(self.work, f"{self.name}.new")

    @property
    def old(self) -> str:
        return posixpath.join(self.work, f"{self.name}.old")


def make_dirs_argv(paths: LxcPaths) -> tuple[str, ...]:
    """The staging directory: the work directory root's only, the container's as LXC makes it."""
    return ("sh", "-c", 'install -d -m 700 -- "$1" && install -d -m 770 -- "$2"', "sh", paths.work, paths.staged)


def clear_argv(directory: str) -> tuple[str, ...]:
    """Delete a directory of subvolumes and files (a staged or replaced container, a
    drill's scratch): each subvolume directly in it, then the rest. Nothing if absent."""
    script = (
        'if [ ! -e "$1" ]; then exit 0; fi; '
        'for s in "$1"/*; do '
        f'if [ -d "$s" ] && [ "$(stat -c %i -- "$s")" = {SUBVOLUME_INODE} ]; then '
        'btrfs -q subvolume delete -- "$s"; fi; done; '
        'rm -rf --one-file-system -- "$1"'
    )
    return ("sh", "-c", script, "sh", directory)


def send_argv(point_path: str) -> tuple[str, ...]:
    return ("btrfs", "send", "-q", "--", point_path)


def receive_argv(directory: str) -> tuple[str, ...]:
    """Receives under the sent subvolume's own name; read-only, with a received UUID."""
    return ("btrfs", "receive", "--", directory)


def snapshot_argv(source: str, dest: str) -> tuple[str, ...]:
    """A writable snapshot: what a restored rootfs must be."""
    return ("btrfs", "-q", "subvolume", "snapshot", "--", source, dest)


def delete_subvolume_argv(path: str) -> tuple[str, ...]:
    return ("btrfs", "-q", "subvolume", "delete", "--", path)


def mark_argv(paths: LxcPaths, mark: str) -> tuple[str, ...]:
    return ("touch", "--", posixpath.join(paths.staged, mark))


def lxc_state_argv(name: str) -> tuple[str, ...]:
    """Prints RUNNING, STOPPED...; fails when there is no such container."""
    return ("lxc-info", "-n", name, "-s", "-H")


def stop_argv(name: str, *, kill: bool = False) -> tuple[str, ...]:
    return ("lxc-stop", "-n", name, *(("-k",) if kill else ()))


def start_argv(name: str) -> tuple[str, ...]:
    return ("lxc-start", "-n", name)


def wait_running_argv(name: str) -> tuple[str, ...]:
    return ("lxc-wait", "-n", name, "-s", RUNNING, "-t", "60")


def destroy_argv(name: str) -> tuple[str, ...]:
    return ("lxc-destroy", "-n", name, "-f")


def swap_in_argv(paths: LxcPaths) -> tuple[str, ...]:
    """The current container aside (if there is one), the staged one in its place; if
    that second move fails, the first is undone."""
    script = (
        'if [ -e "$1" ]; then mv -T -- "$1" "$3"; fi; '
        'if ! mv -T -- "$2" "$1"; then if [ -e "$3" ]; then mv -T -- "$3" "$1"; fi; exit 1; fi'
    )
    return ("sh", "-c", script, "sh", paths.container, paths.staged, paths.old)


def swap_back_argv(paths: LxcPaths) -> tuple[str, ...]:
    """Undo swap_in: the restored container back to staging, the old one back in place."""
    script = 'mv -T -- "$1" "$2" && if [ -e "$3" ]; then mv -T -- "$3" "$1"; fi'
    return ("sh", "-c", script, "sh", paths.container, paths.staged, paths.old)


# --- files out of a host backup -----------------------------------------------------------

PATH_OK, PATH_LEAVES, PATH_MISSING = 0, 3, 4


def relative_path(path: str) -> str:
    """PATH as it was on the backed-up host, relative to the backup's top."""
    relative = posixpath.normpath("/" + path).lstrip("/")
    if not path.strip() or not relative or ".." in path.split("/"):
        raise UsageError(f"restore path {path!r} must name something inside the backup", "e.g. /etc/nginx")
    return relative


def check_path_argv(point_path: str, relative: str) -> tuple[str, ...]:
    """Exits PATH_OK if `relative` is in the backup, PATH_MISSING if not, PATH_LEAVES if a
    symlink on the way leads out of it (an absolute one points into the backup host's
    own files, not the backup's)."""
    script = (
        'root=$(realpath -e -- "$1") || exit 1; '
        f'dir=$(realpath -e -- "$1/$2" 2>/dev/null) || exit {PATH_MISSING}; '
        f'case "$dir/" in "$root"/*) ;; *) exit {PATH_LEAVES} ;; esac; '
        f'if [ -e "$1/$3" ] || [ -L "$1/$3" ]; then exit 0; fi; exit {PATH_MISSING}'
    )
    return ("sh", "-c", script, "sh", point_path, posixpath.dirname(relative), relative)


_TAR = ("tar", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner")


def tar_create_argv(point_path: str, relative: str) -> tuple[str, ...]:
    """On the backup host: PATH out of the backup as a tar stream, with modes, numeric
    owners, times, ACLs and xattrs; symlinks as symlinks."""
    return (*_TAR, "-C", point_path, "-cf", "-", "--", relative)


def tar_extract_argv(into: str) -> tuple[str, ...]:
    """Here, into INTO: INTO/PATH. Owners only when run as root."""
    return (*_TAR, "-C", into, "-xpf", "-")


# --- drill --------------------------------------------------------------------------------


def drill_dir(from_host: str, settings: BackupSettings) -> str:
    """A drill's scratch on the backup host, beside the backups (same filesystem)."""
    return posixpath.join(posixpath.dirname(settings.backup_dir), "drill", from_host)


def drill_check_argv(copy: str) -> tuple[str, ...]:
    """Inside a writable snapshot of a backup: how many files, which OS (os-release, read
    only if it resolves inside the copy), whether a file can be written. One line each."""
    script = (
        'root=$(realpath -e -- "$1") || exit 1; '
        'printf "files %s\\n" "$(find "$1" -xdev | wc -l)"; '
        'os=$(realpath -e -- "$1/etc/os-release" 2>/dev/null) && case "$os" in "$root"/*) '
        "printf 'os %s\\n' \"$(sed -n 's/^PRETTY_NAME=//p' \"$os\" | head -n 1)\" ;; esac; "
        'if touch -- "$1/.infr-drill" && rm -f -- "$1/.infr-drill"; then echo "writable yes"; fi'
    )
    return ("sh", "-c", script, "sh", copy)


@dataclass(frozen=True)
class DrillCheck:
    """One subvolume's newest backup, restored as a writable snapshot and looked at."""

    subvol: str
    name: str = ""
    taken: datetime | None = None
    files: int = 0
    os: str = ""
    seconds: float = 0.0
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_drill(output: str) -> dict[str, str]:
    figures = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        figures[key] = value.strip().strip("\"'")
    return figures


def judge(
    subvol: str, point: RestorePoint | None, figures: dict[str, str], now: datetime, max_age: timedelta, seconds: float
) -> DrillCheck:
    if point is None:
        return DrillCheck(subvol, problems=("no backup",))
    files = int(figures.get("files") or 0)
    problems = []
    if files <= 1:
        problems.append("empty")
    if not figures.get("os"):
        problems.append("no readable /etc/os-release")
    if figures.get("writable") != "yes":
        problems.append("the writable snapshot refused a write")
    if now - point.at > max_age:
        problems.append(f"{age_text(now - point.at)} old (backupMaxAgeMinutes is {int(max_age.total_seconds() // 60)})")
    return DrillCheck(subvol, point.name, point.at, files, figures.get("os", ""), seconds, tuple(problems))
