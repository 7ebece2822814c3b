"""Secrets on the command line and the order of `hosts add` (issue 12 items 5, 9, 10, 19).

The recorded command line (commit message, `infr history`, the lock's note, the operation log
and its -v echo) never holds the root password of `hosts add` nor a value `config set` may have
meant as a secret; errors never echo such a value; `hosts add` checks everything before it asks,
records or connects, and refuses installer and proxy URLs that are not one plain URL.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from infr.cli.main import command_line
from infr.errors import RemoteError
from infr.hosts import adopt as hosts_adopt
from infr.hosts.boot import preseed as hosts_preseed
from infr.state.settings import SETTINGS
from tests.conftest import run_cli, seed_host, seed_lxc, snapshot

SECRET_KEYS = sorted(k for k, s in SETTINGS.items() if s.secret)
PLAIN_KEYS = sorted(k for k, s in SETTINGS.items() if not s.secret)
# Marked, so that "not in" cannot be fooled by a short secret that happens to be in a word.
SECRET = st.text(st.characters(blacklist_characters="\0"), max_size=12).map(lambda t: f"Zq9{t}")
GLOBALS = st.sampled_from([[], ["-v"], ["-w", "config"], ["-D", "hosts,set", "--lock-timeout", "3"]])


def recorded(argv: list[str]) -> str:
    return command_line(argv)


@given(prefix=GLOBALS, password=SECRET, form=st.integers(0, 5), adopt=st.booleans())
# A password ending in 'p', attached to -p: read once as a cluster like -yp (found after the merge).
@example(prefix=[], password="Zq9p", form=3, adopt=False)
@example(prefix=[], password="Zq9yp", form=5, adopt=True)
def test_the_root_password_is_masked_in_the_recorded_command_line(
    prefix: list[str], password: str, form: int, adopt: bool
) -> None:
    given_as = [
        ["-p", password],
        ["--password", password],
        [f"--password={password}"],
        [f"-p{password}"],
        ["-yp", password],
        [f"-yp{password}"],
    ][form]
    if password.startswith("-") and given_as in (["-p", password], ["--password", password], ["-yp", password]):
        return  # click reads that as -p alone (asked) followed by an option
    argv = [*prefix, "hosts", "add", *(["--adopt"] if adopt else []), *given_as, "bob", "203.0.113.10"]
    line = recorded(argv)
    assert "Zq9" not in line and "********" in line
    assert line.endswith("bob 203.0.113.10")


@given(prefix=GLOBALS, key=st.sampled_from(SECRET_KEYS), value=SECRET, slip=st.integers(0, 3))
def test_a_value_config_set_may_have_meant_as_secret_is_masked(
    prefix: list[str], key: str, value: str, slip: int
) -> None:
    words = [[key, value], [key.lower(), value], [key.upper(), value], [f"{key}={value}"]][slip]
    line = recorded([*prefix, "config", "set", *words])
    assert "Zq9" not in line and "********" in line


@given(key=st.sampled_from(PLAIN_KEYS), value=st.text(st.characters(blacklist_characters="\0-"), min_size=1))
def test_a_known_plain_setting_is_recorded_as_typed(key: str, value: str) -> None:
    assert recorded(["config", "set", key, value]) == f"infr config set {key} {value}"


@pytest.mark.parametrize("key", ["smtpPassword", "dnsVultrAPIKey", "smtppassword", "nosuchkey"])
@pytest.mark.parametrize("form", ["KEY=VALUE", "KEY VALUE WORD", "KEY VALUE"])
def test_config_set_never_echoes_a_value_in_its_error(state_dir: Path, key: str, form: str) -> None:
    words = {"KEY=VALUE": [f"{key}=Zq9secret"], "KEY VALUE WORD": [key, "Zq9secret", "Zq9more"]}
    args = words.get(form, [key, "Zq9secret"])
    result = run_cli(state_dir, "config", "set", *args)
    if form == "KEY VALUE" and key in SETTINGS:
        assert result.exit_code == 0  # the right spelling: stored, masked, never committed
        return
    assert result.exit_code != 0
    assert "Zq9" not in result.output + str(result.exception)


def test_config_set_key_equals_value_says_how_to_write_it(state_dir: Path) -> None:
    result = run_cli(state_dir, "config", "set", "smtpPassword=Zq9secret")
    assert (
        str(result.exception)
        == "'smtpPassword=...': the value goes after a space, not '=' (infr config set smtpPassword VALUE)"
    )


def infr_logged(state_dir: Path, monkeypatch: pytest.MonkeyPatch, *args: str, input: str | None = None) -> Any:
    """run_cli with sys.argv as the real program has it: the recorded command line comes from there."""
    monkeypatch.setattr(sys, "argv", ["infr", "-w", str(state_dir), *args])
    return run_cli(state_dir, *args, input=input)


def recorded_everywhere(state_dir: Path) -> str:
    git_log = subprocess.run(["git", "-C", str(state_dir), "log", "--format=%B"], capture_output=True, text=True)
    return git_log.stdout + (state_dir / "log").read_text()


def test_config_set_with_a_miscased_secret_key_logs_no_value(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = infr_logged(state_dir, monkeypatch, "-v", "config", "set", "smtppassword", "Zq9secret")
    assert result.exit_code != 0
    assert "Zq9" not in recorded_everywhere(state_dir) + result.output
    assert "config set smtppassword ********" in (state_dir / "log").read_text()


@pytest.fixture
def adopt_calls(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """adopt.adopt records the host (a commit with the command line), then fails to connect."""
    calls: list[str | None] = []

    def adopt(session: Any, name: str, ip: str, password: str | None, report: Any, features: Any) -> list[str]:
        calls.append(password)
        hosts_adopt.record_host(session, name, ip)
        raise RemoteError(f"{name}: cannot connect (test)")

    monkeypatch.setattr(hosts_adopt, "adopt", adopt)
    return calls


@pytest.mark.parametrize(
    ("args", "stdin", "env"),
    [
        (["-p", "Zq9rootpw", "bob", "203.0.113.10"], None, {}),
        (["bob", "203.0.113.10", "--password=Zq9rootpw"], None, {}),
        (["bob", "203.0.113.10", "-p"], "Zq9rootpw\n", {}),
        (["-p", "--yes", "bob", "203.0.113.10"], "Zq9rootpw\n", {}),
        (["--password-stdin", "bob", "203.0.113.10"], "Zq9rootpw\n", {}),
        (["bob", "203.0.113.10"], None, {"INFR_ROOT_PASSWORD": "Zq9rootpw"}),
    ],
)
def test_the_root_password_reaches_the_login_and_no_record(
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    adopt_calls: list[str | None],
    args: list[str],
    stdin: str | None,
    env: dict[str, str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = infr_logged(state_dir, monkeypatch, "-v", "hosts", "add", "--adopt", "--yes", *args, input=stdin)
    assert adopt_calls == ["Zq9rootpw"]
    assert "bob" in run_cli(state_dir, "hosts").output  # recorded, so committed with the command line
    history = run_cli(state_dir, "history").output
    assert "hosts add" in history
    assert "Zq9" not in recorded_everywhere(state_dir) + history + result.output


def test_the_password_is_given_one_way(state_dir: Path, adopt_calls: list[str | None]) -> None:
    result = run_cli(state_dir, "hosts", "add", "--adopt", "-p", "x", "--password-stdin", "bob", "203.0.113.10")
    assert result.exit_code == 2 and "one way" in result.output and adopt_calls == []


# ---------------------------------------------------------------------------
# Item 19: check first, ask last; item 5: strict URLs, checked before anything is recorded


def bad_add(state_dir: Path, case: str) -> list[str]:
    seed_host(state_dir, "tom", "203.0.113.20")
    seed_lxc(state_dir, "web", "tom")
    return {
        "bad name": ["Bob_1", "203.0.113.10"],
        "bad address": ["bob", "203.0.113.300"],
        "name of an LXC": ["web", "203.0.113.10"],
        "address of another host": ["bob", "203.0.113.20"],
        "existing host, other address": ["tom", "203.0.113.21"],
        "installer URL with a newline": ["bob", "203.0.113.10", "--installer-url", "http://m.example/d\nboot"],
        "proxy with a newline": ["bob", "203.0.113.10", "--mirror-proxy", "http://p.example:3128/\nd-i x y"],
        "https installer URL": ["bob", "203.0.113.10", "--installer-url", "https://m.example/d"],
        "bad nameserver": ["bob", "203.0.113.10", "--nameserver", "ns.example"],
    }[case]


CASES = [
    "bad name",
    "bad address",
    "name of an LXC",
    "address of another host",
    "existing host, other address",
    "installer URL with a newline",
    "proxy with a newline",
    "https installer URL",
    "bad nameserver",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("adopt", [False, True])
def test_hosts_add_checks_before_it_asks_or_records(
    state_dir: Path, adopt_calls: list[str | None], case: str, adopt: bool
) -> None:
    args = bad_add(state_dir, case)
    if adopt and "--" in "".join(args[2:3]):
        return  # the reinstall's options
    before = snapshot(state_dir)
    result = run_cli(state_dir, "hosts", "add", *(["--adopt"] if adopt else []), *args, input="YES\ny\n")
    assert result.exit_code != 0
    assert "YES" not in result.output and "Go on" not in result.output and "password" not in result.output
    assert adopt_calls == [] and snapshot(state_dir) == before


def test_a_missing_identity_file_is_found_before_asking(state_dir: Path, tmp_path: Path) -> None:
    result = run_cli(state_dir, "-i", str(tmp_path / "nokey"), "hosts", "add", "bob", "203.0.113.10")
    assert result.exit_code != 0 and "Type YES" not in result.output
    assert "no SSH private key at" in str(result.exception)


URL_TAIL = st.text(st.sampled_from("abc/.-_~%09:@+,="), max_size=10)
BAD_CHARACTER = st.characters(blacklist_categories=("L", "N"), blacklist_characters="/.-_~%:@+,=")


@given(tail=URL_TAIL, bad=BAD_CHARACTER, at=st.integers(0, 40))
def test_an_installer_or_proxy_url_with_any_other_character_is_refused(tail: str, bad: str, at: int) -> None:
    good = f"http://mirror.example:8080/debian/{tail}"
    assert hosts_preseed.installer_problems(hosts_preseed.InstallerSource(good)) == []
    url = good[: 7 + at % (len(good) - 6)] + bad + good[7 + at % (len(good) - 6) :]
    assert hosts_preseed.installer_problems(hosts_preseed.InstallerSource(url)) != []
    preseed = hosts_preseed.PreseedSettings("web1", "example.com", ("ssh-ed25519 AAAA",), "/dev/vda", mirror_proxy=url)
    assert any("proxy URL" in p for p in hosts_preseed.input_problems(preseed))
