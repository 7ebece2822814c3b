"""Fixtures for the integration tests: real servers on loopback, stopped by PID after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration import dnsservers


@pytest.fixture(params=["powerdns", "bind", "knot"])
def dns_server(request: pytest.FixtureRequest) -> Iterator[dnsservers.DnsServer]:
    """A fresh PowerDNS, BIND or Knot serving example.com, its directory removed afterwards."""
    server = dnsservers.start(request.param)
    try:
        yield server
    finally:
        server.stop()
