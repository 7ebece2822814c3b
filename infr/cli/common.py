"""Helpers shared by the command modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from click.shell_completion import CompletionItem

from infr.cli.main import App, default_state_dir
from infr.state.change import Change

pass_app = click.make_pass_decorator(App)


@contextmanager
def changing(app: App) -> Iterator[Change]:
    """Make a change to the state and tell the user what changed once it is saved."""
    with app.session.change() as change:
        yield change
    for note in change.notes:
        click.echo(note)


def _names(ctx: click.Context, kind: str) -> list[str]:
    from infr.state.store import Store

    root = ctx.find_root().params.get("workdir") or default_state_dir()
    try:
        inventory = Store(root).load()
    except Exception:  # completion must never print an error into the user's shell
        return []
    return sorted(getattr(inventory, kind))


def complete_hosts(ctx: click.Context, param: Any, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in _names(ctx, "hosts") if n.startswith(incomplete)]


def complete_lxcs(ctx: click.Context, param: Any, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in _names(ctx, "lxcs") if n.startswith(incomplete)]


def complete_keys(ctx: click.Context, param: Any, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(n) for n in _names(ctx, "keys") if n.startswith(incomplete)]


def target_name() -> str:
    """The NAME given to the enclosing `infr host NAME` / `infr lxc NAME` group."""
    ctx: click.Context | None = click.get_current_context()
    while ctx is not None:
        if "name" in ctx.params and isinstance(ctx.command, click.Group):
            return str(ctx.params["name"])
        ctx = ctx.parent
    raise click.UsageError("missing NAME")
