"""`infr keys [list] | add FILE | remove NAME`, through click's runner."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from infr.errors import ConflictError, NotFoundError, UsageError
from infr.state.store import Store
from tests.conftest import make_key, run_cli, snapshot


def ok(root: Path, *args: str) -> str:
    result = run_cli(root, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def names(root: Path) -> list[str]:
    return [row["name"] for row in json.loads(ok(root, "keys", "-o", "json"))]


def test_keys_lists_the_admin_key(state_dir: Path, admin_key: Path) -> None:
    kind, blob, _ = admin_key.read_text().split()
    listed = json.loads(ok(state_dir, "keys", "list", "-o", "json"))
    assert listed == [
        {
            "name": "alice@laptop",
            "type": kind,
            "key": f"{kind} {blob} alice@laptop",
            "short": f"{blob[:12]}...{blob[-8:]}",
        }
    ]
    table = ok(state_dir, "keys").splitlines()
    assert table[0].split() == ["NAME", "TYPE", "KEY"]
    assert table[2].split() == ["alice@laptop", kind, f"{blob[:12]}...{blob[-8:]}"]


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
