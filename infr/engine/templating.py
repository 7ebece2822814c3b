"""Rendering infr's templates (infr/templates), and the one rule for every file infr builds
from values: a value is one line of printable text, or the file is not made.

Jinja2 runs with StrictUndefined, so a missing value is an error rather than an empty string
in a config, and with a `finalize` hook that sees every `{{ ... }}` output: a value holding a
newline, a carriage return or any other control character is refused there, before it could
start a line of its own (an `lxc.mount.entry`, an `AllowedIPs`, a preseed directive). Files
built in code go through `fill`, which applies the same rule to each value it interpolates.

jinja2 is imported on first use: commands that render nothing do not pay its 0.1 s.
"""

from __future__ import annotations

import re
import shlex
import traceback
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from infr.errors import InfrError

if TYPE_CHECKING:
    from jinja2 import Environment

_HINT = "a value written into a config file must be one line of printable text: fix the state or option it comes from"


class _ControlCharacter(Exception):
    """Raised inside a template by `finalize`; `render` turns it into an InfrError naming the spot."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def control_character(text: str) -> str | None:
    """What the first control character of `text` is ("a newline", ...), or None if it has none.

    Unicode's line and paragraph separators count too: some parsers end a line at them.
    """
    for char in text:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return _NAMED.get(char, f"control character U+{ord(char):04X}")
    return None


_NAMED = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL byte"}


def one_line(value: object, what: str) -> str:
    """`value` as text, or an InfrError naming `what` if it holds a control character.

    The value itself is never shown: it may be a secret, and it is not printable anyway.
    """
    text = str(value)
    if kind := control_character(text):
        raise InfrError(f"refusing to write {what}: its value contains {kind}", _HINT)
    return text


def fill(template: str, **values: object) -> str:
    """`template.format(**values)` for a file built in code, each value checked by `one_line`."""
    return template.format(**{name: one_line(value, name) for name, value in values.items()})


def _refuse_control_characters(value: Any) -> Any:
    if kind := control_character(str(value)):
        raise _ControlCharacter(kind)
    return value


def _quote(value: Any) -> str:
    return shlex.quote(str(value))


@lru_cache(maxsize=1)
def environment() -> Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("infr", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_refuse_control_characters,
    )
    # `{{ value | sh }}` quotes a value for a POSIX shell (a newline stays refused: see above).
    env.filters["sh"] = _quote
    return env


def render(template: str, **context: Any) -> str:
    """Render `template`, a path under infr/templates."""
    env = environment()
    try:
        return env.get_template(template).render(**context)
    except _ControlCharacter as refused:
        raise InfrError(
            f"refusing to render {template}: {_where(env, refused)} contains {refused.kind}", _HINT
        ) from None


def _where(env: Environment, refused: _ControlCharacter) -> str:
    """The template line whose `{{ ... }}` got the value. Jinja2 rewrites a traceback through a
    template so that its frames carry the template's name and line; the innermost one is it."""
    frames = [f for f in traceback.extract_tb(refused.__traceback__) if f.filename.endswith(".j2")]
    if not frames or env.loader is None:
        return "a value"
    name = frames[-1].filename.replace("\\", "/").split("/templates/", 1)[-1]
    lineno = frames[-1].lineno or 0
    lines = env.loader.get_source(env, name)[0].splitlines()
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    outputs = " or ".join(_OUTPUT.findall(line)) or "a value"
    return f"{outputs} ({name} line {lineno})"


_OUTPUT = re.compile(r"\{\{.*?\}\}")
