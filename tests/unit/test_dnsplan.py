"""The DNS plan: statuses, ownership markers, change order, the safety guard and apply."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infr.dns import plan as dns_plan
from infr.dns.plan import Plan, Status, compute_plan, marker_for
from infr.errors import InfrError, ProviderError
from infr.providers.base import Provider, Record

SUFFIXES = ("infr.example.com", "vnet.example.com")
ME, THEM = "cluster-1", "cluster-2"


def a(name: str, value: str = "192.0.2.1", ttl: int = 300) -> Record:
    return Record(name, "A", value, ttl)


def mark(name: str, owner: str = ME, rtype: str = "A") -> Record:
    return marker_for(name, rtype, owner, 300)


def plan(desired: Iterable[Record], actual: Iterable[Record], adopt: bool = False) -> Plan:
    return compute_plan(list(desired), list(actual), SUFFIXES, ME, adopt=adopt)


def statuses(p: Plan) -> dict[str, Status]:
    return {f"{r.record.name} {r.record.value}": r.status for r in p.rows}


def simulate(actual: Iterable[Record], p: Plan) -> list[Record]:
    """What a provider holds after carrying out every change of `p`."""
    records = list(actual)
    for change in p.changes:
        if change.old is not None:
            records.remove(change.old)
        if change.new is not None:
            records.append(change.new)
    return records


class MemoryProvider(Provider):
    name = "memory"

    def __init__(self, records: Iterable[Record] = (), fail: Iterable[str] = ()) -> None:
        self.records = list(records)
        self.fail = set(fail)
        self.calls: list[str] = []

    def _check(self, record: Record) -> None:
        if record.name in self.fail:
            raise ProviderError(f"memory refused {record}")

    def list_records(self, zone: str) -> list[Record]:
        return list(self.records)

    def create(self, zone: str, record: Record) -> None:
        self.calls.append(f"create {record.name}")
        self._check(record)
        self.records.append(record)

    def update(self, zone: str, old: Record, new: Record) -> None:
        self.calls.append(f"update {new.name}")
        self._check(new)
        self.records[self.records.index(old)] = new

    def delete(self, zone: str, record: Record) -> None:
        self.calls.append(f"delete {record.name}")
        self._check(record)
        self.records.remove(record)


# --- statuses and changes, case by case ---------------------------------------------------


def test_missing_record_is_created_after_its_marker() -> None:
    p = plan([a("web1.infr.example.com")], [])
    assert statuses(p) == {"web1.infr.example.com 192.0.2.1": Status.MISSING}
    assert [str(c) for c in p.changes] == [
        'create ownership marker _infr-owner.a.web1.infr.example.com 300 TXT "infr owner=cluster-1"',
        "create web1.infr.example.com 300 A 192.0.2.1",
    ]


def test_owned_correct_record_needs_nothing() -> None:
    p = plan([a("web1.infr.example.com")], [a("web1.infr.example.com"), mark("web1.infr.example.com")])
    assert statuses(p) == {"web1.infr.example.com 192.0.2.1": Status.CORRECT}
    assert p.empty


@pytest.mark.parametrize("actual", [a("web1.infr.example.com", "192.0.2.9"), a("web1.infr.example.com", ttl=3600)])
def test_wrong_value_or_ttl_is_incorrect_and_updated(actual: Record) -> None:
    desired = a("web1.infr.example.com")
    p = plan([desired], [actual, mark("web1.infr.example.com")])
    assert [r.status for r in p.rows] == [Status.INCORRECT]
    assert [(c.action, c.old, c.new) for c in p.changes] == [("update", actual, desired)]


def test_extra_owned_record_is_deleted_before_its_marker() -> None:
    old = a("gone.vnet.example.com", "10.8.1.5")
    p = plan([], [old, mark("gone.vnet.example.com")])
    assert statuses(p) == {"gone.vnet.example.com 10.8.1.5": Status.EXTRA}
    assert [(c.action, c.marker) for c in p.changes] == [("delete", False), ("delete", True)]


def test_unmarked_records_are_foreign_and_untouched() -> None:
    foreign = [a("mail.infr.example.com", "198.51.100.7"), a("web1.infr.example.com", "192.0.2.9")]
    p = plan([a("web1.infr.example.com")], foreign)
    assert set(statuses(p).values()) == {Status.FOREIGN}
    assert p.empty
    assert p.managed == 0


def test_another_owners_records_are_foreign() -> None:
    p = plan(
        [a("web1.infr.example.com")], [a("web1.infr.example.com", "192.0.2.9"), mark("web1.infr.example.com", THEM)]
    )
    assert [r.status for r in p.rows] == [Status.FOREIGN]
    assert p.empty


def test_marker_is_per_type_so_another_type_at_our_name_stays_foreign() -> None:
    theirs = Record("web1.infr.example.com", "TXT", "v=spf1 -all", 300)
    p = plan([a("web1.infr.example.com")], [a("web1.infr.example.com"), mark("web1.infr.example.com"), theirs])
    assert statuses(p) == {
        "web1.infr.example.com 192.0.2.1": Status.CORRECT,
        "web1.infr.example.com v=spf1 -all": Status.FOREIGN,
    }
    assert p.empty


def test_adopt_takes_over_unmarked_and_other_owners_records() -> None:
    unmarked = a("web1.infr.example.com")
    stray = a("old.infr.example.com", "192.0.2.50")
    theirs = [a("db.infr.example.com", "192.0.2.8"), mark("db.infr.example.com", THEM)]
    desired = [a("web1.infr.example.com"), a("db.infr.example.com")]
    p = plan(desired, [unmarked, stray, *theirs], adopt=True)
    assert statuses(p) == {
        "web1.infr.example.com 192.0.2.1": Status.CORRECT,
        "db.infr.example.com 192.0.2.1": Status.INCORRECT,
        "old.infr.example.com 192.0.2.50": Status.EXTRA,
    }
    after = simulate([unmarked, stray, *theirs], p)
    assert plan(desired, after).empty
    assert mark("db.infr.example.com") in after and stray not in after


def test_names_outside_the_suffixes_are_never_looked_at() -> None:
    outside = [a("www.example.com"), a("infr.example.com"), a("x.infr.example.org"), a("xinfr.example.com")]
    p = plan([], outside)
    assert p.rows == () and p.empty


def test_orphan_marker_of_ours_is_removed() -> None:
    p = plan([], [mark("web1.infr.example.com")])
    assert [r.status for r in p.rows] == [Status.EXTRA]
    assert [(c.action, c.marker) for c in p.changes] == [("delete", True)]


def test_orphan_marker_of_another_owner_is_foreign() -> None:
    p = plan([], [mark("web1.infr.example.com", THEM)])
    assert [r.status for r in p.rows] == [Status.FOREIGN]
    assert p.empty


def test_duplicate_records_and_markers_are_cleaned_up() -> None:
    rec, marker = a("web1.infr.example.com"), mark("web1.infr.example.com")
    p = plan([rec], [rec, rec, marker, marker])
    assert Counter(r.status for r in p.rows) == {Status.CORRECT: 1, Status.EXTRA: 1}
    assert Counter(simulate([rec, rec, marker, marker], p)) == {rec: 1, marker: 1}


def test_marker_ttl_does_not_matter() -> None:
    rec = a("web1.infr.example.com", ttl=3600)
    assert plan([rec], [rec, mark("web1.infr.example.com")]).empty


def test_desired_records_outside_the_suffixes_are_a_bug() -> None:
    with pytest.raises(ValueError, match="outside"):
        plan([a("www.example.com")], [])
    with pytest.raises(ValueError, match="outside"):
        plan([mark("web1.infr.example.com")], [])


def test_desired_records_of_one_rrset_share_a_ttl() -> None:
    with pytest.raises(ValueError, match="different TTLs"):
        plan([a("web1.infr.example.com", ttl=300), a("web1.infr.example.com", "192.0.2.2", 60)], [])


def test_record_names_and_types_are_normalised() -> None:
    assert Record("Web1.INFR.example.com.", "a", "192.0.2.1", 300) == a("web1.infr.example.com")


# --- the safety guard ----------------------------------------------------------------------


def owned(count: int) -> list[Record]:
    names = [f"h{i}.infr.example.com" for i in range(count)]
    return [a(n) for n in names] + [mark(n) for n in names]


def test_changing_more_than_30_percent_of_10_records_needs_force() -> None:
    actual = owned(10)
    desired = [r for r in actual if r.type == "A"][4:]
    p = plan(desired, actual)
    assert p.unsafe_reason() == ("the plan updates or deletes 4 of 10 managed records (more than 30%)")
    provider = MemoryProvider(actual)
    with pytest.raises(InfrError, match="refusing to apply") as refused:
        dns_plan.apply(provider, "example.com", p)
    assert refused.value.hint == "check the plan, then run again with --force"
    assert provider.calls == []
    assert dns_plan.apply(provider, "example.com", p, force=True).ok


def test_30_percent_or_small_zones_or_creations_pass_the_guard() -> None:
    ten = owned(10)
    assert plan([r for r in ten if r.type == "A"][3:], ten).unsafe_reason() is None
    nine = owned(9)
    assert plan([], nine).unsafe_reason() is None
    many_new = [a(f"n{i}.infr.example.com") for i in range(50)]
    assert plan(many_new + [r for r in ten if r.type == "A"], ten).unsafe_reason() is None


# --- apply -----------------------------------------------------------------------------------


def test_apply_carries_out_the_plan_and_a_second_plan_is_empty() -> None:
    provider = MemoryProvider([a("www.example.com"), a("old.infr.example.com"), mark("old.infr.example.com")])
    desired = [a("web1.infr.example.com"), a("web1.vnet.example.com", "10.8.1.1")]
    p = plan(desired, provider.records)
    report = dns_plan.apply(provider, "example.com", p)
    assert report.ok and len(report.done) == len(p.changes) == 6
    assert provider.calls == [
        "create _infr-owner.a.web1.infr.example.com",
        "create _infr-owner.a.web1.vnet.example.com",
        "delete old.infr.example.com",
        "create web1.infr.example.com",
        "create web1.vnet.example.com",
        "delete _infr-owner.a.old.infr.example.com",
    ]
    assert plan(desired, provider.records).empty


def test_partial_failure_is_reported_per_record_and_the_next_run_finishes() -> None:
    provider = MemoryProvider(fail={"web2.infr.example.com", "_infr-owner.a.web3.infr.example.com"})
    desired = [a(f"web{i}.infr.example.com") for i in (1, 2, 3)]
    report = dns_plan.apply(provider, "example.com", plan(desired, []))
    assert not report.ok
    assert [str(o) for o in report.failed] == [
        "failed: create ownership marker _infr-owner.a.web3.infr.example.com 300 TXT "
        '"infr owner=cluster-1": memory refused _infr-owner.a.web3.infr.example.com 300 TXT '
        '"infr owner=cluster-1"',
        "failed: create web2.infr.example.com 300 A 192.0.2.1: memory refused web2.infr.example.com 300 A 192.0.2.1",
    ]
    # Without its marker web3's record is not written, so it never turns up as FOREIGN.
    assert [str(o) for o in report.skipped] == [
        "skipped: create web3.infr.example.com 300 A 192.0.2.1: an earlier change to the same name failed"
    ]
    assert Status.FOREIGN not in statuses(plan(desired, provider.records)).values()

    provider.fail.clear()
    assert dns_plan.apply(provider, "example.com", plan(desired, provider.records)).ok
    assert plan(desired, provider.records).empty


def test_a_failed_delete_keeps_the_marker() -> None:
    provider = MemoryProvider(owned(1), fail={"h0.infr.example.com"})
    report = dns_plan.apply(provider, "example.com", plan([], provider.records))
    assert [o.result for o in report.outcomes] == ["failed", "skipped"]
    assert mark("h0.infr.example.com") in provider.records


# --- properties ------------------------------------------------------------------------------

LABELS = st.sampled_from(["a", "b", "c", "web1"])
MANAGED = st.builds(lambda label, suffix: f"{label}.{suffix}", LABELS, st.sampled_from(SUFFIXES))
ANY_NAME = st.one_of(
    MANAGED, st.sampled_from(["www.example.com", "infr.example.com", "a.infr.example.org", "example.com"])
)
TYPES = st.sampled_from(["A", "TXT"])
VALUES = st.sampled_from(["192.0.2.1", "192.0.2.2", "10.8.1.1"])
TTLS = st.sampled_from([300, 3600])


@st.composite
def desired_records(draw: st.DrawFn) -> list[Record]:
    records = draw(st.lists(st.builds(Record, MANAGED, TYPES, VALUES, TTLS), max_size=8))
    ttl_of = {(r.name, r.type): r.ttl for r in records}
    return [Record(r.name, r.type, r.value, ttl_of[(r.name, r.type)]) for r in records]


@st.composite
def actual_records(draw: st.DrawFn) -> list[Record]:
    data = draw(st.lists(st.builds(Record, ANY_NAME, TYPES, VALUES, TTLS), max_size=10))
    markers = draw(st.lists(st.builds(marker_for, MANAGED, TYPES, st.sampled_from([ME, THEM]), TTLS), max_size=5))
    garbled = draw(st.lists(st.builds(lambda n: Record(f"_infr-owner.a.{n}", "TXT", "junk", 60), MANAGED), max_size=1))
    return data + markers + garbled


def rrset_of(record: Record) -> tuple[str, str]:
    return dns_plan.marked_rrset(record) or (record.name, record.type)


def foreign_rrsets(actual: list[Record]) -> set[tuple[str, str]]:
    """The RRsets the module docstring calls foreign, restated independently."""
    result = set()
    for key in {rrset_of(r) for r in actual if dns_plan.is_managed(r.name, SUFFIXES)}:
        markers = [r for r in actual if dns_plan.marked_rrset(r) == key]
        data = [r for r in actual if (r.name, r.type) == key and dns_plan.marked_rrset(r) is None]
        ours = [m for m in markers if dns_plan.marker_owner(m) == ME]
        if len(ours) < len(markers) or (data and not ours):
            result.add(key)
    return result


@settings(max_examples=300, deadline=None)
@given(desired_records(), actual_records(), st.booleans())
def test_applying_the_plan_yields_the_desired_records(desired: list[Record], actual: list[Record], adopt: bool) -> None:
    p = plan(desired, actual, adopt=adopt)
    after = simulate(actual, p)
    untouchable = set() if adopt else foreign_rrsets(actual)

    def part(records: list[Record], key: tuple[str, str]) -> Counter[Record]:
        return Counter(r for r in records if rrset_of(r) == key)

    outside = Counter(r for r in actual if not dns_plan.is_managed(r.name, SUFFIXES))
    assert Counter(r for r in after if not dns_plan.is_managed(r.name, SUFFIXES)) == outside
    for key in {rrset_of(r) for r in actual + desired if dns_plan.is_managed(r.name, SUFFIXES)}:
        if key in untouchable:
            assert part(after, key) == part(actual, key)
            continue
        data = Counter(r for r in after if (r.name, r.type) == key and not dns_plan.marked_rrset(r))
        assert data == Counter(set(part(desired, key)))
        markers = [r for r in after if dns_plan.marked_rrset(r) == key]
        assert [dns_plan.marker_owner(m) for m in markers] == ([ME] if data else [])
    assert plan(desired, after, adopt=adopt).empty


@settings(max_examples=300, deadline=None)
@given(desired_records(), actual_records(), st.booleans())
def test_nothing_outside_the_suffixes_is_ever_touched(desired: list[Record], actual: list[Record], adopt: bool) -> None:
    p = plan(desired, actual, adopt=adopt)
    assert all(dns_plan.is_managed(c.record.name, SUFFIXES) for c in p.changes)
    assert all(dns_plan.is_managed(r.record.name, SUFFIXES) for r in p.rows)
    for change in p.changes:
        if change.old is not None:
            assert change.old in actual


@settings(max_examples=200, deadline=None)
@given(desired_records(), actual_records())
def test_markers_come_first_and_go_last(desired: list[Record], actual: list[Record]) -> None:
    changes = plan(desired, actual, adopt=True).changes
    phases = [0 if c.marker and c.action != "delete" else 2 if c.marker else 1 for c in changes]
    assert phases == sorted(phases)
