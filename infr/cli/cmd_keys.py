"""infr keys [list] | add FILE | remove NAME."""

from __future__ import annotations

from pathlib import Path

import click

from infr.cli.common import changing, complete_keys, pass_app
from infr.cli.main import App
from infr.cli.output import emit_rows, format_option


@click.group(invoke_without_command=True)
@format_option
@click.pass_context
def keys(ctx: click.Context, fmt: str | None) -> None:
    """Admin SSH public keys: everyone who may log in as manager."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_, fmt=fmt)


@keys.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """List the admin keys."""
    rows = []
    for key in sorted(app.session.inventory().keys.values(), key=lambda k: k.name):
        kind, blob = key.key.split()[:2]
        rows.append({"name": key.name, "type": kind, "key": key.key, "short": f"{blob[:12]}...{blob[-8:]}"})
    emit_rows(rows, (("name", "NAME"), ("type", "TYPE"), ("short", "KEY")), fmt)


@keys.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--name", help="Name for the key (default: its comment, e.g. alice@laptop).")
@pass_app
def add(app: App, file: Path, name: str | None) -> None:
    """Add the public key in FILE."""
    from infr.core.keys import add_key

    with changing(app) as change:
        add_key(change, file.read_text(), file.name, name)
    _push(app)


@keys.command()
@click.argument("name", shell_complete=complete_keys)
@pass_app
def remove(app: App, name: str) -> None:
    """Remove the key called NAME."""
    from infr.core.keys import remove_key

    with changing(app) as change:
        remove_key(change, name)
    _push(app)


def _push(app: App) -> None:
    """Every host gets the new key list now (Infr only wrote keys at install time)."""
    from infr.core import hostops

    hosts = sorted(app.session.inventory().hosts)
    if not hosts:
        return
    with app.session.locked():
        failed = hostops.push_keys(app.session, hosts, lambda host, result: click.echo(f"{host}: {result}"))
    if failed:
        from infr.errors import RemoteError

        raise RemoteError(
            f"the key change is saved but did not reach {', '.join(sorted(failed))}",
            "run 'infr host NAME reconfigure' once the host is reachable",
        )
