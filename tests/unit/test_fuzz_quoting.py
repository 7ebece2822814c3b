"""Every pure builder of a remote command, fed hostile arguments: the argv survives quoting.

Issue 12, "Done means": no value reaches a shell unquoted. Commands are argv lists until
`command.quote` turns them into shell text, right before they are sent; so for every
builder and every hostile argument, either the builder refuses it (ValueError, InfrError),
or each argv it returns
  * is made of strings, and `shlex.split(quote(argv)) == argv` (NUL, which no shell argument
    can hold, is refused by `quote`);
  * for an `sh -c SCRIPT` whose script embeds the value itself, the script still parses and
    holds the value as one word (alone or as `name=value`);
  * for a builder that puts the value where a program reads operands, has a `--` before it
    when it starts with '-', so it cannot be read as an option.
tests/unit/test_command_quoting.py proves `quote` itself against real shells.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infr.backups import btrbk, points
from infr.connector import command
from infr.errors import InfrError
from infr.hosts.boot import grub, medium
from infr.restore import commands, drill
from infr.routing import certs
from tests.unit.fuzzing import hostile

EXAMPLES = 80
Builder = Callable[[str], Sequence[Sequence[str]]]
BACKUP = btrbk.BackupSettings()
PATHS = commands.LxcPaths


def _one(argv: Sequence[str]) -> list[Sequence[str]]:
    return [argv]


# name -> (builder, whether the value lands as an operand that '--' must protect)
BUILDERS: dict[str, tuple[Builder, bool]] = {
    "command.mkdir": (lambda v: _one(command.mkdir(v, mode=0o755)), True),
    "command.chown": (lambda v: _one(command.chown(v, "manager", "manager")), True),
    "command.chmod": (lambda v: _one(command.chmod(v, 0o600)), True),
    "command.rm": (lambda v: _one(command.rm(v)), True),
    "command.cat": (lambda v: _one(command.cat(v)), True),
    "command.systemctl": (lambda v: _one(command.systemctl("restart", v)), True),
    "command.sudo": (lambda v: _one(command.sudo(["cat", "--", v])), True),
    "command.env": (lambda v: _one(command.env({"VALUE": v}, ["printenv", "VALUE"])), False),
    "command.apt_install": (lambda v: _one(command.apt_install([v])), True),
    "command.tmp_path_for": (lambda v: _one(command.rm(command.tmp_path_for(v))), True),
    "command.write_file_cmds": (
        lambda v: command.write_file_cmds(v, "root", "root", 0o600, command.tmp_path_for(v)),
        True,
    ),
    "backups.list_restore_points_argv": (lambda v: _one(points.list_restore_points_argv(v, BACKUP)), False),
    "backups.list_points_argv": (lambda v: _one(points.list_points_argv(v)), False),
    "bootmedium.upload_argv": (lambda v: _one(medium.upload_argv(grub.Upload(Path("/x"), v))), False),
    "bootmedium.write_image_argv": (lambda v: _one(medium.write_image_argv(v)), False),
    "bootmedium.write_image_argv(image)": (lambda v: _one(medium.write_image_argv("/dev/vda", v)), False),
    "restore.make_dirs_argv": (lambda v: _one(commands.make_dirs_argv(PATHS(v))), False),
    "restore.clear_argv": (lambda v: _one(commands.clear_argv(v)), False),
    "restore.send_argv": (lambda v: _one(commands.send_argv(v)), True),
    "restore.receive_argv": (lambda v: _one(commands.receive_argv(v)), True),
    "restore.snapshot_argv": (lambda v: _one(commands.snapshot_argv(v, v)), True),
    "restore.delete_subvolume_argv": (lambda v: _one(commands.delete_subvolume_argv(v)), True),
    "restore.mark_argv": (lambda v: _one(commands.mark_argv(PATHS("web"), v)), True),
    "restore.lxc_state_argv": (lambda v: _one(commands.lxc_state_argv(v)), False),
    "restore.stop_argv": (lambda v: _one(commands.stop_argv(v, kill=True)), False),
    "restore.start_argv": (lambda v: _one(commands.start_argv(v)), False),
    "restore.wait_running_argv": (lambda v: _one(commands.wait_running_argv(v)), False),
    "restore.destroy_argv": (lambda v: _one(commands.destroy_argv(v)), False),
    "restore.swap_in_argv": (lambda v: _one(commands.swap_in_argv(PATHS(v))), False),
    "restore.swap_back_argv": (lambda v: _one(commands.swap_back_argv(PATHS(v))), False),
    "restore.check_path_argv": (lambda v: _one(commands.check_path_argv(v, commands.relative_path(v))), False),
    "restore.tar_create_argv": (lambda v: _one(commands.tar_create_argv("/b", commands.relative_path(v))), True),
    "restore.tar_extract_argv": (lambda v: _one(commands.tar_extract_argv(v)), False),
    "restore.drill_check_argv": (lambda v: _one(drill.drill_check_argv(v)), False),
    "certs.delete_argv": (lambda v: _one(certs.delete_argv(v, certs.CertbotSettings())), False),
    "certs.x509_text_argv": (lambda v: _one(certs.x509_text_argv(v)), False),
}
# `sh -c` scripts that embed the value itself (the others pass it as "$1"...).
EMBEDS = {"bootmedium.upload_argv", "bootmedium.write_image_argv", "bootmedium.write_image_argv(image)"}

# Builders this test finds at fault, each with its reason (none today).
KNOWN_FAILURES: dict[str, str] = {}


def hostile_argument() -> st.SearchStrategy[str]:
    """Hostile text, alone and as the tail of an absolute path (most builders want one)."""
    return st.one_of(hostile("text"), hostile("name").map(lambda v: "/srv/" + v), st.sampled_from(["-", "--x", "-rf"]))


def _problems(name: str, value: str, argvs: Sequence[Sequence[str]], operand: bool) -> list[str]:
    found: list[str] = []
    for argv in argvs:
        if not all(isinstance(arg, str) for arg in argv):
            found.append(f"not all strings: {argv!r}")
            continue
        try:
            text = command.quote(argv)
        except ValueError:
            if "\0" not in "".join(argv):
                found.append(f"quote refused {argv!r}")
            continue
        if shlex.split(text) != list(argv):
            found.append(f"{text!r} does not split back into {argv!r}")
        if name in EMBEDS and argv[:2] == ["sh", "-c"]:
            try:
                words = shlex.split(argv[2])
            except ValueError as exc:
                found.append(f"the script no longer parses ({exc}): {argv[2]!r}")
                continue
            if not any(w == value or w.endswith("=" + value) for w in words):
                found.append(f"the value is not one word of the script: {words!r}")
        if operand and value.startswith("-") and value in argv:
            at = len(argv) - 1 - list(argv)[::-1].index(value)  # the operand: the last one
            if "--" not in argv[:at]:
                found.append(f"{value!r} could be read as an option: {argv!r}")
    return found


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[n]) if n in KNOWN_FAILURES else ())
        for n in BUILDERS
    ],
)
@settings(max_examples=EXAMPLES, derandomize=True, database=None)
@given(value=hostile_argument())
def test_built_commands_survive_quoting(name: str, value: str) -> None:
    build, operand = BUILDERS[name]
    try:
        argvs = build(value)
    except (ValueError, InfrError):
        return  # refused: nothing was built
    assert not _problems(name, value, argvs, operand), f"{name}({value!r})"


def test_quoting_counts() -> None:
    """The figures for issue 12's closing note (pytest -rP prints them)."""
    print(f"fuzz-quoting: {len(BUILDERS)} argv builders, {EXAMPLES} hostile arguments each")
    assert len(BUILDERS) >= 30
