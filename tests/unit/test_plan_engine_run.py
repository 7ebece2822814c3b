"""Planning and applying across hosts (infr/engine/run.py): one connection per host, a host
that can't be planned named while the others are, a failed step skipping the rest of its
feature only, and applying in rounds until nothing is left or a round changes nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infr.connector.target import Result, Target
from infr.engine import run
from infr.engine.plan import HostPlan, Runner, Status, Step
from infr.engine.run import Context, Scope
from infr.errors import RemoteError
from infr.state.model import HOST_READY, Host, Inventory
from infr.state.session import Session
from tests.conftest import clone_state, seed_host

UNREACHABLE = "dead"


class Connection:
    def __init__(self, host: str, log: list[tuple[str, str]]) -> None:
        self.host, self.log = host, log

    def run(self, argv: Sequence[str], **options: object) -> Result:
        self.log.append((self.host, " ".join(argv)))
        return Result(0, b"", b"")

    def put_file(self, path: str, data: bytes, *, owner: str, group: str, mode: int) -> None:
        self.log.append((self.host, f"put {path}"))


@dataclass
class Network:
    """Stands in for SSHConnection: every host answers but `down` ones; logs logins and commands."""

    down: set[str] = field(default_factory=lambda: {UNREACHABLE})
    logins: list[str] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)

    def connect(self, target: Target) -> contextlib.AbstractContextManager[Connection]:
        self.logins.append(target.name)
        if target.name in self.down:
            raise RemoteError(f"cannot reach {target.name} at {target.host}: connection refused")
        return contextlib.nullcontext(Connection(target.name, self.commands))


@dataclass
class Fake:
    """A feature whose 'facts' are `todo`: host -> the steps it still needs. Running a step
    fixes it (unless `sticks`), or fails its check (if in `fails`)."""

    name: str
    todo: dict[str, list[str]]
    fails: set[str] = field(default_factory=set)
    sticks: bool = False
    planned: list[str] = field(default_factory=list)
    ran: list[tuple[str, str]] = field(default_factory=list)
    after: Callable[[Context, str], None] = lambda ctx, host: None

    def manages(self, inv: Inventory, host: Host) -> bool:
        return host.name in self.todo

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        self.planned.append(host.name)
        return [Step(self.name, host.name, what, run=self._doer(ctx, host.name, what)) for what in self.todo[host.name]]

    def _doer(self, ctx: Context, host: str, what: str) -> Callable[[Runner], list[str]]:
        def carry_out(runner: Runner) -> list[str]:
            runner.run(["echo", what])
            if what in self.fails:
                raise RemoteError(f"{what}: failed its check, the old one is back")
            self.ran.append((host, what))
            if not self.sticks:
                self.todo[host].remove(what)
            self.after(ctx, host)
            return [what]

        return carry_out

    def touched(self, before: Inventory, after: Inventory) -> set[str]:
        return set()


def _seed(root: Path) -> None:
    for number, name in enumerate(("bob", "tom", UNREACHABLE, "down", "idle"), start=11):
        seed_host(root, name, f"198.51.100.{number}", status=HOST_READY)
    seed_host(root, "new", "198.51.100.20")  # still installing


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    fake = Network()
    monkeypatch.setattr(run, "SSHConnection", fake)
    return fake


@pytest.fixture
def lines() -> list[str]:
    """What the engine reported while applying."""
    return []


@pytest.fixture
def ctx(
    state_template: Callable[[str, Callable[[Path], object]], Path], tmp_path: Path, network: Network, lines: list[str]
) -> Context:
    root = clone_state(state_template("plan-engine-run", _seed), tmp_path / "state")
    return Context(Session(root, down_hosts=frozenset({"down"})), report=lines.append)


def _of(plans: Sequence[HostPlan], host: str) -> HostPlan:
    return next(p for p in plans if p.host == host)


def _descriptions(plan: HostPlan) -> list[tuple[str, str]]:
    return [(s.feature, s.description) for s in plan.steps]


def test_plan_names_down_unready_and_unreachable_hosts_and_plans_the_others(ctx: Context, network: Network) -> None:
    everyone = {name: ["rewrite /etc/haproxy/haproxy.cfg"] for name in ("bob", "tom", UNREACHABLE, "down", "new")}
    routing = Fake("routing", everyone)
    lxcs = Fake("lxcs", {"tom": ["start the container web"]})
    plans = run.plan_hosts(ctx, [routing, lxcs], Scope())
    assert [(p.host, p.error, p.skipped) for p in plans] == [
        ("bob", "", ""),
        (UNREACHABLE, f"cannot reach {UNREACHABLE} at 198.51.100.13: connection refused", ""),
        ("down", "", "marked down (-D)"),
        ("new", "", "installing: finish it with 'infr hosts add'"),
        ("tom", "", ""),
    ]  # idle: no feature manages it, so it is not listed
    assert _descriptions(plans[0]) == [("routing", "rewrite /etc/haproxy/haproxy.cfg")]
    assert _descriptions(plans[-1]) == [
        ("routing", "rewrite /etc/haproxy/haproxy.cfg"),
        ("lxcs", "start the container web"),
    ]
    assert sorted(network.logins) == ["bob", UNREACHABLE, "tom"]  # one login each, none to skipped hosts
    assert network.commands == [] and routing.ran == []  # planning runs nothing


def test_plan_covers_only_the_hosts_and_features_in_scope(ctx: Context, network: Network) -> None:
    routing = Fake("routing", {"bob": ["rewrite a"], "tom": ["rewrite b"]})
    lxcs = Fake("lxcs", {"bob": ["start web"]})
    [plan] = run.plan_hosts(ctx, [routing, lxcs], Scope(frozenset({"bob"}), frozenset({"lxcs"})))
    assert (plan.host, _descriptions(plan)) == ("bob", [("lxcs", "start web")])
    assert routing.planned == [] and network.logins == ["bob"]


def test_a_feature_that_crashes_on_one_host_leaves_the_others_planned(ctx: Context) -> None:
    class Crashing(Fake):
        def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
            if host.name == "tom":
                raise KeyError("wg_public_key")
            return super().plan(ctx, host, runner)

    plans = run.plan_hosts(ctx, [Crashing("vnet", {"bob": ["add peer tom"], "tom": []})], Scope())
    errors = {p.host: p.error for p in plans}
    assert (errors["bob"], errors["tom"]) == ("", "internal error: KeyError: 'wg_public_key'")
    assert _descriptions(_of(plans, "bob")) == [("vnet", "add peer tom")]


def test_a_failed_step_skips_the_rest_of_its_feature_but_not_other_features(
    ctx: Context, network: Network, lines: list[str]
) -> None:
    routing = Fake("routing", {"bob": ["rewrite haproxy.cfg", "start haproxy"]}, fails={"rewrite haproxy.cfg"})
    lxcs = Fake("lxcs", {"bob": ["start the container web"], "tom": ["start the container db"]})
    outcomes = run.apply_hosts(ctx, run.plan_hosts(ctx, [routing, lxcs], Scope()))
    assert sorted((o.host, o.feature, o.step, o.status) for o in outcomes) == [
        ("bob", "lxcs", "start the container web", Status.OK),
        ("bob", "routing", "rewrite haproxy.cfg", Status.FAILED),
        ("bob", "routing", "start haproxy", Status.SKIPPED),
        ("tom", "lxcs", "start the container db", Status.OK),
    ]
    assert routing.ran == []
    assert ("bob", "echo start haproxy") not in network.commands
    failed = next(o for o in outcomes if o.status is Status.FAILED)
    assert failed.error == "rewrite haproxy.cfg: failed its check, the old one is back"
    assert "bob: routing: failed: rewrite haproxy.cfg: rewrite haproxy.cfg: failed its check" in "\n".join(lines)
    assert "bob: lxcs: start the container web" in lines


def test_a_host_lost_between_plan_and_apply_fails_its_steps_only(ctx: Context, network: Network) -> None:
    lxcs = Fake("lxcs", {"bob": ["start web"], "tom": ["start db", "start cache"]})
    plans = run.plan_hosts(ctx, [lxcs], Scope())
    network.down.add("tom")
    outcomes = run.apply_hosts(ctx, plans)
    assert sorted((o.host, o.step, o.status) for o in outcomes) == [
        ("bob", "start web", Status.OK),
        ("tom", "start cache", Status.FAILED),
        ("tom", "start db", Status.FAILED),
    ]
    assert all("connection refused" in o.error for o in outcomes if o.host == "tom")


def test_converge_applies_then_plans_again_and_stops_when_nothing_is_left(ctx: Context) -> None:
    lxcs = Fake("lxcs", {"bob": ["start web"], "tom": ["start db"]})
    outcomes, left = run.converge_hosts(ctx, [lxcs], Scope())
    assert sorted(lxcs.ran) == [("bob", "start web"), ("tom", "start db")]
    assert [o.status for o in outcomes] == [Status.OK, Status.OK]
    assert all(not p.steps for p in left) and sorted(lxcs.planned) == ["bob", "bob", "tom", "tom"]


def test_converge_goes_round_again_for_what_a_step_recorded(ctx: Context) -> None:
    """A key made on bob while applying (recorded in state) gives tom a step in the next round."""

    def record_key(context: Context, host: str) -> None:
        if host == "bob":
            with context.session.change() as change:
                change.put_host(dataclasses.replace(context.inv.hosts["bob"], wg_public_key=WG_KEY))
            vnet.todo["tom"].append("add peer bob")

    vnet = Fake("vnet", {"bob": ["make a key"], "tom": []}, after=record_key)
    outcomes, left = run.converge_hosts(ctx, [vnet], Scope())
    assert [(o.host, o.step) for o in outcomes] == [("bob", "make a key"), ("tom", "add peer bob")]
    assert all(not p.steps for p in left)
    assert Session(ctx.session.root).inventory().hosts["bob"].wg_public_key == WG_KEY


WG_KEY = "TW9ja1dpcmVHdWFyZFB1YmxpY0tleTMyQnl0ZXM9PT0="


def test_converge_stops_when_a_round_changes_nothing(ctx: Context) -> None:
    stuck = Fake("backups", {"tom": ["enable and start infr-backup.timer"]}, sticks=True)
    outcomes, left = run.converge_hosts(ctx, [stuck], Scope())
    assert stuck.ran == [("tom", "enable and start infr-backup.timer")]  # once, not MAX_ROUNDS times
    assert [o.status for o in outcomes] == [Status.OK]
    assert _descriptions(_of(left, "tom")) == [("backups", "enable and start infr-backup.timer")]


def test_converge_stops_after_a_round_with_a_failure(ctx: Context) -> None:
    routing = Fake("routing", {"bob": ["rewrite haproxy.cfg"]}, fails={"rewrite haproxy.cfg"})
    outcomes, left = run.converge_hosts(ctx, [routing], Scope())
    assert [o.status for o in outcomes] == [Status.FAILED]
    assert _descriptions(_of(left, "bob")) == [("routing", "rewrite haproxy.cfg")]
    assert routing.planned == ["bob", "bob"]  # planned again to report what is left, not applied again


def test_steps_on_many_hosts_record_in_state_at_the_same_time(ctx: Context) -> None:
    """Steps run in threads, one per host; each may commit to state (Session.change takes turns)."""
    names = ["bob", "tom", "down", "idle"]
    barrier = threading.Barrier(len(names), timeout=10)

    def record(context: Context, host: str) -> None:
        barrier.wait()  # all four commit at once
        with context.session.change() as change:
            change.put_host(dataclasses.replace(context.session.inventory().hosts[host], ssh_port=2200))

    ctx.session.down_hosts = frozenset()
    fake = Fake("host", {name: ["set the ssh port"] for name in names}, after=record)
    with ctx.session.locked():  # as `infr apply` holds it
        outcomes = run.apply_hosts(ctx, run.plan_hosts(ctx, [fake], Scope()))
    assert [o.error for o in outcomes] == [""] * len(names)
    hosts = Session(ctx.session.root).inventory().hosts
    assert {name: hosts[name].ssh_port for name in names} == dict.fromkeys(names, 2200)
