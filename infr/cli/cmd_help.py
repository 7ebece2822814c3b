"""infr help [COMMAND...] and infr completion SHELL."""

from __future__ import annotations

import os
import subprocess
import sys

import click


@click.command(name="help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Show help for infr, or for COMMAND (e.g. 'infr help lxc')."""
    root = ctx.find_root()
    target: click.Command = root.command
    path = [root.info_name or "infr"]
    for word in command:
        if not isinstance(target, click.Group) or (sub := target.get_command(ctx, word)) is None:
            raise click.UsageError(f"no command {' '.join([*path[1:], word])!r}")
        target, path = sub, [*path, word]
    with click.Context(target, info_name=" ".join(path), parent=None) as sub_ctx:
        click.echo(target.get_help(sub_ctx))


@click.command()
@click.argument("shell", type=click.Choice(("bash", "zsh", "fish")))
def completion(shell: str) -> None:
    """Print the completion script for SHELL; e.g. add  eval "$(infr completion bash)"  to ~/.bashrc."""
    env = {**os.environ, "_INFR_COMPLETE": f"{shell}_source"}
    script = subprocess.run([sys.argv[0]], env=env, capture_output=True, text=True).stdout
    click.echo(script, nl=False)
