"""infr history and infr sync: the state's git log, and sharing it with a team."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from infr.cli.common import pass_app
from infr.cli.main import App
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
    from infr.core.keys import require_admin_key
    from infr.state import history as git_history

    session = app.session
    session.store.require()
    with session.locked():
        before = session.store.load()
        # What came in is validated before anything is pushed: a bad merge is undone and reported.
        head = git_history.sync(app.state_dir, check=lambda: require_admin_key(session.store.load()))
    click.echo(f"state is in sync with the remote at {head}")
    _show_what_the_pull_implies(app, before)


def _show_what_the_pull_implies(app: App, before: Inventory) -> None:
    """The plan of what came in: the features it touched on the hosts it touched (issue 13).

    State moved and the hosts did not; this says what `infr apply` would do about it.
    """
    import dataclasses

    from infr import reconcile
    from infr.cli.show_plan import show_plan
    from infr.engine.run import Context

    pulled = dataclasses.replace(app.session)  # a new session: it reads the state as pulled
    scope = reconcile.scope_for(before, pulled.inventory())
    if not scope.hosts:
        return
    found = reconcile.plan_scope(Context(pulled), scope)
    show_plan(found)
    if found.steps:
        click.echo("apply them with: infr apply")
