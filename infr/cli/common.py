"""Helpers shared by the command modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from click.shell_completion import CompletionItem

from infr.cli.app import App, default_state_dir, printable
from infr.state.change import Change

pass_app = click.make_pass_decorator(App)


@contextmanager
def changing(app: App) -> Iterator[Change]:
    """Make a change to the state and tell the user what changed once it is saved."""
    with app.session.change() as change:
        yield change
    for note in change.notes:
        click.echo(printable(note))


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


class NamedGroup(click.Group):
    """`infr lxc NAME` / `infr host NAME`: options right after NAME belong to its default `show`.

    click stops parsing a group's options at its first positional argument, so
    `infr lxc web -o json` took `-o` for a subcommand and failed. It now means
    `infr lxc web show -o json` (help options still go to the group).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if len(args) >= 2 and args[1].startswith("-") and args[1] not in ctx.help_option_names:
            args = [args[0], "show", *args[1:]]
        return super().parse_args(ctx, args)


class DefaultGroup(click.Group):
    """A group that runs its default subcommand when given none: `infr hosts` is `infr hosts list`,
    and options right after the group's name are that subcommand's (`infr backups -a -o json` is
    `infr backups list -a -o json`), so every option of a list works in its short form too.
    Help options still go to the group.
    """

    def __init__(self, *args: Any, default: str = "list", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ctx.help_option_names):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


def target_name() -> str:
    """The NAME given to the enclosing `infr host NAME` / `infr lxc NAME` group."""
    ctx: click.Context | None = click.get_current_context()
    while ctx is not None:
        if "name" in ctx.params and isinstance(ctx.command, click.Group):
            return str(ctx.params["name"])
        ctx = ctx.parent
    raise click.UsageError("missing NAME")
