"""The lxcs feature as data: the host's containers and the files in them in, steps out."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infr.engine import facts
from infr.engine.facts import FileFact
from infr.engine.plan import Runner
from infr.engine.run import Context
from infr.engine.steps import Apply
from infr.errors import RemoteError
from infr.lxcs import containers as lxcs_containers
from infr.lxcs import feature
from infr.lxcs.desired import Container, containers
from infr.lxcs.feature import FEATURE, Facts, decide
from infr.state.model import LXC_CREATING, Host, Inventory, Key, Lxc
from infr.state.session import Session
from tests.conftest import DEFAULT_SETTINGS, seed_host, seed_lxc
from tests.unit.fake_host import FakeHost, file_listing

BOB = Host("bob", "203.0.113.10", "10.8.1.1", status="ready")
KEYS = {"alice": Key("alice", "ssh-ed25519 AAAAalice alice@laptop")}
CONFIG = "/var/lib/lxc/web/config"
AUTHORIZED_KEYS = "/home/manager/.ssh/authorized_keys"


def inventory(*lxcs: Lxc, keys: dict[str, Key] = KEYS, hosts: tuple[Host, ...] = (BOB,)) -> Inventory:
    return Inventory(dict(DEFAULT_SETTINGS), {h.name: h for h in hosts}, {c.name: c for c in lxcs}, dict(keys))


WEB = Lxc("web", "bob", "debian", "bookworm", "10.8.1.2")


def wanted(*lxcs: Lxc) -> list[Container]:
    return containers(inventory(*lxcs), BOB, dict(DEFAULT_SETTINGS))


def fact(content: bytes, meta: str = "root:root:644") -> FileFact:
    return FileFact(content, meta)


def as_state_says(want: list[Container], states: dict[str, str]) -> Facts:
    """A host on which every listed container is exactly as state wants it."""
    listed = [c for c in want if c.lxc.name in states]
    configs = {c.config.path: fact(c.config.content) for c in listed}
    inside = {
        c.lxc.name: {s.path: fact(s.content, f"{s.owner}:{s.group}:{s.mode:o}") for s in c.inside}
        for c in listed
        if states[c.lxc.name] == "RUNNING"
    }
    return Facts(states, configs, inside)


def no_maker(lxc: Lxc) -> Apply:
    return lambda runner: [f"made {lxc.name}"]


def steps_of(found: Facts, want: list[Container]) -> list[str]:
    return [step.description for step in decide("bob", want, found, no_maker)]


# ---- deciding: facts in, steps out ----------------------------------------------------------------


def drifted(found: Facts, path: str, content: bytes, inside_of: str = "") -> Facts:
    if not inside_of:
        return dataclasses.replace(found, configs={**found.configs, path: fact(content)})
    files = {**found.inside[inside_of], path: fact(content, "manager:manager:600")}
    return dataclasses.replace(found, inside={**found.inside, inside_of: files})


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({"web": "RUNNING"}, []),
        ({}, ["create the container web (debian bookworm)"]),
        ({"web": "STOPPED"}, ["start the container web"]),
        ({"web": "FROZEN"}, []),  # someone froze it: left as it is, its inside not read
        ({"web": "RUNNING", "other": "RUNNING", "old": "STOPPED"}, []),  # not in state: never touched
    ],
)
def test_each_container_is_created_or_started_as_it_needs(states: dict[str, str], expected: list[str]) -> None:
    want = wanted(WEB)
    assert steps_of(as_state_says(want, states), want) == expected


def test_a_container_stopped_on_purpose_stays_stopped_and_one_started_by_hand_is_stopped() -> None:
    resting = dataclasses.replace(WEB, stopped=True)
    want = wanted(resting)
    assert steps_of(as_state_says(want, {"web": "STOPPED"}), want) == []
    started_by_hand = as_state_says(want, {"web": "RUNNING"})
    assert steps_of(started_by_hand, want) == ["stop the container web (stopped with 'infr lxc web stop')"]


def test_a_container_still_being_made_is_its_add_commands_not_the_plans() -> None:
    half = Lxc("half", "bob", "debian", "bookworm", "10.8.1.3", status=LXC_CREATING)
    assert [c.lxc.name for c in wanted(WEB, half)] == ["web"]
    assert not FEATURE.manages(inventory(half), BOB)
    assert FEATURE.manages(inventory(WEB, half), BOB)


def test_a_changed_config_is_rewritten_with_its_diff_and_restarts_only_a_running_container() -> None:
    want = wanted(WEB)
    by_hand = want[0].config.content.replace(b"lxc.start.auto = 1", b"lxc.start.auto = 0")
    running = decide("bob", want, drifted(as_state_says(want, {"web": "RUNNING"}), CONFIG, by_hand), no_maker)
    assert [s.description for s in running] == [f"rewrite {CONFIG} and restart the running container web"]
    assert "-lxc.start.auto = 0\n+lxc.start.auto = 1\n" in running[0].diff
    stopped = drifted(as_state_says(want, {"web": "STOPPED"}), CONFIG, by_hand)
    assert steps_of(stopped, want) == [f"rewrite {CONFIG}", "start the container web"]


def test_a_config_with_the_wrong_mode_only_gets_its_mode_back_without_a_restart() -> None:
    want = wanted(WEB)
    found = as_state_says(want, {"web": "RUNNING"})
    found = dataclasses.replace(found, configs={CONFIG: fact(want[0].config.content, "root:root:600")})
    assert steps_of(found, want) == [f"set {CONFIG} to root:root:644 (is root:root:600)"]


def test_authorized_keys_changed_inside_a_running_container_is_rewritten_there() -> None:
    want = wanted(WEB)
    found = drifted(as_state_says(want, {"web": "RUNNING"}), AUTHORIZED_KEYS, b"ssh-ed25519 AAAAmallory\n", "web")
    steps = decide("bob", want, found, no_maker)
    assert [s.description for s in steps] == [f"rewrite {AUTHORIZED_KEYS} in web"]
    assert "-ssh-ed25519 AAAAmallory\n+ssh-ed25519 AAAAalice alice@laptop\n" in steps[0].diff
    gone = {**found.inside["web"], AUTHORIZED_KEYS: None, "/etc/resolv.conf": None}
    found = dataclasses.replace(found, inside={"web": gone})
    assert steps_of(found, want) == ["create /etc/resolv.conf in web", f"create {AUTHORIZED_KEYS} in web"]


def test_the_files_inside_are_what_lxcs_add_writes_there() -> None:
    (web,) = wanted(WEB)
    assert [s.path for s in web.inside] == [
        "/etc/resolv.conf",
        "/etc/hostname",
        "/etc/hosts",
        AUTHORIZED_KEYS,
        "/etc/sudoers.d/infr-manager",
        "/etc/ssh/sshd_config.d/00-infr.conf",
    ]
    assert web.inside[0].content == b"nameserver 10.8.1.1\n"  # the host's dnsmasq
    assert web.inside[3].content == b"ssh-ed25519 AAAAalice alice@laptop\n"
    assert b"lxc.net.0.ipv4.address = 10.8.1.2/16\nlxc.net.0.ipv4.gateway = 10.8.1.1\n" in web.config.content


# ---- reading: the lxc-ls listing ------------------------------------------------------------------


def test_the_listing_gives_each_containers_state_and_skips_its_header() -> None:
    listing = b"NAME  STATE   \nweb   RUNNING \ndb    STOPPED \nfrost FROZEN  \n"
    host = FakeHost({feature.LIST: (0, listing)})
    assert feature.read_states(host) == {"web": "RUNNING", "db": "STOPPED", "frost": "FROZEN"}
    assert feature.read_states(FakeHost({feature.LIST: (0, b"")})) == {}  # no containers: no output at all


# ---- plan(): one read per kind, and nothing written ------------------------------------------------


@pytest.fixture
def bob_with_lxcs(state_dir: Path) -> Session:
    seed_host(state_dir, "bob", "203.0.113.10", status="ready")
    for name in ("web", "db", "new"):
        seed_lxc(state_dir, name, "bob")
    return Session(state_dir)


def test_plan_reads_the_listing_the_configs_and_each_running_containers_files_once(
    bob_with_lxcs: Session,
) -> None:
    session = bob_with_lxcs
    host = session.inventory().hosts["bob"]
    want = {c.lxc.name: c for c in containers(session.inventory(), host, session.settings())}
    configs = {c.config.path: (c.config.content, "root:root:644") for c in want.values()}
    configs["/var/lib/lxc/db/config"] = (b"# made by hand\n", "root:root:644")
    inside = {s.path: (s.content, f"{s.owner}:{s.group}:{s.mode:o}") for s in want["web"].inside}
    inside[AUTHORIZED_KEYS] = (b"ssh-ed25519 AAAAold\n", "manager:manager:600")
    listing = b"NAME  STATE\ndb    STOPPED\nmine  RUNNING\nweb   RUNNING\n"
    fake = FakeHost(
        {
            feature.LIST: (0, listing),
            ("sh", "-c", facts._READ_FILES): file_listing(configs),
            ("lxc-attach", "-n", "web"): file_listing(inside),
        }
    )
    steps = FEATURE.plan(Context(session), host, fake)
    assert [(s.feature, s.host, s.description) for s in steps] == [
        ("lxcs", "bob", "rewrite /var/lib/lxc/db/config"),
        ("lxcs", "bob", "start the container db"),
        ("lxcs", "bob", "create the container new (debian bookworm)"),
        ("lxcs", "bob", f"rewrite {AUTHORIZED_KEYS} in web"),
    ]
    assert [argv[:3] for argv in fake.ran] == [
        feature.LIST[:3],
        ("sh", "-c", facts._READ_FILES),
        ("lxc-attach", "-n", "web"),
    ]
    # The configs of the two containers that exist, in one read; nothing in "mine" (not in state).
    assert fake.ran[1][4:] == ("/var/lib/lxc/db/config", "/var/lib/lxc/web/config")


def test_a_container_that_cannot_be_read_inside_is_named() -> None:
    (web,) = wanted(WEB)
    fake = FakeHost(
        {feature.LIST: (0, b"web RUNNING\n"), ("sh", "-c", facts._READ_FILES): (0, b"-\n"), ("lxc-attach",): (1, b"")}
    )
    with pytest.raises(RemoteError, match="^inside the container web: could not read 6 files"):
        feature.read_facts(fake, [web])


# ---- applying: through the code infr already runs ---------------------------------------------------


def test_a_file_inside_is_written_through_lxc_attach() -> None:
    want = wanted(WEB)
    found = drifted(as_state_says(want, {"web": "RUNNING"}), AUTHORIZED_KEYS, b"old\n", "web")
    (step,) = decide("bob", want, found, no_maker)
    host = FakeHost({("lxc-attach", "-n", "web", "--clear-env"): (1, b"")})  # stat: not there yet
    assert step.run(host) == [f"web: wrote {AUTHORIZED_KEYS}"]
    assert any(argv[-3:-1] == ("sh", "-c") and AUTHORIZED_KEYS in argv[-1] for argv in host.ran)
    assert all(argv[:3] == ("lxc-attach", "-n", "web") for argv in host.ran)  # nothing on the host itself


def test_a_new_config_restarts_the_container_only_if_it_still_runs() -> None:
    want = wanted(WEB)
    found = drifted(as_state_says(want, {"web": "RUNNING"}), CONFIG, b"old\n")
    (step,) = decide("bob", want, found, no_maker)
    running = FakeHost({("stat",): (0, b"root:root:644\n")})
    stopped = ("lxc-stop", "-n", "web")
    running.answers[("lxc-info",)] = lambda argv: (0, b"STOPPED\n" if stopped in running.ran else b"RUNNING\n")
    assert step.run(running) == [f"wrote {CONFIG}", "restarted web"]
    assert [argv[0] for argv in running.ran if argv[0].startswith("lxc-")] == [
        "lxc-info", "lxc-stop", "lxc-info", "lxc-start", "lxc-wait",
    ]
    stopped_meanwhile = FakeHost({("stat",): (0, b"root:root:644\n"), ("lxc-info",): (0, b"STOPPED\n")})
    assert step.run(stopped_meanwhile) == [f"wrote {CONFIG}"]
    assert not any(argv[0] in ("lxc-stop", "lxc-start") for argv in stopped_meanwhile.ran)


def test_a_missing_container_is_made_by_the_code_lxcs_add_runs(
    bob_with_lxcs: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[str, lxcs_containers.Refusal]] = []

    def make(conn: Runner, session: Session, lxc: Lxc, report: object, refusal: lxcs_containers.Refusal) -> list[str]:
        made.append((lxc.name, refusal))
        return [f"created container {lxc.name}"]

    monkeypatch.setattr(lxcs_containers, "make", make)
    session = bob_with_lxcs
    host = session.inventory().hosts["bob"]
    fake = FakeHost({feature.LIST: (0, b"")})
    steps = {step.description: step for step in FEATURE.plan(Context(session), host, fake)}
    assert list(steps) == [f"create the container {name} (debian bookworm)" for name in ("db", "new", "web")]
    assert fake.ran == [feature.LIST]  # no container: nothing else to read
    assert steps["create the container new (debian bookworm)"].run(FakeHost()) == ["created container new"]
    # State already has it, ready: an image that is not what it says is refused, never recorded.
    assert made == [("new", lxcs_containers.Refusal(record_image_os=False, cursor=None))]


# ---- touched: which hosts an edit of state concerns --------------------------------------------------

TOM = Host("tom", "203.0.113.11", "10.8.2.1", status="ready")
EVE = Host("eve", "203.0.113.12", "10.8.3.1", status="ready")


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (inventory(WEB, hosts=(BOB, TOM, EVE)), set()),
        (inventory(hosts=(BOB, TOM, EVE)), {"bob"}),  # removed
        (inventory(WEB, Lxc("db", "tom", "debian", "bookworm", "10.8.2.2"), hosts=(BOB, TOM, EVE)), {"tom"}),
        (inventory(dataclasses.replace(WEB, host="tom"), hosts=(BOB, TOM, EVE)), {"bob", "tom"}),  # moved
        (inventory(dataclasses.replace(WEB, release="trixie"), hosts=(BOB, TOM, EVE)), {"bob"}),
        (inventory(dataclasses.replace(WEB, status=LXC_CREATING), hosts=(BOB, TOM, EVE)), {"bob"}),
        (inventory(dataclasses.replace(WEB, http="FORWARD"), hosts=(BOB, TOM, EVE)), set()),  # routing's
        (inventory(WEB, hosts=(dataclasses.replace(BOB, vnet_ip="10.8.9.1"), TOM, EVE)), {"bob"}),
        (inventory(WEB, hosts=(BOB, dataclasses.replace(TOM, vnet_ip="10.8.9.1"), EVE)), set()),  # no LXCs
        (inventory(WEB, hosts=(dataclasses.replace(BOB, status="installing"), TOM, EVE)), {"bob"}),
        (inventory(WEB, keys={**KEYS, "bo": Key("bo", "ssh-ed25519 AAAAbo")}, hosts=(BOB, TOM, EVE)), {"bob"}),
    ],
)
def test_touched_names_the_hosts_whose_containers_an_edit_changes(after: Inventory, expected: set[str]) -> None:
    before = inventory(WEB, hosts=(BOB, TOM, EVE))
    assert FEATURE.touched(before, after) == expected


def test_a_setting_the_files_come_from_touches_every_host_with_containers() -> None:
    before = inventory(WEB, Lxc("db", "tom", "debian", "bookworm", "10.8.2.2"), hosts=(BOB, TOM, EVE))
    after = inventory(WEB, Lxc("db", "tom", "debian", "bookworm", "10.8.2.2"), hosts=(BOB, TOM, EVE))
    after.config["dnsDomain"] = "example.org"
    assert FEATURE.touched(before, after) == {"bob", "tom"}
