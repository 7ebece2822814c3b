"""Validators for every kind of input: each returns a problem sentence, or None when valid.

Returning problems (instead of raising) lets the schema collect every error at once.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

# \Z, not $: '$' also matches before a trailing newline, so "web1\n" would pass.
# re.ASCII: with re.I alone, [a-z] also matches the Kelvin sign and the dotless i.
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_EMAIL = re.compile(r"^[^@\s]+@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z", re.I | re.ASCII)
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
_SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def dns_label(value: str, what: str = "name") -> str | None:
    if _LABEL.match(value):
        return None
    if value != value.lower():
        return f"{what} {value!r} must be lowercase"
    if len(value) > 63:
        return f"{what} {value!r} is longer than 63 characters"
    return f"{what} {value!r} is not a DNS label: use a-z, 0-9 and '-', not starting or ending with '-'"


# Exactly what ipaddress.IPv4Address accepts as text: four decimal octets of 0-255, no
# leading zeros. Matching it is 10x quicker than building the object, which counted: a
# cold load of 10,000 LXCs checks 11,000 addresses.
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}\Z")


def _ipv4_int(value: str) -> int | None:
    match = _IPV4.match(value)
    if match is None:
        return None
    a, b, c, d = match.groups()
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


def ipv4(value: str, what: str = "address") -> str | None:
    if isinstance(value, str) and _IPV4.match(value):
        return None
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{what} {value!r} is not an IPv4 address"
    return None


# Addresses no host can be reached at: "this network" (0.0.0.0 connects to this very
# machine), loopback, link-local, multicast, and 240.0.0.0/4 with the broadcast address.
_NOT_A_HOST = tuple(
    ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")
)


def host_address(value: str, what: str = "address") -> str | None:
    """A unicast IPv4 address a server could have (private and test ranges included: labs use them)."""
    if problem := ipv4(value, what):
        return problem
    address = ipaddress.IPv4Address(value)
    for network in _NOT_A_HOST:
        if address in network:
            return f"{what} {value} is not a host's address (it is in {network})"
    return None


def ipv4_network(value: str, what: str = "network") -> str | None:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        return f"{what} {value!r} is not an IPv4 network in CIDR form ({exc})"
    if network.num_addresses < 4:
        return f"{what} {value!r} is too small: use a /30 or larger"
    return None


# Where a private network may lie: RFC 1918, shared address space (RFC 6598) and the
# benchmarking range (RFC 2544) the lab uses. A bridge holding a public range would
# capture traffic meant for the Internet.
PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15")
)


def private_network(value: str, what: str = "vnetNetwork") -> str | None:
    if problem := ipv4_network(value, what):
        return problem
    network = ipaddress.IPv4Network(value)
    if not any(network.subnet_of(private) for private in PRIVATE_RANGES):
        ranges = ", ".join(str(r) for r in PRIVATE_RANGES)
        return f"{what} {value} is not inside a private range ({ranges})"
    return None


def usable_address(address: str, network: str | ipaddress.IPv4Network, what: str) -> str | None:
    """`address` is a host address inside `network`: not outside it, not its network or broadcast address."""
    ip = _ipv4_int(address) if isinstance(address, str) else None
    if ip is None:
        if problem := ipv4(address, what):
            return problem
        ip = int(ipaddress.IPv4Address(address))
    net = network if isinstance(network, ipaddress.IPv4Network) else ipaddress.IPv4Network(network)
    first, last = int(net.network_address), int(net.broadcast_address)
    if not first <= ip <= last:
        return f"{what} {address} is outside vnetNetwork {network}"
    if ip in (first, last):
        return f"{what} {address} is the network or broadcast address of vnetNetwork {network}"
    return None


def port(value: Any, what: str = "port") -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return f"{what} {value!r} is not a port number between 1 and 65535"
    return None


def email(value: str, what: str = "email address") -> str | None:
    return None if _EMAIL.match(value) else f"{what} {value!r} is not an email address"


def key_name(value: str) -> str | None:
    if _KEY_NAME.match(value):
        return None
    return f"key name {value!r} must be 1-64 characters of letters, digits, '.', '_', '@', '-'"


# A key line: type, base64 blob, comment. 16 KiB holds a 16384-bit RSA key with room to
# spare; a longer "key" is a mistake (or an attack) that would be pushed to every host.
MAX_KEY_LINE = 16 * 1024
MAX_KEY_COMMENT = 256


def single_line(value: str, what: str) -> str | None:
    """Printable text on one line: a control character (a newline above all) would start a
    directive of its own in any file the value is rendered into."""
    if value.isprintable():
        return None
    return f"{what} {value[:60]!r} holds a newline or another control character"


def ssh_public_key(value: str) -> str | None:
    """An OpenSSH public key line, 'TYPE BASE64 [COMMENT]', whose blob is complete for its type."""
    if len(value) > MAX_KEY_LINE:
        return f"the public key is {len(value)} characters long: more than {MAX_KEY_LINE} is not a key"
    if problem := single_line(value, "the public key"):
        return problem
    kind, _, rest = value.partition(" ")
    blob, _, comment = rest.partition(" ")
    if kind not in _SSH_KEY_TYPES or not blob:
        return "not an OpenSSH public key (expected e.g. 'ssh-ed25519 AAAA... comment')"
    if len(comment) > MAX_KEY_COMMENT:
        return f"the public key's comment is longer than {MAX_KEY_COMMENT} characters"
    return _key_blob(kind, blob)


def ssh_host_key(value: str, what: str = "host_key") -> str | None:
    """A pinned host key as infr records it: 'TYPE BASE64', nothing else."""
    if problem := single_line(value, what):
        return problem
    kind, _, blob = value.partition(" ")
    if kind not in _SSH_KEY_TYPES or not blob or " " in blob or len(value) > MAX_KEY_LINE:
        return f"{what} is not 'TYPE BASE64' (e.g. 'ssh-ed25519 AAAA...')"
    problem = _key_blob(kind, blob)
    return f"{what}: {problem}" if problem else None


# The fields after the type in each key type's blob (RFC 4253, 5656, 8709; OpenSSH's
# PROTOCOL.u2f): "s" a string, "m" an mpint, and fixed lengths where the type has them.
_ED25519 = 32
_EC_POINT = {"nistp256": 65, "nistp384": 97, "nistp521": 133}
_BLOB_FIELDS = {
    "ssh-ed25519": ("key",),
    "ssh-rsa": ("exponent", "modulus"),
    "ecdsa-sha2-nistp256": ("curve", "point"),
    "ecdsa-sha2-nistp384": ("curve", "point"),
    "ecdsa-sha2-nistp521": ("curve", "point"),
    "sk-ssh-ed25519@openssh.com": ("key", "application"),
    "sk-ecdsa-sha2-nistp256@openssh.com": ("curve", "point", "application"),
}


def _key_blob(kind: str, blob: str) -> str | None:
    if not blob.isascii():
        return "the public key's base64 part holds a character that is not base64"
    import base64
    import binascii

    try:
        data = base64.b64decode(blob, validate=True)
    except binascii.Error:
        return "the public key's base64 part is damaged"
    fields = _wire_strings(data)
    if fields and fields[0] != kind.encode():
        return "the public key's type does not match its data"
    names = _BLOB_FIELDS[kind]
    if fields is None or len(fields) != 1 + len(names):
        return "the public key's data is cut short or damaged"
    if not _sizes_fit(kind, dict(zip(names, fields[1:], strict=True))):
        return "the public key's data is cut short or damaged"
    return None


def _wire_strings(data: bytes) -> list[bytes] | None:
    """The length-prefixed strings that make up `data`; None if the last one is cut short."""
    fields, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            return None
        size = int.from_bytes(data[at : at + 4], "big")
        if at + 4 + size > len(data):
            return None
        fields.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return fields


def _sizes_fit(kind: str, values: dict[str, bytes]) -> bool:
    if "key" in values:
        return len(values["key"]) == _ED25519
    if "curve" in values:
        curve = values["curve"].decode("ascii", "replace")
        named = kind.removeprefix("sk-").split("@")[0] == f"ecdsa-sha2-{curve}"
        return named and len(values["point"]) == _EC_POINT.get(curve, -1)
    # RSA: a positive exponent and a modulus of 1024-16384 bits (mpints, a sign byte allowed).
    return 0 < len(values["exponent"]) <= 8 and 128 <= len(values["modulus"]) <= 2049


def wireguard_key(value: str, what: str = "public_key") -> str | None:
    """A WireGuard public key: base64 of 32 bytes, 44 characters, as 'wg pubkey' prints."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(value, validate=True) if len(value) == 44 and value.isascii() else b""
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        return f"{what} {value[:60]!r} is not a WireGuard public key (44 characters of base64, as 'wg pubkey' prints)"
    return None


# What `lxc-create -t download` offers and infr can set up: it installs sshd and sudo with
# apt-get and enables sshd with systemctl, so Debian and its systemd-based derivatives.
DISTROS = ("debian", "ubuntu", "kali", "mint")
_RELEASE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,31}\Z")


def distro(value: str, what: str = "distro") -> str | None:
    if value in DISTROS:
        return None
    return f"{what} {value[:60]!r} is not one infr can set up: use one of {', '.join(DISTROS)}"


def release(value: str, what: str = "release") -> str | None:
    if _RELEASE.match(value):
        return None
    return f"{what} {value[:60]!r} must be 1-32 characters of a-z, 0-9, '.' and '-' (e.g. bookworm, 22.04)"


# 'none' is how the command line takes an LXC out of its zone, so it names no zone.
NO_ZONE = "none"


def zone(value: str, what: str = "zone") -> str | None:
    if value == NO_ZONE:
        return f"{what} {NO_ZONE!r} means no zone: leave the field out instead"
    return dns_label(value, what)


# As model.timestamp() writes them: 2024-05-01T09:30:00+00:00.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(\+00:00|Z)\Z", re.ASCII)


def timestamp(value: str, what: str) -> str | None:
    """A UTC ISO 8601 time as infr records it, or empty (not recorded)."""
    if not value:
        return None
    if _TIMESTAMP.match(value):
        from datetime import datetime

        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            return None
        except ValueError:
            pass
    return f"{what} {value[:60]!r} is not a UTC time such as 2024-05-01T09:30:00+00:00"


def hostname(value: str, what: str) -> str | None:
    """A lowercase host name of two or more labels: the syntax of fqdn() without its public
    suffix check, which costs 0.3-0.5 s of imports (state is loaded by every command)."""
    name = value.rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return f"{what} {value[:80]!r} is not a lowercase domain name such as www.example.org"
    return None


def alias(value: str, managed: tuple[str, ...], what: str = "alias") -> str | None:
    """An extra name HAProxy routes to an LXC: never one under infr's own zones (managed
    suffixes), where it could be another LXC's, host's or peer's name, now or later."""
    if problem := hostname(value, what):
        return problem
    for suffix in managed:
        if value == suffix or value.endswith("." + suffix):
            return f"{what} {value} is under {suffix}, where infr names hosts, LXCs and peers"
    return None


@lru_cache(maxsize=1)
def _extractor() -> Any:
    # tldextract is slow to import (0.3 s): only commands that check domains pay for it.
    # An empty URL list and no cache dir: use the bundled suffix list, never download.
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def fqdn(value: str, what: str = "name") -> str | None:
    """A lowercase host name under a real public suffix, e.g. www.example.org."""
    name = value.rstrip(".")
    if not name or len(name) > 253:
        return f"{what} {value!r} is not a valid domain name"
    for label in name.split("."):
        if not _LABEL.match(label):
            return f"{what} {value!r} is not a valid lowercase domain name"
    parts = _extractor()(name)
    if not parts.suffix or not parts.domain:
        return f"{what} {value!r} is not under a public suffix (such as .com or .org.nz)"
    return None


def registrable_domain(value: str, what: str = "dnsDomain") -> str | None:
    """A domain one can register, such as example.com (not www.example.com, not com)."""
    problem = fqdn(value, what)
    if problem:
        return problem
    parts = _extractor()(value.rstrip("."))
    if parts.subdomain:
        return f"{what} {value!r} is not a registrable domain: use {parts.domain}.{parts.suffix}"
    return None
