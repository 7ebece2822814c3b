"""infr plan and infr apply: every difference between state and the fleet, and fixing them."""

from __future__ import annotations

import click

from infr.cli.app import App
from infr.cli.common import complete_hosts, pass_app
from infr.cli.output import format_option

_features = click.option(
    "-f",
    "--feature",
    "features",
    multiple=True,
    metavar="FEATURE",
    help="Only this feature (host, lxcs, vnet, routing, backups, dns); repeat for more.",
)


def _context(app: App) -> object:
    from infr.engine.run import Context

    return Context(app.session, report=lambda line: click.echo(line))


def _check(app: App, hosts: tuple[str, ...], features: tuple[str, ...]) -> None:
    from infr.engine.fleet import get_host
    from infr.errors import UsageError
    from infr.reconcile import NAMES

    inv = app.session.inventory()
    for name in hosts:
        get_host(inv, name)
    unknown = [f for f in features if f not in NAMES]
    if unknown:
        raise UsageError(f"no feature named {unknown[0]!r}", f"features are: {', '.join(NAMES)}")


@click.command()
@click.argument("hosts", nargs=-1, shell_complete=complete_hosts)
@_features
@format_option
@click.option("--no-diff", is_flag=True, help="Name the files that differ without their diffs.")
@pass_app
def plan(app: App, hosts: tuple[str, ...], features: tuple[str, ...], fmt: str | None, no_diff: bool) -> None:
    """Show every difference between state and the hosts (all, or those named); change nothing.

    Exits 0 when the fleet matches state, 2 when something differs, 1 when a host or the
    DNS provider could not be read (the others are still planned).
    """
    from infr import reconcile

    _check(app, hosts, features)
    found = reconcile.plan(_context(app), hosts, features)  # type: ignore[arg-type]
    from infr.cli.show_plan import show_plan

    show_plan(found, fmt=fmt, diffs=not no_diff)
    raise SystemExit(found.exit_code())


@click.command()
@click.argument("hosts", nargs=-1, shell_complete=complete_hosts)
@_features
@click.option("-y", "--yes", is_flag=True, help="Apply without asking.")
@click.option("-n", "--dry-run", is_flag=True, help="Show the plan and stop (same as 'infr plan').")
@pass_app
def apply(app: App, hosts: tuple[str, ...], features: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Make the hosts (all, or those named) match state: show the plan, ask, apply, report."""
    from infr import reconcile
    from infr.cli.show_plan import show_outcomes, show_plan

    _check(app, hosts, features)
    ctx = _context(app)
    with app.session.locked():
        found = reconcile.plan(ctx, hosts, features)  # type: ignore[arg-type]
        show_plan(found)
        if dry_run or not found.steps:
            raise SystemExit(1 if found.errors else 0)
        if not yes and not click.confirm("apply these changes?", default=False):
            raise SystemExit(1)
        outcomes, left = reconcile.apply(ctx, found, hosts, features)  # type: ignore[arg-type]
    raise SystemExit(show_outcomes(outcomes, left))
