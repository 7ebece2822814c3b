"""Real btrfs filesystems on loop devices for the backup and restore tests (run as root).

    with private_mounts(), loop_filesystems(directory, ["alpha", "beta"]) as mounts:
        ...  # mounts["alpha"] is alpha's top level, mounted

Everything made is undone on the way out, whatever happened: unmounted, loop devices
detached (and waited for), images deleted. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MIB = 1024 * 1024
CLONE_NEWNS = 0x00020000
EMPTY_SUBVOL_DIR = 2  # inode of the placeholder a snapshot holds for a nested subvolume
SUBVOL_ROOT = 256  # inode of every subvolume's top directory


def scratch_dir(factory: pytest.TempPathFactory, name: str, tools: tuple[str, ...]) -> Path:
    """A world-readable scratch directory for a loop-device test, which needs root and `tools`
    (it skips, naming what is missing, without them)."""
    missing = [tool for tool in tools if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"needs root and {', '.join(missing) or 'loop devices'} (.ci/backup-packages.txt)")
    directory = factory.mktemp(name)
    directory.chmod(0o755)
    return directory


def run(argv: tuple[str, ...] | list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def private_mounts() -> Iterator[None]:
    """Mount in a mount namespace of our own, which this process and its children
    (btrbk, sshd) share: a namespace someone else creates meanwhile (unshare, a lab VM
    build) would otherwise copy our mounts and keep the loop devices busy after we
    unmount. Needs a single-threaded process; otherwise mount where we are. Threads
    started inside (paramiko's) must be gone before the block ends: see single_threaded()."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    cwd = os.getcwd()
    try:
        if threads() > 1 or libc.unshare(CLONE_NEWNS) != 0:
            yield
            return
        try:
            run(["mount", "--make-rprivate", "/"])  # nothing propagates back out
            yield
        finally:
            single_threaded()
            if libc.setns(original, CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original mount namespace")
            os.chdir(cwd)  # setns moved us to /
    finally:
        os.close(original)


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def single_threaded(timeout: float = 10.0) -> None:
    """Wait for closed SSH connections' threads to end (setns needs one thread)."""
    deadline = time.monotonic() + timeout
    while threads() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)


@contextlib.contextmanager
def loop_filesystems(directory: Path, names: list[str], size_mib: int = 1024) -> Iterator[dict[str, Path]]:
    """A fresh btrfs per name, its top level mounted at directory/NAME."""
    devices: list[str] = []
    mounts: list[Path] = []
    try:
        for name in names:
            image = directory / f"{name}.img"
            with image.open("wb") as f:
                f.truncate(size_mib * MIB)
            devices.append(run(["losetup", "--find", "--show", str(image)]).stdout.strip())
            run(["mkfs.btrfs", "-q", devices[-1]])
            mount = directory / name
            mount.mkdir()
            run(["mount", devices[-1], str(mount)])
            mounts.append(mount)
        yield dict(zip(names, mounts, strict=True))
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", str(mount)], check=False)
        for device in devices:
            subprocess.run(["losetup", "-d", device], check=False)
        wait_detached(devices)
        for name in names:
            (directory / f"{name}.img").unlink(missing_ok=True)


def wait_detached(devices: list[str]) -> None:
    """`losetup -d` detaches asynchronously; wait so that the device is really free."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = subprocess.run(["losetup", "-l", "-n", "-O", "NAME"], capture_output=True, text=True).stdout
        if not set(devices) & set(listed.split()):
            return
        time.sleep(0.2)


def tree(root: Path, leave_out: str = "") -> dict[str, tuple[int, int, int, int, str]]:
    """Every path under root, not descending into nested subvolumes (a snapshot holds an
    empty directory in their place): mode, uid, gid, mtime and a hash of the content
    (of a symlink: its target). Paths starting with `leave_out` are left out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.lstat(Path(dirpath, d)).st_ino not in (EMPTY_SUBVOL_DIR, SUBVOL_ROOT)]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            if path.is_symlink():
                digest = f"-> {os.readlink(path)}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime), digest)
    return {path: entry for path, entry in found.items() if not (leave_out and path.startswith(leave_out))}


def received_uuid(path: Path) -> str:
    show = run(["btrfs", "subvolume", "show", str(path)]).stdout
    return re.search(r"Received UUID:\s+(\S+)", show).group(1)  # type: ignore[union-attr]


def write_random(path: Path, size: int, offset: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("r+b" if path.exists() else "wb") as f:
        f.seek(offset)
        f.write(os.urandom(size))
