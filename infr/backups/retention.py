"""How long backups are kept, and how fresh a pair's newest backup is."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime, timedelta

STATUS_OK = "ok"


STATUS_STALE = "stale"


MAX_AGE = timedelta(minutes=15)


# Infr's retention, counted back from the latest backup (Infr's `backups-to-cull`).
KEEP_ALL = timedelta(hours=2)


_TIERS = (  # (bucket, how many buckets back)
    (timedelta(hours=1), 48),
    (timedelta(days=1), 14),
    (timedelta(weeks=1), 12),
)


RETENTION_DIFFERENCES = (
    "btrbk counts back from the time of the run, Infr from the latest backup. btrbk leaves "
    "the backups of a source it cannot reach alone, so this bites only when a reachable "
    "source keeps failing otherwise, or on a `btrbk prune` by hand",
    "btrbk's windows are whole hours and inclusive: '2h' keeps 2-3 h of backups and "
    "48h/14d/12w keep 49 hours, 15 days and 13 weeks where Infr keeps 48, 14 and 12",
    "btrbk keeps the first backup inside each hour/day/week, Infr the first one after "
    "each boundary: the same backup unless one lands exactly on the boundary (Infr counts "
    "13:00 into the 12:00 hour) or a bucket is empty (Infr then keeps the next backup)",
    "btrbk also keeps the newest snapshot/backup pair the next incremental needs; Infr kept the newest backup only",
)


def snapshots_to_cull(timestamps: Iterable[datetime], latest: datetime | None = None) -> set[datetime]:
    """Infr's retention: the backups to delete so that what stays is every backup of the
    last 2 hours, then the first backup after each of the last 48 hour marks, 14
    midnights and 12 Monday midnights, all counted back from `latest` (default: the
    newest backup), never from the clock, so backups stopping does not thin them.

    The newest backup is never culled: it is the parent of the next incremental send.
    Aware datetimes count in their own zone; Infr's and btrbk's run in UTC.
    """
    ordered = sorted(set(timestamps))
    if not ordered:
        return set()
    reference = ordered[-1] if latest is None else latest
    keep = {ordered[-1]}
    keep.update(t for t in ordered if t > reference - KEEP_ALL)
    for mark in _marks(reference):
        index = bisect.bisect_right(ordered, mark)  # first backup strictly after the mark
        if index < len(ordered):
            keep.add(ordered[index])
    return set(ordered) - keep


def _marks(reference: datetime) -> Iterable[datetime]:
    hour = reference.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    starts = (hour, day, day - timedelta(days=day.weekday()))  # weekday() 0 is Monday
    for start, (step, count) in zip(starts, _TIERS, strict=True):
        yield from (start - i * step for i in range(count))


def backup_age_status(newest: datetime | None, now: datetime, max_age: timedelta = MAX_AGE) -> str:
    """STATUS_STALE when a pair has no backup or its newest is older than `max_age`."""
    if newest is None or now - newest > max_age:
        return STATUS_STALE
    return STATUS_OK
