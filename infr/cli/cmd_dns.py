"""infr dns [list] and infr dns fix."""

from __future__ import annotations

import click

from infr.cli.app import App
from infr.cli.common import DefaultGroup, pass_app
from infr.cli.output import emit_rows, format_option

COLUMNS = (
    ("fqdn", "FQDN"),
    ("type", "TYPE"),
    ("value", "VALUE"),
    ("ttl", "TTL"),
    ("purpose", "FOR"),
    ("status", "STATUS"),
)


@click.group(cls=DefaultGroup)
def dns() -> None:
    """The DNS records infr manages, and fixing them at the provider."""


@dns.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """The records infr wants, with their status at the DNS provider."""
    from infr.dns import sync as core

    emit_rows(core.rows(app.session), COLUMNS, fmt)
    if not core.provider_configured(app.session) and fmt in (None, "table"):
        click.echo(
            "\nDNS records are not automatically managed, set 'dnsProvider' and related config settings to enable.",
            err=True,
        )


@dns.command()
@click.option("-n", "--dry-run", is_flag=True, help="Show the plan; change nothing.")
@click.option("--force", is_flag=True, help="Apply even if more than 30% of the managed records change.")
@click.option("--adopt", is_flag=True, help="Also take over records under the managed names that infr did not create.")
@pass_app
def fix(app: App, dry_run: bool, force: bool, adopt: bool) -> None:
    """Create missing records, correct wrong ones, delete infr's records no longer wanted."""
    run_fix(app, dry_run=dry_run, force=force, adopt=adopt)


def run_fix(app: App, *, dry_run: bool = False, force: bool = False, adopt: bool = False) -> None:
    from infr.dns import sync as core
    from infr.errors import ProviderError

    found = core.reconcile(app.session, adopt=adopt)
    foreign = [r for r in found.plan.rows if str(r.status) == "FOREIGN"]
    for row in foreign:
        click.echo(f"left alone (not infr's; --adopt takes it over): {row.record}")
    if found.plan.empty:
        click.echo("DNS is up to date; nothing to change")
        return
    for change in found.plan.changes:
        click.echo(f"{'would ' if dry_run else ''}{change}")
    if dry_run:
        return
    report = core.fix(found, force)
    for outcome in report.failed + report.skipped:
        click.echo(f"{outcome}", err=True)
    if not report.ok:
        raise ProviderError(
            f"{len(report.done)} of {len(report.outcomes)} DNS changes made; the rest failed",
            "run 'infr dns fix' again to finish",
        )
    click.echo(f"{len(report.done)} DNS change(s) made")


def fix_after_change(app: App) -> None:
    """Infr fixed DNS after every host or LXC change; so do we, when a provider is set."""
    from infr.dns import sync as core
    from infr.errors import InfrError

    if not core.provider_configured(app.session):
        return
    try:
        run_fix(app)
    except InfrError as error:
        click.echo(f"infr: warning: DNS not updated: {error}", err=True)
