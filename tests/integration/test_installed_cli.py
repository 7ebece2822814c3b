"""The installed `infr` in a subprocess: exact one-line errors, exit codes, no traceback, no change;
history, secrets, init, completion and -v as a user meets them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from infr.state.model import TcpForward
from tests.conftest import AUTHOR_EMAIL, AUTHOR_NAME, INFR_BIN, clone_state, run_infr, seed_host, seed_lxc, snapshot


def seed(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151")
    seed_host(root, "tom", "45.32.191.152")
    seed_lxc(root, "fozzie", "bob", aliases=["www.example.org"], tcp_forwards=[TcpForward(2222, 22)])
    seed_lxc(root, "web", "bob")
    seed_lxc(root, "db", "tom")


@pytest.fixture
def world(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    return clone_state(state_template("installed", seed), tmp_path / "state")


def git_log(root: Path) -> str:
    return subprocess.run(["git", "-C", str(root), "log", "--format=%H %an %s"], capture_output=True, text=True).stdout


RESERVED = "is reserved (22 is sshd, 80 and 443 are HAProxy's HTTP and HTTPS) (use another host port, e.g. 2222)"
ERRORS = [
    (["lxc", "fozzie", "add-tcp-forward", "22", "2200"], 2, f"host port 22 {RESERVED}"),
    (["lxc", "fozzie", "tcp-forward", "443", "8443"], 2, f"host port 443 {RESERVED}"),
    (
        ["lxc", "web", "add-tcp-forward", "2222", "22"],
        1,
        "host port 2222 on bob is already forwarded to fozzie "
        "(use another host port, or: infr lxc fozzie remove-tcp-forward 2222)",
    ),
    (
        ["lxc", "fozzie", "add-alias", "foo.notatld"],
        2,
        "alias 'foo.notatld' is not under a public suffix (such as .com or .org.nz) "
        "(give a full domain name such as www.example.org)",
    ),
    (
        ["lxc", "db", "add-alias", "www.example.org"],
        1,
        "www.example.org already routes to fozzie "
        "(remove it there first: infr lxc fozzie remove-alias www.example.org)",
    ),
    (["lxc", "nope", "http", "FORWARD"], 1, "no LXC named 'nope' (list them with 'infr lxcs')"),
    (["lxc", "bob"], 1, "no LXC named 'bob' (bob is a host: use 'infr host bob')"),
    (["host", "nope"], 1, "no host named 'nope' (list them with 'infr hosts')"),
    (
        ["lxc", "fozzie", "http-port", "0"],
        2,
        "http port 0 is not a port number between 1 and 65535 (ports are 1-65535)",
    ),
    (["config", "set", "dnsTTL", "5"], 1, "dnsTTL 5 must be between 60 and 86400 seconds (nothing was changed)"),
    (
        ["config", "unset", "dnsDomain"],
        2,
        "dnsDomain is required and cannot be unset (change it with 'infr config set dnsDomain VALUE')",
    ),
    (
        ["keys", "remove", "alice@laptop"],
        2,
        "cannot remove the last admin key (add another key first, or nobody could log in)",
    ),
    (["keys", "remove", "bob"], 1, "no key named 'bob' (known keys: alice@laptop)"),
    (["frobnicate"], 2, "No such command 'frobnicate'. (see 'infr --help')"),
]


@pytest.mark.parametrize(
    ("args", "code", "message"), ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_an_error_is_one_line_with_its_exit_code_and_changes_nothing(
    world: Path, args: list[str], code: int, message: str
) -> None:
    before, log = snapshot(world), git_log(world)
    result = run_infr(world, *args)
    assert (result.returncode, result.stderr) == (code, f"infr: error: {message}\n")
    assert result.stdout == ""
    assert snapshot(world) == before and git_log(world) == log


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["lxc", "fozzie", "http", "bogus"], "infr: error: Invalid value for "),
        (["keys", "add", "/nonexistent/key.pub"], "infr: error: Invalid value for 'FILE': "),
        (["lxc", "fozzie", "add-tcp-forward", "2222"], "infr: error: Missing argument 'LXC_PORT'."),
        (
            ["config", "set", "dnsttl", "600"],
            "infr: error: unknown config key 'dnsttl'; did you mean dnsTTL? known keys: ",
        ),
        (["hosts", "-o", "xml"], "infr: error: Invalid value for '-o' / '--format': 'xml' is not one of"),
    ],
)
def test_a_usage_error_is_one_line_exit_2_and_changes_nothing(world: Path, args: list[str], start: str) -> None:
    before, log = snapshot(world), git_log(world)
    result = run_infr(world, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(start) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(world) == before and git_log(world) == log


def test_no_state_directory_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_infr(missing, "lxc", "web", "http", "FORWARD")
    assert result.returncode == 1
    assert result.stderr == (
        f"infr: error: no infr state in {missing} "
        "(run 'infr init' first, or point -w / INFR_DIR at your state directory)\n"
    )
    assert not missing.exists()


def test_a_hand_broken_state_lists_every_problem(world: Path) -> None:
    (world / "lxcs" / "web.toml").write_text((world / "lxcs" / "web.toml").read_text().replace("NONE", "SOMETIMES", 1))
    host = world / "hosts" / "tom.toml"
    host.write_text(host.read_text().replace("45.32.191.152", "45.32.191.300"))
    before = snapshot(world)
    result = run_infr(world, "lxc", "fozzie", "http", "FORWARD")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "infr: error: 2 problems (fix these files by hand, or restore them with git)",
        "  - hosts/tom.toml: public_ip '45.32.191.300' is not an IPv4 address",
        "  - lxcs/web.toml: http must be one of NONE, FORWARD, REDIRECT-HTTPS",
    ]
    assert snapshot(world) == before


def test_the_first_error_wins_and_still_no_traceback_for_an_unreadable_file(world: Path) -> None:
    (world / "lxcs" / "db.toml").write_text("name = \n")
    result = run_infr(world, "lxcs")
    assert result.returncode == 1
    assert result.stderr.startswith(f"infr: error: {world / 'lxcs' / 'db.toml'} is not valid TOML: ")
    assert result.stderr.endswith("(fix the file or restore it from git)\n") and result.stderr.count("\n") == 1


# ---- what succeeds -----------------------------------------------------------------------------


def test_changes_are_committed_with_the_command_line_and_shown_by_history(world: Path) -> None:
    for args in (["lxc", "fozzie", "http", "FORWARD"], ["lxc", "web", "tcp-forward", "2223", "22"]):
        result = run_infr(world, *args)
        assert result.returncode == 0, result.stderr
    entries = json.loads(run_infr(world, "history", "-o", "json").stdout)
    assert [e["message"] for e in entries[:2]] == [
        f"infr -w {world} lxc web tcp-forward 2223 22",
        f"infr -w {world} lxc fozzie http FORWARD",
    ]
    assert entries[0]["author"] == f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"
    assert entries[-1]["message"] == "infr init"
    table = run_infr(world, "history", "-n", "1").stdout.splitlines()
    assert len(table) == 3 and table[2].endswith(f"infr -w {world} lxc web tcp-forward 2223 22")
    assert subprocess.run(["git", "-C", str(world), "status", "--porcelain"], capture_output=True).stdout == b""


def test_a_secret_is_never_committed_or_logged_and_the_environment_wins(world: Path) -> None:
    result = run_infr(world, "config", "set", "dnsVultrAPIKey", "VULTR-s3cret-123")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dnsVultrAPIKey set (stored in secrets.toml, never committed)\n"
    assert oct((world / "secrets.toml").stat().st_mode & 0o777) == "0o600"
    everything = subprocess.run(["git", "-C", str(world), "log", "--all", "-p"], capture_output=True, text=True).stdout
    assert "VULTR-s3cret-123" not in everything
    assert "VULTR-s3cret-123" not in (world / "log").read_text()
    assert "run: infr -w" in (world / "log").read_text()  # the log is written, with the value masked
    shown = {r["key"]: r for r in json.loads(run_infr(world, "config", "show", "-o", "json").stdout)}
    assert (shown["dnsVultrAPIKey"]["value"], shown["dnsVultrAPIKey"]["source"]) == ("********", "secrets.toml")
    env = run_infr(world, "config", "show", "dnsVultrAPIKey", env={"INFR_VULTR_API_KEY": "from-env"})
    assert "from-env" not in env.stdout
    (world / "secrets.toml").unlink()
    env = run_infr(world, "config", "show", "dnsVultrAPIKey", "-o", "json", env={"INFR_VULTR_API_KEY": "from-env"})
    assert json.loads(env.stdout)[0]["source"] == "env INFR_VULTR_API_KEY"


def test_init_unattended_then_refuses_to_overwrite(tmp_path: Path, admin_key: Path) -> None:
    root = tmp_path / "fresh"
    flags = ["--dns-domain", "example.com", "--admin-email", "a@example.com", "--ssh-key", str(admin_key)]
    first = run_infr(root, "init", "--yes", *flags)
    assert first.returncode == 0, first.stderr
    before = snapshot(root)
    again = run_infr(root, "init", "--yes", *flags)
    assert again.returncode == 1
    assert again.stderr == (
        f"infr: error: infr is already set up in {root} "
        "(change settings with 'infr config set', or use another -w DIR)\n"
    )
    assert snapshot(root) == before


def test_init_interactive_on_stdin(tmp_path: Path, admin_key: Path) -> None:
    root = tmp_path / "fresh"
    answers = f"10.20.0.0/16\n10.20.1.0\nexample.net\n\n\n{admin_key}\nops@example.net\n"
    result = run_infr(root, "init", input=answers, env={"HOME": str(tmp_path / "no-home")})
    assert result.returncode == 0, result.stderr
    config = json.loads(run_infr(root, "config", "-o", "json").stdout)
    values = {row["key"]: row["value"] for row in config}
    assert (values["vnetNetwork"], values["vnetPoolStart"], values["dnsDomain"]) == (
        "10.20.0.0/16",
        "10.20.1.0",
        "example.net",
    )
    assert (values["dnsPrefix"], values["vnetPrefix"], values["adminEmail"]) == ("infr", "vnet", "ops@example.net")


def test_help_version_and_bare_infr(tmp_path: Path) -> None:
    for args in (["--help"], ["help"], []):
        result = run_infr(None, *args)
        assert result.returncode == 0 and result.stdout.startswith("Usage: infr [OPTIONS] COMMAND"), args
        assert result.stderr == ""
    assert run_infr(None, "help", "lxc").stdout.startswith("Usage: infr lxc [OPTIONS] NAME")
    assert run_infr(None, "--version").stdout == "infr, version 0.1.0\n"


def test_completion_script_and_names_from_state(world: Path) -> None:
    script = run_infr(None, "completion", "bash")
    assert script.returncode == 0 and "complete -o nosort -F _infr_completion infr" in script.stdout

    def complete(words: str, cword: int, env: dict[str, str] | None = None) -> list[str]:
        result = subprocess.run(
            [str(INFR_BIN)],
            env={**os.environ, "_INFR_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
            | (env or {}),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and result.stderr == ""
        return result.stdout.splitlines()

    assert complete(f"infr -w {world} lxc ", 4) == ["plain,db", "plain,fozzie", "plain,web"]
    assert complete(f"infr -w {world} host t", 4) == ["plain,tom"]
    assert complete("infr lxc f", 2, {"INFR_DIR": str(world)}) == ["plain,fozzie"]


def test_verbose_echoes_the_operation_log(world: Path) -> None:
    result = run_infr(world, "-v", "lxc", "db", "https", "TERMINATE")
    assert result.returncode == 0, result.stderr
    assert f"run: infr -w {world} -v lxc db https TERMINATE" in result.stderr
    assert f"run: infr -w {world} -v lxc db https TERMINATE" in (world / "log").read_text()
    quiet = run_infr(world, "lxcs")
    assert quiet.stderr == "" and f"run: infr -w {world} lxcs\n" in (world / "log").read_text()


def test_the_state_directory_comes_from_infr_dir_unless_w_is_given(world: Path, tmp_path: Path) -> None:
    listed = run_infr(None, "lxcs", "-o", "json", env={"INFR_DIR": str(world)})
    assert [row["name"] for row in json.loads(listed.stdout)] == ["db", "fozzie", "web"]
    elsewhere = run_infr(tmp_path / "other", "lxcs", env={"INFR_DIR": str(world)})
    assert elsewhere.returncode == 1 and "no infr state in" in elsewhere.stderr


REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """infr built as a wheel from a copy of this tree (as build.sh does: no build/ left in the
    checkout) and installed, without its dependencies, into a directory of its own: (wheel, bin/infr)."""
    work = tmp_path_factory.mktemp("wheel")
    skip = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".lab", ".tutorial")
    shutil.copytree(REPO, work / "src", symlinks=True, ignore=skip)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(work / "wheels"), str(work / "src")], check=True)
    [wheel] = (work / "wheels").glob("infr-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)], check=True)
    return wheel, work / "site"


def run_installed(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The wheel's infr first on the path; its dependencies from this venv (the editable
    infr's finder comes after the path, so it is not the one imported)."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    argv = [str(site / "bin" / "infr"), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=site, timeout=60)


def test_the_wheel_carries_the_docs_as_files(wheel_install: tuple[Path, Path]) -> None:
    """issue 12 item 22: `--help` pointed at docs/tutorial.md, which the package did not contain."""
    wheel, _ = wheel_install
    with zipfile.ZipFile(wheel) as archive:
        shipped = {Path(name).name: archive.read(name) for name in archive.namelist() if name.startswith("infr/docs/")}
    assert shipped == {page.name: page.read_bytes() for page in (REPO / "docs").glob("*.md")}


def test_the_installed_infr_prints_its_guides(wheel_install: tuple[Path, Path]) -> None:
    _, site = wheel_install
    where = subprocess.run(
        [sys.executable, "-c", "import infr; print(infr.__file__)"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(site)}, cwd=site,
    )  # fmt: skip  (not this checkout's directory: python -c puts the working directory first)
    assert where.stdout.strip() == str(site / "infr" / "__init__.py")
    tutorial = run_installed(site, "help", "tutorial")
    assert (tutorial.returncode, tutorial.stderr) == (0, "")
    assert tutorial.stdout == (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
    listed = run_installed(site, "help")
    assert listed.returncode == 0 and "'infr help tutorial'" in listed.stdout
    assert all(f"  {page.stem} " in listed.stdout for page in (REPO / "docs").glob("*.md"))
