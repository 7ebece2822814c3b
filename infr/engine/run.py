"""Plan and apply over the fleet: one connection per host, hosts in parallel, features in order.

`plan_fleet` asks each feature for its steps on each host (it reads, never writes);
`apply_fleet` carries a plan out and gathers one `Outcome` per step. A feature that
records something while applying (a WireGuard public key made on a host) changes what
other hosts should hold, so applying goes round again until the plan is empty, stops
changing, or something failed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from infr.connector import SSHConnection, run_parallel
from infr.engine import fleet
from infr.engine.plan import FleetPlan, HostPlan, Outcome, Runner, Status, Step
from infr.errors import InfrError
from infr.state.model import HOST_READY, Host, Inventory

if TYPE_CHECKING:
    from infr.state.session import Session

MAX_ROUNDS = 3
Report = Callable[[str], None]


@dataclass
class Context:
    """What a feature sees: the session (to reach hosts, and to record keys while applying)."""

    session: Session
    report: Report = field(default=lambda line: None)

    @property
    def inv(self) -> Inventory:
        return self.session.inventory()


class Feature(Protocol):
    """One managed area of a host (base system, containers, routing, vnet, backups)."""

    name: str

    def manages(self, inv: Inventory, host: Host) -> bool:
        """Whether this feature has anything to hold on the host (pure)."""
        ...

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        """Desired (pure) against facts (read-only) -> steps; never writes."""
        ...

    def touched(self, before: Inventory, after: Inventory) -> set[str]:
        """The hosts whose desired state differs between two inventories (pure)."""
        ...


@dataclass(frozen=True)
class Scope:
    """Which hosts and features a plan covers; empty means all of them."""

    hosts: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()

    def host_names(self, inv: Inventory) -> list[str]:
        return sorted(self.hosts or inv.hosts)

    def wants(self, feature: str) -> bool:
        return not self.features or feature in self.features


def plan_hosts(ctx: Context, features: Sequence[Feature], scope: Scope) -> list[HostPlan]:
    """Every host in scope planned in parallel; one that can't be reached is named, not fatal."""
    inv = ctx.inv
    plans: dict[str, HostPlan] = {}
    todo: dict[str, Host] = {}
    for name in scope.host_names(inv):
        host = inv.hosts[name]
        if name in ctx.session.down_hosts:
            plans[name] = HostPlan(name, skipped="marked down (-D)")
        elif host.status != HOST_READY:
            plans[name] = HostPlan(name, skipped=f"{host.status}: finish it with 'infr hosts add'")
        elif any(scope.wants(f.name) and f.manages(inv, host) for f in features):
            todo[name] = host
    outcomes = run_parallel(todo, lambda host, step: _plan_one(ctx, features, scope, host))
    for name, outcome in outcomes.items():
        plans[name] = outcome.value if outcome.value is not None else HostPlan(name, error=_why(outcome.error))
    return [plans[name] for name in scope.host_names(inv) if name in plans]


def _why(error: Exception | None) -> str:
    """A host's failure in one line; a bug (not an InfrError) says so instead of printing a bare "'key'"."""
    if error is None or isinstance(error, InfrError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"


def _plan_one(ctx: Context, features: Sequence[Feature], scope: Scope, host: Host) -> HostPlan:
    try:
        with SSHConnection.connect(fleet.target(ctx.session, host)) as conn:
            steps = [
                step
                for feature in features
                if scope.wants(feature.name) and feature.manages(ctx.inv, host)
                for step in feature.plan(ctx, host, conn)
            ]
    except InfrError as e:
        return HostPlan(host.name, error=e.message)
    return HostPlan(host.name, tuple(steps))


def apply_hosts(ctx: Context, plans: Sequence[HostPlan]) -> list[Outcome]:
    """Carry out every host's steps (hosts in parallel); a failed step skips the rest of its feature."""
    inv = ctx.inv
    todo = {plan.host: plan for plan in plans if plan.steps and plan.host in inv.hosts}
    results = run_parallel(todo, lambda plan, step: _apply_one(ctx, inv.hosts[plan.host], plan))
    outcomes: list[Outcome] = []
    for name, result in results.items():
        if result.value is not None:
            outcomes += result.value
        else:
            error = _why(result.error)
            outcomes += [Outcome(name, s.feature, s.description, Status.FAILED, error) for s in todo[name].steps]
    return outcomes


def _apply_one(ctx: Context, host: Host, plan: HostPlan) -> list[Outcome]:
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    with SSHConnection.connect(fleet.target(ctx.session, host)) as conn:
        for step in plan.steps:
            if step.feature in failed:
                skipped = Outcome(host.name, step.feature, step.description, Status.SKIPPED, "an earlier step failed")
                outcomes.append(skipped)
                continue
            try:
                changed = step.run(conn)
            except InfrError as e:
                failed.add(step.feature)
                outcomes.append(Outcome(host.name, step.feature, step.description, Status.FAILED, e.message))
                ctx.report(f"{host.name}: {step.feature}: failed: {step.description}: {e.message}")
                continue
            outcomes.append(Outcome(host.name, step.feature, step.description, Status.OK, changed=tuple(changed)))
            ctx.report(f"{host.name}: {step.feature}: {step.description}")
    return outcomes


def converge_hosts(
    ctx: Context, features: Sequence[Feature], scope: Scope, first: Sequence[HostPlan] | None = None
) -> tuple[list[Outcome], list[HostPlan]]:
    """Apply, plan again, apply what is left: until nothing is, something failed, or
    a round changed nothing. Returns every outcome and the last plan (what is left)."""
    plans = list(first) if first is not None else plan_hosts(ctx, features, scope)
    outcomes: list[Outcome] = []
    seen: list[set[tuple[str, str]]] = []
    for _ in range(MAX_ROUNDS):
        pending = {(s.host, s.description) for p in plans for s in p.steps}
        if not pending or pending in seen:
            break
        seen.append(pending)
        before = ctx.inv
        round_outcomes = apply_hosts(ctx, plans)
        outcomes += round_outcomes
        scope = _widened(scope, features, before, ctx.inv)
        plans = plan_hosts(ctx, features, scope)
        if any(o.status is Status.FAILED for o in round_outcomes):
            break
    return outcomes, plans


def _widened(scope: Scope, features: Sequence[Feature], before: Inventory, after: Inventory) -> Scope:
    """The scope plus the hosts that what a round recorded (a new WireGuard key) touched."""
    if not scope.hosts or before is after:
        return scope
    touched = {h for f in features if scope.wants(f.name) for h in f.touched(before, after) if h in after.hosts}
    return Scope(scope.hosts | touched, scope.features)


def touched_hosts(features: Sequence[Feature], before: Inventory, after: Inventory) -> dict[str, set[str]]:
    """Feature name -> hosts an edit (before -> after) changes the desired state of."""
    found = {feature.name: feature.touched(before, after) for feature in features}
    return {name: hosts for name, hosts in found.items() if hosts}


def scope_of(touched: dict[str, set[str]], inv: Inventory, only: Collection[str] = ()) -> Scope:
    hosts = {h for hs in touched.values() for h in hs if h in inv.hosts and (not only or h in only)}
    return Scope(frozenset(hosts), frozenset(touched))


def fleet_plan(host_plans: Sequence[HostPlan], zone_steps: Sequence[Step] = (), zone_error: str = "") -> FleetPlan:
    return FleetPlan(tuple(host_plans), tuple(zone_steps), zone_error)
