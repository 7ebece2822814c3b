"""`infr dns` and `infr dns fix` end to end: the installed CLI against real PowerDNS, BIND and Knot."""

from __future__ import annotations

import json
from pathlib import Path

import dns.query
import dns.tsigkeyring
import dns.update
import pytest

from tests.conftest import run_infr, seed_host, seed_lxc, snapshot
from tests.integration import dnsservers

pytestmark = pytest.mark.integration


def configure(root: Path, server: dnsservers.DnsServer, secret: str | None = None) -> None:
    if server.kind == "powerdns":
        settings = {
            "dnsProvider": "powerdns",
            "dnsPowerDNSURL": server.api_url,
            "dnsPowerDNSAPIKey": secret or dnsservers.API_KEY,
        }
    else:
        settings = {
            "dnsProvider": "rfc2136",
            "dnsRFC2136Server": "127.0.0.1",
            "dnsRFC2136Port": str(server.port),
            "dnsRFC2136KeyName": dnsservers.KEY_NAME,
            "dnsRFC2136KeySecret": secret or server.key_secret,
        }
    for key, value in settings.items():
        result = run_infr(root, "config", "set", key, value)
        assert result.returncode == 0, result.stderr


def statuses(root: Path) -> dict[str, str]:
    result = run_infr(root, "dns", "-o", "json")
    assert result.returncode == 0, result.stderr
    return {f"{row['fqdn']} {row['type']}": row["status"] for row in json.loads(result.stdout)}


def add_foreign(server: dnsservers.DnsServer, name: str, address: str) -> None:
    """Someone else's record under infr's suffix, made straight at the server."""
    if server.kind == "powerdns":
        import requests

        rrset = {
            "name": f"{name}.{server.zone}.",
            "type": "A",
            "ttl": 300,
            "changetype": "REPLACE",
            "records": [{"content": address, "disabled": False}],
        }
        response = requests.patch(
            f"{server.api_url}/api/v1/servers/localhost/zones/{server.zone}.",
            headers={"X-API-Key": dnsservers.API_KEY},
            json={"rrsets": [rrset]},
            timeout=5,
        )
        assert response.status_code == 204, response.text
        return
    keyring = dns.tsigkeyring.from_text({f"{dnsservers.KEY_NAME}.": server.key_secret})
    update = dns.update.UpdateMessage(f"{server.zone}.", keyring=keyring, keyalgorithm="hmac-sha256")
    update.replace(name, 300, "A", address)
    dns.query.tcp(update, "127.0.0.1", port=server.port, timeout=5)


@pytest.fixture
def fleet(state_dir: Path) -> Path:
    seed_host(state_dir, "bob", "198.51.100.11")
    seed_host(state_dir, "tom", "198.51.100.12")
    seed_lxc(state_dir, "fozzie", "bob")
    seed_lxc(state_dir, "kermit", "tom")
    return state_dir


def test_fix_creates_then_changes_nothing_and_leaves_foreign_records(
    fleet: Path, dns_server: dnsservers.DnsServer
) -> None:
    configure(fleet, dns_server)
    add_foreign(dns_server, "manual.infr", "198.51.100.99")
    before = statuses(fleet)
    assert before["bob.infr.example.com A"] == "MISSING"
    assert before["fozzie.vnet.example.com A"] == "MISSING"
    assert before["manual.infr.example.com A"] == "FOREIGN"

    dry = run_infr(fleet, "dns", "fix", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would create" in dry.stdout
    assert statuses(fleet) == before

    fixed = run_infr(fleet, "dns", "fix")
    assert fixed.returncode == 0, fixed.stderr
    after = statuses(fleet)
    wanted = [f"{n}.{s}.example.com A" for n in ("bob", "tom", "fozzie", "kermit") for s in ("infr", "vnet")]
    assert all(after[name] == "CORRECT" for name in wanted), after
    assert after["manual.infr.example.com A"] == "FOREIGN"

    again = run_infr(fleet, "dns", "fix")
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout


def test_removing_a_host_fixes_dns_by_itself(fleet: Path, dns_server: dnsservers.DnsServer) -> None:
    configure(fleet, dns_server)
    assert run_infr(fleet, "dns", "fix").returncode == 0
    removed = run_infr(fleet, "host", "tom", "remove", "--force")
    assert removed.returncode == 0, removed.stderr
    after = statuses(fleet)
    assert not any(name.startswith(("tom.", "kermit.")) for name in after), after
    assert after["bob.infr.example.com A"] == "CORRECT"


def test_a_wrong_key_is_one_clear_line_and_changes_nothing(fleet: Path, dns_server: dnsservers.DnsServer) -> None:
    wrong = "d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdA==" if dns_server.kind != "powerdns" else "wrong-api-key"
    configure(fleet, dns_server, secret=wrong)
    before = snapshot(fleet)
    result = run_infr(fleet, "dns", "fix")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("infr: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(fleet) == before
