"""infr help [COMMAND...] and infr completion SHELL."""

from __future__ import annotations

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
    # click's own script, made in-process: re-running sys.argv[0] breaks when infr is not
    # started as an executable (python -m, a test runner) and costs a second start-up.
    from click.shell_completion import get_completion_class

    from infr.cli.main import cli

    complete = get_completion_class(shell)
    assert complete is not None  # click.Choice only lets through the shells click knows
    click.echo(complete(cli, {}, "infr", "_INFR_COMPLETE").source(), nl=False)
