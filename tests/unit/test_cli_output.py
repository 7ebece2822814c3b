"""`-o json|yaml|csv|table` on every list and show command; JSON keys as in docs/json.md and the model."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from infr.backups import status as backups_status
from infr.cli.output import emit_rows
from infr.state.model import Backup, Host, Lxc
from infr.state.session import Session
from tests.conftest import clone_state, run_cli, seed_host, seed_lxc

HOST_KEYS = [f.name for f in dataclasses.fields(Host)]
LXC_KEYS = [f.name for f in dataclasses.fields(Lxc)]
BACKUP_KEYS = [f.name for f in dataclasses.fields(Backup)]
FRESHNESS_KEYS = [*BACKUP_KEYS, "newest", "age", "health", "error"]
KEY_KEYS = ["name", "type", "fingerprint", "comment", "key"]


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
    (["keys"], KEY_KEYS, 1),
    (["keys", "list"], KEY_KEYS, 1),
    (["backups"], BACKUP_KEYS, 1),
    (["backups", "list"], BACKUP_KEYS, 1),
    (["backup"], BACKUP_KEYS, 1),
    (["backup", "list"], BACKUP_KEYS, 1),
    (["-D", "tom", "backups", "-a"], FRESHNESS_KEYS, 1),
    (["-D", "tom", "backup", "list", "--ages"], FRESHNESS_KEYS, 1),
    (["dns"], ["fqdn", "type", "value", "ttl", "purpose", "status"], 8),
    (["dns", "list"], ["fqdn", "type", "value", "ttl", "purpose", "status"], 8),
    (["config"], ["key", "value", "source", "help"], None),
    (["config", "show"], ["key", "value", "source", "help"], None),
    (["config", "view"], ["key", "value", "source", "help"], None),
    (["config", "show", "dnsTTL"], ["key", "value", "source", "help"], 1),
    (["history"], ["commit", "date", "author", "message"], None),
]
SHOWS: list[tuple[list[str], list[str]]] = [
    (["host", "bob"], [*HOST_KEYS, "lxcs", "backups", "host_key_fingerprint"]),
    (["host", "bob", "show"], [*HOST_KEYS, "lxcs", "backups", "host_key_fingerprint"]),
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


# ---- backups: one meaning per JSON key (issue 12 item 22) ---------------------------------------


def pair_health(monkeypatch: pytest.MonkeyPatch, newest: datetime | None, health: str, error: str = "") -> None:
    """What `backups_status.status` would read from tom over SSH."""
    pair = backups_status.PairStatus("bob", "tom", newest, health, error)
    monkeypatch.setattr(backups_status, "status", lambda session, now=None: [pair])


@pytest.mark.parametrize(
    ("newest", "health", "error", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, tzinfo=UTC), "ok", "", {"newest": "2026-01-02T03:04+00:00", "error": None}),
        (None, "stale", "", {"newest": None, "age": None, "error": "no backup yet"}),
        (None, "unreachable", "connection refused", {"newest": None, "age": None, "error": "connection refused"}),
    ],
)
def test_a_pairs_freshness_reads_the_same_in_list_and_status(
    world: Path, monkeypatch: pytest.MonkeyPatch, newest: datetime | None, health: str, error: str, expected: dict
) -> None:
    """`status` is the pair's own (active, archived) in both; `health` is the freshness; absent is
    null. Before: `newest` was "" in one and null (or a crash: a datetime) in the other, and
    `status` meant active/archived in `backups list` but ok/stale in `backups status`."""
    pair_health(monkeypatch, newest, health, error)
    listed = json.loads(out(world, "backups", "-a", "-o", "json"))
    status = run_cli(world, "backups", "status", "-o", "json")
    assert status.exit_code == (0 if health == "ok" else 1), status.output
    assert json.loads(status.stdout) == listed
    assert (listed[0]["status"], listed[0]["health"]) == ("active", health)
    assert {key: listed[0][key] for key in expected} == expected
    assert yaml.safe_load(out(world, "backups", "-a", "-o", "yaml")) == listed


def test_an_archived_pair_has_null_freshness(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backups_status, "status", lambda session, now=None: [])
    with Session(world, command_line="test: archive").change() as change:
        change.set_backups([Backup("bob", "tom", status="archived", started="2026-01-01T00:00:00+00:00")])
    [row] = json.loads(out(world, "backups", "-a", "-o", "json"))
    assert row["status"] == "archived"
    assert [row[key] for key in ("newest", "age", "health", "error")] == [None, None, None, None]


# ---- tables never cut a name or an address (issue 12 item 23) ----------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,40}", fullmatch=True)
ADDRESSES = st.one_of(
    st.ip_addresses(network="198.51.100.0/24"),
    st.ip_addresses(network="203.0.113.0/24"),
    st.ip_addresses(network="2001:db8::/32"),
).map(str)
PROSE = st.lists(st.from_regex(r"[a-z]{1,12}", fullmatch=True), max_size=12).map(" ".join)


def table_at(width: int, rows: list[dict], columns: tuple[tuple[str, str], ...]) -> str:
    printed = io.StringIO()
    with mock.patch.dict("os.environ", {"COLUMNS": str(width)}), contextlib.redirect_stdout(printed):
        emit_rows(rows, columns, "table")
    return printed.getvalue()


@given(
    rows=st.lists(
        st.fixed_dictionaries({"name": NAMES, "ip": ADDRESSES, "vnet_ip": ADDRESSES, "note": PROSE}), min_size=1
    ),
    width=st.integers(min_value=10, max_value=200),
)
def test_a_table_shows_every_name_and_address_whole_at_any_width(rows: list[dict], width: int) -> None:
    columns = (("name", "NAME"), ("ip", "PUBLIC IP"), ("vnet_ip", "PRIVATE IP"), ("note", "NOTE"))
    printed = table_at(width, rows, columns)
    assert "…" not in printed
    lines = printed.splitlines()
    for row in rows:
        assert any(row["name"] in line and row["ip"] in line and row["vnet_ip"] in line for line in lines), printed
        assert row["note"].split() == [] or all(word in printed for word in row["note"].split())


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["hosts"], ["45.32.191.151", "45.32.191.152", "10.8.1.1"]),
        (["lxcs"], ["fozzie", "45.32.191.151", "10.8.1.3"]),
        (["backups"], ["bob", "tom", "2026-01-01T00:00:00+00:00"]),
    ],
)
def test_list_tables_on_a_40_column_terminal_cut_nothing(
    world: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], shown: list[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    printed = out(world, *command, "-o", "table")
    assert "…" not in printed and all(value in printed for value in shown), printed


def test_a_value_is_never_read_as_rich_markup() -> None:
    printed = table_at(80, [{"error": "[bold]refused[/bold] [Errno 111]"}], (("error", "ERROR"),))
    assert "[bold]refused[/bold] [Errno 111]" in printed
