"""The emulated Vultr and Rage4 APIs, each holding example.com with `www` outside infr's suffixes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from tests.unit.providers.dns_fakes import Rage4Emulator, VultrEmulator
from tests.unit.providers.test_contract import OUTSIDE, RAGE4_ACCOUNT, RAGE4_KEY, VULTR_KEY, ZONE


@pytest.fixture
def api_mock() -> Iterator[responses.RequestsMock]:
    """Every HTTP request of a test answered by the emulators registered on it, or refused."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def vultr(api_mock: responses.RequestsMock) -> VultrEmulator:
    emulator = VultrEmulator(api_mock, ZONE, VULTR_KEY)
    emulator.seed("", "NS", "ns1.vultr.com")
    emulator.seed("www", "A", OUTSIDE.value)
    return emulator


@pytest.fixture
def rage4(api_mock: responses.RequestsMock) -> Rage4Emulator:
    emulator = Rage4Emulator(api_mock, ZONE, RAGE4_ACCOUNT, RAGE4_KEY)
    emulator.seed(ZONE, "SOA", "ns1.r4ns.com. support.rage4.com. 1 10800 3600 604800 3600", 3600)
    emulator.seed(ZONE, "NS", "ns1.r4ns.com", 3600)
    emulator.seed(OUTSIDE.name, "A", OUTSIDE.value)
    return emulator
