"""What the HTTP providers do beyond the contract: paging, rate limits, retries, API refusals."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests

from infr.errors import ProviderError
from infr.providers.base import Record, quote_txt, unquote_txt
from infr.providers.rage4 import Rage4Provider
from infr.providers.vultr import MIN_INTERVAL, VultrProvider
from tests.unit.providers.dns_fakes import Rage4Emulator, VultrEmulator, _json
from tests.unit.providers.test_contract import (
    RAGE4_ACCOUNT,
    RAGE4_KEY,
    VULTR_KEY,
    ZONE,
    fix,
    hosts,
    planned,
    vultr_env,
)

LIST = "GET /v2/domains/example.com/records"


class FakeTime:
    """A clock that moves only when slept on (or by `tick` a read), recording every sleep."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now, self.tick = 1000.0, tick
        self.sleeps: list[float] = []

    def clock(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def vultr_provider(fake: FakeTime, key: str = VULTR_KEY) -> VultrProvider:
    return VultrProvider(key, sleep=fake.sleep, clock=fake.clock)


# --- Vultr -----------------------------------------------------------------------------------


def test_vultr_pages_through_zones_over_500_records(vultr: VultrEmulator) -> None:
    for i in range(1203):
        vultr.seed(f"h{i}.infr", "A", "192.0.2.1")
    records = vultr_provider(FakeTime(tick=1)).list_records(ZONE)
    assert len(records) == len(set(records)) == 1205  # NS, www and 1203 hosts, none twice
    assert vultr.requests == [LIST] * 3  # 500 + 500 + 205


def test_vultr_429_waits_as_long_as_retry_after_says(vultr: VultrEmulator) -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    vultr.fail_next = [
        _json(429, {"error": "Rate limit exceeded", "status": 429}, {"Retry-After": "3"}),
        _json(429, {"error": "Rate limit exceeded", "status": 429}, {"Retry-After": later}),
        _json(429, {"error": "Rate limit exceeded", "status": 429}),
    ]
    fake = FakeTime(tick=1)
    assert len(vultr_provider(fake).list_records(ZONE)) == 2
    assert vultr.requests == [LIST] * 4
    assert fake.sleeps[0] == 3.0
    assert 28 <= fake.sleeps[1] <= 30  # an HTTP date, seconds from now
    assert fake.sleeps[2] == 2.0  # no Retry-After: backoff 0.5, 1, 2 … for the third try


def test_vultr_5xx_and_timeouts_are_retried_with_backoff(vultr: VultrEmulator) -> None:
    vultr.fail_next = [
        _json(503, {"error": "unavailable", "status": 503}),
        _json(500, {"error": "oops", "status": 500}),
        requests.ConnectTimeout("connect timed out"),
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError("connection reset"),
    ]
    fake = FakeTime(tick=1)
    assert len(vultr_provider(fake).list_records(ZONE)) == 2
    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_vultr_gives_up_after_six_tries_with_one_line(vultr: VultrEmulator) -> None:
    vultr.fail_next = [_json(502, {"error": "bad gateway", "status": 502})] * 6
    with pytest.raises(ProviderError) as failed:
        vultr_provider(FakeTime(tick=1)).list_records(ZONE)
    assert str(failed.value) == (
        "vultr API still failing after 6 tries: GET /domains/example.com/records: HTTP 502 bad gateway "
        "(try again later; the next `infr dns fix` finishes the job)"
    )


def test_a_post_whose_answer_timed_out_is_not_sent_twice(vultr: VultrEmulator) -> None:
    provider = vultr_provider(FakeTime(tick=1))
    vultr.fail_next = [requests.ReadTimeout("read timed out")]
    with pytest.raises(ProviderError, match="did not answer POST"):
        provider.create(ZONE, Record("web1.infr.example.com", "A", "192.0.2.1", 300))
    assert vultr.requests == ["POST /v2/domains/example.com/records"]


def test_vultr_requests_are_spaced_under_the_rate_limit(vultr: VultrEmulator) -> None:
    fake = FakeTime()  # no time passes between requests unless the provider waits
    provider = vultr_provider(fake)
    for i in range(5):
        provider.create(ZONE, Record(f"h{i}.infr.example.com", "A", "192.0.2.1", 300))
    assert fake.sleeps == [round(MIN_INTERVAL, 3)] * 4
    assert 1 / MIN_INTERVAL < 30  # Vultr's limit: 30 requests a second


def test_vultr_speaks_the_documented_shapes(vultr: VultrEmulator) -> None:
    provider = vultr_provider(FakeTime(tick=1))
    txt = Record("note.infr.example.com", "TXT", 'say "hi"', 300)
    provider.create(ZONE, txt)
    stored = next(r for r in vultr.records.values() if r["type"] == "TXT")
    assert stored["name"] == "note.infr" and stored["data"] == '"say \\"hi\\""'
    provider.update(ZONE, txt, Record(txt.name, "TXT", "bye", 600))
    assert stored["data"] == '"bye"' and stored["ttl"] == 600
    assert vultr.requests[-1].startswith("PATCH /v2/domains/example.com/records/")


def test_vultr_unknown_domain_is_one_line(vultr: VultrEmulator) -> None:
    with pytest.raises(ProviderError) as failed:
        vultr_provider(FakeTime(tick=1)).list_records("example.org")
    assert str(failed.value) == "vultr API refused GET /domains/example.org/records: HTTP 404 Invalid domain."


def test_api_refusals_fail_per_record_and_the_next_fix_finishes(vultr: VultrEmulator) -> None:
    env = vultr_env()
    desired = hosts(("web1", "192.0.2.1"), ("web2", "192.0.2.2"))
    vultr.refuse = {"web2.infr.example.com"}
    _, report, _ = fix(env, desired)
    assert [str(o) for o in report.failed] == [
        "failed: create web2.infr.example.com 300 A 192.0.2.2: vultr API refused POST "
        "/domains/example.com/records: HTTP 400 record web2.infr is not allowed"
    ]
    assert len(report.done) == 7

    vultr.refuse = set()
    _, report, _ = fix(env, desired)
    assert report.ok and len(report.done) == 1
    assert planned(env, desired).empty


# --- Rage4 -----------------------------------------------------------------------------------


def test_rage4_refusal_inside_a_200_answer_is_an_error(rage4: Rage4Emulator) -> None:
    rage4.refuse = {"web1.infr.example.com"}
    provider = Rage4Provider(RAGE4_ACCOUNT, RAGE4_KEY, sleep=lambda s: None)
    with pytest.raises(ProviderError) as refused:
        provider.create(ZONE, Record("web1.infr.example.com", "A", "192.0.2.1", 300))
    assert str(refused.value) == (
        "rage4 refused web1.infr.example.com 300 A 192.0.2.1: record web1.infr.example.com is not allowed"
    )


def test_rage4_unknown_domain_has_a_hint(rage4: Rage4Emulator) -> None:
    provider = Rage4Provider(RAGE4_ACCOUNT, RAGE4_KEY, sleep=lambda s: None)
    with pytest.raises(ProviderError, match="HTTP 404 Domain not found"):
        provider.list_records("example.org")


def test_rage4_retries_server_errors(rage4: Rage4Emulator) -> None:
    rage4.fail_next = [_json(500, {"status": "error", "code": 500, "reason": "busy"})]
    provider = Rage4Provider(RAGE4_ACCOUNT, RAGE4_KEY, sleep=lambda s: None)
    assert Record("www.example.com", "A", "192.0.2.80", 300) in provider.list_records(ZONE)


# --- helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "plain", 'with "quotes"', "back\\slash", "x" * 600])
def test_txt_quoting_round_trips(value: str) -> None:
    quoted = quote_txt(value)
    assert unquote_txt(quoted) == value
    assert all(len(part) <= 257 for part in quoted.split('" "'))


def test_every_api_call_is_logged_without_the_key(vultr: VultrEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="infr.dns")
    vultr_provider(FakeTime(tick=1)).list_records(ZONE)
    assert "vultr GET https://api.vultr.com/v2/domains/example.com/records?per_page=500 -> 200" in caplog.text
    assert VULTR_KEY not in caplog.text
