"""The shortcuts that keep infr fast on a large state still catch what the slow paths did."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from infr.errors import ValidationError
from infr.state import schema
from infr.state.cache import _Files, _fingerprint
from infr.state.model import Host, Inventory, Lxc, TcpForward
from infr.state.session import Session
from infr.state.store import Store
from tests.conftest import DEFAULT_SETTINGS, seed_host, seed_lxc


def test_to_dict_equals_asdict() -> None:
    lxc = Lxc("web", "h1", "debian", "12", "10.8.1.2", aliases=["www.example.org"], tcp_forwards=[TcpForward(2222, 22)])
    host = Host("h1", "192.0.2.1", "10.8.1.1")
    for item in (lxc, host):
        assert schema.to_dict(item) == dataclasses.asdict(item)
        assert list(schema.to_dict(item)) == list(dataclasses.asdict(item))
    copied = schema.to_dict(lxc)
    copied["aliases"].append("x.example.org")
    assert lxc.aliases == ["www.example.org"], "lists are copied, as asdict does"


def _inventory() -> Inventory:
    inv = Inventory(config=dict(DEFAULT_SETTINGS))
    inv.hosts["h1"] = Host("h1", "192.0.2.1", "10.8.1.1")
    inv.lxcs["a"] = Lxc("a", "h1", "debian", "12", "10.8.1.2")
    inv.lxcs["b"] = Lxc("b", "h1", "debian", "12", "10.8.1.3")
    return inv


def test_a_partial_check_checks_the_changed_files_and_everything_global() -> None:
    inv = _inventory()
    inv.lxcs["a"].http_port = 0
    assert any("http_port" in p for p in schema.check_inventory(inv, {"lxcs/a.toml"}))
    # b's file is not part of the change: its fields are not looked at again ...
    assert schema.check_inventory(inv, {"lxcs/b.toml"}) == []
    # ... but references and uniqueness always are.
    inv.lxcs["b"].vnet_ip = "10.8.1.2"
    inv.lxcs["b"].host = "gone"
    problems = schema.check_inventory(inv, set())
    assert any("held by both" in p for p in problems)
    assert any("'gone' does not exist" in p for p in problems)
    # A config change re-checks every file (vnetNetwork decides what is inside it).
    inv = _inventory()
    inv.config["vnetNetwork"] = "10.9.0.0/16"
    assert len([p for p in schema.check_inventory(inv, {"config.toml"}) if "vnet_ip" in p and "outside" in p]) == 3


def test_a_change_is_still_refused_when_it_breaks_the_state(state_dir: Path) -> None:
    seed_host(state_dir, "h1", "192.0.2.1")
    a = seed_lxc(state_dir, "a", "h1")
    seed_lxc(state_dir, "b", "h1")
    with pytest.raises(ValidationError, match="held by both"), Session(state_dir).change() as change:
        lxc = change.inv.lxcs["b"]
        lxc.vnet_ip = a.vnet_ip
        change.put_lxc(lxc)
    assert Store(state_dir).load().lxcs["b"].vnet_ip != a.vnet_ip


def test_after_a_change_the_cache_is_used_and_matches_a_full_scan(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_host(state_dir, "h1", "192.0.2.1")
    seed_lxc(state_dir, "a", "h1")
    with Session(state_dir).change() as change:
        lxc = change.inv.lxcs["a"]
        lxc.http = "FORWARD"
        change.put_lxc(lxc)
    store = Store(state_dir)
    cache = store._read_cache()
    assert cache["fingerprint"] == _fingerprint(store._scan(_Files({}, 0)).records)
    assert cache["inventory"]["lxcs"][0]["http"] == "FORWARD"

    def no_parse(self: Store) -> Inventory:
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(Store, "_parse", no_parse)
    assert Store(state_dir).load().lxcs["a"].http == "FORWARD"


def test_a_file_edited_during_a_change_is_not_hidden_by_the_cache(state_dir: Path) -> None:
    seed_host(state_dir, "h1", "192.0.2.1")
    seed_lxc(state_dir, "a", "h1")
    seed_lxc(state_dir, "b", "h1")
    with Session(state_dir).change() as change:
        lxc = change.inv.lxcs["a"]
        lxc.http = "FORWARD"
        change.put_lxc(lxc)
        # Someone edits b by hand while this command runs.
        path = state_dir / "lxcs" / "b.toml"
        path.write_text(path.read_text().replace('https = "NONE"', 'https = "FORWARD"') + "\n")
    inventory = Store(state_dir).load()
    assert inventory.lxcs["a"].http == "FORWARD"
    assert inventory.lxcs["b"].https == "FORWARD"


def test_a_cache_from_another_model_is_rebuilt(state_dir: Path) -> None:
    seed_host(state_dir, "h1", "192.0.2.1")
    seed_lxc(state_dir, "a", "h1", tcp_forwards=[TcpForward(2222, 22)])
    store = Store(state_dir)
    assert store.load().lxcs["a"].tcp_forwards == [TcpForward(2222, 22)]
    data = json.loads(store.cache_path.read_bytes().partition(b"\n")[2])
    del data["inventory"]["lxcs"][0]["zone"]  # as if written before the field existed
    body = json.dumps(data).encode()  # with its checksum, as that other infr would write it
    store.cache_path.write_bytes(hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b"\n" + body)
    lxc = Store(state_dir).load().lxcs["a"]
    assert lxc.zone == "" and lxc.tcp_forwards == [TcpForward(2222, 22)]
