"""Input validation (infr.state.validate), checked against independent oracles with hypothesis."""

from __future__ import annotations

import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from infr.state import validate

LABEL_CHARS = string.ascii_lowercase + string.digits + "-"
# Characters a user might type by mistake: upper case, punctuation, space, newline, non-ASCII.
NOISE_CHARS = LABEL_CHARS + "ABCXYZ_.@ \n\t\u00e9\u0131/"


def is_label(text: str) -> bool:
    """RFC 1123 label, lowercase only: the oracle, written without a regex."""
    return (
        1 <= len(text) <= 63
        and all(c in LABEL_CHARS for c in text)
        and not text.startswith("-")
        and not text.endswith("-")
    )


labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


# ---- DNS labels ---------------------------------------------------------------------


@given(labels)
def test_every_rfc1123_lowercase_label_is_accepted(label: str) -> None:
    assert validate.dns_label(label) is None


@given(st.text(NOISE_CHARS, max_size=70))
@example("abc\n")  # a regex ending in '$' matches before a trailing newline
@example("-abc")
@example("abc-")
@example("a" * 64)
@example("")
@example("Web1")
def test_dns_label_agrees_with_the_oracle(text: str) -> None:
    problem = validate.dns_label(text, "LXC name")
    assert (problem is None) == is_label(text), problem
    if problem is not None:
        assert problem.startswith(f"LXC name {text!r}")


@given(labels.filter(lambda s: any(c.isalpha() for c in s)))
def test_an_uppercase_label_is_refused_as_not_lowercase(label: str) -> None:
    assert "lowercase" in (validate.dns_label(label.upper()) or "")


@given(st.integers(64, 300))
def test_a_long_label_is_refused_as_too_long(length: int) -> None:
    assert "longer than 63" in (validate.dns_label("a" * length) or "")


# ---- ports --------------------------------------------------------------------------


@given(st.one_of(st.integers(-(2**20), 2**20), st.booleans(), st.text(max_size=5), st.floats(), st.none()))
@example(0)
@example(1)
@example(65535)
@example(65536)
@example(True)
@example(80.0)
def test_port_accepts_exactly_the_integers_1_to_65535(value: object) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
    assert (validate.port(value) is None) == ok


# ---- email --------------------------------------------------------------------------

locals_ = st.text(string.ascii_letters + string.digits + ".+_-", min_size=1, max_size=20)
domains = st.lists(labels, min_size=1, max_size=3).map(".".join)
tlds = st.sampled_from(["com", "org", "nz", "museum", "io"])


@given(locals_, domains, tlds)
def test_plausible_email_addresses_are_accepted(local: str, domain: str, tld: str) -> None:
    assert validate.email(f"{local}@{domain}.{tld}") is None


@given(st.text(NOISE_CHARS, max_size=30))
@example("admin@example.com\n")
@example("admin @example.com")
@example("admin@example")
@example("@example.com")
@example("a@@example.com")
@example("a@\u0131nfo.com")  # dotless i: matches [a-z] under re.I unless re.ASCII
@example("a@\u212aa.com")  # Kelvin sign
def test_email_without_exactly_one_at_and_a_dotted_domain_is_refused(text: str) -> None:
    local, at, domain = text.partition("@")
    plausible = (
        at == "@"
        and local
        and not any(c.isspace() for c in text)
        and "@" not in domain
        and "." in domain
        and all(is_label(part.lower()) for part in domain.split("."))
        and domain.rsplit(".", 1)[1].isalpha()
        and len(domain.rsplit(".", 1)[1]) >= 2
        and domain.isascii()
    )
    if not plausible:
        assert validate.email(text) is not None, text


# ---- FQDNs and domains --------------------------------------------------------------

suffixes = st.sampled_from(["com", "org", "org.nz", "co.uk", "de", "io"])


@given(st.lists(labels, min_size=1, max_size=4), suffixes)
@settings(max_examples=60)
def test_names_under_a_public_suffix_are_valid_fqdns(parts: list[str], suffix: str) -> None:
    name = ".".join([*parts, suffix])
    if len(name) <= 253:
        assert validate.fqdn(name) is None
        assert validate.fqdn(name + ".") is None  # the root dot is allowed


@given(st.lists(labels, min_size=1, max_size=3))
@settings(max_examples=40)
def test_names_under_an_unknown_suffix_are_refused(parts: list[str]) -> None:
    problem = validate.fqdn(".".join([*parts, "notatld"]), "alias")
    assert problem is not None and "public suffix" in problem


@pytest.mark.parametrize(
    "name",
    [
        "foo.notatld",
        "com",
        "co.uk",
        "Www.Example.org",
        "www..example.org",
        "-www.example.org",
        "www_1.example.org",
        "www.example.org\n",
        "",
        ".",
        "a." * 127 + "com",
    ],
)
def test_bad_fqdns_are_refused(name: str) -> None:
    assert validate.fqdn(name) is not None


@pytest.mark.parametrize("name", ["www.example.org", "example.org", "shop.example.co.uk", "a.b.c.example.org."])
def test_good_fqdns_are_accepted(name: str) -> None:
    assert validate.fqdn(name) is None


def test_registrable_domain() -> None:
    assert validate.registrable_domain("example.com") is None
    assert validate.registrable_domain("example.org.nz") is None
    assert "use example.com" in (validate.registrable_domain("www.example.com") or "")
    assert validate.registrable_domain("com") is not None
    assert validate.registrable_domain("example.notatld") is not None


# ---- addresses, networks, key names and SSH keys ---------------------------------------


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_ipv4_network_accepts_only_strict_cidrs_of_at_least_four_addresses(address: int, prefix: int) -> None:
    import ipaddress

    text = f"{ipaddress.IPv4Address(address)}/{prefix}"
    host_bits_clear = address & ((1 << (32 - prefix)) - 1) == 0
    assert (validate.ipv4_network(text) is None) == (host_bits_clear and prefix <= 30)


@pytest.mark.parametrize("text", ["10.8.0.0", "10.8.0.0/33", "10.8.0.1/16", "10.8.0.0/31", "10.8/16", "fe80::/64"])
def test_bad_networks_are_refused(text: str) -> None:
    assert validate.ipv4_network(text) is not None


@pytest.mark.parametrize("text", ["10.8.1.0", "0.0.0.0", "255.255.255.255"])
def test_ipv4_addresses_are_accepted(text: str) -> None:
    assert validate.ipv4(text) is None


@pytest.mark.parametrize("text", ["10.8.1", "10.8.1.256", "::1", "10.8.1.1 ", "host"])
def test_non_ipv4_addresses_are_refused(text: str) -> None:
    assert validate.ipv4(text) is not None


def ipaddress_accepts(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


OCTETS = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "", "-1", "\u0661", "1 ", "+1"]))


@given(st.one_of(st.lists(OCTETS, min_size=3, max_size=5).map(".".join), st.text("0123456789./\n ", max_size=16)))
@example("1.2.3.4\n")
@example("\u0661.2.3.4")
def test_ipv4_accepts_what_ipaddress_accepts(text: str) -> None:
    assert (validate.ipv4(text) is None) == ipaddress_accepts(text)


# Around 10.8.0.0 too, where the networks begin: random addresses rarely fall inside them.
ADDRESSES = st.one_of(st.integers(0, 2**32 - 1), st.integers(0x0A07FFFE, 0x0A08012C))


@given(ADDRESSES, st.sampled_from(["10.8.0.0/16", "10.8.1.0/24", "198.18.0.0/15", "10.0.0.0/30"]))
def test_usable_address_is_inside_and_neither_network_nor_broadcast(address: int, network: str) -> None:
    import ipaddress

    ip, net = ipaddress.IPv4Address(address), ipaddress.IPv4Network(network)
    usable = ip in net and ip not in (net.network_address, net.broadcast_address)
    assert (validate.usable_address(str(ip), net, "vnet_ip") is None) == usable


@given(st.text(NOISE_CHARS + ".@_", max_size=70))
@example("alice@laptop\n")
def test_key_names(text: str) -> None:
    allowed = string.ascii_letters + string.digits + "._@-"
    ok = 1 <= len(text) <= 64 and all(c in allowed for c in text) and text[0] in string.ascii_letters + string.digits
    assert (validate.key_name(text) is None) == ok


def test_ssh_public_key(admin_key: Path, tmp_path: Path) -> None:
    text = admin_key.read_text().strip()
    kind, blob, _comment = text.split()
    assert validate.ssh_public_key(text) is None
    assert validate.ssh_public_key(f"{kind} {blob}") is None
    assert "damaged" in (validate.ssh_public_key(f"{kind} {blob[:-3]}!!!") or "")
    assert "does not match" in (validate.ssh_public_key(f"ssh-rsa {blob}") or "")
    assert validate.ssh_public_key(f"ssh-dss {blob}") is not None
    assert validate.ssh_public_key("") is not None
    private = admin_key.with_suffix("")
    assert validate.ssh_public_key(private.read_text()) is not None
    rsa = tmp_path / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(rsa)], check=True)
    assert validate.ssh_public_key(rsa.with_suffix(".pub").read_text().strip()) is None
