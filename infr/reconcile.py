"""The one place that knows every feature: plan the fleet, apply a plan, and what an edit touches.

Features run in a fixed order on each host: the base system first (packages the others
need), then containers, the vnet, routing (HAProxy needs the containers' addresses
routed), backups. DNS is zone-wide: applied before the hosts, so a certificate's name
already points at its host when certbot asks for it.
Nothing below this module knows another feature exists.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from infr.backups.feature import FEATURE as BACKUPS
from infr.engine import run
from infr.engine.plan import FleetPlan, Outcome, Status, Step
from infr.engine.run import Context, Feature, Scope
from infr.errors import InfrError
from infr.hosts.feature import FEATURE as HOST_BASE
from infr.lxcs.feature import FEATURE as CONTAINERS
from infr.routing.feature import FEATURE as ROUTING
from infr.vnet.feature import FEATURE as VNET

if TYPE_CHECKING:
    from infr.dns.sync import Reconcile
    from infr.state.model import Inventory
    from infr.state.session import Session

FEATURES: tuple[Feature, ...] = (HOST_BASE, CONTAINERS, VNET, ROUTING, BACKUPS)
DNS = "dns"
NAMES = (*(f.name for f in FEATURES), DNS)


def _features(names: Collection[str]) -> list[Feature]:
    return [f for f in FEATURES if not names or f.name in names]


def plan(ctx: Context, hosts: Collection[str] = (), features: Collection[str] = ()) -> FleetPlan:
    """Every difference between state and the fleet (hosts and features in scope); writes nothing."""
    scope = Scope(frozenset(hosts), frozenset(features))
    host_plans = run.plan_hosts(ctx, _features(features), scope) if _wants_hosts(features) else []
    zone_steps, zone_error = _dns_steps(ctx.session) if scope.wants(DNS) and not hosts else ([], "")
    return run.fleet_plan(host_plans, zone_steps, zone_error)


def _wants_hosts(features: Collection[str]) -> bool:
    return not features or any(name != DNS for name in features)


def apply(
    ctx: Context, planned: FleetPlan, hosts: Collection[str] = (), features: Collection[str] = ()
) -> tuple[list[Outcome], FleetPlan]:
    """Carry out a plan; returns every outcome and the plan of what is left afterwards."""
    scope = Scope(frozenset(hosts), frozenset(features))
    # DNS first: a certificate's HTTP-01 check needs its name to point at the host already.
    outcomes = _apply_dns(ctx.session) if planned.zone_steps else []
    for outcome in outcomes:  # host steps report as they run; DNS is fixed in one go, reported here
        if outcome.status is Status.OK:
            ctx.report(f"dns: {outcome.step}")
    host_outcomes, left = run.converge_hosts(ctx, _features(features), scope, planned.hosts)
    zone_left, zone_error = _dns_steps(ctx.session) if planned.zone_steps else ([], "")
    return outcomes + host_outcomes, run.fleet_plan(left, zone_left, zone_error)


def touched(before: Inventory, after: Inventory) -> dict[str, set[str]]:
    """Feature -> hosts whose desired state an edit (before -> after) changed."""
    return run.touched_hosts(FEATURES, before, after)


def scope_for(before: Inventory, after: Inventory, only: Collection[str] = ()) -> Scope:
    return run.scope_of(touched(before, after), after, only)


def plan_scope(ctx: Context, scope: Scope) -> FleetPlan:
    """The plan of an edit: the touched features on the touched hosts (DNS when names changed)."""
    if not scope.hosts:
        return run.fleet_plan([])
    return run.fleet_plan(run.plan_hosts(ctx, _features(scope.features), scope))



def _reconcile_dns(session: Session) -> Reconcile | None:
    from infr.dns import sync as dns

    return dns.reconcile(session) if dns.provider_configured(session) else None


def _dns_steps(session: Session) -> tuple[list[Step], str]:
    try:
        found = _reconcile_dns(session)
    except InfrError as e:
        return [], e.message
    if found is None:
        return [], ""
    return [Step(DNS, "", str(change)) for change in found.plan.changes], ""


def _apply_dns(session: Session) -> list[Outcome]:
    from infr.dns import sync as dns

    try:
        found = _reconcile_dns(session)
        if found is None:
            return []
        report = dns.fix(found, force=False)
    except InfrError as e:
        return [Outcome("", DNS, "fix DNS records", Status.FAILED, e.message)]
    return [
        Outcome("", DNS, str(o.change), Status.OK if o.result == "done" else Status(o.result), o.error or "")
        for o in report.outcomes
    ]
