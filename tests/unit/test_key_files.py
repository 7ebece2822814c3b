"""SSH public key files (issue 12 items 7 and 15): the key's blob parsed for its type, sizes
bounded, and `keys add FILE` reading FILE, boundedly, before it takes the state lock."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infr.errors import UsageError
from infr.state import validate
from infr.state.lock import StateLock
from tests.conftest import INFR_BIN, make_key, run_cli, snapshot


def wire(*fields: bytes) -> bytes:
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def line(blob: bytes, kind: str | None = None) -> str:
    kind = kind or blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode()
    return f"{kind} {base64.b64encode(blob).decode()}"


@pytest.fixture(scope="module")
def real_keys(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """One key of each type ssh-keygen makes without hardware ('TYPE BASE64', no comment)."""
    directory = tmp_path_factory.mktemp("keys")
    keys = []
    for kind, bits in (("ed25519", ""), ("rsa", "1024"), ("rsa", "4096"), ("ecdsa", "256"), ("ecdsa", "384"),
                       ("ecdsa", "521")):  # fmt: skip
        path = directory / f"{kind}{bits}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, *(["-b", bits] if bits else []), "-N", "", "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        keys.append(" ".join(path.with_suffix(".pub").read_text().split()[:2]))
    return keys


# Security-key types, built by hand (making them needs the hardware): PROTOCOL.u2f.
SK_ED25519 = wire(b"sk-ssh-ed25519@openssh.com", b"k" * 32, b"ssh:")
SK_ECDSA = wire(b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", b"\x04" + b"p" * 64, b"ssh:")


def test_every_key_type_is_accepted(real_keys: list[str]) -> None:
    for key in [*real_keys, line(SK_ED25519), line(SK_ECDSA)]:
        assert validate.ssh_public_key(key + " alice@laptop") is None, key
        assert validate.ssh_host_key(key) is None, key


@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_blob_cut_short_or_with_bytes_added_is_refused(real_keys: list[str], data: st.DataObject) -> None:
    sk = [line(SK_ED25519), line(SK_ECDSA)]
    kind, encoded = data.draw(st.sampled_from([*real_keys, *sk])).split()
    blob = base64.b64decode(encoded)
    cut = data.draw(st.integers(0, len(blob) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=40))
    for damaged in (blob[:cut], blob + extra):
        problem = validate.ssh_public_key(f"{kind} {base64.b64encode(damaged).decode()} x")
        assert problem is not None and "public key" in problem


@pytest.mark.parametrize(
    "blob",
    [
        wire(b"ssh-ed25519", b"k" * 31),  # a key of the wrong size
        wire(b"ssh-ed25519"),
        wire(b"ssh-rsa", b"\x01\x00\x01"),  # no modulus
        wire(b"ssh-rsa", b"\x01\x00\x01", b"\x00" + b"n" * 64),  # 512 bits
        wire(b"ecdsa-sha2-nistp256", b"nistp384", b"\x04" + b"p" * 96),  # the curve of another type
        wire(b"ecdsa-sha2-nistp256", b"nistp256", b"\x04" + b"p" * 10),
        wire(b"sk-ssh-ed25519@openssh.com", b"k" * 32),  # no application
    ],
)
def test_a_blob_whose_fields_do_not_fit_its_type_is_refused(blob: bytes) -> None:
    assert validate.ssh_public_key(line(blob)) is not None


@given(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), st.integers(0, 80))
@example("é", 20)
def test_a_non_ascii_character_in_the_base64_is_a_clean_refusal(char: str, at: int) -> None:
    kind, encoded = line(wire(b"ssh-ed25519", b"k" * 32)).split()
    at = min(at, len(encoded))
    problem = validate.ssh_public_key(f"{kind} {encoded[:at]}{char}{encoded[at:]} alice")
    assert problem is not None


def test_a_huge_comment_is_refused_by_keys_add(state_dir: Path, tmp_path: Path) -> None:
    key = make_key(tmp_path / "k")
    key.write_text(key.read_text().strip() + "x" * 10_000_000 + "\n")
    before = snapshot(state_dir)
    result = run_cli(state_dir, "keys", "add", str(key))
    assert isinstance(result.exception, UsageError) and "larger than" in str(result.exception)
    key.write_text(" ".join(key.read_text().split()[:2]) + " " + "c" * 300 + "\n")
    result = run_cli(state_dir, "keys", "add", str(key))
    assert isinstance(result.exception, UsageError) and "comment is longer than 256" in str(result.exception)
    assert snapshot(state_dir) == before


def test_a_file_of_two_keys_is_refused(state_dir: Path, tmp_path: Path) -> None:
    """Joined into one line, the second key would have passed as the first one's comment."""
    first, second = make_key(tmp_path / "a"), make_key(tmp_path / "b")
    both = tmp_path / "both.pub"
    both.write_text(first.read_text() + second.read_text())
    before = snapshot(state_dir)
    result = run_cli(state_dir, "keys", "add", str(both))
    assert isinstance(result.exception, UsageError) and "2 lines" in str(result.exception)
    assert snapshot(state_dir) == before


def test_keys_add_reads_standard_input_for_a_dash(state_dir: Path, tmp_path: Path) -> None:
    key = make_key(tmp_path / "k", comment="bob@work")
    result = run_cli(state_dir, "keys", "add", "-", input=key.read_text())
    assert result.exit_code == 0, result.output
    assert "key bob@work added" in result.output
    result = run_cli(state_dir, "keys", "add", "-", input="ssh-ed25519 " + "A" * 100_000)
    assert isinstance(result.exception, UsageError) and "larger than" in str(result.exception)


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/stdin"])
def test_keys_add_of_a_special_file_fails_at_once_without_the_state_lock(
    state_dir: Path, tmp_path: Path, special: str
) -> None:
    """Read while the lock was held, a FIFO or /dev/stdin hung infr, and every other infr
    with it; /dev/zero was read until memory ran out. The lock is held by someone else
    here: a command that reads first fails at once instead of waiting for it."""
    path = tmp_path / "key.pub"
    if special == "fifo":
        os.mkfifo(path)
    else:
        path = Path(special)
    lock = StateLock(state_dir, "test: holding the lock")
    lock.acquire(5, lambda message: None)
    try:
        started = time.monotonic()
        # stdin stays open and empty: /dev/stdin would wait on it for ever
        with subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE) as writer:
            try:
                result = subprocess.run(
                    [str(INFR_BIN), "-w", str(state_dir), "keys", "add", str(path)],
                    stdin=writer.stdout,
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
            finally:
                writer.kill()
        elapsed = time.monotonic() - started
    finally:
        lock.release()
    assert result.returncode != 0
    assert "is not a regular file" in result.stderr, result.stderr
    assert elapsed < 10
