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


def ipv4(value: str, what: str = "address") -> str | None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{what} {value!r} is not an IPv4 address"
    return None


def ipv4_network(value: str, what: str = "network") -> str | None:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        return f"{what} {value!r} is not an IPv4 network in CIDR form ({exc})"
    if network.num_addresses < 4:
        return f"{what} {value!r} is too small: use a /30 or larger"
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


def ssh_public_key(value: str) -> str | None:
    parts = value.split()
    if len(parts) < 2 or parts[0] not in _SSH_KEY_TYPES:
        return "not an OpenSSH public key (expected e.g. 'ssh-ed25519 AAAA... comment')"
    import base64
    import binascii

    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        return "the public key's base64 part is damaged"
    if not blob.startswith(len(parts[0]).to_bytes(4, "big") + parts[0].encode()):
        return "the public key's type does not match its data"
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


def address_in(address: str, network: str, what: str) -> str | None:
    if ipaddress.IPv4Address(address) not in ipaddress.IPv4Network(network):
        return f"{what} {address} is outside vnetNetwork {network}"
    return None
