"""Printing any plan and its outcomes: one printer for `plan`, `apply` and every --dry-run."""

from __future__ import annotations

import click

from infr.cli.app import printable
from infr.cli.output import emit_object, emit_rows
from infr.engine.plan import FleetPlan, Outcome, Status

_COLOURS = {"+": "green", "-": "red", "@": "cyan"}
_CSV_COLUMNS = (("host", "HOST"), ("feature", "FEATURE"), ("step", "STEP"))


def show_plan(plan: FleetPlan, *, fmt: str | None = None, diffs: bool = True, would: bool = True) -> None:
    """Each host's steps grouped by feature, with file diffs; hosts that could not be planned named."""
    if fmt in ("json", "yaml"):
        emit_object(plan.as_json(), (), fmt)
        return
    if fmt == "csv":
        emit_rows([step.as_json() for step in plan.steps], _CSV_COLUMNS, fmt)
        return
    verb = "would " if would else ""
    for host_plan in plan.hosts:
        if host_plan.skipped:
            click.echo(f"{host_plan.host}: skipped: {host_plan.skipped}")
        elif host_plan.error:
            click.echo(f"{host_plan.host}: could not be planned: {printable(host_plan.error)}", err=True)
        elif not host_plan.steps:
            click.echo(f"{host_plan.host}: up to date")
        for step in host_plan.steps:
            click.echo(f"{host_plan.host}: {step.feature}: {verb}{printable(step.description)}")
            if diffs and step.diff:
                _show_diff(step.diff)
    if plan.zone_error:
        click.echo(f"dns: could not be planned: {printable(plan.zone_error)}", err=True)
    for step in plan.zone_steps:
        click.echo(f"dns: {verb}{printable(step.description)}")
    click.echo(summary(plan))


def summary(plan: FleetPlan) -> str:
    """The plan's last line: a fleet with hosts that could not be planned is not said to match."""
    count, unknown = len(plan.steps), len(plan.errors)
    if not unknown:
        return f"{count} change(s) to make" if count else "no changes: the fleet matches state"
    found = f"{count} change(s) to make" if count else "no changes found"
    return f"{found}; {unknown} could not be planned"


def _show_diff(diff: str) -> None:
    for line in diff.splitlines():
        colour = _COLOURS.get(line[:1]) if not line.startswith(("+++", "---")) else None
        click.secho(f"    {printable(line.expandtabs(8))}", fg=colour)


def show_outcomes(outcomes: list[Outcome], left: FleetPlan) -> int:
    """One line per step that did not simply succeed, a summary, and the exit code."""
    for outcome in outcomes:
        if outcome.status is not Status.OK:
            where = f"{outcome.host}: " if outcome.host else ""
            line = f"{where}{outcome.feature}: {outcome.status}: {outcome.step}"
            click.echo(printable(line + (f": {outcome.error}" if outcome.error else "")), err=True)
    done = sum(o.status is Status.OK for o in outcomes)
    failed = sum(o.status is Status.FAILED for o in outcomes)
    click.echo(f"{done} change(s) made" + (f", {failed} failed" if failed else ""))
    for error in left.errors:
        click.echo(printable(f"not reached: {error}"), err=True)
    if left.steps and not failed:
        click.echo(f"{len(left.steps)} change(s) still differ; see 'infr plan'", err=True)
    return 1 if failed or left.errors or left.steps else 0
