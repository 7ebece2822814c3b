"""`infr dns`, `history`, `help`, `completion` and name completion from state, through click's runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.shell_completion import BashComplete

from infr.cli.main import COMMANDS, cli, main
from infr.errors import StateError
from tests.conftest import AUTHOR_EMAIL, AUTHOR_NAME, clone_state, run_cli, seed_host, seed_lxc

HINT = "DNS records are not automatically managed, set 'dnsProvider' and related config settings to enable."


def seed(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151")
    seed_lxc(root, "fozzie", "bob")
    seed_host(root, "tom", "45.32.191.152")
    seed_lxc(root, "frank", "tom")


@pytest.fixture
def world(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    return clone_state(state_template("misc", seed), tmp_path / "state")


def ok(root: Path | None, *args: str) -> str:
    result = run_cli(root, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


# ---- dns ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["dns"], ["dns", "list"]])
def test_dns_lists_infrs_four_kinds_of_record_and_the_hint(world: Path, command: list[str]) -> None:
    result = run_cli(world, *command)
    assert result.exit_code == 0, result.output
    rows = [line.split("  ") for line in result.stdout.splitlines()]
    cells = [[c.strip() for c in row if c.strip()] for row in rows]
    assert cells[0] == ["FQDN", "TYPE", "VALUE", "TTL", "FOR", "STATUS"]
    assert cells[1][0].startswith("====")
    assert cells[2:] == [
        ["bob.infr.example.com", "A", "45.32.191.151", "3600", "HOST PUBLIC IP", "???"],
        ["bob.vnet.example.com", "A", "10.8.1.1", "3600", "HOST PRIVATE IP", "???"],
        ["tom.infr.example.com", "A", "45.32.191.152", "3600", "HOST PUBLIC IP", "???"],
        ["tom.vnet.example.com", "A", "10.8.1.3", "3600", "HOST PRIVATE IP", "???"],
        ["fozzie.infr.example.com", "A", "45.32.191.151", "3600", "LXC HOST PUBLIC IP", "???"],
        ["fozzie.vnet.example.com", "A", "10.8.1.2", "3600", "LXC PRIVATE IP", "???"],
        ["frank.infr.example.com", "A", "45.32.191.152", "3600", "LXC HOST PUBLIC IP", "???"],
        ["frank.vnet.example.com", "A", "10.8.1.4", "3600", "LXC PRIVATE IP", "???"],
    ]
    assert result.stderr == f"\n{HINT}\n"


def test_dns_follows_the_config(world: Path) -> None:
    ok(world, "config", "set", "dnsTTL", "600")
    ok(world, "config", "set", "dnsPrefix", "pub")
    records = json.loads(ok(world, "dns", "-o", "json"))
    assert records[0] == {
        "fqdn": "bob.pub.example.com",
        "type": "A",
        "value": "45.32.191.151",
        "ttl": 600,
        "purpose": "HOST PUBLIC IP",
        "status": "???",
    }


def test_dns_on_an_empty_state_lists_nothing(state_dir: Path) -> None:
    assert json.loads(ok(state_dir, "dns", "-o", "json")) == []


# ---- history -------------------------------------------------------------------------------------


def test_history_shows_every_change_newest_first_with_its_author(world: Path) -> None:
    entries = json.loads(ok(world, "history", "-o", "json"))
    assert [e["message"] for e in entries] == [
        "test: seed lxc frank",
        "test: seed host tom",
        "test: seed lxc fozzie",
        "test: seed host bob",
        "infr init",
    ]
    assert {e["author"] for e in entries} == {f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"}
    assert [e["message"] for e in json.loads(ok(world, "history", "-n", "2", "-o", "json"))] == [
        "test: seed lxc frank",
        "test: seed host tom",
    ]
    table = ok(world, "history").splitlines()
    assert table[0].split() == ["COMMIT", "DATE", "AUTHOR", "COMMAND"]
    assert table[-1].endswith(f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>  infr init")


def test_history_without_state_says_so(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "none", "history")
    assert isinstance(result.exception, StateError)


# ---- help ------------------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    text = ok(None, "help")
    assert text.startswith("Usage: infr [OPTIONS] COMMAND [ARGS]...")
    for name, (_, _, line) in COMMANDS.items():
        assert any(row.split() == [name, *line.split()] for row in text.splitlines()), name
    assert ok(None, "--help") == text == ok(None, "-h")


def test_help_for_one_command() -> None:
    text = ok(None, "help", "lxc")
    assert text.startswith("Usage: infr lxc [OPTIONS] NAME [COMMAND] [ARGS]...")
    for sub in ("add-alias", "remove-alias", "http", "https", "http-port", "https-port", "add-tcp-forward"):
        assert sub in text
    assert ok(None, "help", "lxc", "add-tcp-forward").startswith("Usage: infr lxc add-tcp-forward")
    assert ok(None, "help", "config", "set").startswith("Usage: infr config set [OPTIONS] NAME [VALUE]")


def test_help_for_an_unknown_command_is_a_usage_error() -> None:
    result = run_cli(None, "help", "lxc", "frobnicate")
    assert result.exit_code == 2 and "no command 'lxc frobnicate'" in result.output


# ---- completion ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F _infr_completion infr"), ("zsh", "#compdef infr"), ("fish", "complete")],
)
def test_completion_prints_a_script(shell: str, marker: str) -> None:
    script = ok(None, "completion", shell)
    assert marker in script and "_INFR_COMPLETE" in script


def test_completion_for_an_unknown_shell_is_a_usage_error() -> None:
    assert run_cli(None, "completion", "tcsh").exit_code == 2


def complete(args: list[str], incomplete: str) -> list[str]:
    return [item.value for item in BashComplete(cli, {}, "infr", "_INFR_COMPLETE").get_completions(args, incomplete)]


def test_names_complete_from_state(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = ["-w", str(world)]
    assert complete([*w, "lxc"], "") == ["fozzie", "frank"]
    assert complete([*w, "lxc"], "fo") == ["fozzie"]
    assert complete([*w, "host"], "") == ["bob", "tom"]
    assert complete([*w, "keys", "remove"], "") == ["alice@laptop"]
    assert "add-alias" in complete([*w, "lxc", "fozzie"], "")
    assert complete([*w, "lxc", "fozzie"], "add-") == ["add-alias", "add-tcp-forward"]
    monkeypatch.setenv("INFR_DIR", str(world))  # the state directory from the environment
    assert complete(["lxc"], "f") == ["fozzie", "frank"]


def test_completion_on_a_broken_or_missing_state_offers_nothing(world: Path, tmp_path: Path) -> None:
    (world / "lxcs" / "fozzie.toml").write_text("name = \n")
    assert complete(["-w", str(world), "lxc"], "") == []
    assert complete(["-w", str(tmp_path / "none"), "host"], "") == []


# ---- internal errors ---------------------------------------------------------------------------------


def test_a_bug_is_one_line_with_the_traceback_in_the_state_log(
    world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import infr.core.lxcs

    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(infr.core.lxcs, "set_http", boom)
    with pytest.raises(SystemExit) as done:
        main(["-w", str(world), "lxc", "fozzie", "http", "FORWARD"])
    assert done.value.code == 70
    err = capsys.readouterr().err
    assert err == f"infr: internal error: RuntimeError('boom') (a bug; the traceback is in the log, {world / 'log'})\n"
    assert "Traceback" in (world / "log").read_text()


def test_a_bug_without_a_state_directory_prints_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    import click.shell_completion

    def boom(shell: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(logging.getLogger("infr"), "handlers", [])
    monkeypatch.setattr(click.shell_completion, "get_completion_class", boom)
    with pytest.raises(SystemExit) as done:
        main(["completion", "bash"])
    assert done.value.code == 70
    assert capsys.readouterr().err == (
        "infr: internal error: RuntimeError('boom') (a bug; please report it with the command line)\n"
    )
