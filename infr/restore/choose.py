"""Which backup to restore: `--at` parsed, and the restore point chosen. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from infr.backups.find import Located
from infr.backups.points import RestorePoint, parse_backup_name
from infr.errors import NotFoundError, UsageError

RUNNING = "RUNNING"


_STAMP = re.compile(r"^(?P<stamp>\d{8}T\d{4})(?:_(?P<seq>\d+))?$")


AT_HINT = "give an ISO time (2026-11-22T20:45, UTC unless it has an offset) or a backup's stamp (20261122T2045)"


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
