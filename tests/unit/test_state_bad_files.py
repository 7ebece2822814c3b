"""State files that cannot be read as text: every command names the file (issue 12 item 12)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infr.errors import InfrError
from infr.state.store import Store
from tests.conftest import clone_state, run_cli, seed_host, seed_lxc, snapshot

# Bytes that can never appear in UTF-8, and the starts of sequences cut short.
NOT_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\x80", b"\xe2\x82", b"\xed\xa0\x80"])
COMMANDS = (
    ("hosts",),
    ("config", "show"),
    ("config", "set", "dnsPrefix", "infra"),
    ("lxc", "--no-apply", "c1", "http", "FORWARD"),
)


def seed(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151")
    seed_lxc(root, "c1", "bob")
    (root / "secrets.toml").write_bytes(b'smtpPassword = "hunter22"\n')


@pytest.fixture
def world(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    return clone_state(state_template("bad-files", seed), tmp_path / "state")


STATE_FILES = ("infr.toml", "config.toml", "ipam.toml", "secrets.toml", "hosts/bob.toml", "lxcs/c1.toml", "keys/")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(STATE_FILES), bad=NOT_UTF8, where=st.floats(0, 1), command=st.sampled_from(COMMANDS))
def test_a_byte_that_is_not_utf8_in_any_state_file_is_named(
    world: Path, which: str, bad: bytes, where: float, command: tuple[str, ...]
) -> None:
    path = next((world / "keys").glob("*.pub")) if which == "keys/" else world / which
    original = path.read_bytes()
    cut = int(len(original) * where)
    path.write_bytes(original[:cut] + bad + original[cut:])
    Store(world).cache_path.unlink(missing_ok=True)
    before = snapshot(world)
    try:
        result = run_cli(world, *command)
        if which == "secrets.toml" and command[0] in ("hosts", "lxc"):
            pass  # commands that need no secret need not read them
        else:
            assert isinstance(result.exception, InfrError), (result.exception, result.output)
            assert str(path.relative_to(world)) in str(result.exception)
            assert "UTF-8" in str(result.exception)
            assert snapshot(world) == before
    finally:
        path.write_bytes(original)


# Any argument with bytes that are not UTF-8 (issue 12 item 13): Python hands them over as surrogates.
not_utf8_args = st.tuples(st.text(max_size=5), st.binary(min_size=1, max_size=4), st.text(max_size=5)).map(
    lambda parts: os.fsdecode(parts[0].encode() + parts[1] + parts[2].encode())
).filter(lambda arg: any("\udc80" <= ch <= "\udcff" for ch in arg))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arg=not_utf8_args, position=st.integers(0, 4))
def test_an_argument_that_is_not_utf8_is_a_one_line_usage_error(
    world: Path, arg: str, position: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from infr.cli.main import main

    before = snapshot(world)
    argv = ["-w", str(world), "lxc", "c1", "add-alias", "www.example.org"]
    argv.insert(2 + position, arg)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "not UTF-8" in err, err
    assert snapshot(world) == before
