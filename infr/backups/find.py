"""Where restore points are: read on a backup host over SSH, and found across every host that holds backups."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from infr.backups import btrbk as backups_btrbk
from infr.backups import points as backups_points
from infr.backups.btrbk import BackupSettings
from infr.backups.pairs import _exists, archive_dir, settings_for
from infr.backups.points import RestorePoint
from infr.connector import SSHConnection
from infr.engine.fleet import connect, get_host
from infr.state.model import BACKUP_ACTIVE, Inventory
from infr.state.session import Session


def _read_points(conn: SSHConnection, from_host: str, settings: BackupSettings) -> list[RestorePoint]:
    return read_points(conn, backups_btrbk.backup_dir(from_host, settings))


def read_points(conn: SSHConnection, directory: str) -> list[RestorePoint]:
    """The complete backups in `directory` on a backup host, oldest first."""
    if not _exists(conn, directory):
        return []
    listing = conn.run(list(backups_points.list_points_argv(directory)))
    return backups_points.parse_restore_points(listing.text, directory)


@dataclass(frozen=True)
class Found:
    """Restore points, newest first, and the backup hosts skipped (marked down)."""

    points: list[Located]
    skipped: list[str]


def _directories(inv: Inventory, settings: BackupSettings, from_host: str | None) -> dict[str, list[tuple[str, str]]]:
    """Backup host -> [(FROM, directory)] of every pair (an archived pair: its archive)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for b in sorted(inv.backups, key=lambda b: b.pair):
        if from_host is None or b.from_host == from_host:
            active = b.status == BACKUP_ACTIVE
            directory = (
                backups_btrbk.backup_dir(b.from_host, settings) if active else archive_dir(b.from_host, settings)
            )
            found.setdefault(b.to_host, []).append((b.from_host, directory))
    return found


def find_points(session: Session, *, from_host: str | None = None, subvol: str | None = None) -> Found:
    """Every complete backup on every backup host, one connection each: of `from_host`
    (default: of any host) and of `subvol` (default: all), newest first."""
    inv, settings = session.inventory(), settings_for(session)
    points: list[Located] = []
    skipped = []
    for to_host, sources in sorted(_directories(inv, settings, from_host).items()):
        if to_host in session.down_hosts:
            skipped.append(to_host)
            continue
        with connect(session, to_host) as conn:
            for source, directory in sources:
                found = read_points(conn, directory)
                points += [Located(p, to_host, source, directory) for p in found if subvol in (None, p.subvol)]
    return Found(sorted(points, reverse=True), skipped)


def restore_points(session: Session, host: str, subvol: str | None = None) -> list[tuple[str, RestorePoint]]:
    """(TO host, restore point) of every backup of `host`, oldest first; `subvol` keeps
    one subvolume. find_points has the rest (where each lies, -D)."""
    get_host(session.inventory(), host)
    found = find_points(session, from_host=host, subvol=subvol)
    return [(p.to_host, p.point) for p in reversed(found.points)]


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
