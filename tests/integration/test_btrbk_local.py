"""btrbk with infr's rendered config, on two real btrfs filesystems on loop devices.

"alpha" (FROM) is a btrfs whose root subvolume @rootfs holds an LXC rootfs subvolume;
"beta" (TO) is a second btrfs holding the backups. btrbk pulls over a real sshd on
127.0.0.1 whose only authorized key is the rendered authorized_keys line, so every
command goes through the rendered filter and btrbk's ssh_filter_btrbk.sh. The TO side
runs the ExecStart lines of the rendered systemd service, with the rendered ssh client
config (pinned host key) through a `ssh` shim on PATH that also counts the bytes of
every send stream.

Run as root (loop devices, mounts): pytest -m integration tests/integration/test_btrbk_local.py -s
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infr.backups.btrbk import (
    HOST_SUBVOL,
    LXC_DIR,
    SNAPSHOT_DIR,
    BackupSettings,
    backup_dir,
    lxc_rootfs,
    lxc_subvol,
    render_authorized_key,
    render_btrbk_conf,
    render_source_files,
    render_units,
    setup_commands,
    snapshot_dir,
)
from infr.backups.points import RestorePoint, list_restore_points_argv, parse_restore_points, pick_restore_point
from infr.backups.retention import backup_age_status, snapshots_to_cull
from infr.restore.commands import (
    LxcPaths,
    clear_argv,
    delete_subvolume_argv,
    make_dirs_argv,
    receive_argv,
    send_argv,
    snapshot_argv,
    swap_in_argv,
    tar_create_argv,
    tar_extract_argv,
)
from infr.state.model import Backup, Host, Lxc
from tests.integration.btrfs_loop import private_mounts, received_uuid, scratch_dir, wait_detached, write_random
from tests.integration.btrfs_loop import tree as loop_tree
from tests.integration.sshd import KeyPair, Sshd, make_keypair, start_sshd

pytestmark = pytest.mark.integration

FROM, TO = "alpha", "beta"
WEB = Lxc("web", FROM, "debian", "12", "10.8.1.2")
MIB = 1024 * 1024
TOOLS = ("btrfs", "mkfs.btrfs", "btrbk", "losetup", "mount", "umount", "tar")

# Copies the send stream from stdin to stdout, counting it; slowed down while THROTTLE
# exists so that a test can cut the transfer half-way.
COUNTER = """\
import os, sys, time
log, throttle, command = sys.argv[1], sys.argv[2], sys.argv[3]
total = 0
while chunk := sys.stdin.buffer.read1(65536):
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
    total += len(chunk)
    if os.path.exists(throttle):
        time.sleep(0.02)
with open(log, "a") as f:
    f.write(f"{total}\\t{command}\\n")
"""

SSH_SHIM = """\
#!/bin/bash
# btrbk's ssh, with the rendered client config; send streams go through the counter.
set -o pipefail
case "$*" in
    *"btrfs send"*) /usr/bin/ssh -F {config} "$@" | {python} {counter} {log} {throttle} "$*" ;;
    *) exec /usr/bin/ssh -F {config} "$@" ;;
esac
"""


@dataclass
class Lab:
    directory: Path
    from_root: Path  # alpha's root subvolume (@rootfs), mounted
    to_root: Path  # beta's filesystem, mounted
    settings: BackupSettings
    service: str  # the rendered infr-backup.service
    env: dict[str, str]
    key: KeyPair
    ssh_config: Path
    sshd: Sshd
    devices: list[str] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)

    @property
    def target(self) -> Path:
        return Path(backup_dir(FROM, self.settings))

    @property
    def bytes_log(self) -> Path:
        return self.directory / "bytes.log"

    @property
    def throttle(self) -> Path:
        return self.directory / "throttle"

    def restore_points(self) -> list[RestorePoint]:
        listing = run(list_restore_points_argv(FROM, self.settings))
        return parse_restore_points(listing.stdout, str(self.target))

    def newest(self, subvol: str) -> RestorePoint:
        point = pick_restore_point(self.restore_points(), subvol)
        assert point is not None, f"no backup of {subvol}"
        return point

    def sends(self) -> list[tuple[int, str]]:
        """(bytes, ssh command line) of each send stream since the last call."""
        lines = self.bytes_log.read_text().splitlines() if self.bytes_log.exists() else []
        self.bytes_log.unlink(missing_ok=True)
        return [(int(n), command) for n, command in (line.split("\t", 1) for line in lines)]

    def ssh_exit(self) -> None:
        """Stop the ControlPersist master that btrbk's ssh left in the background."""
        argv = ["ssh", "-O", "exit", "-p", str(self.sshd.port), "root@127.0.0.1"]
        subprocess.run(argv, env=self.env, capture_output=True, check=False, timeout=30)

    def ssh(self, command: str) -> subprocess.CompletedProcess[str]:
        """A command sent with beta's key, as btrbk would send it."""
        argv = ["ssh", "-i", self.settings.ssh_identity, "-p", str(self.sshd.port), "root@127.0.0.1", command]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)


def run(argv: tuple[str, ...] | list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300)


# --- the lab: two btrfs filesystems, an sshd, the rendered files --------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = scratch_dir(tmp_path_factory, "btrbk", TOOLS)
    devices: list[str] = []
    mounts: list[Path] = []
    lab_: Lab | None = None
    with private_mounts():
        try:
            from_root, to_root = _filesystems(directory, devices, mounts)
            lab_ = _configure(directory, from_root, to_root)
            lab_.devices, lab_.mounts = devices, mounts
            yield lab_
        finally:
            _teardown(lab_, directory, devices, mounts)


def _filesystems(directory: Path, devices: list[str], mounts: list[Path]) -> tuple[Path, Path]:
    for name in ("alpha", "beta"):
        image = directory / f"{name}.img"
        with image.open("wb") as f:
            f.truncate(1024 * MIB)
        devices.append(run(["losetup", "--find", "--show", str(image)]).stdout.strip())
        run(["mkfs.btrfs", "-q", devices[-1]])
    pool, from_root, to_root = directory / "alpha-pool", directory / "alpha", directory / "beta"
    for path in (pool, from_root, to_root):
        path.mkdir()
    _mount([devices[0], str(pool)], mounts)
    run(["btrfs", "subvolume", "create", str(pool / "@rootfs")])  # Debian's root subvolume
    _mount(["-o", "subvol=@rootfs", devices[0], str(from_root)], mounts)
    _mount([devices[1], str(to_root)], mounts)
    rootfs = Path(lxc_rootfs("web", str(from_root)))
    rootfs.parent.mkdir(parents=True)
    run(["btrfs", "subvolume", "create", str(rootfs)])
    return from_root, to_root


def _mount(args: list[str], mounts: list[Path]) -> None:
    run(["mount", *args])
    mounts.append(Path(args[-1]))


def _configure(directory: Path, from_root: Path, to_root: Path) -> Lab:
    settings = BackupSettings(
        admin_email="ops@example.com",
        ssh_user="root",  # the sudo backend has its own test below
        use_sudo=False,
        source_root=str(from_root),
        backup_dir=str(to_root / "var/lib/backups/backups"),
        btrbk_dir=str(directory / "etc-btrbk"),
        lockfile=str(directory / "btrbk.lock"),
        filter_script=str(directory / "infr-backup-filter"),
    )
    Path(settings.ssh_identity).parent.mkdir(parents=True)
    key = make_keypair(Path(settings.ssh_identity))
    _install(render_source_files(settings))
    sshd = start_sshd([render_authorized_key(TO, key.public, settings)])
    from_host = Host(FROM, "198.51.100.11", "127.0.0.1", ssh_port=sshd.port, host_key=sshd.host_key)
    to_host = Host(TO, "198.51.100.12", "127.0.0.2")
    for command in setup_commands(FROM, TO, settings):
        run(command.argv)
    Path(settings.btrbk_conf).write_text(
        render_btrbk_conf(to_host, [(Backup(FROM, TO), from_host)], {FROM: [WEB]}, settings)
    )
    units = render_units(to_host, [from_host], settings)
    _install({settings.known_hosts: units[settings.known_hosts]})
    ssh_config = directory / "ssh_config"
    ssh_config.write_text(units["/etc/ssh/ssh_config.d/infr-backup.conf"])
    env = _shim(directory, ssh_config)
    service = units["/etc/systemd/system/infr-backup.service"]
    return Lab(directory, from_root, to_root, settings, service, env, key, ssh_config, sshd)


def _install(files: dict[str, str]) -> None:
    for path, text in files.items():
        Path(path).write_text(text)
        Path(path).chmod(0o755 if text.startswith("#!") else 0o644)


def _shim(directory: Path, ssh_config: Path) -> dict[str, str]:
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    counter = directory / "counter.py"
    counter.write_text(COUNTER)
    shim = bin_dir / "ssh"
    shim.write_text(
        SSH_SHIM.format(
            config=ssh_config,
            python=sys.executable,
            counter=counter,
            log=directory / "bytes.log",
            throttle=directory / "throttle",
        )
    )
    shim.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "TZ": "UTC", "LANG": "C.UTF-8"}


def _teardown(lab: Lab | None, directory: Path, devices: list[str], mounts: list[Path]) -> None:
    if lab is not None:
        lab.ssh_exit()
        lab.sshd.stop()
    for mount in reversed(mounts):
        subprocess.run(["umount", str(mount)], check=False)
    for device in devices:
        subprocess.run(["losetup", "-d", device], check=False)
    wait_detached(devices)
    for image in directory.glob("*.img"):
        image.unlink()


# --- running the rendered service ---------------------------------------------------------


def exec_starts(service: str) -> list[tuple[bool, list[str]]]:
    """(failure ignored, argv) of each ExecStart line, as systemd would run them."""
    lines = re.findall(r"^ExecStart=(-?)(.+)$", service, re.M)
    return [(dash == "-", shlex.split(command)) for dash, command in lines]


def run_service(lab: Lab) -> int:
    """Run the unit's ExecStart lines in order; the exit code systemd would judge."""
    ok = {0} | {int(code) for code in re.findall(r"^SuccessExitStatus=(.+)$", lab.service, re.M)[0].split()}
    for ignored, argv in exec_starts(lab.service):
        result = subprocess.run(argv, env=lab.env, capture_output=True, text=True, timeout=300)
        print(result.stdout + result.stderr, end="")
        if not ignored and result.returncode not in ok:
            return result.returncode
    return 0


def btrbk(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["btrbk", "-c", lab.settings.btrbk_conf, *args]
    return subprocess.run(argv, env=lab.env, capture_output=True, text=True, timeout=300)


# --- helpers on trees and processes --------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """btrfs_loop.tree without btrbk's snapshot directory: it changes with every snapshot taken."""
    return loop_tree(root, leave_out=SNAPSHOT_DIR)


def receive_pid(session: int, target: Path) -> int | None:
    """The `btrfs receive` into target that runs in our btrbk's session, if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ours = argv[:2] == [b"btrfs", b"receive"] and os.getsid(int(entry.name)) == session
            if ours and argv[2].decode().rstrip("/") == str(target):
                return int(entry.name)
        except (OSError, IndexError):
            continue
    return None


def start_throttled_run(lab: Lab) -> tuple[subprocess.Popen[str], int]:
    """`btrbk run` in its own session, slowed down; returns it and its receive's PID."""
    lab.throttle.touch()
    argv = exec_starts(lab.service)[-1][1]
    proc = subprocess.Popen(argv, env=lab.env, start_new_session=True, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (pid := receive_pid(proc.pid, lab.target)) is None:
        assert proc.poll() is None and time.monotonic() < deadline, "btrbk never started receiving"
        time.sleep(0.05)
    time.sleep(1.0)  # let part of the stream land
    return proc, pid


def pipe_here(send: tuple[str, ...], receive: tuple[str, ...]) -> None:
    sender = subprocess.Popen(send, stdout=subprocess.PIPE)
    subprocess.run(receive, stdin=sender.stdout, check=True, capture_output=True)
    assert sender.stdout is not None
    sender.stdout.close()
    assert sender.wait() == 0


def restore_here(point: Path, name: str, root: Path, *, same_filesystem: bool) -> LxcPaths:
    """The btrfs steps of restore.container.restore_container, run here (no LXC in this lab; the
    whole restore over SSH: test_restore_local.py): stage (a snapshot, or received from
    the other filesystem first), swap in, delete the replaced rootfs."""
    paths = LxcPaths(name, str(root / LXC_DIR))
    run(clear_argv(paths.staged))
    run(make_dirs_argv(paths))
    rootfs = f"{paths.staged}/rootfs"
    if same_filesystem:
        run(snapshot_argv(str(point), rootfs))
    else:
        pipe_here(send_argv(str(point)), receive_argv(paths.staged))
        run(snapshot_argv(f"{paths.staged}/{point.name}", rootfs))
        run(delete_subvolume_argv(f"{paths.staged}/{point.name}"))
    run(swap_in_argv(paths))
    run(clear_argv(paths.old))
    return paths


# --- the backup cycle, in order -------------------------------------------------------------


def test_first_backup_is_complete(lab: Lab) -> None:
    srv = lab.from_root / "srv"
    write_random(srv / "data.bin", 24 * MIB)
    config = srv / "app" / "config.txt"
    config.parent.mkdir()
    config.write_text("secret=1\n")
    os.chown(config, 1234, 1234)
    config.chmod(0o640)
    os.setxattr(config, "user.infr", b"kept")
    (Path(lxc_rootfs("web", str(lab.from_root))) / "index.html").write_text("<h1>web</h1>\n")

    assert run_service(lab) == 0
    sends = lab.sends()
    host, lxc = lab.newest(HOST_SUBVOL), lab.newest(lxc_subvol("web"))
    assert tree(lab.target / host.name) == tree(lab.from_root)
    assert tree(lab.target / lxc.name) == tree(Path(lxc_rootfs("web", str(lab.from_root))))
    full = sum(n for n, command in sends if "/host." in command)
    print(f"\nfull backup of alpha's root: {full} bytes sent for 24 MiB of data")
    assert 24 * MIB <= full < 26 * MIB


def test_incremental_moves_about_the_changed_bytes(lab: Lab) -> None:
    data = lab.from_root / "srv" / "data.bin"
    write_random(data, 4 * MIB, offset=8 * MIB)  # rewrite 4 MiB in the middle
    write_random(lab.from_root / "srv" / "new.bin", 1 * MIB)
    before = lab.newest(HOST_SUBVOL)

    assert run_service(lab) == 0
    sends = lab.sends()
    host = lab.newest(HOST_SUBVOL)
    assert host > before
    assert tree(lab.target / host.name) == tree(lab.from_root)
    host_bytes = [n for n, command in sends if "/host." in command]
    lxc_bytes = [n for n, command in sends if "/lxc-web." in command]
    assert all(" -p " in command for _, command in sends), sends  # incremental, with a parent
    print(f"\nincremental: {host_bytes[0]} bytes sent for 5 MiB changed; unchanged LXC: {lxc_bytes[0]} bytes")
    assert 5 * MIB <= host_bytes[0] < 5 * MIB + 256 * 1024
    assert lxc_bytes[0] < 16 * 1024


def host_backups(lab: Lab) -> list[RestorePoint]:
    return [p for p in lab.restore_points() if p.subvol == HOST_SUBVOL]


def host_names(lab: Lab) -> set[str]:
    """What `ls` shows, which is what btrbk list and Infr's `host backups` went by."""
    return {name for name in os.listdir(lab.target) if name.startswith(f"{HOST_SUBVOL}.")}


def test_receive_killed_half_way_leaves_no_backup(lab: Lab) -> None:
    write_random(lab.from_root / "srv" / "data.bin", 16 * MIB)
    before = host_backups(lab)
    proc, pid = start_throttled_run(lab)
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    lab.throttle.unlink()
    lab.sends()

    assert proc.returncode != 0  # the unit fails, and OnFailure mails the admin
    assert host_backups(lab) == before
    assert host_names(lab) == {p.name for p in before}  # btrbk deleted the half-received one


def test_run_killed_half_way_is_no_backup_and_the_next_run_recovers(lab: Lab) -> None:
    before = host_backups(lab)
    proc, _ = start_throttled_run(lab)
    os.killpg(proc.pid, signal.SIGKILL)  # power cut: btrbk dies with its receive
    proc.communicate(timeout=60)
    while receive_pid(proc.pid, lab.target) is not None:
        time.sleep(0.05)
    lab.throttle.unlink()
    lab.sends()

    stray = host_names(lab) - {p.name for p in before}
    assert len(stray) == 1  # half-received, under the name of a real backup...
    assert host_backups(lab) == before  # ...yet no restore point
    assert received_uuid(lab.target / stray.pop()) == "-"

    assert run_service(lab) == 0  # `btrbk clean`, then the run
    assert host_names(lab) == {p.name for p in host_backups(lab)}
    assert host_backups(lab)[-1] > before[-1]
    assert tree(lab.target / lab.newest(HOST_SUBVOL).name) == tree(lab.from_root)


def test_restore_files_byte_for_byte(lab: Lab) -> None:
    point = lab.target / lab.newest(HOST_SUBVOL).name
    into = lab.directory / "restored"
    into.mkdir()
    pipe_here(tar_create_argv(str(point), "srv"), tar_extract_argv(str(into)))
    assert tree(into / "srv") == tree(lab.from_root / "srv")
    config = into / "srv" / "app" / "config.txt"
    assert (config.stat().st_uid, config.stat().st_mode & 0o777) == (1234, 0o640)
    assert os.getxattr(config, "user.infr") == b"kept"


def test_restore_container_onto_its_host_then_back_up_again(lab: Lab) -> None:
    point = lab.newest(lxc_subvol("web"))
    rootfs = Path(lxc_rootfs("web", str(lab.from_root)))
    (rootfs / "index.html").unlink()
    (rootfs / "broken").write_text("oops\n")

    paths = restore_here(lab.target / point.name, "web", lab.from_root, same_filesystem=False)
    assert tree(rootfs) == tree(lab.target / point.name)
    assert received_uuid(rootfs) == "-"  # writable snapshot, no stale received UUID
    (rootfs / "after-restore").write_text("writable\n")
    assert not list(Path(paths.work).iterdir())  # nothing staged or replaced is left

    assert run_service(lab) == 0  # later incrementals still work
    assert tree(lab.target / lab.newest(lxc_subvol("web")).name) == tree(rootfs)


def test_restore_container_onto_the_backup_host(lab: Lab) -> None:
    point = lab.target / lab.newest(lxc_subvol("web")).name
    restore_here(point, "web", lab.to_root, same_filesystem=True)
    rootfs = Path(lxc_rootfs("web", str(lab.to_root)))
    assert tree(rootfs) == tree(point)
    (rootfs / "writable").write_text("yes\n")


def test_source_key_can_delete_only_its_own_snapshots(lab: Lab) -> None:
    rootfs = lxc_rootfs("web", str(lab.from_root))
    other = Path(snapshot_dir("gamma", lab.settings))  # another backup host's snapshots
    other.mkdir(parents=True)
    run(["btrfs", "subvolume", "snapshot", "-r", rootfs, str(other / "lxc-web.20261101T1000")])
    refused = [
        f"btrfs subvolume delete '{rootfs}'",
        f"btrfs subvolume delete '{other}/lxc-web.20261101T1000'",
        f"btrfs send '{rootfs}'",
        f"btrfs receive '{other}'",
        "touch /tmp/infr-filter-breached",
    ]
    for command in refused:
        result = lab.ssh(command)
        assert result.returncode == 255 and "rejected" in result.stderr, (command, result.stderr)
    assert Path(rootfs, "index.html").exists() and (other / "lxc-web.20261101T1000").exists()
    assert not Path("/tmp/infr-filter-breached").exists()
    run(["btrfs", "subvolume", "delete", str(other / "lxc-web.20261101T1000")])


def test_retention_with_synthetic_timestamps(lab: Lab) -> None:
    """btrbk's pruning against Infr's rule on ~200 backups named with synthetic times."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    if now.minute >= 57:  # btrbk counts from the clock: keep one hour for the whole test
        time.sleep((60 - now.minute) * 60 - datetime.now(UTC).second + 5)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
    source = lab.target / lab.newest(HOST_SUBVOL).name
    for at in synthetic_times(now):
        name = lab.target / f"{HOST_SUBVOL}.{at:%Y%m%dT%H%M}"
        if not name.exists():
            run(["btrfs", "subvolume", "snapshot", "-r", str(source), str(name)])
    before = [p for p in lab.restore_points() if p.subvol == HOST_SUBVOL]

    result = btrbk(lab, "prune")
    assert result.returncode == 0, result.stdout + result.stderr
    after = {p.at for p in lab.restore_points() if p.subvol == HOST_SUBVOL}

    stamps = {p.at for p in before}
    infr_keeps = stamps - snapshots_to_cull(stamps, latest=now)  # btrbk counts from now
    extra = sorted(after - infr_keeps, reverse=True)
    print(f"\nretention: {len(stamps)} backups; Infr keeps {len(infr_keeps)}, btrbk keeps {len(after)}")
    print("btrbk keeps beyond Infr:", ", ".join(f"{(now - t) / timedelta(hours=1):.1f} h ago" for t in extra))
    assert max(stamps) in after
    assert infr_keeps <= after
    # btrbk's windows are one bucket wider: up to an hour more of "keep all", one more
    # hour, day and week (RETENTION_DIFFERENCES).
    assert len(extra) <= 6 + 3


def test_unreachable_source_is_not_thinned(lab: Lab) -> None:
    """btrbk counts from the clock, but leaves the backups of a source it cannot reach."""
    source = lab.target / lab.newest(HOST_SUBVOL).name
    old = lab.target / f"{HOST_SUBVOL}.{datetime.now(UTC) - timedelta(weeks=30):%Y%m%dT%H%M}"
    run(["btrfs", "subvolume", "snapshot", "-r", str(source), str(old)])
    unreachable = lab.directory / "unreachable.conf"
    port = f"127.0.0.1:{lab.sshd.port}/"
    unreachable.write_text(Path(lab.settings.btrbk_conf).read_text().replace(port, "127.0.0.1:9/"))

    result = subprocess.run(["btrbk", "-c", str(unreachable), "prune"], env=lab.env, capture_output=True, text=True)
    assert result.returncode != 0 and old.exists()
    assert btrbk(lab, "prune").returncode == 0 and not old.exists()


def synthetic_times(now: datetime) -> list[datetime]:
    """Every 10 min for 3 h, every 25 min to 3 days, daily to 3 weeks, weekly to 15
    weeks; never on a full hour, where Infr and btrbk put a backup in different hours."""
    minutes = [*range(10, 180, 10), *range(180, 3 * 1440, 25)]
    minutes += [d * 1440 + 17 for d in range(3, 21)] + [w * 7 * 1440 + 31 for w in range(3, 16)]
    times = [now - timedelta(minutes=m) for m in minutes]
    return [t - timedelta(minutes=1) if t.minute == 0 else t for t in times]


@pytest.fixture
def backup_user() -> Iterator[str]:
    """A passwordless user whose only privilege is the rendered sudoers file; named per
    process, as two checkouts may run this test at once."""
    if not shutil.which("visudo"):
        pytest.skip("sudo not installed (.ci/backup-packages.txt)")
    name = f"infrbkp{os.getpid()}"
    run(["useradd", "--no-create-home", "--shell", "/bin/sh", name])
    try:
        run(["usermod", "-p", "*", name])  # no password, but not locked: sshd would refuse
        yield name
    finally:
        _remove_user(name)


def _remove_user(name: str) -> None:
    Path(f"/etc/sudoers.d/{name}").unlink(missing_ok=True)
    subprocess.run(["userdel", name], capture_output=True, check=False)


def test_pull_as_unprivileged_user_through_sudo(lab: Lab, backup_user: str) -> None:
    """The production shape: a non-root ssh user, btrbk's sudo backend, the rendered sudoers."""
    # The user runs the filter: it must not sit under pytest's private (0700) temp dirs.
    directory = Path(tempfile.mkdtemp(prefix="infr-backup-sudo-"))
    directory.chmod(0o755)
    settings = dataclasses.replace(
        lab.settings,
        ssh_user=backup_user,
        use_sudo=True,
        backup_dir=str(lab.to_root / "var/lib/backups/sudo"),
        btrbk_dir=str(directory / "etc-btrbk"),
        filter_script=str(directory / "infr-backup-filter"),
    )
    Path(settings.ssh_identity).parent.mkdir(parents=True)
    key = make_keypair(Path(settings.ssh_identity))
    sources = render_source_files(settings)
    sudoers = Path(directory / "sudoers")
    sudoers.write_text(sources.pop(f"/etc/sudoers.d/{backup_user}"))
    run(["visudo", "-c", "-q", "-f", str(sudoers)])
    shutil.copy(sudoers, f"/etc/sudoers.d/{backup_user}")
    Path(f"/etc/sudoers.d/{backup_user}").chmod(0o440)
    _install(sources)
    to_host = Host("gamma", "198.51.100.13", "127.0.0.3")
    sshd = start_sshd([render_authorized_key(to_host.name, key.public, settings)])
    env: dict[str, str] = {}
    try:
        from_host = Host(FROM, "198.51.100.11", "127.0.0.1", ssh_port=sshd.port, host_key=sshd.host_key)
        for command in setup_commands(FROM, to_host.name, settings):
            run(command.argv)
        conf = render_btrbk_conf(to_host, [(Backup(FROM, to_host.name), from_host)], {FROM: [WEB]}, settings)
        Path(settings.btrbk_conf).write_text(conf)
        units = render_units(to_host, [from_host], settings)
        _install({settings.known_hosts: units[settings.known_hosts]})
        (directory / "ssh_config").write_text(units["/etc/ssh/ssh_config.d/infr-backup.conf"])
        env = _shim(directory, directory / "ssh_config")

        result = subprocess.run(["btrbk", "-c", settings.btrbk_conf, "run"], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        listing = run(list_restore_points_argv(FROM, settings)).stdout
        points = parse_restore_points(listing, backup_dir(FROM, settings))
        assert {p.subvol for p in points} == {HOST_SUBVOL, lxc_subvol("web")}
        assert len(points) == 2  # not the other backups of alpha on this filesystem
        user_ssh = ["ssh", "-i", settings.ssh_identity, "-p", str(sshd.port), f"{backup_user}@127.0.0.1"]
        rootfs = lxc_rootfs("web", str(lab.from_root))
        refused = subprocess.run(
            [*user_ssh, f"sudo -n btrfs subvolume delete '{rootfs}'"], env=env, capture_output=True
        )
        assert refused.returncode == 255 and Path(rootfs).exists()
    finally:
        if env:
            argv = ["ssh", "-O", "exit", "-p", str(sshd.port), f"{backup_user}@127.0.0.1"]
            subprocess.run(argv, env=env, capture_output=True, check=False, timeout=30)
        sshd.stop()
        shutil.rmtree(directory)


def test_backup_status_turns_stale(lab: Lab) -> None:
    newest = max(p.at for p in lab.restore_points())
    now = datetime.now(UTC)
    assert backup_age_status(newest, now) == "ok"
    assert backup_age_status(newest, now + timedelta(minutes=20)) == "stale"
