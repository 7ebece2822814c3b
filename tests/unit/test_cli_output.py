"""`-o json|yaml|csv|table` on every list and show command; JSON keys as in docs/json.md and the model."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from infr.core.session import Session
from infr.state.model import Backup, Host, Lxc
from tests.conftest import clone_state, run_cli, seed_host, seed_lxc

HOST_KEYS = [f.name for f in dataclasses.fields(Host)]
LXC_KEYS = [f.name for f in dataclasses.fields(Lxc)]
BACKUP_KEYS = [f.name for f in dataclasses.fields(Backup)]


def seed(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151")
    seed_host(root, "tom", "45.32.191.152")
    seed_lxc(root, "fozzie", "bob", aliases=["www.example.org"])
    seed_lxc(root, "web", "tom")
    with Session(root, command_line="test: seed backup").change() as change:
        change.set_backups([Backup("bob", "tom", started="2026-01-01T00:00:00+00:00")])


@pytest.fixture
def world(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    root = clone_state(state_template("output", seed), tmp_path / "state")
    result = run_cli(root, "lxc", "fozzie", "add-tcp-forward", "2222", "22")
    assert result.exit_code == 0, (result.output, result.exception)
    return root


# (command, list or show, the keys of each JSON object, how many objects)
LISTS: list[tuple[list[str], list[str], int | None]] = [
    (["hosts"], HOST_KEYS, 2),
    (["hosts", "list"], HOST_KEYS, 2),
    (["lxcs"], [*LXC_KEYS, "public_ip"], 2),
    (["lxcs", "list"], [*LXC_KEYS, "public_ip"], 2),
    (["keys"], ["name", "type", "key", "short"], 1),
    (["keys", "list"], ["name", "type", "key", "short"], 1),
    (["backups"], BACKUP_KEYS, 1),
    (["backups", "list"], BACKUP_KEYS, 1),
    (["backup"], BACKUP_KEYS, 1),
    (["backup", "list"], BACKUP_KEYS, 1),
    (["dns"], ["fqdn", "type", "value", "ttl", "purpose", "status"], 8),
    (["dns", "list"], ["fqdn", "type", "value", "ttl", "purpose", "status"], 8),
    (["config"], ["key", "value", "source", "help"], None),
    (["config", "show"], ["key", "value", "source", "help"], None),
    (["config", "view"], ["key", "value", "source", "help"], None),
    (["config", "show", "dnsTTL"], ["key", "value", "source", "help"], 1),
    (["history"], ["commit", "date", "author", "message"], None),
]
SHOWS: list[tuple[list[str], list[str]]] = [
    (["host", "bob"], [*HOST_KEYS, "lxcs", "backups"]),
    (["host", "bob", "show"], [*HOST_KEYS, "lxcs", "backups"]),
    (["lxc", "fozzie"], LXC_KEYS),
    (["lxc", "fozzie", "show"], LXC_KEYS),
]


def out(root: Path, *args: str) -> str:
    result = run_cli(root, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


@pytest.mark.parametrize(("command", "keys", "count"), LISTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_list_command_speaks_every_format(
    world: Path, command: list[str], keys: list[str], count: int | None
) -> None:
    data = json.loads(out(world, *command, "-o", "json"))
    assert isinstance(data, list) and data
    if count is not None:
        assert len(data) == count
    assert all(list(item) == keys for item in data), data[0]
    assert yaml.safe_load(out(world, *command, "--format", "yaml")) == data
    table = list(csv.reader(io.StringIO(out(world, *command, "-o", "csv"))))
    assert len(table) == len(data) + 1
    assert all(column in keys for column in table[0])
    assert [row[0] for row in table[1:]] == [str(item[table[0][0]]) for item in data]
    rich = out(world, *command, "-o", "table")  # rich's table, even when piped
    assert "===" not in rich and all(str(item[table[0][0]])[:5] in rich for item in data)
    assert out(world, *command).splitlines()[1].startswith("===")  # plain text when piped


@pytest.mark.parametrize(("command", "keys"), SHOWS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_show_command_speaks_every_format(world: Path, command: list[str], keys: list[str]) -> None:
    data = json.loads(out(world, *command, "-o", "json"))
    assert list(data) == keys
    assert yaml.safe_load(out(world, *command, "-o", "yaml")) == data
    table = list(csv.reader(io.StringIO(out(world, *command, "-o", "csv"))))
    assert len(table) == 2 and table[1][0] == data["name"]
    assert out(world, *command, "-o", "table") == out(world, *command)


def test_json_values_match_the_state(world: Path) -> None:
    fozzie = json.loads(out(world, "lxc", "fozzie", "-o", "json"))
    assert fozzie["tcp_forwards"] == [{"host_port": 2222, "lxc_port": 22}]
    assert fozzie["aliases"] == ["www.example.org"]
    assert (fozzie["host"], fozzie["vnet_ip"], fozzie["http_port"]) == ("bob", "10.8.1.3", 80)
    lxcs = {row["name"]: row for row in json.loads(out(world, "lxcs", "-o", "json"))}
    assert lxcs["web"]["public_ip"] == "45.32.191.152"
    bob = json.loads(out(world, "host", "bob", "-o", "json"))
    assert bob["lxcs"] == ["fozzie"] and bob["backups"] == ["bob -> tom (active)"]
    csv_row = list(csv.reader(io.StringIO(out(world, "lxc", "fozzie", "-o", "csv"))))
    shown = dict(zip(*csv_row, strict=True))
    assert shown["distro_release"] == "debian bookworm" and shown["tcp_forwards_text"] == "2222 -> 22"


def test_an_unknown_format_is_a_usage_error(world: Path) -> None:
    result = run_cli(world, "hosts", "-o", "xml")
    assert result.exit_code == 2 and "'xml' is not one of" in result.output
