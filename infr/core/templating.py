"""Rendering infr's templates (infr/templates): Jinja2 with StrictUndefined, so a missing
value is an error rather than an empty string in a config.

jinja2 is imported on first use: commands that render nothing do not pay its 0.1 s.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment


@lru_cache(maxsize=1)
def environment() -> Environment:
    import shlex

    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("infr", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # `{{ value | sh }}` quotes a value for a POSIX shell.
    env.filters["sh"] = shlex.quote
    return env


def render(template: str, **context: Any) -> str:
    """Render `template`, a path under infr/templates."""
    return environment().get_template(template).render(**context)
