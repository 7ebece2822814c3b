"""`infr keys [list] | add FILE | remove NAME`, through click's runner."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from infr.errors import ConflictError, NotFoundError, UsageError
from infr.hosts.keys import fingerprint
from infr.state.store import Store
from tests.conftest import make_key, run_cli, snapshot


def ok(root: Path, *args: str) -> str:
    result = run_cli(root, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def names(root: Path) -> list[str]:
    return [row["name"] for row in json.loads(ok(root, "keys", "-o", "json"))]


def ssh_keygen_fingerprint(public_key_file: Path) -> str:
    """`ssh-keygen -l` prints "BITS SHA256:... COMMENT (TYPE)"."""
    argv = ["ssh-keygen", "-l", "-f", str(public_key_file)]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()[1]


def test_keys_lists_the_admin_key_by_fingerprint_type_and_comment(state_dir: Path, admin_key: Path) -> None:
    # issue 12 item 23: the KEY column was a prefix of the base64 blob, the same for every ed25519 key
    kind, blob, _ = admin_key.read_text().split()
    fingerprint = ssh_keygen_fingerprint(admin_key)
    listed = json.loads(ok(state_dir, "keys", "list", "-o", "json"))
    assert listed == [
        {
            "name": "alice@laptop",
            "type": kind,
            "fingerprint": fingerprint,
            "comment": "alice@laptop",
            "key": f"{kind} {blob} alice@laptop",
        }
    ]
    table = ok(state_dir, "keys").splitlines()
    assert table[0].split() == ["NAME", "TYPE", "FINGERPRINT", "COMMENT"]
    assert table[2].split() == ["alice@laptop", kind, fingerprint, "alice@laptop"]


@settings(max_examples=25)
@given(point=st.binary(min_size=32, max_size=32), comment=st.from_regex(r"[a-z0-9@.]{0,12}", fullmatch=True))
def test_a_fingerprint_is_what_ssh_keygen_prints_for_every_ed25519_key(point: bytes, comment: str) -> None:
    """Any ed25519 key (32 bytes of point, any comment) gets ssh-keygen's own SHA256 fingerprint."""
    blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", point))
    line = f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}".strip()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "key.pub"
        path.write_text(line + "\n")
        assert fingerprint(line) == ssh_keygen_fingerprint(path)


def test_two_ed25519_keys_look_different_in_the_list(state_dir: Path, tmp_path: Path) -> None:
    ok(state_dir, "keys", "add", str(make_key(tmp_path / "bob", comment="bob@desk")))
    table = ok(state_dir, "keys").splitlines()[2:]
    shown = {line.split()[0]: line.split()[2] for line in table}
    assert len(set(shown.values())) == 2 and all(value.startswith("SHA256:") for value in shown.values())


def test_add_and_remove_a_key(state_dir: Path, tmp_path: Path) -> None:
    bob = make_key(tmp_path / "bob", comment="bob@desk")
    assert ok(state_dir, "keys", "add", str(bob)) == "key bob@desk added\n"
    assert names(state_dir) == ["alice@laptop", "bob@desk"]
    assert (state_dir / "keys" / "bob@desk.pub").read_text() == bob.read_text().strip() + "\n"
    log = subprocess.run(["git", "-C", str(state_dir), "show", "--name-status", "--format="], capture_output=True)
    assert log.stdout.decode().split() == ["A", "keys/bob@desk.pub"]
    assert ok(state_dir, "keys", "remove", "bob@desk") == "key bob@desk removed\n"
    assert names(state_dir) == ["alice@laptop"]
    assert not (state_dir / "keys" / "bob@desk.pub").exists()


def test_a_key_without_a_comment_is_named_after_its_file_or_name(state_dir: Path, tmp_path: Path) -> None:
    carol = make_key(tmp_path / "carol", name="carol_ed25519", comment="")
    assert ok(state_dir, "keys", "add", str(carol)) == "key carol_ed25519 added\n"
    dave = make_key(tmp_path / "dave", comment="dave@x")
    assert ok(state_dir, "keys", "add", "--name", "dave", str(dave)) == "key dave added\n"
    assert names(state_dir) == ["alice@laptop", "carol_ed25519", "dave"]


def test_the_same_key_twice_is_refused(state_dir: Path, admin_key: Path, tmp_path: Path) -> None:
    before = snapshot(state_dir)
    again = tmp_path / "copy.pub"
    kind, blob, _ = admin_key.read_text().split()
    again.write_text(f"{kind} {blob} someone-else\n")  # same key, another comment
    result = run_cli(state_dir, "keys", "add", str(again))
    assert isinstance(result.exception, ConflictError)
    assert str(result.exception) == "this key is already added as 'alice@laptop' (nothing to do)"
    assert snapshot(state_dir) == before


def test_a_second_key_with_a_taken_name_is_refused(state_dir: Path, tmp_path: Path) -> None:
    before = snapshot(state_dir)
    other = make_key(tmp_path / "other", comment="alice@laptop")
    result = run_cli(state_dir, "keys", "add", str(other))
    assert isinstance(result.exception, ConflictError)
    assert str(result.exception) == "a key named 'alice@laptop' already exists (choose another name with --name)"
    assert snapshot(state_dir) == before


def test_a_file_that_is_not_a_public_key_is_refused(state_dir: Path, admin_key: Path) -> None:
    before = snapshot(state_dir)
    result = run_cli(state_dir, "keys", "add", str(admin_key.with_suffix("")))
    assert isinstance(result.exception, UsageError)
    assert "not an OpenSSH public key" in str(result.exception)
    missing = run_cli(state_dir, "keys", "add", "/nonexistent/key.pub")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert snapshot(state_dir) == before


def test_the_last_key_cannot_be_removed(state_dir: Path) -> None:
    before = snapshot(state_dir)
    result = run_cli(state_dir, "keys", "remove", "alice@laptop")
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == ("cannot remove the last admin key (add another key first, or nobody could log in)")
    assert snapshot(state_dir) == before
    assert list(Store(state_dir).load().keys) == ["alice@laptop"]


def test_removing_an_unknown_key_names_the_known_ones(state_dir: Path) -> None:
    result = run_cli(state_dir, "keys", "remove", "mallory")
    assert isinstance(result.exception, NotFoundError)
    assert str(result.exception) == "no key named 'mallory' (known keys: alice@laptop)"
