"""infr history and infr sync: the state's git log, and sharing it with a team."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from infr.cli.app import App
from infr.cli.common import pass_app
from infr.cli.output import emit_rows, format_option

if TYPE_CHECKING:
    from infr.state.model import Inventory


@click.command()
@click.option("-n", "--limit", type=int, default=None, help="Show only the newest N changes.")
@format_option
@pass_app
def history(app: App, limit: int | None, fmt: str | None) -> None:
    """Every change to the state: when, who, and the command that made it."""
    from infr.state import history as git_history

    app.session.store.require()
    rows = [asdict(e) for e in git_history.log(app.state_dir, limit)]
    emit_rows(rows, (("commit", "COMMIT"), ("date", "DATE"), ("author", "AUTHOR"), ("message", "COMMAND")), fmt)


@click.command()
@pass_app
def sync(app: App) -> None:
    """Pull your team's changes (rebase) and push yours; conflicts are reported, never merged silently."""
    from infr.state import history as git_history
    from infr.state.admin import require_admin_key

    session = app.session
    session.store.require()
    with session.locked():
        before = session.store.load()
        # What came in is validated before anything is pushed: a bad merge is undone and reported.
        head = git_history.sync(app.state_dir, check=lambda: require_admin_key(session.store.load()))
    click.echo(f"state is in sync with the remote at {head}")
    _show_pulled(app, before)


def _show_pulled(app: App, before: Inventory) -> None:
    """The plan the pulled changes imply (the hosts and features they touch); applied by
    'infr apply', never here: the one who pulled reviews it first."""
    from infr import reconcile
    from infr.cli.dry_run import show_fleet_plan

    after = app.session.inventory()  # first loaded now: what the pull left
    if after == before:
        return
    click.echo("the pulled changes would change the hosts as follows:")
    planned = show_fleet_plan(app, reconcile.scope_for(before, after), dns=True)
    if planned.steps or planned.errors:
        click.echo("apply it with: infr apply")
