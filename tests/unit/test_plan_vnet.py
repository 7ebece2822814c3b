"""The vnet feature as data: facts in (files, unit, key, live peers), steps out."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from infr.connector.target import Result
from infr.engine import run
from infr.engine.facts import FileFact, UnitFact
from infr.engine.plan import HostPlan, Outcome, Status, Step
from infr.engine.run import Context, Scope
from infr.state.model import HOST_READY, Host, Inventory, Lxc, Peer
from infr.state.session import Session
from infr.vnet import desired, feature, live, members
from infr.vnet.feature import FEATURE, Wanted, decide, desired_peers
from infr.vnet.live import Live

KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="
KEY_P = "P" * 43 + "="
KEY_X = "X" * 43 + "="
PORT = 51820
RUNNING = UnitFact(enabled=True, active=True)


def inventory() -> Inventory:
    inv = Inventory(config={"vnetNetwork": "10.8.0.0/16"})
    inv.hosts = {
        "a": Host("a", "203.0.113.1", "10.8.1.1", HOST_READY, wg_public_key=KEY_A),
        "b": Host("b", "203.0.113.2", "10.8.1.2", HOST_READY, wg_public_key=KEY_B),
    }
    inv.lxcs = {"web": Lxc("web", "b", "debian", "bookworm", "10.8.1.20", zone="shop")}
    inv.peers = {"alice": Peer("alice", KEY_P, "10.8.1.100")}
    return inv


def dump_line(key: str, endpoint: str, allowed: str) -> str:
    """A peer line of `wg show all dump` as wg prints it (a handshake, some traffic)."""
    return "\t".join([desired.INTERFACE, key, "(none)", endpoint, allowed, "1700000000", "1200", "3400", "25"])


# What host a's interface runs when all is well: b (and its LXC web), and alice from wherever she is.
GOOD_DUMP = [
    dump_line(KEY_B, "203.0.113.2:51820", "10.8.1.2/32,10.8.1.20/32"),
    dump_line(KEY_P, "198.51.100.7:40001", "10.8.1.100/32"),
]


def live_text(key: str = KEY_A, peers: Sequence[str] = GOOD_DUMP, up: bool = True, port: int = PORT) -> str:
    """The output of live.READ on the host."""
    if not up:
        return f"{key}\ndown\n"
    return "\n".join([key, "up", key, str(port), *peers]) + "\n"


def good_files(inv: Inventory, host: Host) -> dict[str, FileFact | None]:
    return {s.path: FileFact(s.content, f"{s.owner}:{s.group}:{s.mode:o}") for s in desired.host_files(inv, host, PORT)}


def learn(runner: object) -> list[str]:
    raise AssertionError("deciding must not run a step")


def steps_for(
    inv: Inventory,
    *,
    files: dict[str, FileFact | None] | None = None,
    unit: UnitFact = RUNNING,
    found: str | None = None,
    state_key: str = KEY_A,
) -> list[str]:
    host = inv.hosts["a"]
    specs = desired.host_files(inv, host, PORT)
    wanted = Wanted(state_key, PORT, desired_peers(inv, host, PORT))
    have = good_files(inv, host) if files is None else files
    steps = decide("a", specs, have, unit, live.parse(found or live_text()), wanted, learn)
    return [s.description for s in steps]


def with_conf(inv: Inventory, content: bytes) -> dict[str, FileFact | None]:
    files = good_files(inv, inv.hosts["a"])
    files[desired.CONF_PATH] = FileFact(content, "root:root:600")
    return files


def test_all_good_means_no_steps() -> None:
    assert steps_for(inventory()) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no key", ["generate the WireGuard key on a", "restart the vnet on a"]),
        ("key unknown to state", ["record the WireGuard public key of a (state has none)", "restart the vnet on a"]),
        (
            "reinstalled",
            [
                "record the WireGuard public key of a (state has another: was the host reinstalled?)",
                "restart the vnet on a",
            ],
        ),
        ("unit stopped", ["start the vnet on a"]),
        ("unit disabled", ["enable the vnet on a at boot"]),
        ("interface gone", ["restart the vnet on a (infrwg0 is gone)"]),
        ("peer removed by hand", ["reload the live peers on a (1 missing, 0 extra)"]),
        ("peer added by hand", ["reload the live peers on a (0 missing, 1 extra)"]),
        ("allowed-ips changed by hand", ["reload the live peers on a (1 out of date)"]),
        ("endpoint moved by hand", ["reload the live peers on a (1 out of date)"]),
        ("listen port changed by hand", ["reload the live peers on a (listening on 9999, not 51820)"]),
        ("nat remapped the port", []),
        ("admin roamed", []),
    ],
)
def test_drift_in_facts_gives_steps(case: str, expected: list[str]) -> None:
    inv = inventory()
    moved = dump_line(KEY_B, "203.0.113.9:51820", "10.8.1.2/32,10.8.1.20/32")
    facts: dict[str, dict[str, Any]] = {
        "no key": {"found": live_text(key=live.NO_KEY, up=False), "unit": UnitFact(enabled=True, active=True)},
        "key unknown to state": {"state_key": ""},
        "reinstalled": {"state_key": KEY_X},
        "unit stopped": {"unit": UnitFact(enabled=True, active=False)},
        "unit disabled": {"unit": UnitFact(enabled=False, active=True)},
        "interface gone": {"found": live_text(up=False)},
        "peer removed by hand": {"found": live_text(peers=GOOD_DUMP[1:])},
        "peer added by hand": {"found": live_text(peers=[*GOOD_DUMP, dump_line(KEY_X, "(none)", "(none)")])},
        "allowed-ips changed by hand": {
            "found": live_text(peers=[dump_line(KEY_B, "203.0.113.2:51820", "10.8.1.2/32"), GOOD_DUMP[1]])
        },
        "endpoint moved by hand": {"found": live_text(peers=[moved, GOOD_DUMP[1]])},
        "listen port changed by hand": {"found": live_text(port=9999)},
        "nat remapped the port": {
            "found": live_text(peers=[dump_line(KEY_B, "203.0.113.2:61000", "10.8.1.20/32,10.8.1.2/32"), GOOD_DUMP[1]])
        },
        "admin roamed": {"found": live_text(peers=[GOOD_DUMP[0], dump_line(KEY_P, "(none)", "10.8.1.100/32")])},
    }
    assert steps_for(inv, **facts[case]) == expected


def test_config_drift_rewrites_the_config_with_a_diff_and_restarts() -> None:
    inv = inventory()
    stale = desired.host_config(inv, inv.hosts["a"], PORT).replace("10.8.1.20/32", "10.8.1.21/32").encode()
    host = inv.hosts["a"]
    specs = desired.host_files(inv, host, PORT)
    wanted = Wanted(KEY_A, PORT, desired_peers(inv, host, PORT))
    steps = decide("a", specs, with_conf(inv, stale), RUNNING, live.parse(live_text()), wanted, learn)
    assert [s.description for s in steps] == [f"rewrite {desired.CONF_PATH}", "restart the vnet on a"]
    assert "-AllowedIPs = 10.8.1.2/32, 10.8.1.21/32" in steps[0].diff
    assert "+AllowedIPs = 10.8.1.2/32, 10.8.1.20/32" in steps[0].diff
    assert "PrivateKey" not in steps[0].diff  # the config never holds the private key


def test_missing_files_are_created_and_the_unit_started() -> None:
    inv = inventory()
    found = live_text(up=False)
    described = steps_for(inv, files={}, unit=UnitFact(enabled=False, active=False, known=False), found=found)
    created = [f"create {p}" for p in (desired.ZONES_PATH, desired.CONF_PATH, desired.UP_SCRIPT, desired.UNIT_PATH)]
    assert described == [*created, "start the vnet on a"]


def test_parse_refuses_output_it_does_not_understand() -> None:
    from infr.errors import RemoteError

    with pytest.raises(RemoteError, match="wireguard-tools"):
        live.parse("sh: 1: wg: not found\n")
    assert live.parse(f"{KEY_A}\ndown\n") == Live(KEY_A)


class FakeHost:
    """Answers only the batched reads a plan may make: files, units, the WireGuard facts."""

    def __init__(self, files: dict[str, FileFact | None], unit: str, wireguard: str) -> None:
        self.files = files
        self.unit = unit
        self.wireguard = wireguard
        self.ran: list[list[str]] = []

    def run(self, argv: Sequence[str], *, check: bool = True, **_: object) -> Result:
        argv = list(argv)
        self.ran.append(argv)
        if argv[:3] == ["sh", "-c", live.READ]:
            return Result(0, self.wireguard.encode(), b"")
        if argv[:2] == ["systemctl", "show"]:
            return Result(0, self.unit.encode(), b"")
        if argv[:2] == ["sh", "-c"]:  # the batched file read: one line per path after "-"
            return Result(0, "".join(self._listing(p) + "\n" for p in argv[4:]).encode(), b"")
        raise AssertionError(f"a plan ran something that is not a read: {argv}")

    def _listing(self, path: str) -> str:
        fact = self.files.get(path)
        return "-" if fact is None else f"{fact.meta} {base64.b64encode(fact.content).decode()}"

    def put_file(self, path: str, data: bytes, **_: object) -> None:
        raise AssertionError("a plan wrote a file")


class FakeSession:
    def __init__(self, inv: Inventory) -> None:
        self.inv = inv

    def inventory(self) -> Inventory:
        return self.inv

    def settings(self) -> dict[str, object]:
        return {"vnetListenPort": PORT}


UNIT_UP = f"Id={desired.UNIT_NAME}\nLoadState=loaded\nUnitFileState=enabled\nActiveState=active\n"


def plan_a(inv: Inventory, host: FakeHost) -> list[Step]:
    ctx = Context(cast(Session, FakeSession(inv)))
    return FEATURE.plan(ctx, inv.hosts["a"], host)


def test_plan_reads_in_three_commands_and_finds_nothing_on_a_good_host() -> None:
    inv = inventory()
    host = FakeHost(good_files(inv, inv.hosts["a"]), UNIT_UP, live_text())
    assert plan_a(inv, host) == []
    assert len(host.ran) == 3


def test_plan_finds_a_peer_deleted_by_hand_though_the_config_is_right() -> None:
    inv = inventory()
    host = FakeHost(good_files(inv, inv.hosts["a"]), UNIT_UP, live_text(peers=GOOD_DUMP[:1]))
    assert [s.description for s in plan_a(inv, host)] == ["reload the live peers on a (1 missing, 0 extra)"]


def test_plan_of_a_new_host_makes_its_key_then_its_files_then_starts() -> None:
    inv = inventory()
    unit = f"Id={desired.UNIT_NAME}\nLoadState=not-found\nUnitFileState=\nActiveState=inactive\n"
    host = FakeHost({}, unit, f"{live.NO_KEY}\ndown\n")
    described = [s.description for s in plan_a(inv, host)]
    assert described[0] == "generate the WireGuard key on a"
    assert described[-1] == "start the vnet on a"
    assert len(described) == 6


class Applier:
    """A host that answers what applying a vnet step runs: systemctl and the key."""

    def __init__(self, enabled: bool = True, key: str = KEY_X) -> None:
        self.enabled = enabled
        self.key = key
        self.ran: list[list[str]] = []

    def run(self, argv: Sequence[str], *, check: bool = True, **_: object) -> Result:
        argv = list(argv)
        self.ran.append(argv)
        if argv == ["sh", "-c", members.KEYGEN]:
            return Result(0, f"{self.key}\n".encode(), b"")
        if argv[:2] == ["systemctl", "is-enabled"]:
            return Result(0 if self.enabled else 1, b"", b"")
        return Result(0, b"", b"")

    def put_file(self, path: str, data: bytes, **_: object) -> None:
        raise AssertionError("no file to write here")


def test_reloading_the_live_peers_reruns_the_unit() -> None:
    inv = inventory()
    host = Applier()
    (step,) = decide(
        "a",
        [],
        {},
        RUNNING,
        live.parse(live_text(peers=GOOD_DUMP[:1])),
        Wanted(KEY_A, PORT, desired_peers(inv, inv.hosts["a"], PORT)),
        learn,
    )
    assert step.run(host) == [f"ran {desired.UNIT_NAME}"]
    assert ["systemctl", "restart", desired.UNIT_NAME] in host.ran
    assert ["systemctl", "daemon-reload"] not in host.ran


def test_the_key_step_records_the_new_key_in_state(state_dir: Path) -> None:
    from tests.conftest import seed_host

    seed_host(state_dir, "c", "203.0.113.3", status=HOST_READY)
    session = Session(state_dir)
    (step,) = feature.key_step("c", "", Live(live.NO_KEY), feature._learner(session, "c"))
    assert step.run(Applier(key=KEY_X)) == [f"WireGuard public key {KEY_X}"]
    assert Session(state_dir).inventory().hosts["c"].wg_public_key == KEY_X


def test_touched_every_host_when_the_peer_list_changes_else_only_the_host_itself() -> None:
    before = inventory()
    before.hosts["c"] = Host("c", "203.0.113.3", "10.8.1.3", HOST_READY)
    after = inventory()
    after.hosts["c"] = Host("c", "203.0.113.3", "10.8.1.3", HOST_READY, wg_public_key=KEY_X)
    assert FEATURE.touched(before, after) == {"a", "b", "c"}
    moved = inventory()
    moved.hosts["c"] = before.hosts["c"]
    moved.lxcs["web"] = Lxc("web", "a", "debian", "bookworm", "10.8.1.20", zone="shop")
    assert FEATURE.touched(before, moved) == {"a", "b", "c"}
    zoned = inventory()
    zoned.hosts["c"] = before.hosts["c"]
    zoned.lxcs["web"] = Lxc("web", "b", "debian", "bookworm", "10.8.1.20", zone="docs")
    assert FEATURE.touched(before, zoned) == {"a", "b", "c"}
    renamed = inventory()
    renamed.hosts["c"] = Host("c", "203.0.113.3", "10.8.1.3", "installing")  # no key: in nobody's config
    assert FEATURE.touched(before, renamed) == {"c"}
    assert FEATURE.touched(before, before) == set()


def test_touched_ignores_what_the_mesh_does_not_depend_on() -> None:
    before = inventory()
    after = inventory()
    after.lxcs["web"] = Lxc("web", "b", "debian", "bookworm", "10.8.1.20", zone="shop", http="FORWARD")
    after.config["dnsDomain"] = "example.org"
    assert FEATURE.touched(before, after) == set()


def test_a_key_recorded_in_a_round_brings_the_other_members_into_the_next(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`infr apply c` on a new host: once c's key is in state, a and b must learn it too."""
    from tests.conftest import seed_host

    seed_host(state_dir, "a", "203.0.113.1", status=HOST_READY, wg_public_key=KEY_A)
    seed_host(state_dir, "b", "203.0.113.2", status=HOST_READY, wg_public_key=KEY_B)
    seed_host(state_dir, "c", "203.0.113.3", status=HOST_READY)
    session = Session(state_dir)
    planned: list[frozenset[str]] = []

    def plan_hosts(ctx: Context, features: object, scope: Scope) -> list[HostPlan]:
        planned.append(scope.hosts)
        return []

    def apply_hosts(ctx: Context, plans: Sequence[HostPlan]) -> list[Outcome]:
        members.record_key(session, "c", KEY_X)
        return [Outcome("c", "vnet", "generate the WireGuard key on c", Status.OK)]

    monkeypatch.setattr(run, "plan_hosts", plan_hosts)
    monkeypatch.setattr(run, "apply_hosts", apply_hosts)
    first = [HostPlan("c", (Step("vnet", "c", "generate the WireGuard key on c"),))]
    run.converge_hosts(Context(session), [FEATURE], Scope(frozenset({"c"})), first)
    assert planned == [frozenset({"a", "b", "c"})]
