"""API calls for one `infr dns fix` against Vultr: N changes in a zone of M records.

    .venv/bin/python bench/bench_dns_calls.py

Vultr is emulated with `responses` (tests/unit/providers/dns_fakes.py), which counts every
request. The zone holds M records: a quarter are infr's A records, a quarter their
ownership markers, the rest names outside infr's suffixes. The fix creates, updates and
deletes N records in about equal thirds. A created or deleted record also writes or removes
its ownership marker (one TXT record per name and type), so the calls must be
N + marker writes + list pages, and nothing more: the record ids come from the listing.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import responses

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infr.dns import plan as dns_plan  # noqa: E402
from infr.providers.base import Record  # noqa: E402
from infr.providers.vultr import MIN_INTERVAL, PAGE_SIZE, VultrProvider  # noqa: E402
from tests.unit.providers.dns_fakes import VultrEmulator  # noqa: E402

ZONE, KEY, OWNER = "example.com", "bench-key", "bench"
SUFFIXES = ("infr.example.com", "vnet.example.com")
CASES = [(10, 100), (10, 2000), (100, 2000)]


def seed(emulator: VultrEmulator, zone_size: int) -> list[Record]:
    """Fill the zone with `zone_size` records; return infr's records among them."""
    owned = []
    for i in range(zone_size // 4):
        record = Record(f"h{i}.infr.{ZONE}", "A", f"192.0.2.{i % 250 + 1}", 300)
        marker = dns_plan.marker_for(record.name, "A", OWNER, 300)
        emulator.seed(f"h{i}.infr", "A", record.value)
        emulator.seed(f"_infr-owner.a.h{i}.infr", "TXT", f'"{marker.value}"')
        owned.append(record)
    for i in range(zone_size - 2 * len(owned)):
        emulator.seed(f"other{i}", "A", "198.51.100.1")
    return owned


def desired_after(owned: list[Record], changes: int) -> list[Record]:
    """The owned records with `changes` of them created, updated or deleted."""
    creates, updates = changes // 3, changes // 3
    deletes = changes - creates - updates
    kept = owned[deletes:]
    moved = [Record(r.name, r.type, "203.0.113.7", r.ttl) for r in kept[:updates]]
    new = [Record(f"new{i}.infr.{ZONE}", "A", "203.0.113.8", 300) for i in range(creates)]
    return moved + kept[updates:] + new


class FakeClock:
    """Request spacing is counted, not waited for: the benchmark counts calls."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(changes: int, zone_size: int) -> dict[str, float]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        emulator = VultrEmulator(mock, ZONE, KEY)
        owned = seed(emulator, zone_size)
        fake = FakeClock()
        provider = VultrProvider(KEY, sleep=fake.sleep, clock=fake.clock)
        started = time.perf_counter()
        plan = dns_plan.compute_plan(desired_after(owned, changes), provider.list_records(ZONE), SUFFIXES, OWNER)
        report = dns_plan.apply(provider, ZONE, plan)
        elapsed = time.perf_counter() - started
        assert report.ok, [str(o) for o in report.failed]
        pages = sum(1 for r in emulator.requests if r.startswith("GET "))
        return {
            "data": sum(1 for c in plan.changes if not c.marker),
            "markers": sum(1 for c in plan.changes if c.marker),
            "pages": pages,
            "expected_pages": math.ceil(zone_size / PAGE_SIZE),
            "calls": len(emulator.requests),
            "paced": fake.now,
            "cpu": elapsed,
        }


def main() -> int:
    header = (
        f"{'M zone':>7} {'N changes':>9} {'+ markers':>9} {'+ pages':>7} {'= expected':>10} "
        f"{'API calls':>9} {'ok':>3} {'paced s':>8} {'local s':>8}"
    )
    print(header)
    print("-" * len(header))
    failures = 0
    for changes, zone_size in CASES:
        r = run(changes, zone_size)
        expected = r["data"] + r["markers"] + r["pages"]
        ok = r["data"] == changes and r["pages"] == r["expected_pages"] and r["calls"] == expected
        failures += not ok
        print(
            f"{zone_size:>7} {int(r['data']):>9} {int(r['markers']):>9} {int(r['pages']):>7} {int(expected):>10} "
            f"{int(r['calls']):>9} {'yes' if ok else 'NO':>3} {r['paced']:>8.2f} {r['cpu']:>8.2f}"
        )
    print(
        f"\nN changes = data records created, updated or deleted; markers = ownership TXT records written\n"
        f"or removed with them (one per created or deleted name); pages = list calls at {PAGE_SIZE} records a page.\n"
        f"paced s = time spent spacing requests to {1 / MIN_INTERVAL:.0f}/s (Vultr allows 30/s); "
        f"local s = wall time of list, plan and apply against the emulator."
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
