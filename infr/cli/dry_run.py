"""--dry-run for every command that changes hosts: the plan of the change, and nothing changed.

The command's state edit runs in a dry session (checked exactly as for real, kept in
memory, never written); its notes are printed as what would be saved, then the hosts
and features the edit touches (reconcile.scope_for) are planned and printed with the
one plan printer. A command also names its own hosts and features ("home"): running
it again applies what is pending there even when state already says so, and its dry
run shows that too. Planning only reads the hosts; one that can't be reached is named.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

import click

from infr.cli.app import App, printable

if TYPE_CHECKING:
    from infr.engine.plan import FleetPlan
    from infr.engine.run import Scope
    from infr.state.change import Change
    from infr.state.session import Session

_HELP = "Show what would be saved and done on the hosts; change nothing."
option = click.option("-n", "--dry-run", "dry", is_flag=True, help=_HELP)
long_option = click.option("--dry-run", "dry", is_flag=True, help=_HELP)  # where -n means something else


def begin(app: App) -> Session:
    """Turn the command's session into a dry one: from here on no change is written."""
    session: Session = app.session
    session.dry_run = True
    return session


def show(
    app: App,
    edit: Callable[[Change], object] | None = None,
    *,
    record: Callable[[Session], object] | None = None,
    would: Sequence[str] = (),
    hosts: Collection[str] = (),
    features: Collection[str] = (),
    dns: bool = False,
) -> None:
    """Make the command's state edit in a dry session (`edit` a Change, or `record` with
    the session as the command's own procedure does), and print its notes, the command's
    own plan lines (`would`: what no host plan can show, such as a container not made yet),
    and the plan of the touched features plus `features` on `hosts` (every feature when
    none is named); `dns`: the DNS records too, for commands that fix DNS after them."""
    session = begin(app)
    if edit is not None:
        with session.change() as change:
            edit(change)
    if record is not None:
        record(session)
    saving = "would save: " if session.dry_writes else ""
    for note in session.dry_notes:
        click.echo(printable(saving + note))
    if not session.dry_writes:
        click.echo("state: nothing to save")
    for line in would:
        click.echo(printable(line))
    from infr import reconcile

    scope = widen(reconcile.scope_for(session.saved_inventory(), session.inventory()), hosts, features)
    show_fleet_plan(app, scope, dns)
    click.echo("dry run: nothing was changed")


def widen(scope: Scope, hosts: Collection[str], features: Collection[str]) -> Scope:
    """`scope` and the command's own hosts and features (both or neither: a Scope is hosts x features)."""
    from infr.engine.run import Scope

    if not hosts:
        return scope
    if not scope.hosts:
        return Scope(frozenset(hosts), frozenset(features))
    every = not scope.features or not features  # an empty feature set is every feature
    wanted = frozenset() if every else scope.features | frozenset(features)
    return Scope(scope.hosts | frozenset(hosts), wanted)


def show_fleet_plan(app: App, scope: Scope, dns: bool = False) -> FleetPlan:
    """Plan `scope` (and DNS, if asked) and print it; reads the hosts, writes nothing."""
    from infr import reconcile
    from infr.cli.show_plan import show_plan
    from infr.engine.plan import FleetPlan
    from infr.engine.run import Context, Scope

    ctx = Context(app.session)
    hosts = frozenset(h for h in scope.hosts if h in ctx.inv.hosts)  # a host forgotten has nothing to plan
    if not hosts and not dns:
        click.echo("hosts: nothing to plan (the change touches no host)")
        return FleetPlan()
    planned = reconcile.plan_scope(ctx, Scope(hosts, scope.features))
    if dns:
        zone = reconcile.plan(ctx, features=[reconcile.DNS])
        planned = FleetPlan(planned.hosts, zone.zone_steps, zone.zone_error)
    show_plan(planned)
    return planned
