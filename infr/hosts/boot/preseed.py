"""What the Debian installer is told: the settings, their checks, the preseed file and the kernel arguments."""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from infr.engine.templating import render
from infr.errors import ValidationError
from infr.hosts.boot.probe import Firmware

DEFAULT_RELEASE = "bookworm"


DEFAULT_MIRROR = "http://deb.debian.org/debian"


DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"


# d-i runs on the last console; the installed system shows its console on both.
DEFAULT_CONSOLE = ("tty0", "ttyS0,115200n8")


MANAGER = "manager"


PACKAGE_INSTALLER_DIR = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")


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
