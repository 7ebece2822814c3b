"""The iPXE side of the boot medium: its script and command line, the preseed cpio, and the
remastered or custom-built iPXE images."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
from pathlib import Path

from infr.engine.templating import render
from infr.errors import InfrError, ValidationError
from infr.hosts.boot.preseed import (
    InstallerSource,
    PreseedSettings,
    installer_kernel_args,
    installer_problems,
    validate_settings,
)

# Only in a source checkout: the optional custom iPXE build is for users with iPXE's source.
BUILD_IPXE_SCRIPT = Path(__file__).resolve().parents[3] / "ipxe" / "build-ipxe.sh"


# Debian packages on the admin machine: `ipxe` and `debian-installer-12-netboot-amd64`.
STOCK_IPXE_LKRN = Path("/boot/ipxe.lkrn")


STOCK_IPXE_ISO = Path("/usr/lib/ipxe/ipxe.iso")


# cmdline_size in the setup header of Debian's ipxe.lkrn.
IPXE_CMDLINE_MAX = 2047


def render_ipxe_script(settings: PreseedSettings, installer: InstallerSource, *, embedded_preseed: bool = False) -> str:
    """The iPXE script: network, then the installer kernel and initrd from `installer.url`.

    `embedded_preseed` is for a custom build with EMBED=embed.ipxe,preseed.cfg.
    """
    validate_settings(settings)
    if problems := installer_problems(installer):
        raise ValidationError(problems)
    net = settings.network
    static = None
    if net.address:
        iface = ipaddress.IPv4Interface(net.address)
        static = {
            "address": iface.ip,
            "netmask": iface.netmask,
            "gateway": net.gateway,
            # iPXE takes a single DNS server.
            "dns": net.nameservers[0],
        }
    return render(
        "boot.ipxe.j2",
        fqdn=settings.fqdn,
        embedded_preseed=embedded_preseed,
        static=static,
        installer_url=installer.url.rstrip("/"),
        kernel_args=" ".join(installer_kernel_args(settings)),
    )


def ipxe_command_line(script: str) -> str:
    """The script as one `&&` chain: what the stock ipxe.lkrn runs from its command line."""
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    command_line = " && ".join(commands)
    if len(command_line) > IPXE_CMDLINE_MAX:
        raise ValidationError(
            [f"iPXE command line is {len(command_line)} bytes, over {IPXE_CMDLINE_MAX}"],
            hint="use a shorter installer URL",
        )
    return command_line


def preseed_cpio(preseed: str) -> bytes:
    """A newc cpio holding /preseed.cfg: the installer's initramfs picks it up as is."""
    data = preseed.encode()
    return _newc_entry("preseed.cfg", data, mode=0o100644, ino=1) + _newc_entry("TRAILER!!!", b"", mode=0, ino=0)


def _newc_entry(name: str, data: bytes, *, mode: int, ino: int) -> bytes:
    encoded = name.encode() + b"\0"
    # ino, mode, uid, gid, nlink, mtime (0: reproducible), filesize, dev and rdev
    # major/minor, namesize, check.
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    return _pad4(header + encoded) + _pad4(data)


def _pad4(blob: bytes) -> bytes:
    return blob + b"\0" * (-len(blob) % 4)


def remaster_ipxe_iso(stock_iso: Path, cpio: Path, command_line: str, out: Path) -> None:
    """Debian's ipxe.iso with isolinux booting ipxe.krn (command line = our script,
    initrd = the preseed cpio). BIOS only: the ISO's efi.img would boot a plain
    iPXE without our script, so it is left out."""
    if not stock_iso.is_file():
        raise InfrError(f"missing {stock_iso}", hint="apt-get install ipxe")
    with tempfile.TemporaryDirectory(prefix="infr-iso-") as tmp:
        root = Path(tmp) / "root"
        _stage_iso_root(stock_iso, cpio, command_line, root)
        # The ISO's own isohybrid MBR code, so it matches its isolinux.bin.
        mbr = Path(tmp) / "isohdpfx.bin"
        mbr.write_bytes(stock_iso.read_bytes()[:432])
        _run(
            ["xorriso", "-as", "mkisofs", "-quiet", "-R", "-o", str(out),
             "-isohybrid-mbr", str(mbr), "-b", "isolinux.bin", "-c", "boot.cat",
             "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", str(root)],
            "xorriso",
        )  # fmt: skip


def _stage_iso_root(stock_iso: Path, cpio: Path, command_line: str, root: Path) -> None:
    root.mkdir()
    extract = [
        arg
        for name in ("ipxe.krn", "isolinux.bin", "ldlinux.c32")
        for arg in ("-extract", f"/{name}", str(root / name))
    ]
    _run(["xorriso", "-osirrox", "on", "-indev", str(stock_iso), *extract], "xorriso")
    shutil.copyfile(cpio, root / "preseed.cpio")
    (root / "isolinux.cfg").write_text(render("isolinux.cfg.j2", command_line=command_line))


def build_custom_ipxe(ipxe_source: Path, script: Path, preseed: Path, out: Path) -> None:
    """Infr's way, for users who have iPXE's source: ipxe.usb with both files embedded."""
    if not BUILD_IPXE_SCRIPT.is_file():
        raise InfrError(
            f"missing {BUILD_IPXE_SCRIPT}",
            hint="custom iPXE builds run from infr's source checkout",
        )
    argv = [str(BUILD_IPXE_SCRIPT), str(ipxe_source), str(script), str(preseed), str(out)]
    _run(argv, "iPXE build")


def _run(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise InfrError(f"{what}: {argv[0]} not found", hint=f"install {argv[0]}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise InfrError(f"{what} failed (exit {result.returncode}): " + " | ".join(detail))
