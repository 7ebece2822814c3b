"""A state directory on a disk that fills up, and other broken surroundings (issue 12 item 13).

The disk is a real tmpfs of a few MiB, mounted for the test and unmounted after it (root only).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import INFR_BIN, clone_state, run_infr, seed_host, seed_lxc, snapshot


def seed(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151")
    seed_lxc(root, "c1", "bob")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True)
    assert mounted.returncode == 0, f"this test mounts a tmpfs and needs root: {mounted.stderr!r}"
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; returns the filler file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_is_one_line_and_changes_nothing(small_disk: Path, state_template: Callable[..., Path]) -> None:
    world = clone_state(state_template("full-disk", seed), small_disk / "state")
    (world / "log").write_bytes(b"")
    filler = fill(small_disk)
    before = snapshot(world)
    for command in (("lxc", "--no-apply", "c1", "http", "FORWARD"), ("keys", "remove", "nobody"), ("hosts",)):
        result = run_infr(world, *command)
        assert "Logging error" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert "internal error" not in result.stderr, result.stderr
        if command == ("hosts",):
            assert result.returncode == 0, result.stderr
        else:
            assert result.returncode == 1, result.stderr
        assert snapshot(world) == before
    refused = run_infr(world, "lxc", "--no-apply", "c1", "http", "FORWARD")
    assert refused.stderr.count("\n") == 1 and "No space left on device" in refused.stderr, refused.stderr
    assert not (world / ".journal").exists()
    filler.unlink()
    done = run_infr(world, "lxc", "--no-apply", "c1", "http", "FORWARD")
    assert done.returncode == 0, done.stderr
    assert subprocess.run(["git", "-C", str(world), "status", "--porcelain"], capture_output=True).stdout == b""


def test_an_argument_that_is_not_utf8_is_a_usage_error(state_template: Callable[..., Path], tmp_path: Path) -> None:
    world = clone_state(state_template("full-disk", seed), tmp_path / "state")
    before = snapshot(world)
    argv = [os.fsencode(INFR_BIN), b"-w", os.fsencode(world)]
    for bad in ([b"lxc", b"c\xff1", b"http", b"FORWARD"], [b"keys", b"remove", b"\xe9t\xe9"], [b"hosts\xff"]):
        result = subprocess.run([*argv, *bad], capture_output=True)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count(b"\n") == 1 and b"not UTF-8" in result.stderr, result.stderr
        assert snapshot(world) == before


def test_a_state_without_git_is_refused_before_anything_is_saved(
    state_template: Callable[..., Path], tmp_path: Path
) -> None:
    world = clone_state(state_template("full-disk", seed), tmp_path / "state")
    shutil.rmtree(world / ".git")
    before = snapshot(world)
    result = run_infr(world, "lxc", "--no-apply", "c1", "http", "FORWARD")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"git -C {world} init" in result.stderr and ".git is missing" in result.stderr
    assert snapshot(world) == before
