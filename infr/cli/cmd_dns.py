"""infr dns [list]."""

from __future__ import annotations

from dataclasses import asdict

import click

from infr.cli.common import pass_app
from infr.cli.main import App
from infr.cli.output import emit_rows, format_option

COLUMNS = (
    ("fqdn", "FQDN"),
    ("type", "TYPE"),
    ("value", "VALUE"),
    ("ttl", "TTL"),
    ("purpose", "FOR"),
    ("status", "STATUS"),
)


@click.group(invoke_without_command=True)
@format_option
@click.pass_context
def dns(ctx: click.Context, fmt: str | None) -> None:
    """The DNS records infr manages."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_, fmt=fmt)


@dns.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """The records infr wants, with their status at the DNS provider."""
    from infr.core.dnsnames import wanted_records

    session = app.session
    settings = session.settings()
    rows = [{**asdict(r), "status": "???"} for r in wanted_records(session.inventory(), settings)]
    emit_rows(rows, COLUMNS, fmt)
    if "dnsProvider" not in settings and fmt in (None, "table"):
        click.echo(
            "\nDNS records are not automatically managed, set 'dnsProvider' and related config settings to enable.",
            err=True,
        )
