"""How fresh each pair's backups are, and a backup run now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from infr.backups import btrbk as backups_btrbk
from infr.backups import points as backups_points
from infr.backups import retention
from infr.backups.btrbk import HOST_SUBVOL, BackupSettings
from infr.backups.find import _read_points
from infr.backups.pairs import Report, settings_for
from infr.backups.points import RestorePoint
from infr.connector import SSHConnection
from infr.engine.fleet import get_host, target
from infr.errors import ConflictError, InfrError, RemoteError
from infr.state.model import BACKUP_ACTIVE, Backup, Inventory
from infr.state.session import Session

STATUS_UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class PairStatus:
    """How fresh one active pair's backups are; `newest` is None when there is none."""

    from_host: str
    to_host: str
    newest: datetime | None
    status: str  # retention.STATUS_OK, STATUS_STALE or STATUS_UNREACHABLE
    error: str = ""

    def age(self, now_: datetime) -> timedelta | None:
        return None if self.newest is None else now_ - self.newest


RUN_TIMEOUT = 6 * 3600.0  # a first full backup of a large host over a slow link takes hours


def run_now(session: Session, from_host: str, to_host: str, report: Report) -> RestorePoint | None:
    """One backup run on TO now, as its timer would start it (it pulls every host backed up
    onto TO); waits for it and returns FROM's newest host backup afterwards.

    A run the timer started already is joined, not doubled: systemd starts the unit once.
    """
    inv = session.inventory()
    backup = inv.find_backup(from_host, to_host)
    if backup is None or backup.status != BACKUP_ACTIVE:
        raise ConflictError(f"{from_host} is not being backed up onto {to_host}",
                            f"start it: infr backup start {from_host} {to_host}")
    settings = settings_for(session)
    report(f"running {backups_btrbk.SERVICE} on {to_host}")
    with SSHConnection.connect(target(session, get_host(inv, to_host))) as conn:
        started = conn.run(["systemctl", "start", backups_btrbk.SERVICE], check=False, timeout=RUN_TIMEOUT)
        if started.exit_status != 0:
            journal = conn.run(["journalctl", "-u", backups_btrbk.SERVICE, "-n", "40", "-o", "cat", "--no-pager"],
                               check=False).text
            raise RemoteError(f"the backup run on {to_host} failed: {_last_error(journal)}",
                              f"see journalctl -u {backups_btrbk.SERVICE} on {to_host}; the admin was mailed")
        points = [p for p in _read_points(conn, from_host, settings) if p.subvol == HOST_SUBVOL]
    return points[-1] if points else None


def _last_error(journal: str) -> str:
    """The most telling line of a failed run's journal: btrbk's last detail line
    ("ERROR: ... why"), else its last ERROR, else the last line."""
    lines = [line.strip() for line in journal.splitlines() if line.strip()]
    details = [line.split("... ", 1)[1] for line in lines if line.startswith(("ERROR: ... ", "WARNING: ... "))]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (details or errors or lines or ["the journal is empty"])[-1]


def _newest_complete(points: list[RestorePoint], subvols: list[str]) -> datetime | None:
    """When FROM was last backed up whole: the oldest of each expected subvolume's newest."""
    newest = backups_points.newest_by_subvol(points)
    if any(s not in newest for s in subvols):
        return None
    return min(newest[s].at for s in subvols)


def max_age(session: Session) -> timedelta:
    return timedelta(minutes=int(session.settings().get("backupMaxAgeMinutes", 15)))


def status(session: Session, now_: datetime | None = None) -> list[PairStatus]:
    """The freshness of every active pair, one SSH connection per TO host."""
    inv, settings = session.inventory(), settings_for(session)
    moment, limit = now_ or datetime.now(UTC), max_age(session)
    active = [b for b in inv.backups if b.status == BACKUP_ACTIVE]
    rows: list[PairStatus] = []
    for to_host in sorted({b.to_host for b in active}):
        pairs = sorted((b for b in active if b.to_host == to_host), key=lambda b: b.from_host)
        rows += _status_on(session, inv, to_host, pairs, settings, moment, limit)
    return rows


def _status_on(
    session: Session,
    inv: Inventory,
    to_host: str,
    pairs: list[Backup],
    settings: BackupSettings,
    moment: datetime,
    limit: timedelta,
) -> list[PairStatus]:
    if to_host in session.down_hosts:
        return [PairStatus(b.from_host, to_host, None, STATUS_UNREACHABLE, "skipped (-D)") for b in pairs]
    try:
        with SSHConnection.connect(target(session, inv.hosts[to_host])) as conn:
            found = {b.from_host: _read_points(conn, b.from_host, settings) for b in pairs}
    except InfrError as e:  # a TO that is down makes its pairs red, not the whole report fail
        return [PairStatus(b.from_host, to_host, None, STATUS_UNREACHABLE, str(e)) for b in pairs]
    rows = []
    for b in pairs:
        subvols = [HOST_SUBVOL, *(backups_btrbk.lxc_subvol(c.name) for c in inv.lxcs_on(b.from_host))]
        newest = _newest_complete(found[b.from_host], subvols)
        rows.append(PairStatus(b.from_host, to_host, newest, retention.backup_age_status(newest, moment, limit)))
    return rows
