"""The state's git history and `infr sync`: two clones sharing a bare remote in tmp."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infr.errors import ConflictError, StateError, ValidationError
from infr.hosts.desired import authorized_keys
from infr.state import history
from infr.state.model import HOST_READY
from infr.state.store import Store
from tests.conftest import AUTHOR_EMAIL, AUTHOR_NAME, run_cli, seed_host, seed_lxc, snapshot


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def team(state_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(A, B, remote): A is the state_dir, published to a bare remote; B is a clone of it."""
    seed_host(state_dir, "bob", "45.32.191.151")
    seed_lxc(state_dir, "c1", "bob")
    seed_lxc(state_dir, "c2", "bob")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(state_dir, "remote", "add", "origin", remote.as_uri())
    result = run_cli(state_dir, "sync")  # the first sync publishes to the empty remote
    assert result.exit_code == 0, (result.output, result.exception)
    assert git(remote, "rev-parse", "main") == git(state_dir, "rev-parse", "HEAD")
    clone = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", "-b", "main", remote.as_uri(), str(clone)], check=True)
    return state_dir, clone, remote


def ok(root: Path, *args: str) -> str:
    result = run_cli(root, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def test_history_lists_each_change_with_its_author(team: tuple[Path, Path, Path]) -> None:
    a, _, _ = team
    entries = history.log(a)
    assert [e.message for e in entries] == [
        "test: seed lxc c2",
        "test: seed lxc c1",
        "test: seed host bob",
        "infr init",
    ]
    assert {e.author for e in entries} == {f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"}
    assert [e.message for e in history.log(a, limit=1)] == ["test: seed lxc c2"]


def test_changes_from_one_clone_reach_the_other(team: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, remote = team
    monkeypatch.setenv("INFR_AUTHOR_NAME", "Bea")
    ok(b, "lxc", "c1", "http", "FORWARD")
    assert "state is in sync with the remote at" in ok(b, "sync")
    monkeypatch.setenv("INFR_AUTHOR_NAME", AUTHOR_NAME)
    ok(a, "lxc", "c2", "https", "TERMINATE")  # a change of A's own, on another file
    ok(a, "sync")
    ok(b, "sync")
    for root in (a, b):
        inv = Store(root).load()
        assert (inv.lxcs["c1"].http, inv.lxcs["c2"].https) == ("FORWARD", "TERMINATE")
        authors = [e.author.split(" <")[0] for e in history.log(root, limit=2)]
        assert sorted(authors) == ["Bea", AUTHOR_NAME]
    assert git(a, "rev-parse", "HEAD") == git(b, "rev-parse", "HEAD") == git(remote, "rev-parse", "main")


def test_conflicting_edits_are_reported_by_file_and_nothing_is_merged(team: tuple[Path, Path, Path]) -> None:
    a, b, remote = team
    ok(a, "lxc", "c1", "http", "FORWARD")
    ok(a, "sync")
    ok(b, "lxc", "c1", "http", "REDIRECT-HTTPS")
    before_a, before_b, remote_head = snapshot(a), snapshot(b), git(remote, "rev-parse", "main")
    result = run_cli(b, "sync")
    assert isinstance(result.exception, ConflictError), result.output
    assert "your changes conflict with the remote's in lxcs/c1.toml" in str(result.exception)
    assert snapshot(b) == before_b  # no rebase left half-done, no conflict markers
    assert not (b / ".git" / "rebase-merge").exists() and not (b / ".git" / "rebase-apply").exists()
    assert snapshot(a) == before_a
    assert git(remote, "rev-parse", "main") == remote_head
    assert Store(b).load().lxcs["c1"].http == "REDIRECT-HTTPS"


def test_changes_that_merge_cleanly_but_clash_are_refused_before_pushing(team: tuple[Path, Path, Path]) -> None:
    """Different files, so git merges them; together they forward one host port twice."""
    a, b, remote = team
    ok(a, "lxc", "c1", "add-tcp-forward", "2222", "22")
    ok(a, "sync")
    ok(b, "lxc", "c2", "add-tcp-forward", "2222", "22")
    before_b, remote_head = snapshot(b), git(remote, "rev-parse", "main")
    result = run_cli(b, "sync")
    assert isinstance(result.exception, ValidationError), result.output
    assert "host port 2222 on bob is forwarded to both c1 and c2" in str(result.exception)
    assert snapshot(b) == before_b
    assert git(remote, "rev-parse", "main") == remote_head
    assert Store(a).load() == Store(a).load()  # A is untouched and valid


def test_the_same_alias_added_on_both_sides_is_refused_before_pushing(team: tuple[Path, Path, Path]) -> None:
    a, b, remote = team
    ok(a, "lxc", "c1", "add-alias", "www.example.org")
    ok(a, "sync")
    ok(b, "lxc", "c2", "add-alias", "www.example.org")
    before_b, remote_head = snapshot(b), git(remote, "rev-parse", "main")
    result = run_cli(b, "sync")
    assert isinstance(result.exception, ValidationError), result.output
    assert "alias www.example.org routes to both c1 and c2" in str(result.exception)
    assert snapshot(b) == before_b
    assert git(remote, "rev-parse", "main") == remote_head


def test_sync_without_a_remote_says_how_to_add_one(state_dir: Path) -> None:
    result = run_cli(state_dir, "sync")
    assert isinstance(result.exception, StateError)
    assert str(result.exception) == (
        f"the state directory has no git remote (add one with: git -C {state_dir} remote add origin URL)"
    )


# ---- a state with no admin key is never applied (issue 12 item 6) --------------------------


def delete_every_key(root: Path) -> None:
    for key in root.glob("keys/*.pub"):
        git(root, "rm", "-q", str(key.relative_to(root)))
    git(root, "commit", "-q", "-m", "remove every key")


def test_sync_refuses_a_pull_that_leaves_no_admin_key_and_changes_nothing(team: tuple[Path, Path, Path]) -> None:
    a, b, _ = team
    delete_every_key(b)  # a teammate's commit, pushed past infr
    git(b, "push", "-q", "origin", "main")
    before = snapshot(a)
    result = run_cli(a, "sync")
    assert isinstance(result.exception, StateError), (result.output, result.exception)
    assert "no admin key" in str(result.exception)
    assert snapshot(a) == before and list(a.glob("keys/*.pub"))


def test_a_state_with_no_admin_key_is_never_pushed_to_a_host(state_dir: Path) -> None:
    seed_host(state_dir, "bob", "203.0.113.10", status=HOST_READY)
    delete_every_key(state_dir)
    before = snapshot(state_dir)
    for command in (("host", "bob", "reconfigure"), ("hosts", "add", "-y", "--adopt", "tom", "203.0.113.11")):
        result = run_cli(state_dir, *command)
        assert isinstance(result.exception, StateError), (command, result.output, result.exception)
        assert "no admin key" in str(result.exception) and "infr keys add" in str(result.exception)
        assert snapshot(state_dir) == before
    with pytest.raises(StateError, match="no admin key"):
        authorized_keys(Store(state_dir).load())
