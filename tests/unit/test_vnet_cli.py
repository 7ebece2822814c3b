"""`infr vnet` through the CLI: join, peers add/list/remove (IP mobility), status, hosts, apply; `lxc zone`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infr.errors import ConflictError, NotFoundError, RemoteError, UsageError
from infr.state.session import Session
from infr.vnet import join, members, status
from tests.conftest import run_cli, seed_host, seed_lxc

KEY_A = "A" * 43 + "="
KEY_C = "C" * 43 + "="
KEY_P = "P" * 43 + "="


def ok(root: Path, *args: str) -> Any:
    result = run_cli(root, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def test_peers_add_update_keeps_address_and_remove(state_dir: Path) -> None:
    ok(state_dir, "vnet", "peers", "add", "bob-laptop", "--public-key", KEY_P, "--ip", "10.8.3.3")
    moved = ok(state_dir, "vnet", "peers", "add", "bob-laptop", "--public-key", KEY_C)
    assert "new key, same address 10.8.3.3" in moved.output
    listed = json.loads(ok(state_dir, "vnet", "peers", "-o", "json").stdout)
    assert [(p["name"], p["vnet_ip"], p["public_key"]) for p in listed] == [("bob-laptop", "10.8.3.3", KEY_C)]
    taken = run_cli(state_dir, "vnet", "peers", "add", "eve", "--public-key", KEY_C)
    assert isinstance(taken.exception, ConflictError) and "already peer bob-laptop's" in str(taken.exception)
    ok(state_dir, "vnet", "peers", "remove", "bob-laptop")
    assert "bob-laptop" not in run_cli(state_dir, "vnet", "peers", "list").output


def test_a_new_key_cannot_also_move_the_address(state_dir: Path) -> None:
    ok(state_dir, "vnet", "peers", "add", "bob-laptop", "--public-key", KEY_P, "--ip", "10.8.3.3")
    moved = run_cli(state_dir, "vnet", "peers", "add", "bob-laptop", "--public-key", KEY_C, "--ip", "10.8.3.4")
    assert isinstance(moved.exception, ConflictError) and "already has 10.8.3.3" in str(moved.exception)
    same = ok(state_dir, "vnet", "peers", "add", "bob-laptop", "--public-key", KEY_C, "--ip", "10.8.3.3")
    assert "new key, same address 10.8.3.3" in same.output


def test_peers_add_checks_key_name_and_address(state_dir: Path) -> None:
    seed_host(state_dir, "a", "203.0.113.1", wg_public_key=KEY_A)  # 10.8.1.1
    bad_key = run_cli(state_dir, "vnet", "peers", "add", "me", "--public-key", "hello")
    assert isinstance(bad_key.exception, UsageError) and "wg pubkey" in str(bad_key.exception)
    hosts_key = run_cli(state_dir, "vnet", "peers", "add", "me", "--public-key", KEY_A)
    assert "already host a's" in str(hosts_key.exception)
    hosts_name = run_cli(state_dir, "vnet", "peers", "add", "a", "--public-key", KEY_P)
    assert isinstance(hosts_name.exception, ConflictError)
    hosts_ip = run_cli(state_dir, "vnet", "peers", "add", "me", "--public-key", KEY_P, "--ip", "10.8.1.1")
    assert hosts_ip.exit_code != 0 and "10.8.1.1" in str(hosts_ip.exception)
    assert Session(state_dir).inventory().peers == {}


def test_peers_lists_by_default_and_says_when_there_are_none(state_dir: Path) -> None:
    assert "no peers yet" in run_cli(state_dir, "vnet", "peers").stderr
    ok(state_dir, "vnet", "peers", "add", "zed", "--public-key", KEY_P)
    ok(state_dir, "vnet", "peers", "add", "amy", "--public-key", KEY_C)
    table = ok(state_dir, "vnet", "peers").stdout.splitlines()
    assert table[0].split() == ["NAME", "PRIVATE", "IP", "PUBLIC", "KEY", "ADDED"]
    assert [line.split()[0] for line in table[2:]] == ["amy", "zed"]  # under the ==== line
    missing = run_cli(state_dir, "vnet", "peers", "remove", "bob")
    assert isinstance(missing.exception, NotFoundError) and "known peers: amy, zed" in str(missing.exception)


def test_join_writes_a_private_config_outside_git(state_dir: Path) -> None:
    seed_host(state_dir, "a", "203.0.113.1", wg_public_key=KEY_A)
    joined = ok(state_dir, "vnet", "join", "me", "--ip", "10.8.2.2")
    config = state_dir / "wireguard" / "me" / "infrwg0.conf"
    assert f"sudo wg-quick up {config}" in joined.output
    assert config.stat().st_mode & 0o777 == 0o600
    lines = config.read_text().splitlines()
    assert "Address = 10.8.2.2/32" in lines and f"PublicKey = {KEY_A}" in lines
    assert "Endpoint = 203.0.113.1:51820" in lines and "PersistentKeepalive = 25" in lines
    private = next(line.split(" = ")[1] for line in lines if line.startswith("PrivateKey = "))
    tracked = subprocess.run(["git", "-C", str(state_dir), "status", "--porcelain", "--ignored"], capture_output=True)
    assert b"!! wireguard/" in tracked.stdout  # ignored, so never committed
    history = subprocess.run(["git", "-C", str(state_dir), "log", "-p"], capture_output=True, text=True).stdout
    assert private not in history and private not in joined.output
    assert "10.8.2.2\tme.vnet.example.com me" in ok(state_dir, "vnet", "hosts").output


def test_join_again_here_keeps_the_key_and_rewrites_the_config(state_dir: Path) -> None:
    ok(state_dir, "vnet", "join", "me")
    config = state_dir / "wireguard" / "me" / "infrwg0.conf"
    first = Session(state_dir).inventory().peers["me"]
    assert "Endpoint" not in config.read_text()  # no host in the mesh yet
    seed_host(state_dir, "a", "203.0.113.1", wg_public_key=KEY_A)
    again = ok(state_dir, "vnet", "join", "me")
    assert Session(state_dir).inventory().peers["me"] == first
    assert f"same key, same address {first.vnet_ip}; config rewritten" in again.output
    assert "Endpoint = 203.0.113.1:51820" in config.read_text()
    assert join.public_key_of(join._local_private_key(config) or "") == first.public_key


def test_join_on_a_new_machine_keeps_the_address(state_dir: Path) -> None:
    ok(state_dir, "vnet", "join", "me")
    first = Session(state_dir).inventory().peers["me"]
    (state_dir / "wireguard" / "me" / "infrwg0.conf").unlink()  # another machine: no config of ours there
    again = ok(state_dir, "vnet", "join", "me")
    second = Session(state_dir).inventory().peers["me"]
    assert second.vnet_ip == first.vnet_ip and second.public_key != first.public_key
    assert f"new key, same address {first.vnet_ip}" in again.output


def test_hosts_block_covers_hosts_lxcs_and_peers(state_dir: Path) -> None:
    seed_host(state_dir, "a", "203.0.113.1")  # 10.8.1.1
    seed_lxc(state_dir, "web", "a")  # 10.8.1.2
    ok(state_dir, "vnet", "peers", "add", "amy", "--public-key", KEY_P)  # 10.8.1.3
    assert ok(state_dir, "vnet", "hosts").stdout.splitlines() == [
        "# infr vnet: begin",
        "10.8.1.1\ta.vnet.example.com a",
        "10.8.1.2\tweb.vnet.example.com web",
        "10.8.1.3\tamy.vnet.example.com amy",
        "# infr vnet: end",
    ]


ROWS = [
    {
        "host": "a",
        "peer": "b",
        "vnet_ip": "10.8.1.2",
        "endpoint": "203.0.113.2:51820",
        "handshake_age": 30,
        "handshake": "30s ago",
        "stale": False,
        "rx_bytes": 5000,
        "tx_bytes": 6000,
    },
    {
        "host": "a",
        "peer": "amy",
        "vnet_ip": "10.8.1.3",
        "endpoint": "",
        "handshake_age": None,
        "handshake": "never (stale)",
        "stale": True,
        "rx_bytes": 0,
        "tx_bytes": 0,
    },
]


def test_status_table_and_json(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "status", lambda session: (ROWS, {}))
    table = ok(state_dir, "vnet", "status").stdout.splitlines()
    assert table[0].split() == ["HOST", "PEER", "PRIVATE", "IP", "ENDPOINT", "HANDSHAKE", "BYTES", "IN", "BYTES", "OUT"]
    assert table[2].split() == ["a", "b", "10.8.1.2", "203.0.113.2:51820", "30s", "ago", "5000", "6000"]
    assert "never (stale)" in table[3]
    assert json.loads(ok(state_dir, "vnet", "status", "-o", "json").stdout) == ROWS


def test_status_exits_1_naming_the_unreachable_hosts(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "status", lambda session: (ROWS[:1], {"b": "connection refused"}))
    result = run_cli(state_dir, "vnet", "status")
    assert result.exit_code == 1 and "b: unreachable: connection refused" in result.stderr
    assert "203.0.113.2:51820" in result.stdout


def test_apply_fails_naming_the_hosts_it_missed(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(members, "deploy", lambda session, report: {"b": "connection refused"})
    result = run_cli(state_dir, "vnet", "apply")
    assert isinstance(result.exception, RemoteError) and "did not reach b" in str(result.exception)


def test_peer_changes_are_applied_to_the_hosts(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[set[str]] = []
    monkeypatch.setattr(members, "deploy", lambda session, report: applied.append(set(session.inventory().peers)))
    ok(state_dir, "vnet", "peers", "add", "amy", "--public-key", KEY_P)
    ok(state_dir, "vnet", "peers", "remove", "amy")
    assert applied == [{"amy"}, set()]  # each after its commit: a removed peer leaves every host at once


def test_lxc_zone_is_recorded(state_dir: Path) -> None:
    seed_host(state_dir, "a", "203.0.113.1")
    seed_lxc(state_dir, "web", "a")
    assert run_cli(state_dir, "lxc", "web", "zone", "shop").exit_code == 0
    assert '"zone": "shop"' in run_cli(state_dir, "lxc", "web", "-o", "json").output
    bad = run_cli(state_dir, "lxc", "web", "zone", "Bad_Zone")
    assert "zone 'Bad_Zone'" in str(bad.exception)
    assert "zone shop -> none" in run_cli(state_dir, "lxc", "web", "zone", "none").output
