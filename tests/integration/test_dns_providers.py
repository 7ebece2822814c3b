"""The provider contract against real servers: PowerDNS through its HTTP API, BIND and Knot
through RFC 2136 updates and AXFR signed with TSIG. Each test gets its own server."""

from __future__ import annotations

import time

import dns.message
import dns.query
import pytest

from infr.dns import plan as dns_plan
from infr.errors import ProviderError
from infr.providers import load_provider
from infr.providers.base import Provider, Record
from infr.providers.powerdns import PowerDNSProvider
from infr.providers.rfc2136 import RFC2136Provider
from tests.integration import dnsservers
from tests.integration.dnsservers import DnsServer
from tests.unit.providers.test_contract import ZONE, DnsEnv, ProviderContract, fix, hosts

pytestmark = pytest.mark.integration


def rfc2136(server: DnsServer, secret: str, key_name: str = dnsservers.KEY_NAME) -> RFC2136Provider:
    return RFC2136Provider("127.0.0.1", key_name, secret, server.port, timeout=5)


@pytest.fixture
def dns_env(dns_server: DnsServer) -> DnsEnv:
    if dns_server.kind == "powerdns":
        return DnsEnv(
            "powerdns",
            lambda: PowerDNSProvider(dns_server.api_url, dnsservers.API_KEY),
            lambda: PowerDNSProvider(dns_server.api_url, "wrong-key"),
            ("powerdns refused the credentials (HTTP 401)", "dnsPowerDNSAPIKey"),
        )
    return DnsEnv(
        dns_server.kind,
        lambda: rfc2136(dns_server, dns_server.key_secret),
        lambda: rfc2136(dns_server, dnsservers.new_secret()),
        (f"127.0.0.1:{dns_server.port} refused the TSIG key {dnsservers.KEY_NAME}", "dnsRFC2136KeySecret"),
    )


class TestRealServers(ProviderContract):
    """The contract every provider passes, against PowerDNS, BIND and Knot."""


def resolve(server: DnsServer, name: str) -> set[str]:
    answer = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=server.port, timeout=2)
    return {rdata.to_text() for rrset in answer.answer for rdata in rrset}


def test_fixed_records_are_served(dns_server: DnsServer, dns_env: DnsEnv) -> None:
    """Not only listed back by the API: the server answers queries with them."""
    _, report, _ = fix(dns_env, hosts(("web1", "192.0.2.1")))
    assert report.ok
    assert resolve(dns_server, "web1.infr.example.com") == {"192.0.2.1"}
    assert resolve(dns_server, "web1.vnet.example.com") == {"10.8.1.1"}


@pytest.mark.parametrize("kind", ["powerdns", "bind", "knot"])
def test_servers_start_in_well_under_a_second(kind: str) -> None:
    """The best of three starts, so that a busy machine's hiccup is not taken for the server's cost."""
    times = []
    for _ in range(3):
        started = time.monotonic()
        server = dnsservers.start(kind)
        times.append(time.monotonic() - started)
        server.stop()
        assert server.proc.poll() is not None and not server.workdir.exists()
    assert min(times) < 0.5, f"{kind} took {min(times):.2f} s to answer"


@pytest.mark.parametrize("kind", ["bind", "knot"])
def test_unknown_tsig_key_is_refused_in_one_line(kind: str) -> None:
    server = dnsservers.start(kind)
    try:
        provider = rfc2136(server, dnsservers.new_secret(), key_name="nobody")
        with pytest.raises(ProviderError) as refused:
            provider.create(ZONE, Record("x.infr.example.com", "A", "192.0.2.9", 300))
        assert str(refused.value) == (
            f"127.0.0.1:{server.port} refused the TSIG key nobody (The peer didn't know the key we used) "
            "(check dnsRFC2136KeyName, dnsRFC2136KeySecret and dnsRFC2136KeyAlgorithm)"
        )
    finally:
        server.stop()


def test_zone_the_server_does_not_serve_is_one_line(dns_server: DnsServer, dns_env: DnsEnv) -> None:
    provider = dns_env.make()
    with pytest.raises(ProviderError) as listed:
        provider.list_records("other.test")
    with pytest.raises(ProviderError) as created:
        provider.create("other.test", Record("x.other.test", "A", "192.0.2.9", 300))
    for error in (listed.value, created.value):
        assert "\n" not in str(error)
        assert "other.test" in str(error)


def test_load_provider_builds_working_providers(dns_server: DnsServer) -> None:
    """The registry's settings reach the constructors: the CLI's path to a provider."""
    settings: dict[str, object]
    if dns_server.kind == "powerdns":
        name = "powerdns"
        settings = {"dnsPowerDNSURL": dns_server.api_url, "dnsPowerDNSAPIKey": dnsservers.API_KEY}
    else:
        name = "rfc2136"
        settings = {
            "dnsRFC2136Server": "127.0.0.1",
            "dnsRFC2136Port": dns_server.port,  # an int from config.toml
            "dnsRFC2136KeyName": dnsservers.KEY_NAME,
            "dnsRFC2136KeySecret": dns_server.key_secret,
        }
    provider: Provider = load_provider(name, settings)
    desired = hosts(("web1", "192.0.2.1"))
    plan = dns_plan.compute_plan(desired, provider.list_records(ZONE), ("infr.example.com", "vnet.example.com"), "c")
    assert dns_plan.apply(provider, ZONE, plan).ok


def test_a_record_the_server_cannot_take_fails_alone(dns_server: DnsServer, dns_env: DnsEnv) -> None:
    desired = [*hosts(("web1", "192.0.2.1")), Record("bad.infr.example.com", "A", "not-an-address", 300)]
    _, report, _ = fix(dns_env, desired)
    assert [str(o.change.record) for o in report.failed] == ["bad.infr.example.com 300 A not-an-address"]
    assert "\n" not in report.failed[0].error
    assert len(report.done) == 5  # web1's two records and markers, and bad's marker
    assert resolve(dns_server, "web1.infr.example.com") == {"192.0.2.1"}
