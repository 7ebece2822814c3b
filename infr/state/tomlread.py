"""Read the TOML infr writes, fast; anything else goes to tomllib.

A state of 10,000 LXCs is 11,000 small files, and tomllib (pure Python) took 0.7 s to
parse them: most of a command's time after any change from outside infr (a pull, an
editor) invalidates the cache. infr writes those files itself (tomli_w), in a narrow
form: `key = value` lines of plain strings, integers, booleans, and arrays of strings or
of `{ key = int, ... }` tables, one item per line. `loads` reads exactly that form with
a few regular expressions and returns what tomllib would; on any line outside it (a
comment, an escape, a tab, a table, other spacing) it hands the whole text to tomllib,
so what a hand-edited file means, and every error it has, is tomllib's.
"""

from __future__ import annotations

import re
from typing import Any

_KEY = r"[A-Za-z0-9_-]+"
# A basic string without escapes and without the characters TOML forbids unescaped
# (tab, which TOML allows, is left to tomllib with the rest).
_STRING = r'"([^"\\\x00-\x1f\x7f]*)"'
_INT = r"-?(?:0|[1-9][0-9]*)"
_LINE = re.compile(rf"({_KEY}) = (?:{_STRING}|({_INT})|(true|false)|(\[\]?))\Z")
_PAIR = rf"{_KEY} = {_INT}"
_ITEM = re.compile(rf"    (?:{_STRING}|\{{ ((?:{_PAIR}, )*{_PAIR}) \}}),\Z")


def loads(text: str) -> dict[str, Any]:
    """`tomllib.loads(text)`; raises tomllib.TOMLDecodeError as it does."""
    found = _read_plain(text)
    if found is not None:
        return found
    import tomllib

    return tomllib.loads(text)


def _read_plain(text: str) -> dict[str, Any] | None:
    """The table in `text` when all of it is in infr's form, else None."""
    lines = text.split("\n")
    if lines.pop() != "":  # infr ends every file with a newline
        return None
    out: dict[str, Any] = {}
    rows = iter(lines)
    for line in rows:
        match = _LINE.match(line)
        if match is None:
            return None
        key, string, number, boolean, array = match.groups()
        if key in out:
            return None  # a key given twice: tomllib's error
        if string is not None:
            out[key] = string
        elif number is not None:
            out[key] = int(number)
        elif boolean is not None:
            out[key] = boolean == "true"
        elif array == "[]":
            out[key] = []
        else:
            items = _read_items(rows)
            if items is None:
                return None
            out[key] = items
    return out


def _read_items(rows: Any) -> list[Any] | None:
    """The items of an array opened by `key = [`, one per line up to `]`."""
    items: list[Any] = []
    for line in rows:
        if line == "]":
            return items
        match = _ITEM.match(line)
        if match is None:
            return None
        string, pairs = match.groups()
        if string is not None:
            items.append(string)
            continue
        table = {}
        for pair in pairs.split(", "):
            key, _, number = pair.partition(" = ")
            if key in table:
                return None
            table[key] = int(number)
        items.append(table)
    return None  # the array never closed
