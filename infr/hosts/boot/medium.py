"""The boot medium that reinstalls a VPS as Debian on btrfs (`infr hosts add`).

Everything here is pure or local: renderers for the preseed, the iPXE script and
the GRUB entry, builders that assemble the medium on the admin machine, and the
argv of each step the CLI later runs as root on the box over SSH. Nothing here
opens a connection.

How a box boots the installer (docs/how-hosts-are-installed.md says why):

* BIOS box whose GRUB we can extend (`grub-ipxe`, the default): a one-shot GRUB
  entry starts Debian's stock `ipxe.lkrn`. Its kernel command line is our iPXE
  script (one `&&` chain), its initrd our preseed cpio; the 2019 iPXE passes that
  initrd on to the installer kernel it downloads, so d-i finds /preseed.cfg.
* UEFI box with GRUB (`grub-di`): `linux16` is BIOS-only, so the entry boots the
  installer's signed kernel directly, with its initrd plus the preseed cpio.
* Box without a usable GRUB (`disk-ipxe`, BIOS only): Debian's `ipxe.iso`,
  remastered with the same command line and cpio, written over the boot disk.
  A custom iPXE built from source with the preseed embedded can replace it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from infr.engine.templating import render
from infr.errors import InfrError, ValidationError

# Only in a source checkout: the optional custom iPXE build is for users with iPXE's source.
BUILD_IPXE_SCRIPT = Path(__file__).resolve().parents[3] / "ipxe" / "build-ipxe.sh"

DEFAULT_RELEASE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# d-i runs on the last console; the installed system shows its console on both.
DEFAULT_CONSOLE = ("tty0", "ttyS0,115200n8")
MANAGER = "manager"

# Debian packages on the admin machine: `ipxe` and `debian-installer-12-netboot-amd64`.
STOCK_IPXE_LKRN = Path("/boot/ipxe.lkrn")
STOCK_IPXE_ISO = Path("/usr/lib/ipxe/ipxe.iso")
PACKAGE_INSTALLER_DIR = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")

REMOTE_DIR = "/boot/infr-install"
# tmpfs: unaffected by the emergency read-only remount that precedes the disk write.
REMOTE_IMAGE = "/dev/shm/infr-boot.img"
GRUB_ENTRY_ID = "infr-install"
GRUB_CUSTOM_CFG = "/boot/grub/custom.cfg"
GRUB_ENV = "/boot/grub/grubenv"
# cmdline_size in the setup header of Debian's ipxe.lkrn.
IPXE_CMDLINE_MAX = 2047

Firmware = Literal["bios", "uefi"]


class Phase(StrEnum):
    """What `infr hosts add` reports while a host installs."""

    BUILDING = "building"
    UPLOADING = "uploading"
    REBOOTING = "rebooting"
    INSTALLER = "installer running"
    FIRST_BOOT = "first boot"


class BootMethod(StrEnum):
    GRUB_IPXE = "grub-ipxe"
    GRUB_DI = "grub-di"
    DISK_IPXE = "disk-ipxe"


# ---------------------------------------------------------------------------
# Settings and validation


@dataclass(frozen=True)
class Network:
    """DHCP unless `address` (CIDR) is set. Nameservers also answer d-i when DHCP
    gives none (a restricted lab network)."""

    address: str = ""
    gateway: str = ""
    nameservers: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreseedSettings:
    hostname: str
    domain: str
    admin_keys: tuple[str, ...]
    # The disk found on the box (find_boot_disk_argv), never assumed.
    disk: str
    firmware: Firmware = "bios"
    network: Network = Network()
    release: str = DEFAULT_RELEASE
    mirror: str = DEFAULT_MIRROR
    mirror_proxy: str = ""
    # Empty: no security/updates sources, so the target only ever talks to the mirror.
    security_mirror: str = DEFAULT_SECURITY_MIRROR
    swap_mb: int = 1024
    console: tuple[str, ...] = DEFAULT_CONSOLE
    user: str = MANAGER
    extra_packages: tuple[str, ...] = ()

    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.domain}"


@dataclass(frozen=True)
class InstallerSource:
    """Where the Debian installer's `linux` and `initrd.gz` come from.

    `url` is what iPXE downloads at boot; `local_dir` holds the same two files on
    the admin machine for the `grub-di` method, which uploads them.
    """

    url: str
    local_dir: Path = PACKAGE_INSTALLER_DIR


def installer_from_mirror(
    mirror: str = DEFAULT_MIRROR,
    release: str = DEFAULT_RELEASE,
    local_dir: Path = PACKAGE_INSTALLER_DIR,
) -> InstallerSource:
    """The mirror's own netboot files: they always match its kernel-module udebs."""
    images = f"{mirror.rstrip('/')}/dists/{release}/main/installer-amd64/current/images"
    return InstallerSource(f"{images}/netboot/debian-installer/amd64", local_dir)


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}$")
_DOMAIN_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
# Comments are limited to characters that need no escaping in sh or debconf.
_KEY_RE = re.compile(
    r"^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)"
    r"|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}(?: [\w@.:,+=/ -]*)?$"
)
_DISK_RE = re.compile(r"^/dev/[A-Za-z0-9/_.-]+$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_CONSOLE_RE = re.compile(r"^[A-Za-z0-9,]+$")
_RELEASE_RE = re.compile(r"^[a-z]+$")
_GRUB_UUID_RE = re.compile(r"^[0-9A-Za-z-]+$")
_GRUB_PATH_RE = re.compile(r"^/[\w@.+/-]*$")
_GRUB_MODULE_RE = re.compile(r"^[a-z0-9_]+$")


def validate_settings(settings: PreseedSettings) -> None:
    """Raise ValidationError listing every problem, so the user fixes them at once."""
    problems = [*input_problems(settings), *_layout_problems(settings)]
    if problems:
        raise ValidationError(problems, hint="the preseed was not written")


def input_problems(settings: PreseedSettings) -> list[str]:
    """Every problem in what the user and the state give (all but the disk and firmware,
    which only the box can tell): `hosts add` checks these before it touches anything."""
    return [
        *_name_problems(settings),
        *_key_problems(settings.admin_keys),
        *_network_problems(settings.network),
        *_source_problems(settings),
    ]


def installer_problems(installer: InstallerSource) -> list[str]:
    if _is_http_url(installer.url) and urlsplit(installer.url).scheme == "http":
        return []
    return [
        f"installer URL must be http:// with a host, and no spaces or control characters: {installer.url!r}"
        " (Debian's iPXE build has no HTTPS; d-i itself checks the mirror's signatures)"
    ]


def _name_problems(s: PreseedSettings) -> list[str]:
    checks = [
        (_HOSTNAME_RE, s.hostname, "host name"),
        (_DOMAIN_RE, s.domain, "domain"),
        (_USER_RE, s.user, "user name"),
        (_RELEASE_RE, s.release, "release"),
    ]
    problems = [f"invalid {what}: {value!r}" for rx, value, what in checks if not rx.match(value)]
    problems += [f"invalid package name: {p!r}" for p in s.extra_packages if not _PACKAGE_RE.match(p)]
    return problems


def _key_problems(keys: tuple[str, ...]) -> list[str]:
    if not keys:
        return ["no admin SSH key: the installed host would accept no login"]
    return [
        f"unsupported SSH public key (type, base64, optional plain comment): {key[:40]!r}"
        for key in keys
        if not _KEY_RE.match(key)
    ]


def _network_problems(net: Network) -> list[str]:
    problems = [f"invalid nameserver: {ns!r}" for ns in net.nameservers if not _is_ipv4(ns)]
    if not net.address:
        return problems + (["a gateway needs a static address"] if net.gateway else [])
    try:
        iface = ipaddress.IPv4Interface(net.address)
    except ValueError:
        return [*problems, f"static address must be IPv4 CIDR like 203.0.113.10/24: {net.address!r}"]
    if not _is_ipv4(net.gateway) or ipaddress.IPv4Address(net.gateway) not in iface.network:
        problems.append(f"gateway {net.gateway!r} is not an address in {iface.network}")
    if not net.nameservers:
        problems.append("a static network needs at least one nameserver")
    return problems


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _source_problems(s: PreseedSettings) -> list[str]:
    # The mirror is required; the security mirror and the proxy may be empty.
    urls = [("mirror", s.mirror)]
    urls += [(w, u) for w, u in (("security mirror", s.security_mirror), ("proxy", s.mirror_proxy)) if u]
    return [f"invalid {what} URL (http or https, with a host): {url!r}" for what, url in urls if not _is_http_url(url)]


# The whole URL, not urlsplit(): it drops tabs and newlines before parsing, and the raw text
# is what reaches the preseed and the iPXE command line. Optional user:password@ (a proxy's),
# a host name or IPv4 address, an optional port, and a path of plain URL characters (none
# that a shell, iPXE's ${...} or GRUB's quoting would read).
_HTTP_URL_RE = re.compile(
    r"https?://(?:[A-Za-z0-9._~%+,=-]+(?::[A-Za-z0-9._~%+,=-]*)?@)?"
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%+,=:@/-]*)?"
)


def _is_http_url(url: str) -> bool:
    return _HTTP_URL_RE.fullmatch(url) is not None


def _layout_problems(s: PreseedSettings) -> list[str]:
    problems = [] if _DISK_RE.match(s.disk) else [f"invalid disk device: {s.disk!r}"]
    if s.firmware not in ("bios", "uefi"):
        problems.append(f"firmware must be bios or uefi: {s.firmware!r}")
    if s.swap_mb < 128:
        problems.append(f"swap must be at least 128 MB: {s.swap_mb}")
    if not s.console or not all(_CONSOLE_RE.match(c) for c in s.console):
        problems.append(f"invalid console options: {s.console!r}")
    return problems


# ---------------------------------------------------------------------------
# Renderers




@dataclass(frozen=True)
class _UrlParts:
    protocol: str
    hostname: str
    directory: str


def _url_parts(url: str) -> _UrlParts:
    parts = urlsplit(url)
    return _UrlParts(parts.scheme, parts.netloc, parts.path.rstrip("/") or "/")


def render_preseed(settings: PreseedSettings) -> str:
    """The d-i preseed: unattended install, btrfs @rootfs + swap, `manager` with the keys."""
    validate_settings(settings)
    net = settings.network
    static = None
    if net.address:
        iface = ipaddress.IPv4Interface(net.address)
        static = {"address": iface.ip, "netmask": iface.netmask, "gateway": net.gateway}
    packages = ("openssh-server", "sudo", "btrfs-progs", *settings.extra_packages)
    return render(
        "preseed.cfg.j2",
        fqdn=settings.fqdn,
        hostname=settings.hostname,
        domain=settings.domain,
        static=static,
        nameservers=" ".join(net.nameservers),
        mirror=_url_parts(settings.mirror),
        mirror_proxy=settings.mirror_proxy,
        release=settings.release,
        security=_url_parts(settings.security_mirror) if settings.security_mirror else None,
        user=settings.user,
        disk=settings.disk,
        uefi=settings.firmware == "uefi",
        label="gpt" if settings.firmware == "uefi" else "msdos",
        swap_mb=settings.swap_mb,
        packages=" ".join(dict.fromkeys(packages)),
        console=" ".join(f"console={c}" for c in settings.console),
        keys=" ".join(shlex.quote(k) for k in settings.admin_keys),
    )


def installer_kernel_args(settings: PreseedSettings) -> tuple[str, ...]:
    """The d-i kernel command line. Nothing follows `---`: the installed system gets
    its console options from add-kernel-opts alone, not twice."""
    return ("auto=true", "priority=critical", *(f"console={c}" for c in settings.console), "---")


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


# ---------------------------------------------------------------------------
# What the box tells us


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


def render_grub_entry(
    settings: PreseedSettings,
    grub: GrubFacts,
    method: BootMethod,
    installer: InstallerSource,
) -> str:
    """The GRUB menu entry appended to custom.cfg for a one-shot boot."""
    if method is BootMethod.DISK_IPXE:
        raise ValueError("disk-ipxe does not use GRUB")
    ipxe = method is BootMethod.GRUB_IPXE
    words = ipxe_command_line(render_ipxe_script(settings, installer)).split() if ipxe else []
    return render(
        "grub-entry.cfg.j2",
        entry_id=GRUB_ENTRY_ID,
        fqdn=settings.fqdn,
        modules=grub.modules,
        boot_uuid=grub.boot_uuid,
        directory=posixpath.join(grub.boot_path, posixpath.basename(REMOTE_DIR)),
        ipxe=ipxe,
        # GRUB re-quotes any argument containing a space, so each word is quoted
        # on its own: `'&&'` reaches iPXE as a bare &&.
        ipxe_words=" ".join(_grub_quote(w) for w in words),
        kernel_args=" ".join(installer_kernel_args(settings)),
    )


def _grub_quote(word: str) -> str:
    if "'" in word:
        raise ValidationError([f"quote character in a boot argument: {word!r}"])
    return f"'{word}'"


# ---------------------------------------------------------------------------
# Building the medium on the admin machine


@dataclass(frozen=True)
class Upload:
    local: Path
    remote: str


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


# ---------------------------------------------------------------------------
# Remote steps (argv run as root on the box)


def upload_argv(upload: Upload) -> list[str]:
    """Writes stdin to `upload.remote`: files travel inside the SSH connection."""
    directory = posixpath.dirname(upload.remote)
    script = f"umask 077 && mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(upload.remote)}"
    return ["sh", "-c", script]


def verify_uploads_argv(uploads: tuple[Upload, ...]) -> list[str]:
    """Fails unless every uploaded file arrived whole."""
    sums = "".join(f"{_sha256(u.local)}  {u.remote}\n" for u in uploads)
    return ["sh", "-c", f"printf %s {shlex.quote(sums)} | sha256sum -c --quiet"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_grub_entry_argv(uploads: tuple[Upload, ...]) -> list[str]:
    """Verify the uploads, put our entry in custom.cfg (replacing an older one) and
    make it the next boot only. Where GRUB cannot write grubenv (/boot on btrfs) the
    entry stays the default, which is harmless: the install replaces the disk."""
    entry = shlex.quote(f"{REMOTE_DIR}/grub-entry.cfg")
    cfg = shlex.quote(GRUB_CUSTOM_CFG)
    script = " && ".join(
        [
            shlex.join(verify_uploads_argv(uploads)),
            f"touch {cfg}",
            f"sed -i '/^### BEGIN {GRUB_ENTRY_ID}$/,/^### END {GRUB_ENTRY_ID}$/d' {cfg}",
            f"cat {entry} >> {cfg}",
            f"grub-editenv {shlex.quote(GRUB_ENV)} set next_entry={GRUB_ENTRY_ID}",
        ]
    )
    return ["sh", "-c", script]


def grub_reboot_argv() -> list[str]:
    """A reboot systemd runs two seconds later, so the SSH command returns cleanly."""
    return ["systemd-run", "--on-active=2", "systemctl", "reboot"]


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
