"""What the box to reinstall has (firmware, boot disk, GRUB), read by one probe script, and the
boot method that follows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from infr.errors import InfrError

Firmware = Literal["bios", "uefi"]


class BootMethod(StrEnum):
    GRUB_IPXE = "grub-ipxe"
    GRUB_DI = "grub-di"
    DISK_IPXE = "disk-ipxe"


_GRUB_UUID_RE = re.compile(r"^[0-9A-Za-z-]+$")


_GRUB_PATH_RE = re.compile(r"^/[\w@.+/-]*$")


_GRUB_MODULE_RE = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class GrubFacts:
    """How the box's GRUB reaches /boot."""

    boot_uuid: str
    # GRUB's path of /boot on that filesystem: "/@rootfs/boot", "/boot" or "/".
    boot_path: str
    modules: tuple[str, ...]


@dataclass(frozen=True)
class BoxFacts:
    disk: str
    firmware: Firmware
    # None: no GRUB with custom.cfg and next_entry support that infr can extend.
    grub: GrubFacts | None


# Run as root. Prints key=value lines for parse_box_probe; no `set -e`, so a box
# without GRUB still reports its disk and firmware.
_PROBE_SCRIPT = r"""
src=$(findmnt -nvo SOURCE /)
lsblk -nspro NAME,TYPE "$src" | awk '$2 == "disk" { print "disk=" $1 }' | sort -u
if [ -d /sys/firmware/efi ]; then echo firmware=uefi; else echo firmware=bios; fi
cfg=/boot/grub/grub.cfg
if [ -f "$cfg" ] && command -v grub-probe >/dev/null \
    && grep -q custom.cfg "$cfg" && grep -q next_entry "$cfg"; then
    echo "grub_uuid=$(grub-probe --target=fs_uuid /boot)"
    echo "grub_path=$(grub-mkrelpath /boot)"
    echo "grub_partmap=$(grub-probe --target=partmap /boot)"
    echo "grub_abstraction=$(grub-probe --target=abstraction /boot)"
    echo "grub_fs=$(grub-probe --target=fs /boot)"
fi
"""


def find_boot_disk_argv() -> list[str]:
    """Argv (run as root) that reports the disk holding /, the firmware and GRUB.

    The disk comes from `findmnt` + `lsblk -s`, so a root on a partition, LVM or
    a btrfs subvolume all lead back to the whole disk.
    """
    return ["sh", "-c", _PROBE_SCRIPT]


def parse_box_probe(output: str) -> BoxFacts:
    values: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), []).append(value.strip())
    disks = values.get("disk", [])
    if len(disks) != 1:
        raise InfrError(
            f"cannot tell which disk to install on: / is on {len(disks)} disks {disks}",
            hint="infr installs on the one disk holding the running root filesystem",
        )
    firmware = _one(values, "firmware")
    if firmware not in ("bios", "uefi"):
        raise InfrError(f"unexpected firmware report: {firmware!r}")
    return BoxFacts(disks[0], "uefi" if firmware == "uefi" else "bios", _grub_facts(values))


def _one(values: dict[str, list[str]], key: str) -> str:
    found = values.get(key, [""])
    return found[0]


def _grub_facts(values: dict[str, list[str]]) -> GrubFacts | None:
    uuid, path, fs = (_one(values, k) for k in ("grub_uuid", "grub_path", "grub_fs"))
    if not (uuid and path and fs):
        return None
    # What grub-mkconfig loads before touching a device: partition maps, then
    # LVM/RAID layers, then the filesystem.
    modules = [f"part_{p}" for p in _one(values, "grub_partmap").split()]
    modules += _one(values, "grub_abstraction").split()
    modules.append(fs)
    # These values are written into grub.cfg: anything unusual is refused, not quoted.
    odd = [v for v, rx in [(uuid, _GRUB_UUID_RE), (path, _GRUB_PATH_RE)] if not rx.match(v)]
    odd += [m for m in modules if not _GRUB_MODULE_RE.match(m)]
    if odd:
        raise InfrError(f"unexpected GRUB probe values {odd}", hint="infr cannot add a boot entry to this GRUB")
    return GrubFacts(uuid, path, tuple(dict.fromkeys(modules)))


def choose_method(facts: BoxFacts) -> BootMethod:
    """The least destructive way this box can boot the installer."""
    if facts.grub is not None:
        return BootMethod.GRUB_IPXE if facts.firmware == "bios" else BootMethod.GRUB_DI
    if facts.firmware == "bios":
        return BootMethod.DISK_IPXE
    raise InfrError(
        "this UEFI box has no GRUB infr can add a boot entry to",
        hint="boot it from the provider's Debian installer ISO or rescue system instead",
    )
