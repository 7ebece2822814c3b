"""IPAM (infr.state.ipam): properties over random sequences of allocations and frees."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infr.errors import ConflictError, InfrError, UsageError
from infr.state import ipam
from infr.state.model import Host, Inventory, Lxc, Peer
from infr.state.session import Session
from tests.conftest import seed_host, seed_lxc

# (network, pool start): small pools so that wrapping and filling up happen often,
# and a /23 whose pool crosses x.x.x.255 and x.x.x.0.
POOLS = [
    ("10.8.0.0/16", "10.8.1.0"),
    ("10.8.0.0/16", "10.8.255.250"),
    ("192.168.4.0/23", "192.168.4.240"),
    ("172.16.0.0/28", "172.16.0.0"),
    ("172.16.0.0/28", "172.16.0.9"),
    ("10.0.0.0/30", "10.0.0.0"),
]


def inventory(network: str, start: str) -> Inventory:
    return Inventory(config={"vnetNetwork": network, "vnetPoolStart": start})


def hold(inv: Inventory, name: str, address: str) -> None:
    """Give `address` to a machine, as adding an LXC would."""
    inv.lxcs[name] = Lxc(name=name, host="h", distro="debian", release="bookworm", vnet_ip=address)


def usable(address: str, network: str) -> bool:
    net = ipaddress.IPv4Network(network)
    ip = ipaddress.IPv4Address(address)
    return (
        ip in net
        and ip not in (net.network_address, net.broadcast_address)
        and address.split(".")[-1]
        not in (
            "0",
            "255",
        )
    )


def expected_next(inv: Inventory, network: str, start: str) -> str | None:
    """The reference model: the first free usable address after the cursor, else from the pool start."""
    net = ipaddress.IPv4Network(network)
    lo, hi = int(ipaddress.IPv4Address(start)), int(net.broadcast_address)
    taken = {c.vnet_ip for c in inv.lxcs.values()}
    last = int(ipaddress.IPv4Address(inv.ipam_last)) if inv.ipam_last else lo - 1
    for candidate in itertools.chain(range(max(last + 1, lo), hi + 1), range(lo, min(last, hi) + 1)):
        text = str(ipaddress.IPv4Address(candidate))
        if text not in taken and usable(text, network):
            return text
    return None


# An operation: ("take",) or ("free", k) freeing the k-th held address (mod count).
operations = st.lists(st.one_of(st.just(("take", 0)), st.tuples(st.just("free"), st.integers(0, 50))), max_size=60)


@given(st.sampled_from(POOLS), operations)
@settings(max_examples=120)
def test_allocation_follows_the_cursor_and_never_reuses_until_the_pool_wraps(
    pool: tuple[str, str], ops: list[tuple[str, int]]
) -> None:
    network, start = pool
    inv = inventory(network, start)
    lap = 0  # how often the cursor went round the pool
    issued_in_lap: dict[str, int] = {}
    for i, (op, k) in enumerate(ops):
        if op == "free":
            if inv.lxcs:
                name = sorted(inv.lxcs)[k % len(inv.lxcs)]
                inv.lxcs.pop(name)
            continue
        want = expected_next(inv, network, start)
        before = inv.ipam_last
        if want is None:
            with pytest.raises(InfrError, match="is full"):
                ipam.take(inv)
            assert inv.ipam_last == before
            continue
        got = ipam.take(inv)
        assert got == want
        assert usable(got, network)
        assert ipaddress.IPv4Address(got) >= ipaddress.IPv4Address(start)
        assert got not in {c.vnet_ip for c in inv.lxcs.values()}, "handed out an address in use"
        if before and ipaddress.IPv4Address(got) <= ipaddress.IPv4Address(before):
            lap += 1
        assert issued_in_lap.get(got, -1) < lap, "a freed address came back before the pool wrapped"
        issued_in_lap[got] = lap
        assert inv.ipam_last == got
        hold(inv, f"c{i}", got)
    held = [c.vnet_ip for c in inv.lxcs.values()]
    assert len(held) == len(set(held))


@given(st.sampled_from(POOLS), st.integers(0, 2**32 - 1), st.integers(0, 20))
@settings(max_examples=200)
def test_a_requested_address_is_honoured_when_free_and_refused_naming_its_holder(
    pool: tuple[str, str], raw: int, fill: int
) -> None:
    network, start = pool
    net = ipaddress.IPv4Network(network)
    inv = inventory(network, start)
    for i in range(fill):
        try:
            hold(inv, f"c{i}", ipam.take(inv))
        except InfrError:
            break
    cursor = inv.ipam_last
    # Half the time ask for an address inside the network, to hit the free and held cases.
    address = ipaddress.IPv4Address(raw if raw % 2 else int(net.network_address) + raw % net.num_addresses)
    requested = str(address)
    holder = inv.holder_of(requested)
    if address not in net or address in (net.network_address, net.broadcast_address):
        with pytest.raises(UsageError, match=f"not a usable address in vnetNetwork {network}"):
            ipam.take(inv, requested)
    elif holder:
        with pytest.raises(ConflictError) as caught:
            ipam.take(inv, requested)
        assert f"already held by {holder}" in str(caught.value)
    else:
        assert ipam.take(inv, requested) == requested
    assert inv.ipam_last == cursor, "a requested address must not move the pool cursor"


def test_holders_of_every_kind_are_named() -> None:
    inv = inventory("10.8.0.0/16", "10.8.1.0")
    inv.hosts["bob"] = Host("bob", "45.32.191.151", "10.8.1.1")
    inv.peers["laptop"] = Peer("laptop", "pk", "10.8.1.3")
    hold(inv, "fozzie", "10.8.1.2")
    for address, holder in (("10.8.1.1", "host bob"), ("10.8.1.2", "lxc fozzie"), ("10.8.1.3", "peer laptop")):
        with pytest.raises(ConflictError, match=f"--ip {address} is already held by {holder}"):
            ipam.take(inv, address)
    assert ipam.take(inv) == "10.8.1.4"


@pytest.mark.parametrize("bad", ["10.8.1", "banana", "10.8.1.1/32", "::1"])
def test_a_requested_address_that_is_not_an_address_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="is not an IPv4 address"):
        ipam.take(inventory("10.8.0.0/16", "10.8.1.0"), bad)


def test_the_pool_skips_dot_zero_and_dot_255_and_starts_at_pool_start() -> None:
    inv = inventory("10.8.0.0/16", "10.8.1.253")
    got = []
    for i in range(4):
        got.append(ipam.take(inv))
        hold(inv, f"c{i}", got[-1])
    assert got == ["10.8.1.253", "10.8.1.254", "10.8.2.1", "10.8.2.2"]


def test_a_full_pool_is_a_clear_error() -> None:
    inv = inventory("172.16.0.0/29", "172.16.0.4")
    for i in range(3):  # .4 .5 .6; .7 is the broadcast address
        hold(inv, f"c{i}", ipam.take(inv))
    with pytest.raises(InfrError) as caught:
        ipam.take(inv)
    assert str(caught.value) == (
        "the vnet pool 172.16.0.4-172.16.0.7 is full "
        "(remove unused LXCs, or widen vnetNetwork with 'infr config set vnetNetwork CIDR')"
    )


def test_a_freed_address_comes_back_only_after_the_pool_wraps() -> None:
    inv = inventory("172.16.0.0/28", "172.16.0.1")
    for i in range(3):
        hold(inv, f"c{i}", ipam.take(inv))  # .1 .2 .3
    del inv.lxcs["c0"]
    assert ipam.take(inv) == "172.16.0.4"
    inv.ipam_last = "172.16.0.14"  # the last usable address: the next one wraps
    assert ipam.take(inv) == "172.16.0.1"


# ---- through the state: the cursor survives between commands ------------------------------


def test_the_cursor_is_saved_in_state_so_a_freed_address_is_not_reused(state_dir: Path) -> None:
    seed_host(state_dir, "bob", "45.32.191.151")
    seed_lxc(state_dir, "c1", "bob")
    seed_lxc(state_dir, "c2", "bob")
    with Session(state_dir).change() as change:
        change.delete_lxc("c2")
    assert (state_dir / "ipam.toml").read_text() == 'last = "10.8.1.3"\n'
    assert seed_lxc(state_dir, "c3", "bob").vnet_ip == "10.8.1.4"
    assert Session(state_dir).inventory().lxcs["c3"].vnet_ip == "10.8.1.4"


def test_a_requested_address_leaves_the_saved_cursor_alone(state_dir: Path) -> None:
    seed_host(state_dir, "bob", "45.32.191.151")  # 10.8.1.1 from the pool
    before = (state_dir / "ipam.toml").read_bytes()
    with Session(state_dir).change() as change:
        assert change.allocate_address("10.8.9.9") == "10.8.9.9"
        assert "ipam.toml" not in change.writes
    assert (state_dir / "ipam.toml").read_bytes() == before
    with pytest.raises(ConflictError, match="--ip 10.8.1.1 is already held by host bob"):
        seed_lxc(state_dir, "c1", "bob", vnet_ip="10.8.1.1")
