"""infr backups [list] (also spelled 'infr backup')."""

from __future__ import annotations

from dataclasses import asdict

import click

from infr.cli.common import pass_app
from infr.cli.main import App
from infr.cli.output import emit_rows, format_option

COLUMNS = (("from_host", "FROM"), ("to_host", "TO"), ("status", "STATUS"), ("started", "STARTED"))


@click.group(invoke_without_command=True)
@format_option
@click.pass_context
def backups(ctx: click.Context, fmt: str | None) -> None:
    """Backups from one host to another, every five minutes."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_, fmt=fmt)


@backups.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """List backup pairs."""
    rows = [asdict(b) for b in app.session.inventory().backups]
    emit_rows(rows, COLUMNS, fmt, empty="no backups yet: start one with 'infr backup start FROM TO'")
