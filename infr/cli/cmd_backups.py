"""infr backups [list|start|stop|status|drill] (also spelled 'infr backup'), and the
`backups`, `restore` and `restore-files` commands of `infr host NAME` and `infr lxc NAME`
(hooked into those groups by their modules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from infr.cli import dry_run
from infr.cli.app import App
from infr.cli.common import DefaultGroup, complete_hosts, pass_app, target_name
from infr.cli.output import emit_rows, format_option

if TYPE_CHECKING:
    from infr.backups.status import PairStatus
    from infr.restore.choose import At
    from infr.state.session import Session

COLUMNS = (("from_host", "FROM"), ("to_host", "TO"), ("status", "STATUS"), ("started", "STARTED"))
AGE_COLUMNS = (*COLUMNS, ("newest", "NEWEST BACKUP"), ("age", "AGE"), ("health", "HEALTH"))
HEALTH_COLUMNS = (("from_host", "FROM"), ("to_host", "TO"), ("health", "HEALTH"), ("age", "AGE"), ("error", "ERROR"))
# What `backups list -a` adds to a pair that has no freshness: an archived one (docs/json.md).
NO_FRESHNESS = {"newest": None, "age": None, "health": None, "error": None}
POINT_COLUMNS = (
    ("at", "TAKEN (UTC)"),
    ("age", "AGE"),
    ("subvol", "SUBVOLUME"),
    ("to_host", "ON"),
    ("from_host", "FROM"),
    ("name", "NAME"),
)
DRILL_COLUMNS = (
    ("subvol", "SUBVOLUME"),
    ("name", "BACKUP"),
    ("age", "AGE"),
    ("files", "FILES"),
    ("os", "OS"),
    ("seconds", "SECONDS"),
    ("result", "RESULT"),
)
AT_HELP = (
    "Use the newest backup taken at or before TIME: an ISO time (UTC unless it has an offset) "
    "or a backup's stamp (20261122T2045, as in NAME). Default: the newest backup."
)


@click.group(cls=DefaultGroup)
def backups() -> None:
    """Backups from one host to another, every five minutes."""


def _reporter(pair: str) -> Callable[[str], None]:
    return lambda message: click.echo(f"{pair}: {message}")


def _age(age: timedelta) -> str:
    minutes = max(0, int(age.total_seconds() // 60))
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _at(text: str | None) -> At | None:
    from infr.restore.choose import parse_at

    return None if text is None else parse_at(text)


def _freshness(pair: PairStatus, now: datetime) -> dict[str, Any]:
    """How fresh a pair's backups are, as `backups list -a` and `backups status` both print it.

    `status` stays the pair's own (active or archived, as in state); `health` is the freshness
    (ok, stale, unreachable); what is not known is null, never an empty string.
    """
    age = pair.age(now)
    error = pair.error or ("no backup yet" if pair.newest is None and pair.status != "unreachable" else None)
    return {
        "newest": pair.newest.isoformat(timespec="minutes") if pair.newest else None,
        "age": None if age is None else _age(age),
        "health": pair.status,
        "error": error,
    }


@backups.command(name="list")
@format_option
@click.option("-a", "--ages", is_flag=True, help="Also ask each TO host for its newest backup (over SSH).")
@pass_app
def list_(app: App, fmt: str | None, ages: bool) -> None:
    """List backup pairs (with -a, the age of each active pair's newest backup)."""
    rows = [asdict(b) for b in app.session.inventory().backups]
    if ages:
        from infr.backups import status as backups_status

        now = datetime.now(UTC)
        fresh = {(p.from_host, p.to_host): _freshness(p, now) for p in backups_status.status(app.session, now)}
        rows = [{**row, **fresh.get((row["from_host"], row["to_host"]), NO_FRESHNESS)} for row in rows]
    columns = AGE_COLUMNS if ages else COLUMNS
    emit_rows(rows, columns, fmt, empty="no backups yet: start one with 'infr backup start FROM TO'")


@backups.command()
@click.argument("from_host", metavar="FROM", shell_complete=complete_hosts)
@click.argument("to_host", metavar="TO", shell_complete=complete_hosts)
@dry_run.option
@pass_app
def start(app: App, from_host: str, to_host: str, dry: bool) -> None:
    """Back FROM up onto TO every five minutes (TO pulls; FROM only lets it)."""
    from infr.backups import pairs as backups_pairs

    if dry:
        _dry(app, lambda session: backups_pairs.record_start(session, from_host, to_host), from_host, to_host)
        return
    pair = f"{from_host} -> {to_host}"
    changes = backups_pairs.start(app.session, from_host, to_host, _reporter(pair))
    click.echo(f"{pair}: {'started' if changes else 'already running; nothing changed'}")


def _dry(app: App, record: Callable[[Session], object], from_host: str, to_host: str) -> None:
    """TO pulls and FROM lets it: the backups feature of both."""
    dry_run.show(app, record=record, hosts=[from_host, to_host], features=["backups"])


@backups.command()
@click.argument("from_host", metavar="FROM", shell_complete=complete_hosts)
@click.argument("to_host", metavar="TO", shell_complete=complete_hosts)
@pass_app
def run(app: App, from_host: str, to_host: str) -> None:
    """Run a backup now instead of waiting for TO's timer, and wait for it (TO pulls every
    host it backs up). Exits 1, naming what went wrong, if the run fails."""
    from infr.backups import status as backups_status

    pair = f"{from_host} -> {to_host}"
    newest = backups_status.run_now(app.session, from_host, to_host, _reporter(pair))
    click.echo(f"{pair}: newest backup {newest.name if newest else '(none yet)'}")


@backups.command()
@click.argument("from_host", metavar="FROM", shell_complete=complete_hosts)
@click.argument("to_host", metavar="TO", shell_complete=complete_hosts)
@dry_run.option
@pass_app
def stop(app: App, from_host: str, to_host: str, dry: bool) -> None:
    """Stop backing FROM up onto TO; TO keeps its backups, archived."""
    from infr.backups import pairs as backups_pairs

    if dry:
        _dry(app, lambda session: backups_pairs.record_stop(session, from_host, to_host), from_host, to_host)
        return
    pair = f"{from_host} -> {to_host}"
    changes = backups_pairs.stop(app.session, from_host, to_host, _reporter(pair))
    click.echo(f"{pair}: {'stopped' if changes else 'already stopped; nothing changed'}")


@backups.command()
@format_option
@pass_app
def status(app: App, fmt: str | None) -> None:
    """One line per active pair; exits 1 if any newest backup is older than backupMaxAgeMinutes."""
    from infr.backups import status as backups_status

    now = datetime.now(UTC)
    pairs = {(b.from_host, b.to_host): b for b in app.session.inventory().backups}
    rows = backups_status.status(app.session, now)
    table = [{**asdict(pairs[r.from_host, r.to_host]), **_freshness(r, now)} for r in rows]
    emit_rows(table, HEALTH_COLUMNS, fmt, empty="no active backups")
    if any(r.status != "ok" for r in rows):
        raise click.exceptions.Exit(1)


@backups.command()
@click.argument("from_host", metavar="FROM", shell_complete=complete_hosts)
@click.argument("to_host", metavar="TO", shell_complete=complete_hosts)
@format_option
@pass_app
def drill(app: App, from_host: str, to_host: str, fmt: str | None) -> None:
    """Rehearse a restore: FROM's newest backups become writable snapshots in a scratch
    directory on TO, are looked at (files, /etc/os-release, a write, age) and deleted.
    Exits 1 if a check fails."""
    from infr.restore import drill as restore_drill
    from infr.restore.choose import age_text

    now = datetime.now(UTC)
    pair = f"{from_host} -> {to_host}"
    checks = restore_drill.drill(
        app.session, from_host, to_host, lambda line: click.echo(f"{pair}: {line}", err=True), now
    )
    rows = [
        {
            **asdict(c),
            "taken": c.taken.isoformat(timespec="minutes") if c.taken else "",
            "age": age_text(now - c.taken) if c.taken else "",
            "seconds": round(c.seconds, 1),
            "ok": c.ok,
            "result": "ok" if c.ok else "FAILED: " + "; ".join(c.problems),
        }
        for c in checks
    ]
    emit_rows(rows, DRILL_COLUMNS, fmt)
    if not all(c.ok for c in checks):
        raise click.exceptions.Exit(1)


def _emit_points(app: App, from_host: str | None, subvol: str | None, fmt: str | None, what: str) -> None:
    from infr.backups import find
    from infr.restore.choose import age_text

    now = datetime.now(UTC)
    found = find.find_points(app.session, from_host=from_host, subvol=subvol)
    for skipped in found.skipped:
        click.echo(f"infr: warning: {skipped} is marked down (-D): its backups are not listed", err=True)
    rows = [
        {
            "at": p.point.at.strftime("%Y-%m-%d %H:%M"),
            "age": age_text(now - p.point.at),
            "subvol": p.point.subvol,
            "to_host": p.to_host,
            "from_host": p.from_host,
            "name": p.point.name,
            "seq": p.point.seq,
            "path": p.path,
        }
        for p in found.points
    ]
    emit_rows(rows, POINT_COLUMNS, fmt, empty=f"no backups of {what} yet")


@click.command(name="backups")
@format_option
@pass_app
def host_backups(app: App, fmt: str | None) -> None:
    """Restore points of the host (its root and its containers), newest first."""
    from infr.engine.fleet import get_host

    name = get_host(app.session.inventory(), target_name()).name
    _emit_points(app, name, None, fmt, name)


@click.command(name="backups")
@format_option
@pass_app
def lxc_backups(app: App, fmt: str | None) -> None:
    """Restore points of the container, on every backup host, newest first."""
    from infr.backups.btrbk import lxc_subvol
    from infr.engine.fleet import get_lxc

    name = get_lxc(app.session.inventory(), target_name()).name
    _emit_points(app, None, lxc_subvol(name), fmt, name)


@click.command(name="restore")
@click.option("--at", "at_text", metavar="TIME", help=AT_HELP)
@click.option(
    "--to",
    "to_host",
    metavar="HOST",
    shell_complete=complete_hosts,
    help="Restore onto HOST instead; the LXC moves there.",
)
@click.option("-y", "--yes", "assume_yes", is_flag=True, help="Do not ask to type the name.")
@dry_run.option
@pass_app
def lxc_restore(app: App, at_text: str | None, to_host: str | None, assume_yes: bool, dry: bool) -> None:
    """Bring the container back from a backup, onto its own host or (--to) another ready
    host: same vnet address, names and routes. The current container runs until the
    restored one is ready, and is destroyed only once that one runs."""
    from infr import followups
    from infr.cli.cmd_dns import fix_after_change
    from infr.restore import container

    name = target_name()
    plan = container.plan_lxc(app.session, name, _at(at_text), to_host)
    for line in plan.lines(datetime.now(UTC)):
        click.echo(f"{name}: {line}")
    if dry:
        click.echo(f"{name}: dry run; nothing was changed")
        return
    prompt = f"This destroys the current {name} once the restored one runs. Type its name to go on"
    if plan.replaces and not assume_yes and click.prompt(prompt) != name:
        raise click.Abort()
    followups.restore_lxc(app.session, plan, _reporter(name))
    click.echo(f"{name}: restored from {plan.point.point.name}, running on {plan.target}")
    if plan.moving:
        fix_after_change(app)


@click.command(name="restore-files")
@click.argument("path")
@click.option("--at", "at_text", metavar="TIME", help=AT_HELP)
@click.option(
    "--into",
    required=True,
    metavar="DIR",
    type=click.Path(path_type=Path, file_okay=False),
    help="A new or empty directory on this machine; PATH lands in INTO/PATH.",
)
@pass_app
def host_restore_files(app: App, path: str, at_text: str | None, into: Path) -> None:
    """Copy PATH (as it was on the host) out of a backup into INTO here, byte for byte:
    contents, modes, times, symlinks, ACLs and xattrs (owners too when run as root)."""
    from infr.restore import files

    name = target_name()
    copied = files.restore_files(app.session, name, path, _at(at_text), into, _reporter(name))
    mib = copied.size / (1024 * 1024)
    click.echo(f"{name}: {copied.path} restored from {copied.point.point.name} ({mib:.1f} MiB)")
