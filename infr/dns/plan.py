"""Desired DNS records against a provider's records: a status per record and a plan to fix them.

Pure: no I/O except `apply`, which only calls the provider it is given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from infr.errors import InfrError, ProviderError
from infr.providers.base import Provider, Record

MARKER_LABEL = "_infr-owner"
MARKER_PREFIX = "infr owner="
MIN_RECORDS_FOR_GUARD = 10
MAX_CHANGED_SHARE = 0.3

RRsetKey = tuple[str, str]
Action = Literal["create", "update", "delete"]


class Status(StrEnum):
    MISSING = "MISSING"
    CORRECT = "CORRECT"
    INCORRECT = "INCORRECT"
    EXTRA = "EXTRA"
    FOREIGN = "FOREIGN"
    # What a listing shows when no DNS provider is configured (Infr's word).
    UNKNOWN = "???"


def is_managed(name: str, suffixes: Sequence[str]) -> bool:
    """Whether `name` lies strictly under one of the managed suffixes."""
    return any(name.endswith("." + suffix.rstrip(".").lower()) for suffix in suffixes)


def marker_for(name: str, rtype: str, owner: str, ttl: int) -> Record:
    """The TXT record that marks the `rtype` RRset at `name` as owned by `owner`."""
    return Record(f"{MARKER_LABEL}.{rtype.lower()}.{name}", "TXT", MARKER_PREFIX + owner, ttl)


def marked_rrset(marker: Record) -> RRsetKey | None:
    """The RRset a marker record marks, or None if `marker` is no marker."""
    if marker.type != "TXT" or not marker.name.startswith(MARKER_LABEL + "."):
        return None
    rtype, _, name = marker.name[len(MARKER_LABEL) + 1 :].partition(".")
    return (name, rtype.upper()) if name else None


def marker_owner(marker: Record) -> str | None:
    if not marker.value.startswith(MARKER_PREFIX):
        return None
    return marker.value[len(MARKER_PREFIX) :]


@dataclass(frozen=True)
class Row:
    """One line of `infr dns`: a desired record, a provider's record, or both paired."""

    status: Status
    desired: Record | None
    actual: Record | None

    @property
    def record(self) -> Record:
        found = self.desired or self.actual
        assert found is not None, "a row holds at least one record"
        return found


@dataclass(frozen=True)
class Change:
    action: Action
    old: Record | None
    new: Record | None
    # The RRset this change belongs to: for a marker, the RRset it marks.
    rrset: RRsetKey
    marker: bool = False

    @property
    def record(self) -> Record:
        found = self.new or self.old
        assert found is not None, "a change holds at least one record"
        return found

    def __str__(self) -> str:
        what = "ownership marker " if self.marker else ""
        if self.action == "update":
            return f"update {what}{self.old} -> {self.new}"
        return f"{self.action} {what}{self.record}"


@dataclass(frozen=True)
class Plan:
    rows: tuple[Row, ...]
    changes: tuple[Change, ...]
    # Records of ours (owned or adopted) the provider has: the base of the safety guard.
    managed: int

    @property
    def empty(self) -> bool:
        return not self.changes

    def unsafe_reason(self) -> str | None:
        """Why this plan needs force (too many existing records changed), or None."""
        touched = sum(1 for c in self.changes if not c.marker and c.action != "create")
        if self.managed < MIN_RECORDS_FOR_GUARD or touched <= MAX_CHANGED_SHARE * self.managed:
            return None
        return (
            f"the plan updates or deletes {touched} of {self.managed} managed records "
            f"(more than {MAX_CHANGED_SHARE:.0%})"
        )


@dataclass(frozen=True)
class Outcome:
    change: Change
    result: Literal["done", "failed", "skipped"]
    error: str = ""

    def __str__(self) -> str:
        return f"{self.result}: {self.change}" + (f": {self.error}" if self.error else "")


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def _with(self, result: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == result]

    @property
    def done(self) -> list[Outcome]:
        return self._with("done")

    @property
    def failed(self) -> list[Outcome]:
        return self._with("failed")

    @property
    def skipped(self) -> list[Outcome]:
        return self._with("skipped")

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


def compute_plan(
    desired: Iterable[Record],
    actual: Iterable[Record],
    suffixes: Sequence[str],
    owner: str,
    *,
    adopt: bool = False,
) -> Plan:
    """Compare `desired` with `actual` (a provider's listing) under `suffixes` as `owner`."""
    wanted = _group_desired(desired, suffixes)
    data: dict[RRsetKey, list[Record]] = defaultdict(list)
    markers: dict[RRsetKey, list[Record]] = defaultdict(list)
    for record in actual:
        if not is_managed(record.name, suffixes):
            continue
        key = marked_rrset(record)
        if key is not None:
            markers[key].append(record)
        else:
            data[(record.name, record.type)].append(record)

    rows: list[Row] = []
    changes: list[Change] = []
    managed = 0
    for key in sorted(wanted.keys() | data.keys() | markers.keys()):
        rrset = _RRset(key, wanted.get(key, []), data.get(key, []), markers.get(key, []), owner)
        if rrset.foreign and not adopt:
            rows += rrset.foreign_rows()
            continue
        managed += len(rrset.actual)
        rrset_rows, rrset_changes = rrset.reconcile()
        rows += rrset_rows
        changes += rrset_changes
    changes.sort(key=_phase)
    return Plan(tuple(rows), tuple(changes), managed)


def apply(provider: Provider, zone: str, plan: Plan, *, force: bool = False) -> ApplyReport:
    """Carry out `plan` change by change; a failure is recorded and the rest go on.

    Raises InfrError, before changing anything, for an unsafe plan without `force`.
    """
    reason = plan.unsafe_reason()
    if reason and not force:
        raise InfrError(f"refusing to apply: {reason}", "check the plan, then run again with --force")
    report = ApplyReport()
    failed: set[RRsetKey] = set()
    for change in plan.changes:
        if change.rrset in failed:
            report.outcomes.append(Outcome(change, "skipped", "an earlier change to the same name failed"))
            continue
        try:
            _carry_out(provider, zone, change)
        except ProviderError as exc:
            failed.add(change.rrset)
            report.outcomes.append(Outcome(change, "failed", str(exc)))
        else:
            report.outcomes.append(Outcome(change, "done"))
    return report


def _carry_out(provider: Provider, zone: str, change: Change) -> None:
    if change.action == "create" and change.new is not None:
        provider.create(zone, change.new)
    elif change.action == "update" and change.old is not None and change.new is not None:
        provider.update(zone, change.old, change.new)
    elif change.action == "delete" and change.old is not None:
        provider.delete(zone, change.old)
    else:
        raise AssertionError(f"malformed change {change!r}")


def _group_desired(desired: Iterable[Record], suffixes: Sequence[str]) -> dict[RRsetKey, list[Record]]:
    wanted: dict[RRsetKey, list[Record]] = defaultdict(list)
    for record in desired:
        if not is_managed(record.name, suffixes) or marked_rrset(record) is not None:
            raise ValueError(f"desired record {record} is outside {', '.join(suffixes)}")
        group = wanted[(record.name, record.type)]
        if record not in group:
            group.append(record)
    for (name, rtype), group in wanted.items():
        # DNS keeps one TTL per RRset: records that disagree could never all be CORRECT.
        if len({r.ttl for r in group}) > 1:
            raise ValueError(f"desired {rtype} records of {name} have different TTLs")
    return wanted


def _phase(change: Change) -> tuple[int, str, str, str]:
    """Markers are written first and deleted last; see the module docstring."""
    phase = 1 if not change.marker else 2 if change.action == "delete" else 0
    return (phase, change.rrset[0], change.rrset[1], change.action)


@dataclass
class _RRset:
    key: RRsetKey
    desired: list[Record]
    actual: list[Record]
    markers: list[Record]
    owner: str

    @property
    def ours(self) -> list[Record]:
        return [m for m in self.markers if marker_owner(m) == self.owner]

    @property
    def foreign(self) -> bool:
        """Someone else's: records or a marker without our sole mark on them."""
        others = [m for m in self.markers if marker_owner(m) != self.owner]
        return bool(others) or (bool(self.actual) and not self.ours)

    def foreign_rows(self) -> list[Row]:
        rows = [Row(Status.FOREIGN, d, a) for d, a in _pairs(self.desired, self.actual)]
        return rows or [Row(Status.FOREIGN, None, m) for m in self.markers]

    def reconcile(self) -> tuple[list[Row], list[Change]]:
        """Rows and changes that make this RRset (ours, or adopted) what is desired."""
        rows: list[Row] = []
        changes: list[Change] = []
        for desired, actual in _pairs(self.desired, self.actual):
            if desired is None:
                rows.append(Row(Status.EXTRA, None, actual))
                changes.append(Change("delete", actual, None, self.key))
            elif actual is None:
                rows.append(Row(Status.MISSING, desired, None))
                changes.append(Change("create", None, desired, self.key))
            elif desired == actual:
                rows.append(Row(Status.CORRECT, desired, actual))
            else:
                rows.append(Row(Status.INCORRECT, desired, actual))
                changes.append(Change("update", actual, desired, self.key))
        marker_changes = self._marker_changes()
        if not self.desired and not self.actual:
            rows += [Row(Status.EXTRA, None, c.old) for c in marker_changes if c.old]
        return rows, changes + marker_changes

    def _marker_changes(self) -> list[Change]:
        """Exactly one marker of ours while records are desired, none once they are gone.

        A marker's TTL does not matter, so a marker of ours is kept whatever its TTL.
        """
        stale = list(self.markers)
        changes = []
        if self.desired:
            ours = self.ours
            if ours:
                stale.remove(ours[0])
            else:
                name, rtype = self.key
                mark = marker_for(name, rtype, self.owner, self.desired[0].ttl)
                old = stale.pop(0) if stale else None
                changes.append(Change("update" if old else "create", old, mark, self.key, marker=True))
        changes += [Change("delete", m, None, self.key, marker=True) for m in stale]
        return changes


def _pairs(desired: list[Record], actual: list[Record]) -> list[tuple[Record | None, Record | None]]:
    """Desired and actual records of one RRset paired up: same value first, then in order."""
    left = list(actual)
    pairs: list[tuple[Record | None, Record | None]] = []
    unmatched: list[Record] = []
    for record in sorted(desired, key=lambda r: r.value):
        twin = next((a for a in left if a.value == record.value), None)
        if twin is None:
            unmatched.append(record)
        else:
            left.remove(twin)
            pairs.append((record, twin))
    left.sort(key=lambda r: (r.value, r.ttl))
    paired = min(len(unmatched), len(left))
    pairs += list(zip(unmatched[:paired], left[:paired], strict=True))
    pairs += [(d, None) for d in unmatched[paired:]]
    pairs += [(None, a) for a in left[paired:]]
    return pairs
