"""infr keys [list] | add FILE | remove NAME."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from infr.cli import dry_run
from infr.cli.app import App
from infr.cli.common import DefaultGroup, changing, complete_keys, pass_app
from infr.cli.output import emit_rows, format_option

if TYPE_CHECKING:
    from infr.state.change import Change


@click.group(cls=DefaultGroup)
def keys() -> None:
    """Admin SSH public keys: everyone who may log in as manager."""


@keys.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """List the admin keys."""
    from infr.hosts.keys import fingerprint

    rows = []
    for key in sorted(app.session.inventory().keys.values(), key=lambda k: k.name):
        kind, _, comment = (key.key.split(maxsplit=2) + [""])[:3]
        rows.append(
            {"name": key.name, "type": kind, "fingerprint": fingerprint(key.key), "comment": comment, "key": key.key}
        )
    emit_rows(rows, (("name", "NAME"), ("type", "TYPE"), ("fingerprint", "FINGERPRINT"), ("comment", "COMMENT")), fmt)


@keys.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False, allow_dash=True))
@click.option("--name", help="Name for the key (default: its comment, e.g. alice@laptop).")
@dry_run.option
@pass_app
def add(app: App, file: Path, name: str | None, dry: bool) -> None:
    """Add the public key in FILE ('-': read it from standard input)."""
    from infr.hosts.keys import add_key

    text = _read_key(file)  # before the state lock: a slow or endless file holds up nobody
    source = "standard input" if str(file) == "-" else file.name
    if dry:
        _dry(app, lambda change: add_key(change, text, source, name))
        return
    with changing(app) as change:
        add_key(change, text, source, name)
    _push(app)


def _read_key(file: Path) -> str:
    from infr.errors import UsageError
    from infr.state.files import read_key_file, read_key_stream

    hint = "give the public key's file, e.g. ~/.ssh/id_ed25519.pub, or '-' for standard input"
    try:
        if str(file) == "-":
            return read_key_stream(sys.stdin.buffer)
        return read_key_file(file)
    except ValueError as exc:
        raise UsageError(f"{file} {exc}", hint) from None
    except OSError as exc:
        raise UsageError(f"{file} cannot be read: {exc.strerror}", hint) from None


@keys.command()
@click.argument("name", shell_complete=complete_keys)
@dry_run.option
@pass_app
def remove(app: App, name: str, dry: bool) -> None:
    """Remove the key called NAME."""
    from infr.hosts.keys import remove_key

    if dry:
        _dry(app, lambda change: remove_key(change, name))
        return
    with changing(app) as change:
        remove_key(change, name)
    _push(app)


def _dry(app: App, edit: Callable[[Change], object]) -> None:
    """Keys are on every host and in every container, as the push puts them."""
    dry_run.show(app, edit, hosts=app.session.inventory().hosts, features=["host", "lxcs"])


def _push(app: App) -> None:
    """Every host gets the new key list now (Infr only wrote keys at install time)."""
    from infr.hosts import adopt

    hosts = sorted(app.session.inventory().hosts)
    if not hosts:
        return
    with app.session.locked():
        failed = adopt.push_keys(app.session, hosts, lambda host, result: click.echo(f"{host}: {result}"))
    if failed:
        from infr.errors import RemoteError

        raise RemoteError(
            f"the key change is saved but did not reach {', '.join(sorted(failed))}",
            "run 'infr host NAME reconfigure' once the host is reachable",
        )
