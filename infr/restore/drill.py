"""Restore drills: a backup copied aside on its backup host and checked, never touching the container."""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from infr.backups import btrbk as backups_btrbk
from infr.backups import find, pairs
from infr.backups import points as backups_points
from infr.backups import status as backups_status
from infr.backups.btrbk import HOST_SUBVOL, BackupSettings
from infr.backups.points import RestorePoint
from infr.connector import SSHConnection
from infr.engine import fleet
from infr.errors import ConflictError, NotFoundError
from infr.restore import commands
from infr.restore import drill as restore_drill
from infr.restore.choose import age_text
from infr.restore.container import Report
from infr.state.model import BACKUP_ACTIVE
from infr.state.session import Session


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


def drill(
    session: Session, from_host: str, to_host: str, report: Report, now: datetime | None = None
) -> list[DrillCheck]:
    """Restore the newest backup of FROM's root and of each of its containers into a
    scratch directory on TO, look inside, delete it; one DrillCheck per subvolume."""
    inv, settings = session.inventory(), pairs.settings_for(session)
    pair = inv.find_backup(from_host, to_host)
    if pair is None:
        raise NotFoundError(f"no backup {from_host} -> {to_host}", "list them with 'infr backups'")
    if pair.status != BACKUP_ACTIVE:
        raise ConflictError(f"backup {from_host} -> {to_host} is {pair.status}", "drill an active pair")
    expected = [HOST_SUBVOL, *sorted(backups_btrbk.lxc_subvol(c.name) for c in inv.lxcs_on(from_host))]
    directory = backups_btrbk.backup_dir(from_host, settings)
    moment = now or datetime.now(UTC)
    with fleet.connect(session, to_host) as conn:
        points = find.read_points(conn, directory)
        scratch = restore_drill.drill_dir(from_host, settings)
        return drill_on(conn, points, directory, expected, scratch, moment, backups_status.max_age(session), report)


def drill_on(
    conn: SSHConnection,
    points: list[RestorePoint],
    directory: str,
    expected: list[str],
    scratch: str,
    now: datetime,
    max_age: timedelta,
    report: Report,
) -> list[DrillCheck]:
    """On the backup host: each expected subvolume's newest backup as a writable
    snapshot in `scratch`, checked, deleted. The scratch goes whatever happens."""
    newest = backups_points.newest_by_subvol(points)
    conn.run(commands.clear_argv(scratch))  # a drill cut off before
    conn.run(["install", "-d", "-m", "700", "--", scratch])
    checks = []
    try:
        for subvol in expected:
            point = newest.get(subvol)
            started = time.monotonic()
            figures: dict[str, str] = {}
            if point is not None:
                report(f"{subvol}: checking {point.name}")
                copy = posixpath.join(scratch, point.name)
                conn.run(commands.snapshot_argv(posixpath.join(directory, point.name), copy))
                figures = restore_drill.parse_drill(conn.run(restore_drill.drill_check_argv(copy), timeout=1800).text)
                conn.run(commands.delete_subvolume_argv(copy))
            checks.append(restore_drill.judge(subvol, point, figures, now, max_age, time.monotonic() - started))
    finally:
        conn.run(commands.clear_argv(scratch), check=False)
    return checks
