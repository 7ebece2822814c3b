"""infr certs: every TLS certificate in the fleet, with its names and expiry."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from infr.cli.app import App
from infr.cli.common import pass_app
from infr.cli.output import emit_rows, format_option

COLUMNS = (("host", "HOST"), ("name", "NAME"), ("domains", "NAMES"), ("expiry", "EXPIRES (UTC)"), ("days", "DAYS LEFT"))


@click.command()
@format_option
@pass_app
def certs(app: App, fmt: str | None) -> None:
    """List the certificates on every host (asks each host's certbot over SSH).

    Exits 1 if a host did not answer.
    """
    from infr.routing import certificates

    rows, failed = certificates.fleet(app.session)
    now = datetime.now(UTC)
    table = [
        {
            "host": row.host,
            "name": row.name,
            "domains": " ".join(row.domains),
            "expiry": row.expiry.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            "days": (row.expiry - now).days,
        }
        for row in rows
    ]
    emit_rows(table, COLUMNS, fmt, empty="no certificates yet: set 'infr lxc NAME https TERMINATE'")
    for host, error in failed.items():
        click.echo(f"{host}: {error}", err=True)
    if failed:
        raise click.exceptions.Exit(1)
