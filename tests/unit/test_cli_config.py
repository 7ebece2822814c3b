"""`infr config [show] | show NAME | view | set | unset | validate`, through click's runner."""

from __future__ import annotations

import json
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from infr.errors import UsageError, ValidationError
from infr.state.settings import SETTINGS
from tests.conftest import run_cli, snapshot


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def ok(root: Path, *args: str) -> str:
    result = run_cli(root, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def rows(root: Path, *args: str) -> dict[str, dict[str, str]]:
    return {row["key"]: row for row in json.loads(ok(root, *args, "-o", "json"))}


@pytest.mark.parametrize("command", [["config"], ["config", "show"], ["config", "view"]])
def test_config_show_lists_every_setting_with_its_source(state_dir: Path, command: list[str]) -> None:
    shown = rows(state_dir, *command)
    assert list(shown) == list(SETTINGS)
    assert shown["dnsDomain"] == {
        "key": "dnsDomain",
        "value": "example.com",
        "source": "config.toml",
        "help": SETTINGS["dnsDomain"].help,
    }
    assert (shown["dnsTTL"]["value"], shown["dnsTTL"]["source"]) == ("3600", "default")
    assert (shown["dnsProvider"]["value"], shown["dnsProvider"]["source"]) == ("", "")
    table = ok(state_dir, *command)
    assert table.splitlines()[0].split() == ["KEY", "VALUE", "SOURCE"]
    assert any(line.split() == ["dnsDomain", "example.com", "config.toml"] for line in table.splitlines())


def test_config_show_one_key(state_dir: Path) -> None:
    assert list(rows(state_dir, "config", "show", "dnsTTL")) == ["dnsTTL"]
    assert ok(state_dir, "config", "show", "dnsTTL").splitlines()[2].split() == ["dnsTTL", "3600", "default"]


def test_config_show_an_unknown_key_is_a_usage_error_with_a_suggestion(state_dir: Path) -> None:
    result = run_cli(state_dir, "config", "show", "dnsTTX")
    assert result.exit_code == 2
    assert "unknown config key 'dnsTTX'; did you mean dnsTTL? known keys: vnetNetwork, vnetPoolStart," in result.output


def test_config_set_changes_the_file_keeps_comments_and_commits(state_dir: Path) -> None:
    config = state_dir / "config.toml"
    config.write_text("# our team's settings\n" + config.read_text())
    git(state_dir, "commit", "-qam", "comment")
    commits = len(git(state_dir, "log", "--format=%h").split())
    assert ok(state_dir, "config", "set", "dnsTTL", "600") == "dnsTTL = 600\n"
    text = config.read_text()
    assert text.startswith("# our team's settings\n")
    assert tomllib.loads(text)["dnsTTL"] == 600
    assert len(git(state_dir, "log", "--format=%h").split()) == commits + 1
    assert git(state_dir, "status", "--porcelain") == ""
    assert rows(state_dir, "config")["dnsTTL"]["source"] == "config.toml"
    assert ok(state_dir, "config", "unset", "dnsTTL") == "dnsTTL unset\n"
    assert "dnsTTL" not in tomllib.loads(config.read_text())
    ttl = rows(state_dir, "config")["dnsTTL"]
    assert (ttl["value"], ttl["source"]) == ("3600", "default")


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["set", "dnsTTL", "abc"], UsageError, "dnsTTL must be a whole number, not 'abc'"),
        (["set", "dnsTTL", "5"], ValidationError, "dnsTTL 5 must be between 60 and 86400 seconds"),
        (["set", "dnsProvider", "godaddy"], UsageError, "dnsProvider must be one of vultr, rage4, powerdns, rfc2136"),
        (["set", "vnetPoolStart", "10.9.1.0"], ValidationError, "vnetPoolStart 10.9.1.0 is outside vnetNetwork"),
        (["set", "vnetPrefix", "infr"], ValidationError, "dnsPrefix and vnetPrefix must differ"),
        (["set", "dnsDomain", "www.example.com"], UsageError, "is not a registrable domain: use example.com"),
        (["set", "adminEmail", "nobody"], UsageError, "adminEmail 'nobody' is not an email address"),
        (["set", "debianMirror", "ftp://x"], UsageError, "is not an http:// or https:// URL"),
        (["set", "dnsttl", "600"], UsageError, "unknown config key 'dnsttl'; did you mean dnsTTL? known keys: "),
        (["set", "colour", "red"], UsageError, "unknown config key 'colour'; known keys: vnetNetwork, "),
        (["unset", "dnsDomain"], UsageError, "dnsDomain is required and cannot be unset"),
        (["unset", "dnsProvider"], UsageError, "dnsProvider is not set"),
        (["unset", "dnsVultrAPIKey"], UsageError, "dnsVultrAPIKey is not set"),
        (["unset", "colour"], UsageError, "unknown config key 'colour'"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    state_dir: Path, args: list[str], error: type[Exception], message: str
) -> None:
    before = snapshot(state_dir)
    result = run_cli(state_dir, "config", *args)
    assert isinstance(result.exception, error), (result.output, result.exception)
    assert message in str(result.exception)
    assert snapshot(state_dir) == before


def test_an_unknown_key_lists_every_known_key(state_dir: Path) -> None:
    result = run_cli(state_dir, "config", "set", "colour", "red")
    assert str(result.exception).endswith("known keys: " + ", ".join(SETTINGS))


# ---- secrets ----------------------------------------------------------------------------------


def test_a_secret_goes_to_secrets_toml_is_masked_and_never_committed(state_dir: Path) -> None:
    head = git(state_dir, "rev-parse", "HEAD")
    out = ok(state_dir, "config", "set", "dnsVultrAPIKey", "VULTR-s3cret-123")
    assert out == "dnsVultrAPIKey set (stored in secrets.toml, never committed)\n"
    secrets = state_dir / "secrets.toml"
    assert tomllib.loads(secrets.read_text()) == {"dnsVultrAPIKey": "VULTR-s3cret-123"}
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert "dnsVultrAPIKey" not in (state_dir / "config.toml").read_text()
    assert git(state_dir, "rev-parse", "HEAD") == head  # nothing to commit
    assert git(state_dir, "status", "--porcelain") == ""
    for fmt in ("table", "json", "yaml", "csv"):
        assert "VULTR-s3cret-123" not in ok(state_dir, "config", "-o", fmt)
    shown = rows(state_dir, "config")["dnsVultrAPIKey"]
    assert (shown["value"], shown["source"]) == ("********", "secrets.toml")
    ok(state_dir, "config", "set", "dnsProvider", "vultr")  # later commits leave it out too
    assert "VULTR-s3cret-123" not in git(state_dir, "log", "--all", "-p")
    assert "secrets.toml" not in git(state_dir, "ls-files")
    assert "VULTR-s3cret-123" not in (state_dir / "log").read_text()
    ok(state_dir, "config", "unset", "dnsVultrAPIKey")
    assert tomllib.loads(secrets.read_text()) == {}


def test_a_secret_set_while_the_tree_is_dirty_commits_nothing(state_dir: Path) -> None:
    (state_dir / "hosts" / "notes.txt").write_text("someone's scratch file\n")
    head = git(state_dir, "rev-parse", "HEAD")
    ok(state_dir, "config", "set", "dnsVultrAPIKey", "VULTR-s3cret-456")
    assert git(state_dir, "rev-parse", "HEAD") == head
    assert "VULTR-s3cret-456" not in git(state_dir, "log", "--all", "--format=%B")


def test_a_secret_from_the_environment_is_shown_masked_with_its_source(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFR_VULTR_API_KEY", "from-env-789")
    shown = rows(state_dir, "config")["dnsVultrAPIKey"]
    assert (shown["value"], shown["source"]) == ("********", "env INFR_VULTR_API_KEY")
    assert "from-env-789" not in ok(state_dir, "config")


def test_a_secret_put_in_config_toml_by_hand_is_reported(state_dir: Path) -> None:
    config = state_dir / "config.toml"
    config.write_text(config.read_text() + 'dnsVultrAPIKey = "oops"\ndnsTTL = 1\ncolour = "red"\n')
    result = run_cli(state_dir, "config", "validate")
    assert isinstance(result.exception, ValidationError)
    problems = result.exception.problems
    assert "dnsVultrAPIKey is secret and belongs in secrets.toml, not config.toml" in problems
    assert "dnsTTL 1 must be between 60 and 86400 seconds" in problems
    assert any(p.startswith("unknown config key 'colour'") for p in problems)


def test_config_validate_says_the_state_is_valid(state_dir: Path) -> None:
    assert ok(state_dir, "config", "validate") == f"config and state in {state_dir} are valid\n"


def test_a_secret_without_a_value_is_asked_for_twice_without_echo(state_dir: Path) -> None:
    result = run_cli(state_dir, "config", "set", "smtpPassword", input="p a\"ss\\w\np a\"ss\\w\n")
    assert result.exit_code == 0, result.output
    assert "p a" not in result.output  # the prompt does not echo it
    assert tomllib.loads((state_dir / "secrets.toml").read_text()) == {"smtpPassword": 'p a"ss\\w'}
    mismatch = run_cli(state_dir, "config", "set", "smtpPassword", input="one\ntwo\n")
    assert mismatch.exit_code != 0


def test_a_plain_setting_without_a_value_is_refused(state_dir: Path) -> None:
    before = snapshot(state_dir)
    result = run_cli(state_dir, "config", "set", "smtpRelay")
    assert isinstance(result.exception, UsageError) and "no value given for smtpRelay" in str(result.exception)
    assert snapshot(state_dir) == before


# ---- an incomplete config.toml (issue 12 item 11) ---------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from infr.errors import InfrError, MissingSettingError  # noqa: E402
from infr.state.session import Session  # noqa: E402
from infr.state.settings import REQUIRED  # noqa: E402
from tests.conftest import DEFAULT_SETTINGS, seed_host  # noqa: E402

NEEDS_SETTINGS = (
    ("dns",),
    ("dns", "fix", "--dry-run"),
    ("vnet", "hosts"),
    ("vnet", "peers", "add", "laptop", "--public-key", "3Xu8yKSgcoeRRnZfXo6c5Mh1b8W/t+kTVxCl1KFv6W0="),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(missing=st.sets(st.sampled_from(REQUIRED), min_size=1), command=st.sampled_from(NEEDS_SETTINGS))
def test_a_missing_setting_is_named_with_the_command_that_sets_it(
    state_dir: Path, missing: set[str], command: tuple[str, ...]
) -> None:
    if not (state_dir / "hosts" / "bob.toml").exists():
        seed_host(state_dir, "bob", "203.0.113.10")
    config = state_dir / "config.toml"
    original = config.read_bytes()
    try:
        config.write_text("".join(f'{k} = "{v}"\n' for k, v in DEFAULT_SETTINGS.items() if k not in missing))
        result = run_cli(state_dir, *command)
        # A command that needs none of the missing settings may work; none may crash.
        assert result.exception is None or isinstance(result.exception, InfrError), (result.exception, result.output)
        if isinstance(result.exception, MissingSettingError):
            assert result.exception.key in missing | {"dnsProvider"}
            assert f"infr config set {result.exception.key} VALUE" in str(result.exception)
        # config set repairs it one key at a time
        for key in sorted(missing):
            fixed = run_cli(state_dir, "config", "set", key, DEFAULT_SETTINGS[key])
            assert fixed.exit_code == 0, (key, fixed.output, fixed.exception)
        assert {k: v for k, v in Session(state_dir).inventory().config.items()} == DEFAULT_SETTINGS
    finally:
        config.write_bytes(original)
        subprocess.run(["git", "-C", str(state_dir), "checkout", "-q", "--", "config.toml"], check=False)


def test_dns_fix_without_a_provider_names_the_setting(state_dir: Path) -> None:
    result = run_cli(state_dir, "dns", "fix")
    assert isinstance(result.exception, InfrError), result.exception
    assert "dnsProvider" in str(result.exception) and "infr config set dnsProvider" in str(result.exception)


def test_a_setting_that_is_not_set_is_one_error_whichever_way_it_is_read(state_dir: Path) -> None:
    config = state_dir / "config.toml"
    config.write_text('vnetNetwork = "10.8.0.0/16"\n')
    session = Session(state_dir)
    for read in (lambda: session.inventory().config["dnsDomain"], lambda: session.settings()["dnsDomain"]):
        with pytest.raises(MissingSettingError, match=r"dnsDomain is not set \(set it with 'infr config set dnsDomain"):
            read()
