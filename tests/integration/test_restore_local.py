"""Restores over real SSH, on two real btrfs filesystems on loop devices.

"bob" holds a host root subvolume (@rootfs, as Debian's installer makes it) with the
container "web" in it; "tom" is bob's backup host, holding received backups of both,
as btrbk leaves them (read-only, with a received UUID), beside another host's backups
and bob's archive. Each has its own sshd on 127.0.0.1, logged in to as root with an
admin key, the way infr reaches hosts (`manager` with sudo there).

This machine has no LXC: the LXC tools are a script (FAKE_LXC below) found first on
PATH by the connections, which checks what LXC would need (config, infr's mark, a
writable rootfs) and logs each start and stop with the rootfs it saw. Everything
btrfs, tar, ssh and the streaming through this process is real.

Run as root (loop devices, mounts): pytest tests/integration/test_restore_local.py -s
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from infr.backups import find
from infr.connector import SSHConnection, Target
from infr.connector.ssh import pipe
from infr.errors import NotFoundError, RemoteError, UsageError
from infr.restore.commands import LxcPaths, receive_argv, send_argv
from infr.restore.container import restore_container
from infr.restore.drill import drill_check_argv, drill_on, parse_drill
from infr.restore.files import copy_out
from tests.integration.btrfs_loop import (
    MIB,
    loop_filesystems,
    private_mounts,
    received_uuid,
    run,
    scratch_dir,
    tree,
    write_random,
)
from tests.integration.sshd import Sshd, make_keypair, start_sshd

pytestmark = pytest.mark.integration

TOOLS = ("btrfs", "mkfs.btrfs", "losetup", "mount", "umount", "tar", "findmnt", "setcap", "getcap")
STAMP = "20261122T2045"
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
CONFIG = b"# infr: LXC web (debian bookworm)\nlxc.uts.name = web\n"

FAKE_LXC = """\
#!/bin/sh
# Stands in for LXC's tools: container NAME exists when $FAKE_LXC_ROOT/NAME/config does;
# its state is a file in $FAKE_LXC_STATE, where `log` records each start and stop.
name=$2
dir=$FAKE_LXC_ROOT/$name
state=$FAKE_LXC_STATE/$name
log() { echo "$*" >> "$FAKE_LXC_STATE/log"; }
case ${0##*/} in
lxc-info)
    [ -f "$dir/config" ] || { echo "$name doesn't exist" >&2; exit 1; }
    cat "$state" 2>/dev/null || echo STOPPED ;;
lxc-start)
    [ -f "$dir/config" ] && [ -f "$dir/infr-created" ] || { echo "$name: no config or mark" >&2; exit 1; }
    if [ -e "$FAKE_LXC_STATE/fail-next-start" ]; then
        rm -f "$FAKE_LXC_STATE/fail-next-start"; echo "lxc-start: fake failure" >&2; exit 1
    fi
    touch "$dir/rootfs/.started" && rm -f "$dir/rootfs/.started" || exit 1  # a writable rootfs
    echo RUNNING > "$state"; log "start $name $(cat "$dir/rootfs/marker")" ;;
lxc-stop)
    echo STOPPED > "$state"; log "stop $name $(cat "$dir/rootfs/marker")" ;;
lxc-wait)
    [ "$(cat "$state")" = RUNNING ] ;;
lxc-destroy)
    btrfs -q subvolume delete -- "$dir/rootfs" && rm -rf -- "$dir" && rm -f -- "$state" && log "destroy $name" ;;
*)
    exit 2 ;;
esac
"""


class WithFakeLxc(SSHConnection):
    """Commands run as `env PATH=<fake LXC first> FAKE_LXC_...=... argv`, as root."""

    env: Sequence[str] = ()

    def _as_root(self, argv: Sequence[str]) -> list[str]:
        return ["env", *self.env, *argv]


@dataclass
class Host:
    name: str
    sshd: Sshd
    conn: WithFakeLxc
    mount: Path  # the filesystem's top level
    lxc_root: Path
    state: Path  # the fake LXC's state directory

    def log(self) -> list[str]:
        log = self.state / "log"
        return log.read_text().splitlines() if log.exists() else []


@dataclass
class World:
    directory: Path
    bob: Host
    tom: Host
    root: Path  # bob's root subvolume (@rootfs), mounted with the pool

    @property
    def backups(self) -> Path:
        return self.tom.mount / "var/lib/backups/backups/bob"

    def point(self, subvol: str) -> Path:
        return self.backups / f"{subvol}.{STAMP}"

    @property
    def rootfs(self) -> Path:
        return self.bob.lxc_root / "web" / "rootfs"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = scratch_dir(tmp_path_factory, "restore", TOOLS)
    key = make_keypair(directory / "admin_key")
    fake_bin = directory / "bin"
    fake_bin.mkdir()
    (fake_bin / "fake-lxc").write_text(FAKE_LXC)
    (fake_bin / "fake-lxc").chmod(0o755)
    for tool in ("lxc-info", "lxc-start", "lxc-stop", "lxc-wait", "lxc-destroy"):
        (fake_bin / tool).symlink_to("fake-lxc")
    servers: list[Sshd] = []
    conns: list[SSHConnection] = []
    with private_mounts(), loop_filesystems(directory, ["bob", "tom"]) as mounts:
        try:

            def host(name: str, lxc_root: Path) -> Host:
                servers.append(start_sshd([key.public]))
                target = Target(name, "127.0.0.1", servers[-1].port, "root", key.private, use_agent=False)
                conn = WithFakeLxc.connect(target)
                conns.append(conn)
                state = directory / f"lxc-state-{name}"
                state.mkdir()
                conn.env = [
                    f"PATH={fake_bin}:/usr/sbin:/usr/bin:/sbin:/bin",
                    f"FAKE_LXC_ROOT={lxc_root}",
                    f"FAKE_LXC_STATE={state}",
                ]
                lxc_root.mkdir(parents=True, exist_ok=True)
                return Host(name, servers[-1], conn, mounts[name], lxc_root, state)

            run(["btrfs", "subvolume", "create", str(mounts["bob"] / "@rootfs")])
            root = mounts["bob"] / "@rootfs"
            bob = host("bob", root / "var/lib/lxc")
            tom = host("tom", mounts["tom"] / "var/lib/lxc")
            world_ = World(directory, bob, tom, root)
            _populate(world_)
            yield world_
        finally:
            for conn in conns:
                conn.close()
            for server in servers:
                server.stop()


def _populate(world: World) -> None:
    """bob's root and its running container, backed up onto tom as btrbk would."""
    root, rootfs = world.root, world.rootfs
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text(OS_RELEASE)
    srv = root / "srv"
    write_random(srv / "data.bin", 5 * MIB)
    config = srv / "app" / "config.txt"
    config.parent.mkdir()
    config.write_text("secret=1\n")
    os.chown(config, 1234, 1234)
    config.chmod(0o640)
    os.setxattr(config, "user.infr", b"kept")
    tool = srv / "app" / "ping"
    tool.write_bytes(b"\x7fELF pretend\n")
    tool.chmod(0o755)
    run(["setcap", "cap_net_raw+ep", str(tool)])
    (srv / "app" / "current").symlink_to("config.txt")
    (srv / "empty-dir").mkdir()
    (root / "var" / "run").parent.mkdir(parents=True, exist_ok=True)
    (root / "var" / "run").symlink_to("/run")  # absolute, as on Debian

    rootfs.parent.mkdir(parents=True)
    run(["btrfs", "subvolume", "create", str(rootfs)])
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "os-release").write_text(OS_RELEASE)
    (rootfs / "marker").write_text("v1")
    (rootfs / "index.html").write_text("<h1>web</h1>\n")
    write_random(rootfs / "var" / "lib" / "data.bin", 20 * MIB)
    (rootfs.parent / "config").write_bytes(CONFIG)
    (rootfs.parent / "infr-created").touch()
    (world.bob.state / "web").write_text("RUNNING\n")

    snapshots = root / "var/lib/btrbk/snapshots/tom"
    snapshots.mkdir(parents=True)
    world.backups.mkdir(parents=True)
    for subvol, source in (("host", root), ("lxc-web", rootfs)):
        snapshot = snapshots / f"{subvol}.{STAMP}"
        run(["btrfs", "subvolume", "snapshot", "-r", str(source), str(snapshot)])
        _send_receive(snapshot, world.backups)
    # Beside them: another host's backups, and an older archive of bob's.
    for other in ("var/lib/backups/backups/alice", "var/lib/backups/archive/bob"):
        (world.tom.mount / other).mkdir(parents=True)
    old = snapshots / "host.20261101T1000"
    run(["btrfs", "subvolume", "snapshot", "-r", str(root), str(old)])
    _send_receive(old, world.tom.mount / "var/lib/backups/archive/bob")
    alice = snapshots / f"host.{STAMP}_1"
    run(["btrfs", "subvolume", "snapshot", "-r", str(root), str(alice)])
    _send_receive(alice, world.tom.mount / "var/lib/backups/backups/alice")

    (rootfs / "marker").write_text("v2-broken")  # what happened since the backup
    (rootfs / "index.html").unlink()


def _send_receive(snapshot: Path, directory: Path) -> None:
    send = subprocess.Popen(["btrfs", "send", "-q", str(snapshot)], stdout=subprocess.PIPE)
    subprocess.run(["btrfs", "receive", "-q", str(directory)], stdin=send.stdout, check=True, capture_output=True)
    assert send.stdout is not None
    send.stdout.close()
    assert send.wait() == 0


# --- listing ---------------------------------------------------------------------------------


def test_listing_over_ssh_shows_this_directorys_backups_only(world: World) -> None:
    tom = world.tom.conn
    assert [p.name for p in find.read_points(tom, str(world.backups))] == [f"host.{STAMP}", f"lxc-web.{STAMP}"]
    archive = find.read_points(tom, str(world.tom.mount / "var/lib/backups/archive/bob"))
    assert [p.name for p in archive] == ["host.20261101T1000"]
    assert find.read_points(tom, str(world.tom.mount / "var/lib/backups/backups/nobody")) == []


# --- containers --------------------------------------------------------------------------------


def test_restore_onto_its_host_streams_through_here_and_swaps_last(world: World) -> None:
    point, lines = world.point("lxc-web"), []
    paths = LxcPaths("web", str(world.bob.lxc_root))
    started = time.monotonic()
    changes = restore_container(world.tom.conn, world.bob.conn, str(point), "web", CONFIG, lines.append, paths)
    seconds = time.monotonic() - started
    print(f"\nrestore of a {20}-MiB container over two SSH connections: {seconds:.1f}s; {lines}")

    assert changes == [f"restored web on bob from lxc-web.{STAMP}"]
    assert tree(world.rootfs) == tree(point)
    assert received_uuid(world.rootfs) == "-"  # a writable snapshot, no stale received UUID
    assert (world.rootfs.parent / "config").read_bytes() == CONFIG
    assert (world.rootfs.parent / "infr-created").exists()
    assert world.bob.log() == ["stop web v2-broken", "start web v1"]
    assert not list(Path(paths.work).iterdir())  # nothing staged or replaced is left
    assert any(line.startswith("received 20.") for line in lines)


def test_a_restore_that_does_not_start_puts_the_old_one_back(world: World) -> None:
    (world.rootfs / "marker").write_text("v3-current")
    (world.bob.state / "fail-next-start").touch()
    paths = LxcPaths("web", str(world.bob.lxc_root))
    with pytest.raises(RemoteError, match="did not start") as e:
        restore_container(world.tom.conn, world.bob.conn, str(world.point("lxc-web")), "web", CONFIG, print, paths)
    assert "the container it replaced is back and running" in e.value.message
    assert (world.rootfs / "marker").read_text() == "v3-current"
    # stopped, the restored one stopped for sure after its failed start, the old one started again
    assert world.bob.log()[-3:] == ["stop web v3-current", "stop web v1", "start web v3-current"]
    assert (Path(paths.staged) / "rootfs" / "marker").read_text() == "v1"  # kept to look at
    assert not Path(paths.old).exists()


def test_restore_onto_the_backup_host_is_a_snapshot(world: World) -> None:
    point = world.point("lxc-web")
    paths = LxcPaths("web", str(world.tom.lxc_root))
    restore_container(world.tom.conn, world.tom.conn, str(point), "web", CONFIG, print, paths)
    rootfs = world.tom.lxc_root / "web" / "rootfs"
    assert tree(rootfs) == tree(point)
    assert world.tom.log() == ["start web v1"]  # nothing was there to stop


def test_pipe_blames_the_side_that_failed(world: World) -> None:
    scratch = world.bob.mount / "scratch"
    scratch.mkdir()
    point = str(world.point("host"))
    moved = pipe(world.tom.conn, send_argv(point), world.bob.conn, receive_argv(str(scratch)))
    assert moved > 5 * MIB and received_uuid(scratch / f"host.{STAMP}") != "-"
    with pytest.raises(RemoteError, match=r"(?s)^bob: `.*btrfs receive .*` exited with status 1: .*File exists"):
        pipe(world.tom.conn, send_argv(point), world.bob.conn, receive_argv(str(scratch)))
    with pytest.raises(RemoteError, match=r"^tom: `btrfs send -q -- /nonexistent` exited"):
        pipe(world.tom.conn, send_argv("/nonexistent"), world.bob.conn, receive_argv(str(scratch)))
    run(["btrfs", "subvolume", "delete", str(scratch / f"host.{STAMP}")])


# --- files -------------------------------------------------------------------------------------


def test_restore_files_byte_for_byte(world: World) -> None:
    into = world.directory / "restored"
    warnings: list[str] = []
    size = copy_out(world.tom.conn, str(world.point("host")), "srv", into, warnings.append)
    assert warnings == []  # as root, tar here sets every owner and xattr
    print(f"\nrestore-files: {size} bytes of tar stream for /srv")
    assert tree(into / "srv") == tree(world.point("host") / "srv") == tree(world.root / "srv")
    config = into / "srv" / "app" / "config.txt"
    assert (config.stat().st_uid, config.stat().st_gid, config.stat().st_mode & 0o777) == (1234, 1234, 0o640)
    assert os.getxattr(config, "user.infr") == b"kept"
    getcap = run(["getcap", str(into / "srv" / "app" / "ping")]).stdout
    assert "cap_net_raw" in getcap  # security.capability survives too (as root)
    assert os.readlink(into / "srv" / "app" / "current") == "config.txt"


def test_restore_files_refuses_what_is_not_in_the_backup(world: World) -> None:
    point = str(world.point("host"))
    with pytest.raises(NotFoundError, match="/srv/nothing is not in"):
        copy_out(world.tom.conn, point, "srv/nothing", world.directory / "r1", lambda _: None)
    with pytest.raises(UsageError, match="leads out of the backup"):
        copy_out(world.tom.conn, point, "var/run/sshd.pid", world.directory / "r2", lambda _: None)
    assert not (world.directory / "r1").exists() and not (world.directory / "r2").exists()


# --- drill -------------------------------------------------------------------------------------


def test_drill_restores_checks_and_deletes(world: World) -> None:
    tom = world.tom.conn
    points = find.read_points(tom, str(world.backups))
    scratch = str(world.tom.mount / "var/lib/backups/drill/bob")
    taken = points[0].at
    started = time.monotonic()
    checks = drill_on(
        tom, points, str(world.backups), ["host", "lxc-web", "lxc-db"], scratch, taken, timedelta(minutes=15), print
    )
    print(f"\ndrill: {time.monotonic() - started:.1f}s; {[(c.subvol, c.files, c.os, c.problems) for c in checks]}")
    host, web, db = checks
    assert host.ok and web.ok and host.os == "Debian GNU/Linux 12 (bookworm)" and web.files > 3
    assert db.problems == ("no backup",)
    assert not Path(scratch).exists()
    late = drill_on(
        tom, points, str(world.backups), ["host"], scratch, taken + timedelta(hours=1), timedelta(minutes=15), print
    )
    assert late[0].problems == ("1h00m old (backupMaxAgeMinutes is 15)",)


def test_drill_check_reads_nothing_outside_the_copy(world: World) -> None:
    copy = world.tom.mount / "escape"
    run(["btrfs", "subvolume", "snapshot", str(world.point("host")), str(copy)])
    (copy / "etc" / "os-release").unlink()
    (copy / "etc" / "os-release").symlink_to("/etc/os-release")  # tom's own
    figures = parse_drill(world.tom.conn.run(drill_check_argv(str(copy))).text)
    assert "os" not in figures and figures["writable"] == "yes"
    run(["btrfs", "subvolume", "delete", str(copy)])
