"""The fast reader of infr's own TOML: always what tomllib says, whatever the text."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from infr.state import tomlread
from infr.state.model import Lxc, TcpForward
from infr.state.schema import to_dict
from tests.unit.fuzzing import fuzz_settings

KEYS = st.text("abcxyz_-09", min_size=1, max_size=6)
SCALARS = st.one_of(st.text(max_size=12), st.integers(-(2**70), 2**70), st.booleans())
VALUES = st.one_of(
    SCALARS,
    st.lists(st.text(max_size=8), max_size=3),
    st.lists(st.dictionaries(KEYS, st.integers(-(2**40), 2**40), min_size=1, max_size=3), max_size=3),
)
TABLES = st.dictionaries(KEYS, VALUES, max_size=6)


def tomllib_says(text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "error"


def fast_says(text: str) -> Any:
    try:
        return tomlread.loads(text)
    except tomllib.TOMLDecodeError:
        return "error"


def test_an_lxc_file_as_infr_writes_it_is_read_without_tomllib() -> None:
    forwards = [TcpForward(2222, 22)]
    lxc = Lxc("web", "tom", "debian", "12", "10.8.1.2", aliases=["www.example.org"], tcp_forwards=forwards)
    text = tomli_w.dumps(to_dict(lxc))
    assert tomlread._read_plain(text) == tomllib.loads(text)
    assert tomlread._read_plain(text)["tcp_forwards"] == [{"host_port": 2222, "lxc_port": 22}]


@pytest.mark.parametrize(
    "text",
    [
        'a = "x" # a comment\n',  # comment
        'a = "tab\there"\n',  # a tab, allowed by TOML
        'a = "\\u00e9"\n',  # an escape
        "a = 1_000\n",  # underscores
        "a = +1\n",
        "a = 1\na = 2\n",  # a key twice: tomllib's error
        "a = [\n    { b = 1, b = 2 },\n]\n",  # a key twice in an inline table
        "a = [\n    1,\n",  # never closed
        'a = "x"',  # no final newline
        'a = "x"\r\n',
        "a = 01\n",  # leading zero: an error
        "[t]\nb = 1\n",
        'a="x"\n',
    ],
)
def test_anything_outside_infrs_form_is_tomllibs_to_read(text: str) -> None:
    assert tomlread._read_plain(text) is None
    assert fast_says(text) == tomllib_says(text)


@fuzz_settings(200)
@given(TABLES)
def test_every_table_tomli_w_writes_reads_back_as_tomllib_reads_it(table: dict[str, Any]) -> None:
    text = tomli_w.dumps(table)
    assert fast_says(text) == tomllib_says(text) == table


@fuzz_settings(200)
@given(TABLES, st.integers(0, 400), st.text(max_size=4))
def test_a_damaged_file_reads_as_tomllib_reads_it(table: dict[str, Any], at: int, splice: str) -> None:
    text = tomli_w.dumps(table)
    at = min(at, len(text))
    damaged = text[:at] + splice + text[at + len(splice) :]
    assert fast_says(damaged) == tomllib_says(damaged)
