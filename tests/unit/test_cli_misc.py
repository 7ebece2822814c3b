"""`infr dns`, `history`, `help`, `completion` and name completion from state, through click's runner."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import click
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


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_workdir_that_is_not_a_state_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    # Found by tests/unit/test_fuzz_cli.py: -w FILE was an internal error (the log's
    # directory could not be made), and -w DIR left a 'log' file in any directory.
    workdir = tmp_path / "not-a-state"
    workdir.write_text("x") if kind == "file" else workdir.mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as done:
        main(["-w", str(workdir), "hosts"])
    assert done.value.code == 1
    hint = "run 'infr init' first, or point -w / INFR_DIR at your state directory"
    assert capsys.readouterr().err.splitlines() == [f"infr: error: no infr state in {workdir} ({hint})"]
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("name", ["bob\x1b[2J", "bob\nINJECTED", "bob\u2028x", "bob\x85x"])
def test_an_error_shows_control_characters_as_escapes_on_one_line(
    world: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # Found by tests/unit/test_fuzz_cli.py: 'infr backup run NAME tom' echoed NAME raw, so a
    # name could clear the terminal or print a line that looks like infr's own.
    with pytest.raises(SystemExit) as done:
        main(["-w", str(world), "backup", "run", name, "tom"])
    err = capsys.readouterr().err
    escaped = name.encode("unicode_escape").decode()
    assert done.value.code == 1
    assert err.startswith(f"infr: error: {escaped} is not being backed up onto tom") and err.count("\n") == 1


def test_an_identity_too_long_for_a_file_name_is_no_internal_error(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by tests/unit/test_fuzz_cli.py: -i with a 5000-character name raised ENAMETOOLONG
    # while infr checked whether to remember it.
    with pytest.raises(SystemExit) as done:
        main(["-w", str(state_dir), "-i", "x" * 5000, "hosts"])
    assert done.value.code == 0, capsys.readouterr().err


def test_lab_refuses_an_ssh_key_file_that_is_not_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Found by tests/unit/test_fuzz_cli.py: a binary --ssh-key file was an internal error.
    key = tmp_path / "key.pub"
    key.write_bytes(b"\xff\xfe ssh-ed25519 \x00")
    with pytest.raises(SystemExit) as done:
        main(["-w", str(tmp_path / "state"), "lab", "up", "--ssh-key", str(key)])
    assert done.value.code == 2
    message = f"{key} is not a text file of SSH public keys (pass --ssh-key FILE.pub)"
    assert capsys.readouterr().err == f"infr: error: {message}\n"


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
    assert result.exit_code == 2 and "no command or guide 'lxc frobnicate'" in result.output


DOCS = Path(__file__).parents[2] / "docs"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda page: page.stem)
def test_help_topic_prints_its_docs_page(page: Path) -> None:
    """issue 12 item 22: --help pointed at docs/tutorial.md, which an installed infr did not have."""
    assert ok(None, "help", page.stem) == page.read_text(encoding="utf-8")


def test_help_lists_every_guide_with_its_title() -> None:
    text = ok(None, "help")
    guides = text.split("Guides (infr help TOPIC):\n")[1].splitlines()
    assert [line.split()[0] for line in guides] == sorted(page.stem for page in DOCS.glob("*.md"))
    assert "  tutorial                 Tutorial" in guides
    assert "'infr help tutorial'" in text


def test_every_group_with_a_list_runs_it_with_its_options_when_given_no_command() -> None:
    """`infr backups -a` was refused although `infr backups` is `infr backups list` (issue 12 item 22)."""
    from infr.cli.common import DefaultGroup

    def groups(command: click.Command, path: str) -> Iterator[tuple[str, click.Group]]:
        if isinstance(command, click.Group):
            yield path, command
            for name in command.list_commands(click.Context(command)):
                yield from groups(command.get_command(click.Context(command), name), f"{path} {name}")

    root = click.Context(cli)
    found = {path: group for name in COMMANDS for path, group in groups(cli.get_command(root, name), name)}
    listing = {path: group for path, group in found.items() if {"list", "show"} & set(group.commands)}
    named = {"host", "lxc"}  # 'infr host NAME' runs show: NamedGroup, tested with the show commands
    assert {path for path, group in listing.items() if not isinstance(group, DefaultGroup)} == named
    assert "backups" in listing and "vnet peers" in listing


def test_backups_takes_the_options_of_backups_list(world: Path) -> None:
    seed_backup(world)
    for group in ("backups", "backup"):
        short = run_cli(world, "-D", "tom", group, "-a", "-o", "json")
        assert short.exit_code == 0, short.output
        assert short.stdout == ok(world, "-D", "tom", group, "list", "-a", "-o", "json")
        assert json.loads(short.stdout)[0]["health"] == "unreachable"
    assert ok(world, "backups", "-o", "csv") == ok(world, "backups", "list", "-o", "csv")
    assert run_cli(world, "backups", "--help").stdout.startswith("Usage: infr backups [OPTIONS] COMMAND")


def seed_backup(root: Path) -> None:
    from infr.state.model import HOST_READY, Backup
    from infr.state.session import Session

    with Session(root, command_line="test: ready hosts and a backup pair").change() as change:
        for name in ("bob", "tom"):
            change.put_host(dataclasses.replace(change.inv.hosts[name], status=HOST_READY))
        change.set_backups([Backup("bob", "tom", started="2026-11-22T00:00:00+00:00")])


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
    import infr.routing.edits

    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(infr.routing.edits, "set_http", boom)
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


# ---- docs cover every command and setting (issue 12 item 22) ---------------------------------------


def synopsis_lines() -> list[str]:
    """The usage lines at the top of every docs page ('    infr GROUP ...')."""
    pages = [page.read_text().splitlines() for page in DOCS.glob("*.md")]
    return [line.strip() for lines in pages for line in lines if line.startswith("    infr ")]


def test_every_subcommand_is_in_a_docs_synopsis() -> None:
    words = [re.split(r"[\s\[\]|`(),]+", line) for line in synopsis_lines()]
    root = click.Context(cli)
    missing = []
    for name in COMMANDS:
        group = cli.get_command(root, name)
        if not isinstance(group, click.Group):
            continue
        spellings = {"backup", "backups"} if name in ("backup", "backups") else {name}  # one group, two names
        for sub in group.list_commands(click.Context(group)):
            if not any(line[1] in spellings and sub in line[2:] for line in words):
                missing.append(f"{name} {sub}")
    assert missing == []


def test_every_setting_is_in_the_config_page() -> None:
    from infr.state.settings import SETTINGS

    page = (DOCS / "config.md").read_text()
    cells = set(re.split(r"[\s|,]+", "\n".join(line for line in page.splitlines() if line.startswith("| "))))
    assert [key for key in SETTINGS if key not in cells] == []
