"""infr backups [list|start|stop|status] (also spelled 'infr backup'), and the `backups`
commands of `infr host NAME` and `infr lxc NAME` (hooked into those groups by their modules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from infr.cli.common import complete_hosts, pass_app, target_name
from infr.cli.main import App
from infr.cli.output import emit_rows, format_option

if TYPE_CHECKING:
    from infr.core.backupops import PairStatus

COLUMNS = (("from_host", "FROM"), ("to_host", "TO"), ("status", "STATUS"), ("started", "STARTED"))
AGE_COLUMNS = (*COLUMNS, ("newest", "NEWEST BACKUP"), ("age", "AGE"))
STATUS_COLUMNS = (("from_host", "FROM"), ("to_host", "TO"), ("status", "STATUS"), ("age", "AGE"), ("error", "ERROR"))
POINT_COLUMNS = (("to_host", "ON"), ("subvol", "SUBVOLUME"), ("at", "TAKEN (UTC)"), ("name", "NAME"))


@click.group(invoke_without_command=True)
@format_option
@click.pass_context
def backups(ctx: click.Context, fmt: str | None) -> None:
    """Backups from one host to another, every five minutes."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_, fmt=fmt, ages=False)


def _reporter(pair: str) -> Callable[[str], None]:
    return lambda message: click.echo(f"{pair}: {message}")


def _age(age: timedelta | None) -> str:
    if age is None:
        return "never"
    minutes = max(0, int(age.total_seconds() // 60))
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _freshness(rows: list[PairStatus], now: datetime) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r.from_host, r.to_host): {
            "newest": r.newest.isoformat(timespec="minutes") if r.newest else "",
            "age": _age(r.age(now)) if r.status != "unreachable" else "unreachable",
        }
        for r in rows
    }


@backups.command(name="list")
@format_option
@click.option("-a", "--ages", is_flag=True, help="Also ask each TO host for its newest backup (over SSH).")
@pass_app
def list_(app: App, fmt: str | None, ages: bool) -> None:
    """List backup pairs (with -a, the age of each active pair's newest backup)."""
    rows = [asdict(b) for b in app.session.inventory().backups]
    if ages:
        from infr.core import backupops

        now = datetime.now(UTC)
        fresh = _freshness(backupops.status(app.session, now), now)
        blank = {"newest": "", "age": ""}  # archived pairs
        rows = [{**row, **fresh.get((row["from_host"], row["to_host"]), blank)} for row in rows]
    columns = AGE_COLUMNS if ages else COLUMNS
    emit_rows(rows, columns, fmt, empty="no backups yet: start one with 'infr backup start FROM TO'")


@backups.command()
@click.argument("from_host", metavar="FROM", shell_complete=complete_hosts)
@click.argument("to_host", metavar="TO", shell_complete=complete_hosts)
@pass_app
def start(app: App, from_host: str, to_host: str) -> None:
    """Back FROM up onto TO every five minutes (TO pulls; FROM only lets it)."""
    from infr.core import backupops

    pair = f"{from_host} -> {to_host}"
    changes = backupops.start(app.session, from_host, to_host, _reporter(pair))
    click.echo(f"{pair}: {'started' if changes else 'already running; nothing changed'}")


@backups.command()
@click.argument("from_host", metavar="FROM", shell_complete=complete_hosts)
@click.argument("to_host", metavar="TO", shell_complete=complete_hosts)
@pass_app
def stop(app: App, from_host: str, to_host: str) -> None:
    """Stop backing FROM up onto TO; TO keeps its backups, archived."""
    from infr.core import backupops

    pair = f"{from_host} -> {to_host}"
    changes = backupops.stop(app.session, from_host, to_host, _reporter(pair))
    click.echo(f"{pair}: {'stopped' if changes else 'already stopped; nothing changed'}")


@backups.command()
@format_option
@pass_app
def status(app: App, fmt: str | None) -> None:
    """One line per active pair; exits 1 if any newest backup is older than backupMaxAgeMinutes."""
    from infr.core import backupops

    now = datetime.now(UTC)
    rows = backupops.status(app.session, now)
    table = [{**asdict(r), "age": _age(r.age(now))} for r in rows]
    emit_rows(table, STATUS_COLUMNS, fmt, empty="no active backups")
    if any(r.status != "ok" for r in rows):
        raise click.exceptions.Exit(1)


def _emit_points(app: App, host: str, subvol: str | None, fmt: str | None) -> None:
    from infr.core import backupops

    points = backupops.restore_points(app.session, host, subvol)
    rows = [{"to_host": to, **asdict(p), "at": p.at.strftime("%Y-%m-%d %H:%M")} for to, p in points]
    emit_rows(rows, POINT_COLUMNS, fmt, empty=f"no backups of {host} yet")


@click.command(name="backups")
@format_option
@pass_app
def host_backups(app: App, fmt: str | None) -> None:
    """Restore points of the host (its root and its containers), oldest first."""
    _emit_points(app, target_name(), None, fmt)


@click.command(name="backups")
@format_option
@pass_app
def lxc_backups(app: App, fmt: str | None) -> None:
    """Restore points of the container, oldest first."""
    from infr.core.backups import lxc_subvol
    from infr.errors import NotFoundError

    name = target_name()
    lxc = app.session.inventory().lxcs.get(name)
    if lxc is None:
        raise NotFoundError(f"no LXC named {name!r}", "list them with 'infr lxcs'")
    _emit_points(app, lxc.host, lxc_subvol(name), fmt)
