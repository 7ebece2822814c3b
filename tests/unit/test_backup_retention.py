"""Infr's backup retention (`snapshots_to_cull`) as properties over synthetic timestamps.

The rule: every backup of the last 2 hours, then hourly for 2 days, daily for 2 weeks
and weekly (Monday) for 12 weeks, counted back from the latest backup; the newest is
never culled. Hours, days and weeks are buckets (b, b + step]: "the first backup after
a mark", as Infr's backups-to-cull picked them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from infr.backups.retention import STATUS_OK, STATUS_STALE, backup_age_status, snapshots_to_cull

HOUR, DAY, WEEK = timedelta(hours=1), timedelta(days=1), timedelta(weeks=1)
BASE = datetime(2026, 11, 23, 14, 7, tzinfo=UTC)  # a Monday

# Backups within ~4 months before BASE, minute resolution like btrbk's names.
offsets = st.integers(min_value=0, max_value=120 * 24 * 60)
backup_sets = st.lists(offsets, min_size=1, max_size=300).map(lambda ms: [BASE - timedelta(minutes=m) for m in ms])


def kept(timestamps: list[datetime], latest: datetime | None = None) -> set[datetime]:
    return set(timestamps) - snapshots_to_cull(timestamps, latest)


def floor(t: datetime, step: timedelta) -> datetime:
    """The mark at or before t: the hour, midnight, or Monday midnight."""
    start = t.replace(minute=0, second=0, microsecond=0)
    if step >= DAY:
        start = start.replace(hour=0)
    if step == WEEK:
        start -= timedelta(days=start.weekday())
    return start


def bucket(t: datetime, step: timedelta) -> datetime:
    """Start b of the bucket (b, b + step] that holds t."""
    start = floor(t, step)
    return start - step if start == t else start


def marks(latest: datetime, step: timedelta, count: int) -> list[datetime]:
    return [floor(latest, step) - i * step for i in range(count)]


@given(backup_sets)
def test_newest_is_never_culled(timestamps: list[datetime]) -> None:
    assert max(timestamps) in kept(timestamps)


@given(backup_sets, offsets)
def test_newest_is_kept_even_when_counting_from_a_later_time(timestamps: list[datetime], later: int) -> None:
    latest = max(timestamps) + timedelta(minutes=later)
    assert max(timestamps) not in snapshots_to_cull(timestamps, latest)


@given(backup_sets)
def test_only_given_timestamps_are_culled(timestamps: list[datetime]) -> None:
    assert snapshots_to_cull(timestamps) <= set(timestamps)


@given(backup_sets)
def test_everything_of_the_last_two_hours_is_kept(timestamps: list[datetime]) -> None:
    latest = max(timestamps)
    recent = {t for t in timestamps if t > latest - 2 * HOUR}
    assert recent <= kept(timestamps)


@given(backup_sets)
def test_at_most_one_per_hour_older_than_two_hours(timestamps: list[datetime]) -> None:
    older = [t for t in kept(timestamps) if t <= max(timestamps) - 2 * HOUR]
    assert len({bucket(t, HOUR) for t in older}) == len(older)


@given(backup_sets)
def test_at_most_one_per_day_older_than_two_days(timestamps: list[datetime]) -> None:
    latest = max(timestamps)
    older = [t for t in kept(timestamps) if t <= latest.replace(minute=0) - 47 * HOUR]
    assert len({bucket(t, DAY) for t in older}) == len(older)


@given(backup_sets)
def test_at_most_one_per_week_older_than_two_weeks(timestamps: list[datetime]) -> None:
    latest = max(timestamps)
    older = [t for t in kept(timestamps) if t <= latest.replace(hour=0, minute=0) - 13 * DAY]
    assert len({bucket(t, WEEK) for t in older}) == len(older)


@given(backup_sets)
def test_nothing_older_than_twelve_weeks_is_kept(timestamps: list[datetime]) -> None:
    latest = max(timestamps)
    monday = latest.replace(hour=0, minute=0) - timedelta(days=latest.weekday())
    assert all(t > monday - 11 * WEEK for t in kept(timestamps))


@given(backup_sets)
def test_the_first_backup_after_each_mark_is_kept(timestamps: list[datetime]) -> None:
    """Hourly for 2 days, daily for 2 weeks, weekly for 12 weeks: no gap where backups exist."""
    latest, remaining = max(timestamps), kept(timestamps)
    for step, count in ((HOUR, 48), (DAY, 14), (WEEK, 12)):
        for mark in marks(latest, step, count):
            after = [t for t in timestamps if t > mark]
            assert not after or min(after) in remaining, (step, mark)


@given(backup_sets)
def test_culling_again_culls_nothing(timestamps: list[datetime]) -> None:
    """What a run keeps survives the next run with the same latest backup."""
    remaining = sorted(kept(timestamps))
    assert snapshots_to_cull(remaining, max(timestamps)) == set()


@given(backup_sets, st.integers(min_value=1, max_value=500))
def test_counted_from_the_latest_backup_not_the_clock(timestamps: list[datetime], weeks: int) -> None:
    """Moving every backup by whole weeks moves the result with them: no "now" inside."""
    shift = weeks * WEEK
    moved = snapshots_to_cull([t + shift for t in timestamps])
    assert moved == {t + shift for t in snapshots_to_cull(timestamps)}


def test_five_minute_backups_over_a_hundred_days() -> None:
    """The steady state of the 5-minute timer, counted by hand."""
    timestamps = [BASE - timedelta(minutes=5 * i) for i in range(100 * 24 * 12)]
    remaining = sorted(kept(timestamps), reverse=True)
    recent = [t for t in remaining if t > BASE - 2 * HOUR]
    assert len(recent) == 24
    assert remaining[-1] > BASE - 13 * WEEK
    # 24 recent + 46 hourly (2 of the 48 hours fall in the last 2 h) + 12 daily (2 days
    # are hourly already) + 10 weekly (2 Mondays are daily already).
    assert len(remaining) == 24 + 46 + 12 + 10


def test_a_backup_on_the_mark_counts_to_the_hour_before() -> None:
    """Infr picks the first backup strictly after each mark: 13:00 is the last of the
    12:00 hour, so 12:30 and 13:05 stay (btrbk would keep 12:30 and 13:00)."""
    on_mark = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
    timestamps = [on_mark - timedelta(minutes=30), on_mark, on_mark + timedelta(minutes=5), on_mark + 23 * HOUR]
    assert snapshots_to_cull(timestamps) == {on_mark}


def test_empty_and_single() -> None:
    assert snapshots_to_cull([]) == set()
    assert snapshots_to_cull([BASE]) == set()


def test_backup_age_status() -> None:
    assert backup_age_status(BASE - timedelta(minutes=14), BASE) == STATUS_OK
    assert backup_age_status(BASE - timedelta(minutes=15), BASE) == STATUS_OK
    assert backup_age_status(BASE - timedelta(minutes=16), BASE) == STATUS_STALE
    assert backup_age_status(None, BASE) == STATUS_STALE
    assert backup_age_status(BASE - HOUR, BASE, max_age=2 * HOUR) == STATUS_OK
