"""The boot medium assembled on the admin machine, and the argv that puts it on the box."""

from __future__ import annotations

import posixpath
import shlex
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from infr.errors import InfrError, ValidationError
from infr.hosts.boot.grub import (
    REMOTE_DIR,
    Upload,
    grub_reboot_argv,
    install_grub_entry_argv,
    render_grub_entry,
    verify_uploads_argv,
)
from infr.hosts.boot.ipxe import (
    STOCK_IPXE_ISO,
    STOCK_IPXE_LKRN,
    build_custom_ipxe,
    ipxe_command_line,
    preseed_cpio,
    remaster_ipxe_iso,
    render_ipxe_script,
)
from infr.hosts.boot.preseed import _DISK_RE, InstallerSource, PreseedSettings, render_preseed
from infr.hosts.boot.probe import BootMethod, BoxFacts, choose_method

# tmpfs: unaffected by the emergency read-only remount that precedes the disk write.
REMOTE_IMAGE = "/dev/shm/infr-boot.img"


class Phase(StrEnum):
    """What `infr hosts add` reports while a host installs."""

    BUILDING = "building"
    UPLOADING = "uploading"
    REBOOTING = "rebooting"
    INSTALLER = "installer running"
    FIRST_BOOT = "first boot"


@dataclass(frozen=True)
class BootMedium:
    """What the CLI does with a built medium, in order: run `upload_argv` for each
    upload (the file on stdin), then `prepare_argv`, then `reboot_argv`."""

    method: BootMethod
    directory: Path
    uploads: tuple[Upload, ...]
    prepare_argv: list[str]
    reboot_argv: list[str]


@dataclass(frozen=True)
class StockIpxe:
    """Debian's prebuilt iPXE (package `ipxe`) on the admin machine."""

    lkrn: Path = STOCK_IPXE_LKRN
    iso: Path = STOCK_IPXE_ISO


def build_boot_medium(
    settings: PreseedSettings,
    facts: BoxFacts,
    out_dir: Path,
    *,
    installer: InstallerSource,
    method: BootMethod | None = None,
    stock: StockIpxe = StockIpxe(),
    ipxe_source: Path | None = None,
) -> BootMedium:
    """Write the medium for this box into `out_dir` and say how to deliver it.

    `ipxe_source` (an iPXE source checkout) replaces the remastered stock ISO of
    the disk method with a custom build that embeds the script and the preseed.
    """
    method = method or choose_method(facts)
    out_dir.mkdir(parents=True, exist_ok=True)
    preseed = render_preseed(settings)
    (out_dir / "preseed.cfg").write_text(preseed)
    (out_dir / "preseed.cpio").write_bytes(preseed_cpio(preseed))
    if method is BootMethod.DISK_IPXE:
        return _disk_medium(settings, facts, out_dir, installer, stock, ipxe_source)
    return _grub_medium(settings, facts, out_dir, method, installer, stock)


def _grub_medium(
    settings: PreseedSettings,
    facts: BoxFacts,
    out_dir: Path,
    method: BootMethod,
    installer: InstallerSource,
    stock: StockIpxe,
) -> BootMedium:
    if facts.grub is None:
        raise InfrError(f"{method} needs GRUB on the box, and the probe found none usable")
    if method is BootMethod.GRUB_IPXE:
        names = [_copy_input(stock.lkrn, out_dir / "ipxe.lkrn", "apt-get install ipxe")]
    else:
        names = [
            _copy_input(installer.local_dir / name, out_dir / name, _INSTALLER_HINT) for name in ("linux", "initrd.gz")
        ]
    entry = render_grub_entry(settings, facts.grub, method, installer)
    (out_dir / "grub-entry.cfg").write_text(entry)
    names += ["preseed.cpio", "grub-entry.cfg"]
    uploads = tuple(Upload(out_dir / n, f"{REMOTE_DIR}/{n}") for n in names)
    return BootMedium(method, out_dir, uploads, install_grub_entry_argv(uploads), grub_reboot_argv())


def _disk_medium(
    settings: PreseedSettings,
    facts: BoxFacts,
    out_dir: Path,
    installer: InstallerSource,
    stock: StockIpxe,
    ipxe_source: Path | None,
) -> BootMedium:
    if facts.firmware != "bios":
        raise InfrError("the disk image boots through BIOS only, and this box uses UEFI")
    image = out_dir / "infr-boot.img"
    if ipxe_source is None:
        command_line = ipxe_command_line(render_ipxe_script(settings, installer))
        remaster_ipxe_iso(stock.iso, out_dir / "preseed.cpio", command_line, image)
    else:
        script = render_ipxe_script(settings, installer, embedded_preseed=True)
        (out_dir / "embed.ipxe").write_text(script)
        build_custom_ipxe(ipxe_source, out_dir / "embed.ipxe", out_dir / "preseed.cfg", image)
    upload = Upload(image, REMOTE_IMAGE)
    return BootMedium(
        BootMethod.DISK_IPXE,
        out_dir,
        (upload,),
        verify_uploads_argv((upload,)),
        write_image_argv(facts.disk, REMOTE_IMAGE),
    )


_INSTALLER_HINT = (
    "apt-get install debian-installer-12-netboot-amd64, or download linux and initrd.gz "
    "from the mirror's installer-amd64 netboot images into a directory"
)


def _copy_input(src: Path, dest: Path, hint: str) -> str:
    if not src.is_file():
        raise InfrError(f"missing {src}", hint=hint)
    shutil.copyfile(src, dest)
    return dest.name


def upload_argv(upload: Upload) -> list[str]:
    """Writes stdin to `upload.remote`: files travel inside the SSH connection."""
    directory = posixpath.dirname(upload.remote)
    script = f"umask 077 && mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(upload.remote)}"
    return ["sh", "-c", script]


_WRITE_SCRIPT = r"""set -eu
img={image}
disk={disk}
# Refuse unless the disk still holds the running root filesystem.
lsblk -nspro NAME,TYPE "$(findmnt -nvo SOURCE /)" | grep -qx "$disk disk"
sync
# Emergency read-only remount first: a mounted btrfs rewrites its superblock
# (disk byte 1114112) over the image otherwise.
echo u > /proc/sysrq-trigger
i=0
until findmnt -no OPTIONS / | grep -q '^ro'; do
    i=$((i + 1))
    [ "$i" -le 100 ] || {{ echo "/ did not become read-only" >&2; exit 1; }}
    sleep 0.1
done
dd if="$img" of="$disk" bs=1M oflag=direct conv=fsync status=none
echo written
# Detached: the SSH command returns before the box goes down (no sync: / is read-only).
(sleep 1; echo b > /proc/sysrq-trigger) >/dev/null 2>&1 </dev/null &
"""


def write_image_argv(disk: str, image: str = REMOTE_IMAGE) -> list[str]:
    """Write the uploaded image over the boot disk and reboot into it."""
    if not _DISK_RE.match(disk):
        raise ValidationError([f"invalid disk device: {disk!r}"])
    return ["sh", "-c", _WRITE_SCRIPT.format(image=shlex.quote(image), disk=shlex.quote(disk))]
