"""infr help [TOPIC | COMMAND...] and infr completion SHELL.

The topics are the pages of docs/, shipped inside the package as infr/docs (a symlink
to docs/ in the source tree; pyproject's package-data copies the pages into the wheel),
so `infr help tutorial` reads the same text as the repository, wherever infr is installed.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from importlib.resources.abc import Traversable

import click


def _pages() -> dict[str, Traversable]:
    folder = files("infr") / "docs"
    if not folder.is_dir():
        return {}
    return {page.name.removesuffix(".md"): page for page in folder.iterdir() if page.name.endswith(".md")}


def topics() -> list[tuple[str, str]]:
    """(topic, title) of every page, by name; the title is the page's first heading."""
    return [
        (name, page.read_text(encoding="utf-8").partition("\n")[0].lstrip("# ").replace("`", ""))
        for name, page in sorted(_pages().items())
    ]


@click.command(name="help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Show a guide (e.g. 'infr help tutorial'), or the help for COMMAND (e.g. 'infr help lxc').

    Without an argument: the commands and the guides."""
    page = _pages().get(command[0]) if len(command) == 1 else None
    if page is not None:
        text = page.read_text(encoding="utf-8")
        if sys.stdout.isatty():  # a page is long: page it, as git help and man do
            click.echo_via_pager(text)
        else:
            click.echo(text, nl=False)
        return
    root = ctx.find_root()
    target: click.Command = root.command
    path = [root.info_name or "infr"]
    for word in command:
        if not isinstance(target, click.Group) or (sub := target.get_command(ctx, word)) is None:
            raise click.UsageError(f"no command or guide {' '.join([*path[1:], word])!r} ('infr help' lists both)")
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

    complete = get_completion_class(shell)
    assert complete is not None  # click.Choice only lets through the shells click knows
    root = click.get_current_context().find_root().command  # infr's group (main.cli), which runs this
    click.echo(complete(root, {}, "infr", "_INFR_COMPLETE").source(), nl=False)
