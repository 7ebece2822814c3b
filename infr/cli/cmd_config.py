"""infr config [show] | set NAME [VALUE] | unset NAME | validate."""

from __future__ import annotations

import click

from infr.cli.app import App
from infr.cli.common import DefaultGroup, changing, pass_app
from infr.cli.output import emit_rows, format_option

COLUMNS = (("key", "KEY"), ("value", "VALUE"), ("source", "SOURCE"))


@click.group(cls=DefaultGroup, default="show")
def config() -> None:
    """Show settings, or change one (see 'infr config show' for every key)."""


@config.command(name="show")
@click.argument("name", required=False)
@format_option
@pass_app
def show(app: App, fmt: str | None, name: str | None = None) -> None:
    """Every setting, its value (secrets masked) and where it comes from."""
    from infr.state.config import show as rows_of
    from infr.state.settings import lookup

    session = app.session
    stored = session.store.secrets_file()
    all_secrets = session.store.secrets()
    rows = rows_of(session.inventory(), stored, {k: v for k, v in all_secrets.items() if k not in stored})
    if name:
        try:
            lookup(name)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        rows = [r for r in rows if r["key"] == name]
    emit_rows(rows, COLUMNS, fmt)


config.add_command(show, name="view")  # Infr's code spelled it 'view'


@config.command(name="set")
@click.argument("name")
# Any number of words, so that a value with an unquoted space is refused by infr, which
# never shows it (click's "unexpected extra argument" would print the second word).
@click.argument("words", nargs=-1, metavar="[VALUE]")
@pass_app
def set_(app: App, name: str, words: tuple[str, ...]) -> None:
    """Set NAME to VALUE (secret keys go to secrets.toml, never committed).

    Without VALUE, a secret key's value is asked for without echo, so it stays out of
    the shell's history.
    """
    from infr.errors import UsageError
    from infr.state.config import is_secret, set_value

    if len(words) > 1:
        raise UsageError(f"config set takes one VALUE, and got {len(words)} words", "quote a value with spaces")
    value = words[0] if words else None
    if value is None:
        if not is_secret(name):
            raise UsageError(f"no value given for {name}", f"infr config set {name} VALUE")
        value = click.prompt(name, hide_input=True, confirmation_prompt=True)
    with changing(app) as change:
        set_value(change, app.state_dir, name, value)


@config.command()
@click.argument("name")
@pass_app
def unset(app: App, name: str) -> None:
    """Remove NAME, so its default applies."""
    from infr.state.config import unset_value

    with changing(app) as change:
        unset_value(change, app.state_dir, name)


@config.command()
@pass_app
def validate(app: App) -> None:
    """Check the whole state and config; report every problem at once."""
    from infr.errors import ValidationError
    from infr.state.settings import check_config

    loaded: list[str] = []
    try:
        app.session.inventory()  # the inventory schema, config.toml's values included, is checked on load
    except ValidationError as exc:
        loaded = exc.problems
    problems = check_config(app.session.store.config_file(), app.session.store.secrets_file())
    problems = [p for p in loaded if p.removeprefix("config.toml: ") not in problems] + problems
    if problems:
        raise ValidationError(problems, "fix them with 'infr config set' or by editing config.toml")
    click.echo(f"config and state in {app.state_dir} are valid")
