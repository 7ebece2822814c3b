"""Restores: --at parsing, snapshot selection, listing only one directory's backups, the
commands (scripts run for real on plain directories), the container swap and its
rollback against a fake host, files out of a tar stream, drill verdicts, CLI errors."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infr import followups
from infr.backups import find, pairs
from infr.backups.find import Located
from infr.backups.points import RestorePoint, list_points_argv, parse_restore_points
from infr.connector.target import Result
from infr.errors import ConflictError, InfrError, NotFoundError, RemoteError, UsageError
from infr.restore import commands as restore_commands
from infr.restore import container as lxc_restore
from infr.restore import drill as restore_drill
from infr.restore.choose import choose, parse_at
from infr.restore.commands import (
    PATH_LEAVES,
    PATH_MISSING,
    LxcPaths,
    check_path_argv,
    clear_argv,
    relative_path,
    snapshot_argv,
    swap_back_argv,
    swap_in_argv,
    tar_create_argv,
)
from infr.restore.container import LxcPlan, restore_container
from infr.restore.drill import drill_check_argv, judge, parse_drill
from infr.restore.files import copy_out
from infr.state.model import HOST_READY, Backup
from tests.conftest import clone_state, run_cli, seed_host, seed_lxc, snapshot


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def point(subvol: str, moment: datetime, seq: int = 0, on: str = "tom") -> Located:
    name = f"{subvol}.{moment:%Y%m%dT%H%M}" + (f"_{seq}" if seq else "")
    return Located(RestorePoint(moment, seq, subvol, name), on, "bob", "/var/lib/backups/backups/bob")


# --- --at ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "moment", "seq"),
    [
        ("2026-11-22T20:45", at(22, 20, 45), None),  # naive: UTC, as backups are named
        ("2026-11-22 20:45:30", at(22, 20, 45).replace(second=30), None),
        ("2026-11-22T21:45+01:00", at(22, 20, 45), None),
        ("2026-11-22T20:45Z", at(22, 20, 45), None),
        ("2026-11-22", at(22, 0, 0), None),
        ("20261122T2045", at(22, 20, 45), 0),
        ("20261122T2045_2", at(22, 20, 45), 2),
        ("lxc-web.20261122T2045_1", at(22, 20, 45), 1),  # the NAME column, copied
        (" host.20261122T2045 ", at(22, 20, 45), 0),
    ],
)
def test_parse_at(text: str, moment: datetime, seq: int | None) -> None:
    parsed = parse_at(text)
    assert (parsed.moment, parsed.seq) == (moment, seq)


@pytest.mark.parametrize("text", ["yesterday", "", "20261322T2045", "2026-11-22T25:00", "host.2026"])
def test_parse_at_refuses_what_is_not_a_time(text: str) -> None:
    with pytest.raises(UsageError, match="is not a time") as e:
        parse_at(text)
    assert e.value.hint and "20261122T2045" in e.value.hint


def test_a_stamp_means_that_run_and_an_iso_time_every_run_of_its_minute() -> None:
    first, second = point("host", at(22, 20, 45)), point("host", at(22, 20, 45), seq=1)
    assert parse_at("20261122T2045").admits(first.point)
    assert not parse_at("20261122T2045").admits(second.point)
    assert parse_at("2026-11-22T20:45").admits(second.point)
    assert not parse_at("2026-11-22T20:44:59").admits(first.point)


# --- which backup ----------------------------------------------------------------------------

POINTS = [
    point("host", at(22, 20, 45)),
    point("lxc-web", at(22, 20, 45)),
    point("lxc-web", at(22, 20, 50)),
    point("lxc-web", at(22, 20, 50), seq=1),
    point("lxc-web", at(23, 9, 0)),
]


def test_choose_the_newest_or_the_newest_at_or_before() -> None:
    assert choose(POINTS, "lxc-web", None, "LXC web", "hint") == POINTS[4]
    assert choose(POINTS, "lxc-web", parse_at("2026-11-22T23:00"), "LXC web", "hint") == POINTS[3]
    assert choose(POINTS, "lxc-web", parse_at("20261122T2050"), "LXC web", "hint") == POINTS[2]
    assert choose(POINTS, "lxc-web", parse_at("2026-11-22T20:49"), "LXC web", "hint") == POINTS[1]


def test_choose_prefers_the_target_host_between_equal_backups() -> None:
    moment = at(23, 9, 0)
    twins = [point("lxc-web", moment, on="ann"), point("lxc-web", moment, on="tom")]
    assert choose(twins, "lxc-web", None, "LXC web", "hint", prefer="ann").to_host == "ann"
    assert choose(twins, "lxc-web", None, "LXC web", "hint", prefer="tom").to_host == "tom"


def test_choose_says_what_there_is_when_nothing_fits() -> None:
    with pytest.raises(NotFoundError, match="no backup of LXC db found") as none:
        choose(POINTS, "lxc-db", None, "LXC db", "start one")
    assert none.value.hint == "start one"
    with pytest.raises(NotFoundError, match="no backup of LXC web at or before 2026-11-01") as early:
        choose(POINTS, "lxc-web", parse_at("2026-11-01"), "LXC web", "start one")
    assert early.value.hint == "the oldest is lxc-web.20261122T2045, 2026-11-22 20:45 UTC"


def test_located_points_sort_by_time_and_know_their_path() -> None:
    assert sorted(reversed(POINTS)) == sorted(POINTS)
    assert POINTS[0].path == "/var/lib/backups/backups/bob/host.20261122T2045"


# --- listing only one directory's backups ----------------------------------------------------

LISTING = """\
{mount}
ID 258 gen 7 top level 256 received_uuid 33e5 path @rootfs/var/lib/backups/backups/bob/host.20261122T2045
ID 259 gen 8 top level 256 received_uuid 44e5 path @rootfs/var/lib/backups/backups/tom/host.20261122T2045
ID 260 gen 9 top level 256 received_uuid 55e5 path @rootfs/var/lib/backups/archive/bob/host.20261101T1000
ID 261 gen 9 top level 256 received_uuid - path @rootfs/var/lib/backups/backups/bob/host.20261122T2050
ID 262 gen 9 top level 256 received_uuid 66e5 path @rootfs/var/lib/backups/backups/bob/lxc-web.20261122T2045
"""


@pytest.mark.parametrize(
    ("mount", "directory"),
    [
        ("/ /@rootfs", "/var/lib/backups/backups/bob"),  # Debian's root subvolume on /
        ("/mnt/pool /", "/mnt/pool/@rootfs/var/lib/backups/backups/bob"),  # the top level mounted
        ("/var/lib/backups /@rootfs/var/lib/backups", "/var/lib/backups/backups/bob/"),
        ("/srv/my\\x20disk /@rootfs", "/srv/my disk/var/lib/backups/backups/bob"),
    ],
)
def test_listing_keeps_only_the_directorys_own_backups(mount: str, directory: str) -> None:
    points = parse_restore_points(LISTING.format(mount=mount), directory)
    assert [p.name for p in points] == ["host.20261122T2045", "lxc-web.20261122T2045"]


def test_listing_command_asks_findmnt_then_btrfs() -> None:
    argv = list_points_argv("/var/lib/backups/archive/bob")
    assert argv[0:2] == ("sh", "-c") and argv[-2:] == ("sh", "/var/lib/backups/archive/bob")


# --- the commands --------------------------------------------------------------------------


def sh(argv: Sequence[str]) -> int:
    return subprocess.run(list(argv), capture_output=True).returncode


def test_restored_rootfs_is_a_writable_snapshot() -> None:
    assert snapshot_argv("/b/lxc-web.x", "/s/rootfs") == (
        "btrfs",
        "-q",
        "subvolume",
        "snapshot",
        "--",
        "/b/lxc-web.x",
        "/s/rootfs",
    )


def test_paths_stay_out_of_lxcs_sight() -> None:
    paths = LxcPaths("web")
    assert (paths.container, paths.staged, paths.old) == (
        "/var/lib/lxc/web",
        "/var/lib/lxc/.infr-restore/web.new",
        "/var/lib/lxc/.infr-restore/web.old",
    )


def lxc_dirs(tmp_path: Path, old: bool = True) -> LxcPaths:
    paths = LxcPaths("web", str(tmp_path))
    Path(paths.staged).mkdir(parents=True)
    Path(paths.staged, "marker").write_text("new\n")
    if old:
        Path(paths.container).mkdir()
        Path(paths.container, "marker").write_text("old\n")
    return paths


def test_swap_in_then_back(tmp_path: Path) -> None:
    paths = lxc_dirs(tmp_path)
    assert sh(swap_in_argv(paths)) == 0
    assert Path(paths.container, "marker").read_text() == "new\n"
    assert Path(paths.old, "marker").read_text() == "old\n" and not Path(paths.staged).exists()
    assert sh(swap_back_argv(paths)) == 0
    assert Path(paths.container, "marker").read_text() == "old\n"
    assert Path(paths.staged, "marker").read_text() == "new\n" and not Path(paths.old).exists()


def test_swap_in_with_nothing_to_replace(tmp_path: Path) -> None:
    paths = lxc_dirs(tmp_path, old=False)
    assert sh(swap_in_argv(paths)) == 0
    assert Path(paths.container, "marker").read_text() == "new\n" and not Path(paths.old).exists()


def test_swap_in_undoes_itself_when_the_second_move_fails(tmp_path: Path) -> None:
    paths = lxc_dirs(tmp_path)
    Path(paths.staged, "marker").unlink()
    Path(paths.staged).rmdir()  # nothing staged: the second move fails
    assert sh(swap_in_argv(paths)) != 0
    assert Path(paths.container, "marker").read_text() == "old\n" and not Path(paths.old).exists()


def test_clear_removes_the_directory_and_is_quiet_when_it_is_gone(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "a" / "b").mkdir(parents=True)
    (scratch / "a" / "b" / "f").write_text("x")
    assert sh(clear_argv(str(scratch))) == 0 and not scratch.exists()
    assert sh(clear_argv(str(scratch))) == 0


@pytest.fixture
def backup_tree(tmp_path: Path) -> Path:
    root = tmp_path / "host.20261122T2045"
    (root / "etc" / "nginx").mkdir(parents=True)
    (root / "etc" / "nginx" / "nginx.conf").write_text("worker_processes 2;\n")
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("/run")  # absolute: the backup host's own /run
    (root / "etc" / "alt").symlink_to("nginx")  # relative, inside the backup
    (root / "etc" / "dangling").symlink_to("/nowhere")
    return root


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/etc/nginx", 0),
        ("/etc/nginx/nginx.conf", 0),
        ("/etc/alt/nginx.conf", 0),
        ("/etc/dangling", 0),  # a symlink is restored as a symlink
        ("/var/run", 0),
        ("/var/run/sshd.pid", PATH_LEAVES),
        ("/etc/nothing", PATH_MISSING),
        ("/nothing/at/all", PATH_MISSING),
    ],
)
def test_path_check(backup_tree: Path, path: str, code: int) -> None:
    assert sh(check_path_argv(str(backup_tree), relative_path(path))) == code


@pytest.mark.parametrize("path", ["/", "", "  ", "../etc", "/etc/../../x", "etc/.."])
def test_restore_path_must_be_inside_the_backup(path: str) -> None:
    with pytest.raises(UsageError, match="must name something inside the backup"):
        relative_path(path)


def test_restore_path_is_relative_to_the_backups_top() -> None:
    assert relative_path("/etc/nginx/") == relative_path("etc/nginx") == "etc/nginx"


def test_drill_check_reads_figures_inside_the_copy(backup_tree: Path) -> None:
    (backup_tree / "etc" / "os-release").write_text('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    out = subprocess.run(drill_check_argv(str(backup_tree)), capture_output=True, text=True).stdout
    figures = parse_drill(out)
    assert figures == {"files": "9", "os": "Debian GNU/Linux 12 (bookworm)", "writable": "yes"}
    (backup_tree / "etc" / "os-release").unlink()
    (backup_tree / "etc" / "os-release").symlink_to("/etc/os-release")  # the backup host's own: not read
    assert "os" not in parse_drill(
        subprocess.run(drill_check_argv(str(backup_tree)), capture_output=True, text=True).stdout
    )


def test_drill_verdicts() -> None:
    now, fresh = at(23, 9, 10), RestorePoint(at(23, 9, 0), 0, "host", "host.20261123T0900")
    good = {"files": "31000", "os": "Debian GNU/Linux 12 (bookworm)", "writable": "yes"}
    assert judge("host", fresh, good, now, timedelta(minutes=15), 1.5).ok
    stale = judge("host", fresh, good, now + timedelta(hours=2), timedelta(minutes=15), 1.5)
    assert stale.problems == ("2h10m old (backupMaxAgeMinutes is 15)",)
    broken = judge("host", fresh, {"files": "1"}, now, timedelta(minutes=15), 0.1)
    assert broken.problems == ("empty", "no readable /etc/os-release", "the writable snapshot refused a write")
    assert judge("lxc-web", None, {}, now, timedelta(minutes=15), 0).problems == ("no backup",)


# --- the container swap, against a fake host ---------------------------------------------------


class FakeHost:
    """Records commands; `answers` maps an argv prefix to (exit status, stdout)."""

    def __init__(self, name: str, answers: dict[tuple[str, ...], tuple[int, bytes]] | None = None) -> None:
        self.target = SimpleNamespace(name=name)
        self.answers = answers or {}
        self.ran: list[tuple[str, ...]] = []
        self.files: dict[str, bytes] = {}

    def run(self, argv: Sequence[str], *, check: bool = True, **_: Any) -> Result:
        argv = tuple(argv)
        self.ran.append(argv)
        code, out = next((a for prefix, a in self.answers.items() if argv[: len(prefix)] == prefix), (0, b""))
        if check and code != 0:
            raise RemoteError(f"{argv[0]} failed")
        return Result(code, out, b"")

    def put_file(self, path: str, data: bytes, **_: Any) -> None:
        self.ran.append(("put", path))
        self.files[path] = data

    def stream(self, argv: Sequence[str], write: Callable[[bytes], object], **_: Any) -> Result:
        self.ran.append(tuple(argv))
        for chunk in self.chunks:
            write(chunk)
        return Result(0, b"", b"")

    chunks: list[bytes] = []

    def names(self) -> list[str]:
        return [argv[0] if argv[0] != "sh" else argv[2].split()[0] + "..." for argv in self.ran]

    def index(self, prefix: tuple[str, ...]) -> int:
        return next(i for i, argv in enumerate(self.ran) if argv[: len(prefix)] == prefix)


RUNNING = {("lxc-info",): (0, b"RUNNING\n"), ("test", "-e"): (1, b"")}
POINT_PATH = "/var/lib/backups/backups/bob/lxc-web.20261122T2045"


def test_a_restore_stages_everything_before_it_stops_the_container() -> None:
    tom = FakeHost("tom", dict(RUNNING))
    lines: list[str] = []
    assert restore_container(tom, tom, POINT_PATH, "web", b"config\n", lines.append)  # type: ignore[arg-type]
    paths = LxcPaths("web")
    stop = tom.index(("lxc-stop",))
    staged = [tom.index(("btrfs", "-q", "subvolume", "snapshot", "--", POINT_PATH)), tom.index(("put",))]
    assert all(i < stop for i in staged)
    assert tom.files == {f"{paths.staged}/config": b"config\n"}
    assert ("touch", "--", f"{paths.staged}/infr-created") in tom.ran
    assert stop < tom.index(swap_in_argv(paths)) < tom.index(("lxc-start",)) < tom.index(clear_argv(paths.old))
    assert not any("property" in argv for argv in tom.ran)


def test_a_restore_elsewhere_receives_then_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    piped: list[tuple[object, ...]] = []
    monkeypatch.setattr(lxc_restore, "pipe", lambda *args, **kw: piped.append(args) or 42)
    tom, ann = FakeHost("tom"), FakeHost("ann", {("lxc-info",): (1, b""), ("test", "-e"): (1, b"")})
    restore_container(tom, ann, POINT_PATH, "web", b"c", lambda _: None)  # type: ignore[arg-type]
    paths = LxcPaths("web")
    assert piped == [(tom, ("btrfs", "send", "-q", "--", POINT_PATH), ann, ("btrfs", "receive", "--", paths.staged))]
    received = f"{paths.staged}/lxc-web.20261122T2045"
    assert ("btrfs", "-q", "subvolume", "snapshot", "--", received, f"{paths.staged}/rootfs") in ann.ran
    assert ("btrfs", "-q", "subvolume", "delete", "--", received) in ann.ran
    assert not any(argv[0] == "lxc-stop" for argv in ann.ran)  # none was there to stop
    assert clear_argv(paths.old) not in ann.ran  # and none to delete


def test_a_restored_container_that_does_not_start_gives_the_old_one_back() -> None:
    tom = FakeHost("tom", {**RUNNING, ("lxc-start",): (1, b"")})
    tom.answers = {("lxc-start", "-n", "web"): (1, b""), **RUNNING}
    paths = LxcPaths("web")
    with pytest.raises(RemoteError, match="did not start") as e:
        restore_container(tom, tom, POINT_PATH, "web", b"c", lambda _: None)  # type: ignore[arg-type]
    assert "the container it replaced is back" in e.value.message and paths.staged in str(e.value.hint)
    back = tom.index(swap_back_argv(paths))
    assert tom.index(swap_in_argv(paths)) < back
    assert clear_argv(paths.old) not in tom.ran  # the old one is never deleted


def test_a_leftover_replaced_container_stops_the_restore() -> None:
    tom = FakeHost("tom", {("lxc-info",): (0, b"RUNNING\n")})  # `test -e` of .old succeeds
    with pytest.raises(ConflictError, match="left from an earlier restore"):
        restore_container(tom, tom, POINT_PATH, "web", b"c", lambda _: None)  # type: ignore[arg-type]
    assert not any(argv[0] in ("lxc-stop", "btrfs") for argv in tom.ran)


def plan(**changes: Any) -> LxcPlan:
    fields = {"name": "web", "point": point("lxc-web", at(22, 20, 45)), "target": "bob", "current": "bob"}
    return LxcPlan(**{**fields, "on_target": "RUNNING", **changes})


def test_plan_says_what_happens() -> None:
    now = at(22, 23, 50)
    text = "\n".join(plan().lines(now))
    assert "lxc-web.20261122T2045 (2026-11-22 20:45 UTC, 3h05m ago) from tom" in text
    assert "stream it from tom" in text and "destroyed once the restored one runs" in text
    moving = plan(target="tom", on_target="", old_copy="unreachable")
    assert moving.moving and not moving.replaces
    assert "snapshot it there" in "\n".join(moving.lines(now)) and "left there" in "\n".join(moving.lines(now))
    assert plan(target="tom", on_target="", old_copy="STOPPED").replaces


# --- files out of a host backup ----------------------------------------------------------------


def tar_of(root: Path, member: str) -> bytes:
    return subprocess.run(list(tar_create_argv(str(root), member)), capture_output=True, check=True).stdout


def test_copy_out_extracts_the_stream_byte_for_byte(backup_tree: Path, tmp_path: Path) -> None:
    data = backup_tree / "etc" / "nginx" / "blob"
    data.write_bytes(os.urandom(300_000))
    data.chmod(0o640)
    os.utime(data, (1_700_000_000, 1_700_000_000))
    backup = FakeHost("tom")
    stream = tar_of(backup_tree, "etc")
    backup.chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    into = tmp_path / "restored"
    assert copy_out(backup, str(backup_tree), "etc", into, lambda _: None) == len(stream)  # type: ignore[arg-type]
    copy = into / "etc" / "nginx" / "blob"
    assert copy.read_bytes() == data.read_bytes()
    assert (copy.stat().st_mode & 0o777, int(copy.stat().st_mtime)) == (0o640, 1_700_000_000)
    assert os.readlink(into / "etc" / "dangling") == "/nowhere"


def test_copy_out_reports_a_missing_path_before_touching_anything(tmp_path: Path) -> None:
    backup = FakeHost("tom", {("sh",): (PATH_MISSING, b"")})
    with pytest.raises(NotFoundError, match="/etc/nothing is not in"):
        copy_out(backup, "/b/host.x", "etc/nothing", tmp_path / "r", lambda _: None)  # type: ignore[arg-type]
    assert not (tmp_path / "r").exists()


def test_copy_out_says_when_tar_here_fails(tmp_path: Path) -> None:
    backup = FakeHost("tom")
    backup.chunks = [b"this is not a tar stream" * 1000]
    with pytest.raises(InfrError, match="tar on this machine failed"):
        copy_out(backup, "/b/host.x", "etc", tmp_path / "r", lambda _: None)  # type: ignore[arg-type]


def test_tar_here_keeps_members_inside_into(tmp_path: Path) -> None:
    """GNU tar refuses `..` members and strips a leading /: a hostile stream stays in INTO."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in ("../escaped", "/abs-escaped"):
            info = tarfile.TarInfo(name)
            info.size = 3
            archive.addfile(info, io.BytesIO(b"bad"))
    backup = FakeHost("tom")
    backup.chunks = [buffer.getvalue()]
    into = tmp_path / "deep" / "restored"
    with pytest.raises(InfrError):
        copy_out(backup, "/b/host.x", "etc", into, lambda _: None)  # type: ignore[arg-type]
    assert not (tmp_path / "deep" / "escaped").exists() and not Path("/abs-escaped").exists()


# --- the CLI: errors before anything is touched ---------------------------------------------


def seed(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151", status=HOST_READY)
    seed_host(root, "tom", "45.32.191.152", status=HOST_READY)
    seed_host(root, "new", "45.32.191.153")  # still installing
    seed_lxc(root, "web", "bob")


@pytest.fixture
def world(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    return clone_state(state_template("restore-world", seed), tmp_path / "state")


def refused(root: Path, error: type[InfrError], *args: str) -> InfrError:
    before = snapshot(root)
    result = run_cli(root, *args)
    assert isinstance(result.exception, error), (args, result.output, result.exception)
    assert snapshot(root) == before
    return result.exception


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        (("lxc", "web", "restore", "--at", "last tuesday"), UsageError, "--at 'last tuesday' is not a time"),
        (("lxc", "nope", "restore"), NotFoundError, "no LXC named 'nope'"),
        (("lxc", "web", "restore", "--to", "nope"), NotFoundError, "no host named 'nope'"),
        (("lxc", "web", "restore", "--to", "new"), ConflictError, "host new is installing"),
        (("-D", "tom", "lxc", "web", "restore", "--to", "tom"), UsageError, "host tom is marked down"),
        (("lxc", "web", "restore"), NotFoundError, "no backup of LXC web found"),  # no pairs: no SSH at all
        (("host", "bob", "restore-files", "/etc/../..", "--into", "x"), UsageError, "inside the backup"),
        (("host", "nope", "restore-files", "/etc", "--into", "x"), NotFoundError, "no host named 'nope'"),
        (("host", "bob", "restore-files", "/etc", "--into", "x", "--at", "soon"), UsageError, "not a time"),
        (("backup", "drill", "bob", "tom"), NotFoundError, "no backup bob -> tom"),
    ],
)
def test_cli_refuses_with_one_clear_error(
    world: Path, args: tuple[str, ...], error: type[InfrError], text: str
) -> None:
    assert text in str(refused(world, error, *args))


def test_restore_files_refuses_a_directory_that_is_not_empty(world: Path, tmp_path: Path) -> None:
    into = tmp_path / "into"
    into.mkdir()
    (into / "keep.txt").write_text("mine\n")
    error = refused(world, ConflictError, "host", "bob", "restore-files", "/etc", "--into", str(into))
    assert "is not empty" in str(error) and error.hint == "give a new or empty directory"
    assert (into / "keep.txt").read_text() == "mine\n"


def test_restore_files_needs_into(world: Path) -> None:
    result = run_cli(world, "host", "bob", "restore-files", "/etc")
    assert result.exit_code == 2 and "--into" in result.output


def test_drill_refuses_an_archived_pair(world: Path) -> None:
    from infr.state.session import Session

    with Session(world, command_line="test: archived pair").change() as change:
        change.set_backups([Backup("bob", "tom", status="archived")])
    assert "is archived" in str(refused(world, ConflictError, "backup", "drill", "bob", "tom"))


def test_listing_with_no_backups_says_so(world: Path) -> None:
    result = run_cli(world, "lxc", "web", "backups")
    assert result.exit_code == 0 and "no backups of web yet" in result.output
    assert run_cli(world, "host", "bob", "backups", "-o", "json").stdout.strip() == "[]"


def test_new_commands_have_help() -> None:
    for args in (["lxc", "x", "restore"], ["host", "x", "restore-files"], ["backup", "drill"]):
        result = run_cli(None, *args, "--help")
        assert result.exit_code == 0 and "--" in result.output, args


# --- after the restore: state, routing, backups, the old copy ------------------------------------


@pytest.fixture
def moving(world: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[object, ...]], dict[str, FakeHost]]:
    """followups.restore_lxc with the hosts faked: records what is done where, in order."""
    from contextlib import contextmanager

    from infr import followups
    from infr.engine import fleet
    from infr.routing import deploy
    from infr.vnet import members

    calls: list[tuple[object, ...]] = []
    hosts: dict[str, FakeHost] = {}

    @contextmanager
    def connect(session: object, name: str) -> Any:
        yield hosts.setdefault(name, FakeHost(name))

    def restored(source: FakeHost, dest: FakeHost, path: str, name: str, config: bytes, report: object) -> list[str]:
        gateway = next(line for line in config.decode().splitlines() if "gateway" in line).split()[-1]
        calls.append(("restore", source.target.name, dest.target.name, path, gateway))
        return ["restored"]

    monkeypatch.setattr(fleet, "connect", connect)
    monkeypatch.setattr(lxc_restore, "restore_container", restored)
    def routed(session: object, names: set[str], report: object) -> list[str]:
        calls.append(("haproxy", sorted(names)))
        return []

    monkeypatch.setattr(deploy, "apply_routing", routed)
    monkeypatch.setattr(pairs, "redeploy_targets", lambda s, names, r: calls.append(("btrbk", sorted(names))) or [])
    monkeypatch.setattr(members, "after_lxc_change", lambda s, r: calls.append(("mesh",)) or [])
    monkeypatch.setattr(followups, "add_lxc", lambda *args: calls.append(("inside", args[4])) or [])
    return calls, hosts


def test_a_move_restores_then_updates_state_routing_and_backups(world: Path, moving: Any) -> None:
    from infr.state.session import Session
    from infr.state.store import Store

    calls, hosts = moving
    lines: list[str] = []
    tom = Store(world).load().hosts["tom"]
    web = point("lxc-web", at(22, 20, 45), on="tom")
    plan = LxcPlan("web", web, target="tom", current="bob", on_target="", old_copy="RUNNING")
    followups.restore_lxc(Session(world), plan, lines.append)
    assert Store(world).load().lxcs["web"].host == "tom"
    assert calls == [
        ("restore", "tom", "tom", web.path, tom.vnet_ip),  # on the backup host (one connection); tom's network
        ("haproxy", ["bob", "tom"]),
        ("mesh",),
        ("btrbk", ["bob", "tom"]),
        ("inside", "tom"),
    ]
    assert ("lxc-destroy", "-n", "web", "-f") in hosts["bob"].ran
    assert "LXC web moved from bob to tom" in lines and any("tom is not backed up" in line for line in lines)


def test_a_move_off_a_dead_host_leaves_it_alone_and_says_what_to_do(world: Path, moving: Any) -> None:
    from infr.state.session import Session

    calls, hosts = moving
    lines: list[str] = []
    plan = LxcPlan(
        "web", point("lxc-web", at(22, 20, 45)), target="tom", current="bob", on_target="", old_copy="unreachable"
    )
    followups.restore_lxc(Session(world), plan, lines.append)
    assert ("haproxy", ["tom"]) in calls and "bob" not in hosts
    assert any("lxc-destroy -n web -f" in line and "infr host bob reconfigure" in line for line in lines)


def test_a_failure_after_the_restore_says_the_restore_worked(
    world: Path, moving: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infr.routing import deploy
    from infr.state.session import Session
    from infr.state.store import Store

    def broken(*args: object) -> list[str]:
        raise RemoteError("tom: the new config failed 'haproxy -c'; nothing changed")

    monkeypatch.setattr(deploy, "apply_routing", broken)
    plan = LxcPlan("web", point("lxc-web", at(22, 20, 45)), target="tom", current="bob", on_target="", old_copy="")
    with pytest.raises(InfrError, match="web is restored and runs on tom, state says so, but then: tom: the new") as e:
        followups.restore_lxc(Session(world), plan, lambda _: None)
    assert e.value.hint == "finish with: infr host HOST reconfigure"
    assert Store(world).load().lxcs["web"].host == "tom"


def test_apply_refuses_a_plan_that_state_has_overtaken(world: Path, moving: Any) -> None:
    from infr.state.session import Session

    plan = LxcPlan("web", point("lxc-web", at(22, 20, 45)), target="bob", current="tom", on_target="")
    with pytest.raises(ConflictError, match="web moved to bob meanwhile"):
        lxc_restore.apply_lxc(Session(world), plan, lambda _: None)


def test_listing_is_newest_first_with_ages(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = find.Found(sorted(POINTS, reverse=True), skipped=["ann"])
    asked: list[dict[str, object]] = []
    monkeypatch.setattr(find, "find_points", lambda session, **kw: asked.append(kw) or found)
    result = run_cli(world, "lxc", "web", "backups")
    assert asked == [{"from_host": None, "subvol": "lxc-web"}]
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["TAKEN", "(UTC)", "AGE", "SUBVOLUME", "ON", "FROM", "NAME"]
    assert [row[-1] for row in rows[2:]] == [p.point.name for p in sorted(POINTS, reverse=True)]
    assert rows[2][:2] == ["2026-11-23", "09:00"]
    assert "ann is marked down (-D)" in result.stderr
    run_cli(world, "host", "bob", "backups")
    assert asked[-1] == {"from_host": "bob", "subvol": None}


def test_drill_prints_a_row_per_subvolume_and_fails_when_one_fails(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infr.restore.drill import DrillCheck

    now = datetime.now(UTC)
    checks = [
        DrillCheck("host", "host.x", now - timedelta(minutes=3), 31000, "Debian GNU/Linux 12 (bookworm)", 2.5),
        DrillCheck("lxc-db", problems=("no backup",)),
    ]
    monkeypatch.setattr(restore_drill, "drill", lambda *args: checks)
    result = run_cli(world, "backup", "drill", "bob", "tom")
    assert result.exit_code == 1
    assert "FAILED: no backup" in result.stdout and "31000" in result.stdout and " 3m " in result.stdout
    as_json = run_cli(world, "backup", "drill", "bob", "tom", "-o", "json")
    assert '"ok":true' in as_json.stdout.replace(" ", "") and as_json.exit_code == 1
    checks.pop()
    assert run_cli(world, "backup", "drill", "bob", "tom").exit_code == 0


def test_restore_prints_the_plan_and_asks_for_the_name(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[LxcPlan] = []
    monkeypatch.setattr(lxc_restore, "plan_lxc", lambda session, name, at, to: plan(point=POINTS[4]))
    monkeypatch.setattr(lxc_restore, "apply_lxc", lambda session, p, report: applied.append(p) or [])
    dry = run_cli(world, "lxc", "web", "restore", "--dry-run")
    assert dry.exit_code == 0 and "web: restore lxc-web.20261123T0900" in dry.stdout and not applied
    wrong = run_cli(world, "lxc", "web", "restore", input="db\n")
    assert wrong.exit_code == 1 and not applied  # aborted: nothing done
    typed = run_cli(world, "lxc", "web", "restore", input="web\n")
    assert typed.exit_code == 0 and len(applied) == 1 and "restored from lxc-web.20261123T0900" in typed.stdout
    assert run_cli(world, "lxc", "web", "restore", "--yes").exit_code == 0 and len(applied) == 2


def test_copy_out_passes_on_what_tar_here_warns_about(backup_tree: Path) -> None:
    """Not root here: owners and privileged xattrs cannot be set; tar says so and goes on."""
    tool = backup_tree / "etc" / "ping"
    tool.write_bytes(b"pretend\n")
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("setcap"):
        pytest.skip("needs root, setcap and setpriv")
    subprocess.run(["setcap", "cap_net_raw+ep", str(tool)], check=True)
    backup = FakeHost("tom")
    backup.chunks = [tar_of(backup_tree, "etc")]
    into = Path(tempfile.mkdtemp(prefix="infr-restore-"))  # nobody cannot reach into pytest's tmp_path
    into.chmod(0o777)
    lines: list[str] = []
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    original = restore_commands.tar_extract_argv
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(restore_commands, "tar_extract_argv", lambda d: (*nobody, *original(d)))
            copy_out(backup, str(backup_tree), "etc", into, lines.append)  # type: ignore[arg-type]
        assert (into / "etc" / "ping").read_bytes() == b"pretend\n"
        assert any("security.capability" in line for line in lines), lines
    finally:
        shutil.rmtree(into)


def test_restore_files_looks_at_the_hosts_own_backups_only(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, object]] = []
    monkeypatch.setattr(find, "find_points", lambda session, **kw: asked.append(kw) or find.Found([], []))
    into = world.parent / "restored"
    error = refused(world, NotFoundError, "host", "bob", "restore-files", "/etc", "--into", str(into))
    assert asked == [{"from_host": "bob", "subvol": "host"}]
    assert str(error).startswith("no backup of host bob found (list them with 'infr host bob backups'")


def test_restore_looks_for_the_container_on_every_backup_host(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, object]] = []
    monkeypatch.setattr(
        find, "find_points", lambda session, **kw: asked.append(kw) or find.Found([], ["ann"])
    )
    error = refused(world, NotFoundError, "lxc", "web", "restore", "--at", "2026-11-22T20:45")
    assert asked == [{"from_host": None, "subvol": "lxc-web"}]  # it may have been backed up from another host
    assert error.hint == "backup host(s) ann skipped (-D)"
