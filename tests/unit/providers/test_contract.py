"""The one contract every DNS provider passes, through the plan and apply it serves.

`ProviderContract` is the suite. It runs here against Vultr and Rage4 (their APIs emulated
with `responses`, see dns_fakes.py) and in tests/integration/test_dns_providers.py against
real PowerDNS, BIND and Knot servers. Each run gets a fresh zone holding `www` (outside
infr's suffixes) and asks only for a `dns_env` fixture.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from infr.dns import plan as dns_plan
from infr.dns.plan import ApplyReport, Plan, Status
from infr.errors import ProviderError
from infr.providers.base import Provider, Record
from infr.providers.rage4 import Rage4Provider
from infr.providers.vultr import VultrProvider
from tests.unit.providers.dns_fakes import Rage4Emulator, VultrEmulator

ZONE = "example.com"
SUFFIXES = ("infr.example.com", "vnet.example.com")
OWNER = "test-cluster"
OUTSIDE = Record("www.example.com", "A", "192.0.2.80", 300)


@dataclass
class DnsEnv:
    name: str
    # A provider with the right credentials; each call gives a new one, as each CLI run would.
    make: Callable[[], Provider]
    # A provider with wrong credentials (API key, TSIG secret).
    make_bad: Callable[[], Provider]
    # Words the one-line error for wrong credentials must contain.
    credential_words: tuple[str, ...]

    def records(self) -> list[Record]:
        return self.make().list_records(ZONE)


class FaultyProvider(Provider):
    """A provider whose writes to some names fail, for partial failures on any backend."""

    def __init__(self, inner: Provider, failing: set[str]) -> None:
        self.inner, self.failing = inner, failing

    def _check(self, record: Record) -> None:
        if record.name in self.failing:
            raise ProviderError(f"injected failure for {record.name}")

    def list_records(self, zone: str) -> list[Record]:
        return self.inner.list_records(zone)

    def create(self, zone: str, record: Record) -> None:
        self._check(record)
        self.inner.create(zone, record)

    def update(self, zone: str, old: Record, new: Record) -> None:
        self._check(new)
        self.inner.update(zone, old, new)

    def delete(self, zone: str, record: Record) -> None:
        self._check(record)
        self.inner.delete(zone, record)


def hosts(*specs: tuple[str, str]) -> list[Record]:
    """A public and a vnet A record per (name, public address), as infr wants for a host."""
    records = []
    for number, (name, public) in enumerate(specs, start=1):
        records.append(Record(f"{name}.infr.example.com", "A", public, 300))
        records.append(Record(f"{name}.vnet.example.com", "A", f"10.8.1.{number}", 300))
    return records


def fix(
    env: DnsEnv, desired: list[Record], *, adopt: bool = False, provider: Provider | None = None
) -> tuple[Plan, ApplyReport, list[Record]]:
    """What `infr dns fix` does: list, plan, apply. Returns the plan, report and prior listing."""
    provider = provider or env.make()
    before = provider.list_records(ZONE)
    plan = dns_plan.compute_plan(desired, before, SUFFIXES, OWNER, adopt=adopt)
    return plan, dns_plan.apply(provider, ZONE, plan), before


def planned(env: DnsEnv, desired: list[Record], adopt: bool = False) -> Plan:
    return dns_plan.compute_plan(desired, env.records(), SUFFIXES, OWNER, adopt=adopt)


def assert_did_exactly(before: Iterable[Record], plan: Plan, after: Iterable[Record]) -> None:
    """The zone changed by the plan's changes and by nothing else."""
    expected = Counter(before)
    for change in plan.changes:
        if change.old is not None:
            assert expected[change.old] > 0, f"{change} removes a record that was not there"
            expected[change.old] -= 1
        if change.new is not None:
            expected[change.new] += 1
    assert Counter(after) == +expected


def managed_data(records: Iterable[Record]) -> set[Record]:
    return {r for r in records if dns_plan.is_managed(r.name, SUFFIXES) and not dns_plan.marked_rrset(r)}


class ProviderContract:
    """The behaviour every provider shares. Subclasses supply the `dns_env` fixture."""

    def test_lists_the_zone_without_soa(self, dns_env: DnsEnv) -> None:
        records = dns_env.records()
        assert OUTSIDE in records
        assert all(r.type != "SOA" for r in records)

    def test_creates_updates_and_deletes_single_records(self, dns_env: DnsEnv) -> None:
        provider = dns_env.make()
        a = Record("web1.infr.example.com", "A", "192.0.2.1", 300)
        txt = Record("web1.infr.example.com", "TXT", 'a "quoted" back\\slash and spaces', 300)
        provider.create(ZONE, a)
        provider.create(ZONE, txt)
        assert {a, txt} <= set(dns_env.records())

        moved = Record("web1.infr.example.com", "A", "192.0.2.2", 600)
        dns_env.make().update(ZONE, a, moved)  # a new provider must find the record itself
        provider.delete(ZONE, txt)
        records = dns_env.records()
        assert moved in records and a not in records and txt not in records

    def test_fix_makes_exactly_the_planned_changes(self, dns_env: DnsEnv) -> None:
        first = hosts(("web1", "192.0.2.1"), ("web2", "192.0.2.2"), ("web3", "192.0.2.3"))
        plan, report, before = fix(dns_env, first)
        assert report.ok and len(report.done) == 12  # 6 records and 6 ownership markers
        assert_did_exactly(before, plan, dns_env.records())

        # web1 moves, web2 goes, web4 comes: the plan says so, and the zone does exactly that.
        second = hosts(("web1", "192.0.2.11"), ("web3", "192.0.2.3"), ("web4", "192.0.2.4"))
        plan, report, before = fix(dns_env, second)
        assert report.ok
        assert Counter(c.action for c in plan.changes) == {"update": 2, "create": 4, "delete": 4}
        after = dns_env.records()
        assert_did_exactly(before, plan, after)
        assert managed_data(after) == set(second)
        assert OUTSIDE in after

    def test_second_fix_changes_nothing(self, dns_env: DnsEnv) -> None:
        desired = hosts(("web1", "192.0.2.1"), ("db1", "192.0.2.5"))
        fix(dns_env, desired)
        plan = planned(dns_env, desired)
        assert plan.empty
        assert {r.status for r in plan.rows} == {Status.CORRECT}

    def test_foreign_records_survive(self, dns_env: DnsEnv) -> None:
        foreign = [
            Record("mail.infr.example.com", "A", "198.51.100.7", 300),
            Record("web1.infr.example.com", "TXT", "someone else's note", 300),
            Record("web3.vnet.example.com", "A", "10.9.9.9", 300),
        ]
        provider = dns_env.make()
        for record in foreign:
            provider.create(ZONE, record)
        desired = hosts(("web1", "192.0.2.1"), ("web2", "192.0.2.2"), ("web3", "192.0.2.3"))

        plan, report, _ = fix(dns_env, desired)
        assert report.ok
        after = dns_env.records()
        assert set(foreign) | {OUTSIDE} <= set(after)
        assert Record("web3.vnet.example.com", "A", "10.8.1.3", 300) not in after
        rows = planned(dns_env, desired).rows
        assert {r.actual for r in rows if r.status is Status.FOREIGN} == set(foreign)

    def test_adopt_takes_foreign_records_over(self, dns_env: DnsEnv) -> None:
        provider = dns_env.make()
        provider.create(ZONE, Record("web1.infr.example.com", "A", "192.0.2.1", 300))
        provider.create(ZONE, Record("old.infr.example.com", "A", "192.0.2.99", 300))
        desired = hosts(("web1", "192.0.2.1"))

        plan, report, before = fix(dns_env, desired, adopt=True)
        assert report.ok
        after = dns_env.records()
        assert_did_exactly(before, plan, after)
        assert managed_data(after) == set(desired)
        assert planned(dns_env, desired).empty  # owned now: no --adopt needed any more

    def test_wrong_credentials_are_one_clear_line(self, dns_env: DnsEnv) -> None:
        bad = dns_env.make_bad()
        with pytest.raises(ProviderError) as listed:
            bad.list_records(ZONE)
        record = Record("intruder.infr.example.com", "A", "203.0.113.1", 300)
        with pytest.raises(ProviderError) as created:
            bad.create(ZONE, record)
        for error in (listed.value, created.value):
            line = str(error)
            assert "\n" not in line and len(line) < 300
            assert all(word in line for word in dns_env.credential_words), line
        assert record not in dns_env.records()

    def test_partial_failure_is_reported_per_record_and_the_next_fix_finishes(self, dns_env: DnsEnv) -> None:
        desired = hosts(("web1", "192.0.2.1"), ("web2", "192.0.2.2"))
        faulty = FaultyProvider(dns_env.make(), {"web2.infr.example.com"})

        plan, report, _ = fix(dns_env, desired, provider=faulty)
        assert [str(o.change.record) for o in report.failed] == ["web2.infr.example.com 300 A 192.0.2.2"]
        assert "injected failure for web2.infr.example.com" in report.failed[0].error
        assert len(report.done) == len(plan.changes) - 1
        rows = {r.record.name: r.status for r in planned(dns_env, desired).rows}
        assert rows["web2.infr.example.com"] is Status.MISSING  # still ours, not FOREIGN

        plan, report, _ = fix(dns_env, desired)
        assert report.ok and [str(c) for c in plan.changes] == ["create web2.infr.example.com 300 A 192.0.2.2"]
        assert planned(dns_env, desired).empty


# --- the emulated HTTP providers --------------------------------------------------------------

VULTR_KEY = "vultr-test-key-0123456789"
RAGE4_ACCOUNT, RAGE4_KEY = "admin@example.com", "rage4-test-key-0123456789"


def no_sleep(seconds: float) -> None:
    """Backoff and request spacing cost no time in tests."""


def vultr_env() -> DnsEnv:
    return DnsEnv(
        "vultr",
        lambda: VultrProvider(VULTR_KEY, sleep=no_sleep),
        lambda: VultrProvider("wrong-key", sleep=no_sleep),
        ("vultr refused the credentials (HTTP 401)", "dnsVultrAPIKey"),
    )


def rage4_env() -> DnsEnv:
    return DnsEnv(
        "rage4",
        lambda: Rage4Provider(RAGE4_ACCOUNT, RAGE4_KEY, sleep=no_sleep),
        lambda: Rage4Provider(RAGE4_ACCOUNT, "wrong-key", sleep=no_sleep),
        ("rage4 refused the credentials (HTTP 401)", "dnsRage4Key"),
    )


@pytest.fixture(params=["vultr", "rage4"])
def dns_env(request: pytest.FixtureRequest) -> DnsEnv:
    request.getfixturevalue(request.param)  # the emulator answering this provider's API
    return vultr_env() if request.param == "vultr" else rage4_env()


class TestEmulatedProviders(ProviderContract):
    """The contract against Vultr and Rage4 as their documented APIs answer."""


def test_emulated_zone_agrees_with_the_provider_listing(vultr: VultrEmulator, rage4: Rage4Emulator) -> None:
    """The emulators' own reading of their state matches what the providers list."""
    for env, emulator in ((vultr_env(), vultr), (rage4_env(), rage4)):
        fix(env, hosts(("web1", "192.0.2.1")))
        assert sorted(map(str, env.records())) == sorted(map(str, emulator.state()))
