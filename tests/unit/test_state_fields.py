"""Every field of every state file is checked when state is loaded, as strictly as on the
command line (issue 12 items 1, 2, 4, 7, 8): a hand-edited or merged file is refused,
naming the file and the field, before anything is rendered from it."""

from __future__ import annotations

import base64
import ipaddress
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from infr.errors import ValidationError
from infr.state.files import dump_toml
from infr.state.model import Backup, Host, Key, Lxc, Peer, TcpForward
from infr.state.session import Session
from infr.state.store import Store
from tests.conftest import clone_state, run_cli, snapshot

WG_BOB = base64.b64encode(b"b" * 32).decode()
WG_TOM = base64.b64encode(b"t" * 32).decode()
WG_ALICE = base64.b64encode(b"a" * 32).decode()


def ed25519(seed: bytes) -> str:
    """A well-formed ed25519 key line ('type base64'): the type, then 32 bytes."""
    blob = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + seed * (32 // len(seed))
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


WHEN = "2024-05-01T09:30:00+00:00"


def seed_every_kind(root: Path) -> None:
    """A state that has every kind of file, every optional field set."""
    with Session(root, command_line="test: seed every kind").change() as change:
        change.put_host(Host("bob", "203.0.113.10", "10.8.1.1", "ready", WHEN, ed25519(b"B"), 22, WG_BOB))
        change.put_host(Host("tom", "198.51.100.11", "10.8.1.2", "ready", WHEN, ed25519(b"T"), 22, WG_TOM))
        change.put_lxc(
            Lxc(
                "web", "bob", "debian", "bookworm", "10.8.1.3", added=WHEN, http="FORWARD", https="TERMINATE",
                aliases=["www.example.org"], tcp_forwards=[TcpForward(2222, 22)], zone="shop",
            )
        )  # fmt: skip
        change.put_peer(Peer("alice", WG_ALICE, "10.8.1.4", WHEN))
        change.set_backups([Backup("bob", "tom", "active", WHEN)])
        change.put_key(Key("bob@work", ed25519(b"K") + " bob@work"))
        change.inv.ipam_last = "10.8.1.4"
        change.writes["ipam.toml"] = dump_toml({"last": "10.8.1.4"})


@pytest.fixture
def every_kind(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    return clone_state(state_template("every-kind", seed_every_kind), tmp_path / "state")




def test_the_seeded_state_is_valid(every_kind: Path) -> None:
    inv = Store(every_kind).load()
    assert inv.hosts["bob"].host_key and inv.lxcs["web"].zone == "shop" and inv.peers["alice"]


# (file, field): every text field of every TOML state file. A list field is given as
# "field[0]"; backups.toml's entries as "backup[0].field".
TEXT_FIELDS = [
    *(("hosts/bob.toml", f) for f in ("public_ip", "vnet_ip", "status", "added", "host_key", "wg_public_key")),
    *(
        ("lxcs/web.toml", f)
        for f in ("host", "distro", "release", "vnet_ip", "added", "http", "https", "zone", "aliases[0]", "status")
    ),
    *(("peers/alice.toml", f) for f in ("public_key", "vnet_ip", "added")),
    *(("backups.toml", f"backup[0].{f}") for f in ("from_host", "to_host", "status", "started")),
    ("ipam.toml", "last"),
    *(
        ("config.toml", f)
        for f in ("vnetNetwork", "vnetPoolStart", "dnsDomain", "dnsPrefix", "vnetPrefix", "adminEmail")
    ),
    # Settings without a check of their own, and those checked differently at load.
    *(("config.toml", f) for f in ("smtpUser", "lxcImageSource", "acmeCaCert", "smtpRelay", "debianMirror")),
]
CONTROL = [chr(c) for c in range(32)] + ["\x7f", "\x85", "\u2028", "\u2029"]
with_control = st.tuples(st.text(max_size=12), st.sampled_from(CONTROL), st.text(max_size=12)).map("".join)


def set_field(root: Path, file: str, field: str, value: Any) -> None:
    path = root / file
    data = tomllib.loads(path.read_text()) if path.exists() else {}
    target, name = data, field
    if "." in field:  # backup[0].status
        table, name = field.split(".")
        key, index = table.rstrip("]").split("[")
        target = data[key][int(index)]
    if name.endswith("[0]"):
        target[name[:-3]][0] = value
    else:
        target[name] = value
    path.write_bytes(dump_toml(data))


def load_problems(root: Path) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Store(root).load()
    return caught.value.problems


@contextmanager
def edited(root: Path, file: str) -> Iterator[Path]:
    """`root`, whose `file` is put back as it was afterwards: one state serves many examples."""
    path = root / file
    saved = path.read_bytes()
    try:
        yield root
    finally:
        path.unlink()  # a test may have left a symlink there
        path.write_bytes(saved)


# Hypothesis runs many examples in one test's state directory, each undoing its edit.
def many(examples: int) -> settings:
    return settings(max_examples=examples, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize(("file", "field"), TEXT_FIELDS)
@given(value=with_control)
@many(15)
def test_a_control_character_in_any_field_is_refused_at_load_naming_file_and_field(
    every_kind: Path, file: str, field: str, value: str
) -> None:
    with edited(every_kind, file) as root:
        set_field(root, file, field, value)
        problems = load_problems(root)
    where = file if file != "backups.toml" else "backups.toml entry 1"
    shown = field.split(".")[-1].removesuffix("[0]").removesuffix("es")  # aliases: "alias"
    assert any(p.startswith(where) and shown in p for p in problems), problems


@given(value=with_control, at=st.integers(0, 200))
@many(40)
# A tab before the key was stripped away with the line end, and the file taken as valid.
@example(value="\t", at=0)
@example(value="\x1f", at=10_000)
@example(value="\r", at=10_000)
def test_a_control_character_in_a_key_file_is_refused_at_load(every_kind: Path, value: str, at: int) -> None:
    with edited(every_kind, "keys/bob@work.pub") as root:
        path = root / "keys" / "bob@work.pub"
        text = path.read_text().strip()
        at = min(at, len(text))
        # A lone CR at the very end makes a CRLF line end, which loading accepts by design.
        assume(value + text[at:] != "\r")
        path.write_text(text[:at] + value + text[at:] + "\n")
        problems = load_problems(root)
    assert any(p.startswith("keys/bob@work.pub") for p in problems), problems


def test_a_second_line_in_a_key_file_is_refused_at_load(every_kind: Path) -> None:
    """An extra line in keys/*.pub would be an extra entry in every host's authorized_keys."""
    path = every_kind / "keys" / "bob@work.pub"
    path.write_text(path.read_text() + 'command="sh" ' + ed25519(b"M") + "\n")
    assert any(p.startswith("keys/bob@work.pub:") for p in load_problems(every_kind))


def test_a_huge_or_special_key_file_is_refused_at_load_without_reading_it_all(every_kind: Path) -> None:
    path = every_kind / "keys" / "bob@work.pub"
    path.write_text(path.read_text().strip() + " " + "x" * 10_000_000 + "\n")
    assert load_problems(every_kind) == ["keys/bob@work.pub is larger than 16386 bytes"]
    path.unlink()
    path.symlink_to("/dev/zero")
    assert load_problems(every_kind) == ["keys/bob@work.pub is not a regular file"]


# ---- values that reach rendered files: the injections of the issue, one by one --------


@pytest.mark.parametrize(
    ("file", "field", "value"),
    [
        ("lxcs/web.toml", "zone", "shop }\n chain x { type filter hook input priority 0; policy drop; }\n#"),
        ("lxcs/web.toml", "zone", "none"),  # the CLI's word for 'no zone'
        ("lxcs/web.toml", "distro", "debian\nlxc.mount.entry = / host none bind 0 0"),
        ("lxcs/web.toml", "distro", "gentoo"),
        ("lxcs/web.toml", "release", "-bookworm"),
        ("lxcs/web.toml", "release", "b" * 33),
        ("lxcs/web.toml", "aliases[0]", "www.example.org\n  use_backend x"),
        ("lxcs/web.toml", "aliases[0]", "WWW.example.org"),
        ("lxcs/web.toml", "aliases[0]", "localhost"),
        ("lxcs/web.toml", "added", "yesterday"),
        ("lxcs/web.toml", "added", "2024-13-01T09:30:00+00:00"),
        ("peers/alice.toml", "public_key", WG_ALICE + "\nAllowedIPs = 0.0.0.0/0"),
        ("peers/alice.toml", "public_key", base64.b64encode(b"a" * 31).decode()),
        ("peers/alice.toml", "public_key", "é" * 44),
        ("hosts/bob.toml", "host_key", "@cert-authority * " + ed25519(b"C")),
        ("hosts/bob.toml", "host_key", ed25519(b"C") + "\n@cert-authority * " + ed25519(b"C")),
        ("hosts/bob.toml", "host_key", ed25519(b"C") + " root@bob"),
        ("hosts/bob.toml", "host_key", "ssh-rsa " + ed25519(b"C").split()[1]),  # type differs from the blob's
        ("hosts/bob.toml", "host_key", ed25519(b"C")[:-8]),  # cut short
        ("hosts/bob.toml", "wg_public_key", "not a key"),
        ("hosts/bob.toml", "added", "2024-05-01 09:30"),
        ("hosts/bob.toml", "vnet_ip", "10.8.0.0"),  # vnetNetwork's network address
        ("hosts/bob.toml", "vnet_ip", "10.8.255.255"),  # and its broadcast address
        ("backups.toml", "backup[0].started", "soon"),
        ("backups.toml", "backup[0].to_host", "bob"),  # onto itself
        ("ipam.toml", "last", "10.8.1"),
        ("config.toml", "vnetNetwork", "0.0.0.0/0"),
        ("config.toml", "vnetNetwork", "8.8.0.0/16"),
        ("config.toml", "vnetPoolStart", "10.8.255.255"),
        ("config.toml", "dnsTTL", 5),
        ("config.toml", "smtpPassword", "in the wrong file"),
    ],
)
def test_a_value_that_would_be_rendered_wrong_is_refused_at_load(
    every_kind: Path, file: str, field: str, value: Any
) -> None:
    set_field(every_kind, file, field, value)
    where = file if file != "backups.toml" else "backups.toml entry 1"
    problems = load_problems(every_kind)
    assert any(p.startswith(where) for p in problems), problems


def test_a_tcp_forward_of_a_reserved_or_repeated_host_port_is_refused_at_load(every_kind: Path) -> None:
    set_field(every_kind, "lxcs/web.toml", "tcp_forwards", [{"host_port": 22, "lxc_port": 22}])
    assert load_problems(every_kind) == ["lxcs/web.toml: tcp forward host_port 22 is reserved for sshd and HAProxy"]
    twice = [{"host_port": 2222, "lxc_port": 22}, {"host_port": 2222, "lxc_port": 23}]
    set_field(every_kind, "lxcs/web.toml", "tcp_forwards", twice)
    assert load_problems(every_kind) == ["lxcs/web.toml: a tcp forward host_port is listed twice"]


def test_a_bad_value_in_a_state_file_stops_a_command_before_it_renders_or_sends(every_kind: Path) -> None:
    set_field(every_kind, "peers/alice.toml", "public_key", WG_ALICE + "\nAllowedIPs = 0.0.0.0/0")
    before = snapshot(every_kind)
    result = run_cli(every_kind, "vnet", "hosts")
    assert isinstance(result.exception, ValidationError)
    assert "peers/alice.toml: public_key" in str(result.exception)
    assert snapshot(every_kind) == before


# ---- addresses (item 4) ---------------------------------------------------------------

NOT_A_HOST = ["0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"]
not_a_host = st.sampled_from(NOT_A_HOST).flatmap(
    lambda net: st.integers(0, ipaddress.IPv4Network(net).num_addresses - 1).map(
        lambda i: str(ipaddress.IPv4Network(net)[i])
    )
)


def is_host_address(address: ipaddress.IPv4Address) -> bool:
    """The oracle, from ipaddress's own properties."""
    in_this_network = address in ipaddress.IPv4Network("0.0.0.0/8")
    return not (
        in_this_network or address.is_loopback or address.is_link_local or address.is_multicast or address.is_reserved
    )


@given(st.integers(0, 2**32 - 1))
@example(int(ipaddress.IPv4Address("198.51.100.7")))
@example(int(ipaddress.IPv4Address("203.0.113.7")))
@example(int(ipaddress.IPv4Address("10.1.2.3")))
@example(int(ipaddress.IPv4Address("198.18.1.11")))  # the lab's hosts
@example(int(ipaddress.IPv4Address("255.255.255.255")))
def test_host_addresses_are_the_unicast_ones(number: int) -> None:
    from infr.state import validate

    address = ipaddress.IPv4Address(number)
    assert (validate.host_address(str(address)) is None) == is_host_address(address)


@given(not_a_host)
@example("0.0.0.0")
@example("255.255.255.255")
@example("127.0.0.1")
@many(25)
def test_hosts_add_adopt_refuses_an_address_no_host_has_before_writing_anything(state_dir: Path, ip: str) -> None:
    before = snapshot(state_dir)
    result = run_cli(state_dir, "hosts", "add", "--adopt", "--yes", "bob", ip)
    assert result.exit_code != 0 and "not a host's address" in str(result.exception), result.output
    assert snapshot(state_dir) == before


@given(not_a_host)
@many(25)
def test_a_host_file_with_an_address_no_host_has_is_refused_at_load(every_kind: Path, ip: str) -> None:
    with edited(every_kind, "hosts/bob.toml") as root:
        set_field(root, "hosts/bob.toml", "public_ip", ip)
        assert any(p.startswith("hosts/bob.toml: public_ip") for p in load_problems(root))


@given(st.integers(0, 2**32 - 1), st.integers(8, 30))
@example(0, 0)
def test_vnet_network_must_be_a_private_range(number: int, prefix: int) -> None:
    from infr.state import validate

    network = ipaddress.IPv4Network((number, prefix), strict=False)
    private = any(network.subnet_of(ipaddress.IPv4Network(r)) for r in ("10.0.0.0/8", "172.16.0.0/12",
                  "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15"))  # fmt: skip
    assert (validate.private_network(str(network)) is None) == private


@pytest.mark.parametrize(
    ("key", "value"),
    [("vnetNetwork", "0.0.0.0/0"), ("vnetNetwork", "45.32.0.0/16"), ("vnetPoolStart", "10.8.0.0")],
)
def test_config_set_refuses_a_public_vnet_or_an_unusable_pool_start(state_dir: Path, key: str, value: str) -> None:
    before = snapshot(state_dir)
    result = run_cli(state_dir, "config", "set", key, value)
    assert result.exit_code != 0
    assert snapshot(state_dir) == before


# ---- one namespace for hosts, LXCs and peers; aliases (item 8) ---------------------------


@pytest.mark.parametrize("kind", ["hosts", "lxcs"])
def test_a_peer_and_a_host_or_lxc_of_one_name_are_refused_at_load_and_by_validate(every_kind: Path, kind: str) -> None:
    source = every_kind / kind / ("bob.toml" if kind == "hosts" else "web.toml")
    peer = tomllib.loads((every_kind / "peers" / "alice.toml").read_text())
    name = source.stem
    (every_kind / "peers" / f"{name}.toml").write_bytes(
        dump_toml({**peer, "name": name, "public_key": base64.b64encode(b"p" * 32).decode(), "vnet_ip": "10.8.1.9"})
    )
    what = "host" if kind == "hosts" else "LXC"
    assert f"name {name!r} is used by both a {what} and a peer" in load_problems(every_kind)
    result = run_cli(every_kind, "config", "validate")
    assert f"name {name!r} is used by both a {what} and a peer" in result.exception.problems


def test_an_lxc_cannot_take_a_peers_name(every_kind: Path) -> None:
    before = snapshot(every_kind)
    result = run_cli(every_kind, "lxcs", "add", "alice", "debian", "bookworm", "bob")
    assert "alice is already a peer's name" in str(result.exception)
    assert snapshot(every_kind) == before


def test_a_host_cannot_take_a_peers_name(every_kind: Path) -> None:
    before = snapshot(every_kind)
    result = run_cli(every_kind, "hosts", "add", "--adopt", "--yes", "alice", "203.0.113.50")
    assert "alice is already a peer's name" in str(result.exception)
    assert snapshot(every_kind) == before


@pytest.mark.parametrize("alias", ["db.infr.example.com", "db.vnet.example.com", "infr.example.com"])
def test_an_alias_under_infrs_own_names_is_refused_at_load_and_by_the_cli(every_kind: Path, alias: str) -> None:
    before = snapshot(every_kind)
    result = run_cli(every_kind, "lxc", "web", "add-alias", alias)
    assert f"alias {alias} is under" in str(result.exception)
    assert snapshot(every_kind) == before
    set_field(every_kind, "lxcs/web.toml", "aliases[0]", alias)
    assert any(p.startswith(f"lxcs/web.toml: alias {alias} is under") for p in load_problems(every_kind))


def test_the_same_wireguard_key_on_two_machines_is_refused_at_load(every_kind: Path) -> None:
    set_field(every_kind, "peers/alice.toml", "public_key", WG_BOB)
    assert "host bob and peer alice have the same WireGuard public key" in load_problems(every_kind)


# ---- distro and release (item 1) ------------------------------------------------------


@given(
    st.sampled_from(["distro", "release"]),
    st.text(st.characters(codec="utf-8"), min_size=0, max_size=40),
)
@example("distro", "debian\nlxc.mount.entry = / mnt none bind 0 0")
@example("release", "bookworm\nlxc.mount.entry = / mnt none bind 0 0")
@example("release", "bookworm\n")
@many(40)
def test_lxcs_add_refuses_a_bad_distro_or_release_before_writing_anything(
    state_dir: Path, which: str, value: str
) -> None:
    from infr.state import validate

    args = {"distro": "debian", "release": "bookworm", which: value}
    assume_bad = validate.distro(args["distro"]) or validate.release(args["release"])
    if not assume_bad or value.startswith("-"):  # a leading '-' is an option to click
        return
    before = snapshot(state_dir)
    result = run_cli(state_dir, "lxcs", "add", "web", args["distro"], args["release"], "nohost")
    assert result.exit_code != 0 and f"{which} " in str(result.exception), result.output
    assert snapshot(state_dir) == before


@given(st.text(max_size=40))
@example("bookworm")
@example("22.04")
@example("kali-rolling")
@example("Bookworm")
@example("bookworm\n")
def test_a_release_is_a_short_lowercase_word(text: str) -> None:
    from infr.state import validate

    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    ok = 1 <= len(text) <= 32 and set(text) <= allowed and text[0] not in ".-"
    assert (validate.release(text) is None) == ok
