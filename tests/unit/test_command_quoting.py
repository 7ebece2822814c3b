"""Quoting is proven against a real shell: each argument must arrive byte for byte."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infr.connector import command

NASTY = [
    "plain",
    "with space",
    "  leading and trailing  ",
    "it's",
    'say "hi"',
    "'\"'\"'",
    "a; rm -rf /tmp/should-not-run",
    "$(touch /tmp/should-not-run)",
    "`touch /tmp/should-not-run`",
    "${HOME}",
    "$HOME",
    "line1\nline2",
    "tab\there",
    "*",
    "/etc/*.conf",
    "?[a-z]{1,2}",
    "~root",
    "-n",
    "--",
    "a|b&c>d<e",
    "back\\slash\\",
    "!event",
    "#comment",
    "",
    "émoji ✓ 🚀",
]
SHELLS = [s for s in ("sh", "bash", "dash") if shutil.which(s)]


def run_in_shell(shell: str, argv: list[str]) -> list[str]:
    """The argv that `printf` received when the shell ran our quoted command line."""
    line = command.quote(["printf", "%s\\0", *argv])
    out = subprocess.run([shell, "-c", line], capture_output=True, check=True, cwd="/").stdout
    return out.decode().split("\0")[:-1]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("arg", NASTY)
def test_each_nasty_argument_arrives_intact(shell: str, arg: str) -> None:
    assert run_in_shell(shell, [arg]) == [arg]


@pytest.mark.parametrize("shell", SHELLS)
def test_all_nasty_arguments_together(shell: str) -> None:
    assert run_in_shell(shell, NASTY) == NASTY


@pytest.mark.parametrize("shell", SHELLS)
def test_sudo_and_env_wrappers_keep_arguments(shell: str) -> None:
    # `env` is a real program here, so the wrapped argv must reach printf unchanged.
    wrapped = command.env({"X": "a b;$(c)"}, ["sh", "-c", 'printf "%s\\0" "$X" "$@"', "sh", *NASTY])
    line = command.quote(wrapped)
    out = subprocess.run([shell, "-c", line], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == ["a b;$(c)", *NASTY]
    assert command.sudo(["ls", "-l"]) == ["sudo", "-n", "--", "ls", "-l"]


_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"))


@settings(max_examples=200, deadline=None)
@given(st.lists(_text, min_size=1, max_size=5))
def test_arbitrary_text_arrives_intact(argv: list[str]) -> None:
    assert run_in_shell("sh", argv) == argv


def test_chain_runs_every_command_and_stops_at_failure() -> None:
    line = command.quote_chain([["printf", "%s", "a b"], ["false"], ["printf", "never"]])
    result = subprocess.run(["sh", "-c", line], capture_output=True)
    assert (result.returncode, result.stdout) == (1, b"a b")


def test_nul_and_empty_commands_are_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        command.quote(["echo", "a\0b"])
    with pytest.raises(ValueError, match="empty"):
        command.quote([])


def test_env_refuses_bad_variable_names() -> None:
    with pytest.raises(ValueError):
        command.env({"A=B": "x"}, ["true"])


def test_apt_install_is_noninteractive_and_checks_names() -> None:
    argv = command.apt_install(["haproxy", "lxc", "wireguard-tools", "libc6:amd64=2.36-9"])
    assert argv[:2] == ["env", "DEBIAN_FRONTEND=noninteractive"]
    assert argv[2:4] == ["apt-get", "install"]
    assert argv[-5:] == ["--", "haproxy", "lxc", "wireguard-tools", "libc6:amd64=2.36-9"]
    for bad in (["x; reboot"], ["-y"], ["Upper"], []):
        with pytest.raises(ValueError):
            command.apt_install(bad)


def test_paths_must_be_absolute() -> None:
    for build in (command.mkdir, command.rm, command.cat, command.tmp_path_for):
        with pytest.raises(ValueError, match="absolute"):
            build("etc/passwd")


def test_modes_are_octal_and_bounded() -> None:
    assert command.chmod("/x", 0o640) == ["chmod", "0640", "--", "/x"]
    assert command.mkdir("/d", mode=0o4755) == ["mkdir", "-p", "-m", "4755", "--", "/d"]
    with pytest.raises(ValueError):
        command.chmod("/x", 0o10000)


def test_tmp_path_is_a_hidden_sibling() -> None:
    assert command.tmp_path_for("/etc/my dir/a.cfg") == "/etc/my dir/.a.cfg.infr-tmp"
    with pytest.raises(ValueError):
        command.tmp_path_for("/etc/")


def test_write_file_cmds_run_locally_replace_atomically(tmp_path: Path) -> None:
    directory = tmp_path / "we'ird $(dir)"
    directory.mkdir()
    target = directory / "fi le;x"
    target.write_bytes(b"old")
    old_inode = target.stat().st_ino
    owner, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    tmp = command.tmp_path_for(str(target))
    steps = command.write_file_cmds(str(target), owner, group, 0o600, tmp)
    subprocess.run(["sh", "-c", command.quote_chain(steps)], input=b"secret\n", check=True)
    assert target.read_bytes() == b"secret\n"
    stat = target.stat()
    assert (stat.st_mode & 0o7777, stat.st_uid) == (0o600, os.getuid())
    assert stat.st_ino != old_inode, "replaced by rename, not rewritten in place"
    assert not os.path.exists(tmp)
