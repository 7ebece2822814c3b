"""The commands a restore runs on hosts: btrfs send and receive, the container swap, tar."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from infr.errors import UsageError
from infr.restore.choose import RUNNING

LXC_ROOT = "/var/lib/lxc"


WORK_DIR = ".infr-restore"  # in LXC_ROOT: on the containers' filesystem, so moves are renames


SUBVOLUME_INODE = 256  # the top directory of every btrfs subvolume has this inode number


@dataclass(frozen=True)
class LxcPaths:
    """Where a container lives on its host, and where a restore stages it."""

    name: str
    root: str = LXC_ROOT

    @property
    def container(self) -> str:
        return posixpath.join(self.root, self.name)

    @property
    def work(self) -> str:
        return posixpath.join(self.root, WORK_DIR)

    @property
    def staged(self) -> str:
        return posixpath.join(self.work, f"{self.name}.new")

    @property
    def old(self) -> str:
        return posixpath.join(self.work, f"{self.name}.old")


def make_dirs_argv(paths: LxcPaths) -> tuple[str, ...]:
    """The staging directory: the work directory root's only, the container's as LXC makes it."""
    return ("sh", "-c", 'install -d -m 700 -- "$1" && install -d -m 770 -- "$2"', "sh", paths.work, paths.staged)


def clear_argv(directory: str) -> tuple[str, ...]:
    """Delete a directory of subvolumes and files (a staged or replaced container, a
    drill's scratch): each subvolume directly in it, then the rest. Nothing if absent."""
    script = (
        'if [ ! -e "$1" ]; then exit 0; fi; '
        'for s in "$1"/*; do '
        f'if [ -d "$s" ] && [ "$(stat -c %i -- "$s")" = {SUBVOLUME_INODE} ]; then '
        'btrfs -q subvolume delete -- "$s"; fi; done; '
        'rm -rf --one-file-system -- "$1"'
    )
    return ("sh", "-c", script, "sh", directory)


def send_argv(point_path: str) -> tuple[str, ...]:
    return ("btrfs", "send", "-q", "--", point_path)


def receive_argv(directory: str) -> tuple[str, ...]:
    """Receives under the sent subvolume's own name; read-only, with a received UUID."""
    return ("btrfs", "receive", "--", directory)


def snapshot_argv(source: str, dest: str) -> tuple[str, ...]:
    """A writable snapshot: what a restored rootfs must be."""
    return ("btrfs", "-q", "subvolume", "snapshot", "--", source, dest)


def delete_subvolume_argv(path: str) -> tuple[str, ...]:
    return ("btrfs", "-q", "subvolume", "delete", "--", path)


def mark_argv(paths: LxcPaths, mark: str) -> tuple[str, ...]:
    return ("touch", "--", posixpath.join(paths.staged, mark))


def lxc_state_argv(name: str) -> tuple[str, ...]:
    """Prints RUNNING, STOPPED...; fails when there is no such container."""
    return ("lxc-info", "-n", name, "-s", "-H")


def stop_argv(name: str, *, kill: bool = False) -> tuple[str, ...]:
    return ("lxc-stop", "-n", name, *(("-k",) if kill else ()))


def start_argv(name: str) -> tuple[str, ...]:
    return ("lxc-start", "-n", name)


def wait_running_argv(name: str) -> tuple[str, ...]:
    return ("lxc-wait", "-n", name, "-s", RUNNING, "-t", "60")


def destroy_argv(name: str) -> tuple[str, ...]:
    return ("lxc-destroy", "-n", name, "-f")


def swap_in_argv(paths: LxcPaths) -> tuple[str, ...]:
    """The current container aside (if there is one), the staged one in its place; if
    that second move fails, the first is undone."""
    script = (
        'if [ -e "$1" ]; then mv -T -- "$1" "$3"; fi; '
        'if ! mv -T -- "$2" "$1"; then if [ -e "$3" ]; then mv -T -- "$3" "$1"; fi; exit 1; fi'
    )
    return ("sh", "-c", script, "sh", paths.container, paths.staged, paths.old)


def swap_back_argv(paths: LxcPaths) -> tuple[str, ...]:
    """Undo swap_in: the restored container back to staging, the old one back in place."""
    script = 'mv -T -- "$1" "$2" && if [ -e "$3" ]; then mv -T -- "$3" "$1"; fi'
    return ("sh", "-c", script, "sh", paths.container, paths.staged, paths.old)


PATH_OK, PATH_LEAVES, PATH_MISSING = 0, 3, 4


def relative_path(path: str) -> str:
    """PATH as it was on the backed-up host, relative to the backup's top."""
    relative = posixpath.normpath("/" + path).lstrip("/")
    if not path.strip() or not relative or ".." in path.split("/"):
        raise UsageError(f"restore path {path!r} must name something inside the backup", "e.g. /etc/nginx")
    return relative


def check_path_argv(point_path: str, relative: str) -> tuple[str, ...]:
    """Exits PATH_OK if `relative` is in the backup, PATH_MISSING if not, PATH_LEAVES if a
    symlink on the way leads out of it (an absolute one points into the backup host's
    own files, not the backup's)."""
    script = (
        'root=$(realpath -e -- "$1") || exit 1; '
        f'dir=$(realpath -e -- "$1/$2" 2>/dev/null) || exit {PATH_MISSING}; '
        f'case "$dir/" in "$root"/*) ;; *) exit {PATH_LEAVES} ;; esac; '
        f'if [ -e "$1/$3" ] || [ -L "$1/$3" ]; then exit 0; fi; exit {PATH_MISSING}'
    )
    return ("sh", "-c", script, "sh", point_path, posixpath.dirname(relative), relative)


_TAR = ("tar", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner")


def tar_create_argv(point_path: str, relative: str) -> tuple[str, ...]:
    """On the backup host: PATH out of the backup as a tar stream, with modes, numeric
    owners, times, ACLs and xattrs; symlinks as symlinks."""
    return (*_TAR, "-C", point_path, "-cf", "-", "--", relative)


def tar_extract_argv(into: str) -> tuple[str, ...]:
    """Here, into INTO: INTO/PATH. Owners only when run as root."""
    return (*_TAR, "-C", into, "-xpf", "-")
