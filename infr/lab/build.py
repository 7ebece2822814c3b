"""The image build's phases that mount the disk; run by image.py in a private mount namespace.

    python -m infr.lab.build populate|scrub WORK_DIR DEB_CACHE_DIR
    python -m infr.lab.build fresh-fs IMAGE_RAW VM_DISK FSID

`populate` makes the btrfs filesystem with its @rootfs subvolume, runs debootstrap and
configures the system; `scrub` removes what the build needed but the VMs must not share;
`fresh-fs` gives one VM's disk a filesystem of its own with the image's files.
Output goes to WORK_DIR/build.log; a failure prints one line and exits 1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

from infr.errors import LabError
from infr.lab import proc
from infr.lab.image import PART_OFFSET, RESOLV_CONF, ImageRecipe, read_recipe


@contextlib.contextmanager
def _mounted(work: Path) -> Iterator[Path]:
    """Mount the image's partition, subvolume @rootfs, at WORK/mnt; unmount it all on exit."""
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    # mount's own loop device is released when the mount goes, even if we are killed.
    proc.run(["mount", "-o", f"loop,offset={PART_OFFSET},subvol=@rootfs",
              str(work / "disk.raw"), str(mnt)])
    try:
        yield mnt
    finally:
        proc.run(["umount", "--recursive", str(mnt)])


def _make_filesystem(work: Path, build_log: Path) -> None:
    uuid = str(uuidlib.uuid4())
    loop = proc.run(["losetup", "--find", "--show", f"--offset={PART_OFFSET}",
                     str(work / "disk.raw")]).strip()
    try:
        proc.run(["mkfs.btrfs", "-q", "-U", uuid, loop], log_file=build_log)
    finally:
        proc.run(["losetup", "-d", loop])
    top = work / "top"
    top.mkdir(exist_ok=True)
    proc.run(["mount", "-o", f"loop,offset={PART_OFFSET}", str(work / "disk.raw"), str(top)])
    try:
        # The Debian installer puts / on this subvolume; GRUB and fstab then name it.
        proc.run(["btrfs", "subvolume", "create", str(top / "@rootfs")], log_file=build_log)
    finally:
        proc.run(["umount", str(top)])
    top.rmdir()
    (work / "uuid").write_text(uuid + "\n")


def populate(recipe: ImageRecipe, work: Path, debs: Path) -> None:
    build_log = work / "build.log"
    _make_filesystem(work, build_log)
    uuid = (work / "uuid").read_text().strip()
    with _mounted(work) as mnt:
        proc.run(["debootstrap", f"--include={','.join(recipe.include)}",
                  f"--cache-dir={debs}", recipe.suite, str(mnt), recipe.mirror_url],
                 log_file=build_log, timeout=1800)
        _configure(recipe, mnt, uuid, build_log)
        _copy_boot_files(mnt, work)


def _configure(recipe: ImageRecipe, mnt: Path, uuid: str, build_log: Path) -> None:
    for path, content, mode in recipe.files:
        target = mnt / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
    (mnt / "etc/fstab").write_text(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"UUID={uuid} / btrfs defaults,subvol=@rootfs 0 0\n")
    (mnt / "etc/apt/sources.list").unlink(missing_ok=True)
    (mnt / "etc/apt/sources.list.d/debian.sources").write_text(recipe.sources)
    # apt in the chroot resolves the mirror with this machine's resolver; scrub undoes it.
    shutil.copyfile("/etc/resolv.conf", mnt / "etc/resolv.conf")
    proc.run(["mount", "-t", "proc", "proc", str(mnt / "proc")])
    chroot = ["chroot", str(mnt), "env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8"]
    proc.run([*chroot, "systemctl", "enable", "infr-lab-seed.service"], log_file=build_log)
    proc.run([*chroot, "apt-get", "update"], log_file=build_log, timeout=600)
    # debootstrap installs the release as it shipped; a VPS image has its updates, and
    # each one left pending would be paid for under emulation by every install in a VM.
    proc.run([*chroot, "apt-get", "full-upgrade", "-y"], log_file=build_log, timeout=1800)
    proc.run([*chroot, "apt-get", "autoremove", "--purge", "-y"], log_file=build_log,
             timeout=600)
    _purge_older_kernels(chroot, build_log)
    # What the upgrade downloaded; only the predownloaded packages below stay in the cache.
    proc.run([*chroot, "apt-get", "clean"], log_file=build_log)
    proc.run([*chroot, "update-initramfs", "-u", "-k", "all"], log_file=build_log, timeout=600)
    proc.run([*chroot, "apt-get", "install", "--download-only", "-y", *recipe.predownload],
             log_file=build_log, timeout=1800)


def _purge_older_kernels(chroot: list[str], build_log: Path) -> None:
    """Purge the kernel debootstrap installed once the upgrade brought a newer one: apt
    keeps the previous kernel, which would put 400 MB more modules in every VM and in every
    full backup of one."""
    depends = proc.run([*chroot, "dpkg-query", "-W", "-f", "${Depends}", "linux-image-amd64"])
    current = depends.split()[0].rstrip(",")
    installed = proc.run([*chroot, "dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", "linux-image-[0-9]*"])
    older = [line.split()[0] for line in installed.splitlines()
             if line.split()[1:2] == ["ii"] and line.split()[0] != current]
    if older:
        proc.run([*chroot, "apt-get", "purge", "-y", *older], log_file=build_log, timeout=600)


def _copy_boot_files(mnt: Path, work: Path) -> None:
    """Copy kernel and initrd out: the finalize boot starts them directly, GRUB not yet there."""
    for name in ("vmlinuz", "initrd.img"):
        link = mnt / name  # the kernel package keeps these pointing at the newest kernel
        if not link.is_symlink():
            raise LabError(f"no /{name} in the image", "see the build log")
        shutil.copyfile(mnt / os.readlink(link).lstrip("/"), work / name)


def scrub(work: Path) -> None:
    """Remove what the build needed but a fresh VPS must not share with its siblings."""
    with _mounted(work) as mnt:
        (mnt / "usr/local/sbin/infr-lab-finalize").unlink()
        (mnt / "etc/resolv.conf").write_text(RESOLV_CONF)
        # An empty machine-id makes systemd generate a new one at each VM's first boot.
        (mnt / "etc/machine-id").write_text("")
        (mnt / "var/lib/dbus/machine-id").unlink(missing_ok=True)
        for key in (mnt / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        # Blocks freed during the build still hold data in the raw file: 2.0 GB -> 1.2 GB.
        proc.run(["fstrim", str(mnt)])


def fresh_filesystem(source: Path, disk: Path, fsid: str) -> None:
    """Make DISK's partition a new btrfs, with the files of SOURCE's @rootfs and its fsid.

    Copies of one image share every subvolume UUID, the top level's too, as VPSes restored
    from one snapshot do. btrbk identifies a filesystem by those UUIDs, so between two such
    VMs it takes one's filesystem for the other's: it misses half-received backups and
    takes one host's backups for the other's subvolumes. A new mkfs gives every UUID anew;
    the fsid stays, because GRUB's core image, grub.cfg and fstab find the root by it.
    """
    src, dst = disk.parent / "src", disk.parent / "dst"
    src.mkdir(exist_ok=True)
    dst.mkdir(exist_ok=True)
    loop = proc.run(["losetup", "--find", "--show", f"--offset={PART_OFFSET}", str(disk)]).strip()
    try:
        # A temporary fsid first: two mounted filesystems with one fsid clash in the kernel.
        proc.run(["mkfs.btrfs", "-q", "-f", loop])
        proc.run(["mount", "-o", f"ro,loop,offset={PART_OFFSET},subvol=@rootfs", str(source), str(src)])
        proc.run(["mount", loop, str(dst)])
        try:
            proc.run(["btrfs", "subvolume", "create", str(dst / "@rootfs")])
            proc.run(["cp", "-a", f"{src}/.", f"{dst / '@rootfs'}/"], timeout=1800)
        finally:
            proc.run(["umount", str(src), str(dst)])
        proc.run(["btrfstune", "-f", "-U", fsid, loop], timeout=600)
    finally:
        proc.run(["losetup", "-d", loop])
    src.rmdir()
    dst.rmdir()


def main(argv: list[str]) -> int:
    phase = argv[0]
    where = f"disk: {argv[-2]}" if phase == "fresh-fs" else f"build log: {argv[1]}/build.log"
    try:
        if phase == "populate":
            populate(read_recipe(Path(argv[1]) / "recipe.json"), Path(argv[1]), Path(argv[2]))
        elif phase == "scrub":
            scrub(Path(argv[1]))
        elif phase == "fresh-fs":
            fresh_filesystem(Path(argv[1]), Path(argv[2]), argv[3])
        else:
            raise LabError(f"unknown build phase {phase!r}")
    except LabError as exc:
        print(f"{exc} ({where})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
