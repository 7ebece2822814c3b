"""Sessions: every change is validated, saved atomically, committed to git as the user; the lock serialises writers."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from infr.errors import LockTimeoutError, StateError, ValidationError
from infr.state import history
from infr.state.model import Lxc
from infr.state.session import Session
from infr.state.store import Store
from tests.conftest import AUTHOR_EMAIL, AUTHOR_NAME, clone_state, seed_host, seed_lxc, snapshot


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def seed_bob(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151")
    seed_lxc(root, "c1", "bob")


@pytest.fixture
def seeded(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    return clone_state(state_template("session-seeded", seed_bob), tmp_path / "state")


def test_a_change_is_one_git_commit_with_the_command_line_and_the_author(seeded: Path) -> None:
    before = int(git(seeded, "rev-list", "--count", "HEAD"))
    with Session(seeded, command_line="infr lxc c1 http FORWARD").change() as change:
        lxc = change.inv.lxcs["c1"]
        lxc.http = "FORWARD"
        change.put_lxc(lxc)
    assert int(git(seeded, "rev-list", "--count", "HEAD")) == before + 1
    assert git(seeded, "log", "-1", "--format=%s|%an|%ae") == f"infr lxc c1 http FORWARD|{AUTHOR_NAME}|{AUTHOR_EMAIL}\n"
    assert git(seeded, "show", "--name-only", "--format=", "HEAD").split() == ["lxcs/c1.toml"]
    assert git(seeded, "status", "--porcelain") == ""


def test_a_change_that_writes_nothing_makes_no_commit(seeded: Path) -> None:
    before = snapshot(seeded)
    with Session(seeded).change() as change:
        change.note("nothing to do")
    assert snapshot(seeded) == before


def test_a_body_that_fails_changes_nothing(seeded: Path) -> None:
    before = snapshot(seeded)
    session = Session(seeded)
    with pytest.raises(RuntimeError), session.change() as change:
        lxc = change.inv.lxcs["c1"]
        lxc.http = "FORWARD"
        change.put_lxc(lxc)
        raise RuntimeError("half-way")
    assert snapshot(seeded) == before
    assert session.inventory().lxcs["c1"].http == "NONE"  # the in-memory edit was dropped too


def test_an_invalid_result_is_refused_with_every_problem_and_changes_nothing(seeded: Path) -> None:
    before = snapshot(seeded)
    with pytest.raises(ValidationError) as caught, Session(seeded).change() as change:
        change.put_lxc(Lxc("Bad_Name", "nohost", "debian", "bookworm", "10.8.1.2"))
    assert caught.value.hint == "nothing was changed"
    assert "lxcs/Bad_Name.toml: name 'Bad_Name' must be lowercase" in caught.value.problems
    assert "lxcs/Bad_Name.toml: host 'nohost' does not exist" in caught.value.problems
    assert "vnet address 10.8.1.2 is held by both lxc c1 and lxc Bad_Name" in caught.value.problems
    assert snapshot(seeded) == before


def test_a_change_rereads_the_state_under_the_lock(seeded: Path) -> None:
    """No lost update: a session that read the state earlier still builds on the newest files."""
    early = Session(seeded)
    assert early.inventory().lxcs["c1"].http == "NONE"
    with Session(seeded).change() as change:
        lxc = change.inv.lxcs["c1"]
        lxc.http = "FORWARD"
        change.put_lxc(lxc)
    with early.change() as change:
        lxc = change.inv.lxcs["c1"]
        lxc.https = "TERMINATE"
        change.put_lxc(lxc)
    final = Store(seeded).load().lxcs["c1"]
    assert (final.http, final.https) == ("FORWARD", "TERMINATE")


# ---- secrets ----------------------------------------------------------------------------


def test_secrets_are_never_committed(state_dir: Path) -> None:
    with Session(state_dir, command_line="infr config set dnsVultrAPIKey ...").change() as change:
        change.set_secrets({"dnsVultrAPIKey": "VULTR-s3cret-123"})
    with Session(state_dir).change() as change:  # a later change that commits other files
        change.set_config({**change.inv.config, "dnsProvider": "vultr"}, b'dnsProvider = "vultr"\n')
    assert "secrets.toml" not in git(state_dir, "ls-files").split()
    assert "VULTR-s3cret-123" not in git(state_dir, "log", "--all", "-p")
    assert git(state_dir, "status", "--porcelain", "--ignored").count("secrets.toml") == 1  # ignored, not pending
    assert Session(state_dir).settings()["dnsVultrAPIKey"] == "VULTR-s3cret-123"


def test_a_secret_in_the_environment_wins_over_secrets_toml(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Session(state_dir).change() as change:
        change.set_secrets({"dnsVultrAPIKey": "from-file"})
    monkeypatch.setenv("INFR_VULTR_API_KEY", "from-env")
    assert Session(state_dir).settings()["dnsVultrAPIKey"] == "from-env"
    assert Store(state_dir).secrets_file() == {"dnsVultrAPIKey": "from-file"}


# ---- the lock ----------------------------------------------------------------------------


def test_a_second_writer_waits_says_who_holds_the_lock_and_gives_up(seeded: Path) -> None:
    holder = Session(seeded, command_line="infr lxc c1 http FORWARD")
    messages: list[str] = []
    waiter = Session(seeded, command_line="infr keys add k.pub", lock_timeout=0.3, on_wait=messages.append)
    with holder.locked():
        with pytest.raises(LockTimeoutError) as caught, waiter.change():
            pytest.fail("the second session got the lock")
        with holder.locked():  # re-entrant within one session
            pass
    who = r"\S+@\S+ \(pid \d+\) since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 running 'infr lxc c1 http FORWARD'"
    assert len(messages) == 1 and re.fullmatch(f"waiting for the state lock held by {who}", messages[0])
    assert re.fullmatch(
        f"state is locked by {who} \\(wait for that command to finish, or raise --lock-timeout\\)", str(caught.value)
    )
    assert not (seeded / ".lock.info").exists()
    with waiter.change() as change:  # free again once the holder is done
        lxc = change.inv.lxcs["c1"]
        lxc.http = "FORWARD"
        change.put_lxc(lxc)
    assert Store(seeded).load().lxcs["c1"].http == "FORWARD"


def test_a_lock_timeout_of_zero_fails_at_once(seeded: Path) -> None:
    with Session(seeded).locked(), pytest.raises(LockTimeoutError), Session(seeded, lock_timeout=0).locked():
        pass


# ---- git must be able to commit ------------------------------------------------------------------


def test_a_change_waits_for_a_git_that_is_finishing(seeded: Path) -> None:
    lock = seeded / ".git" / "index.lock"
    lock.touch()
    threading.Timer(0.3, lock.unlink).start()
    with Session(seeded).change() as change:
        lxc = change.inv.lxcs["c1"]
        lxc.http = "FORWARD"
        change.put_lxc(lxc)
    assert git(seeded, "status", "--porcelain") == ""
    assert Store(seeded).load().lxcs["c1"].http == "FORWARD"


def test_a_change_is_refused_before_saving_while_git_is_locked(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history.ready, "__defaults__", (0.2,))
    (seeded / ".git" / "refs" / "heads" / "main.lock").touch()
    before = snapshot(seeded)
    locked = r"git in the state directory is locked \(.*main.lock exists\)"
    with pytest.raises(StateError, match=locked), Session(seeded).change() as change:
        lxc = change.inv.lxcs["c1"]
        lxc.http = "FORWARD"
        change.put_lxc(lxc)
    assert snapshot(seeded) == before
    assert Store(seeded).load().lxcs["c1"].http == "NONE"


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the point it is raised at runs."""


def set_http(session: Session, lxc_name: str, http: str) -> None:
    with session.change() as change:
        lxc = change.inv.lxcs[lxc_name]
        lxc.http = http
        change.put_lxc(lxc)


@pytest.mark.parametrize("killed_in", ["commit", "end"])
def test_a_change_saved_but_not_committed_is_committed_by_the_next_one(
    tmp_path: Path, state_template: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, killed_in: str
) -> None:
    def seed_two(root: Path) -> None:
        seed_bob(root)
        seed_lxc(root, "c2", "bob")

    seeded = clone_state(state_template("session-two", seed_two), tmp_path / "state")

    def die(*_: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(history, killed_in, die)
        with pytest.raises(Killed):
            set_http(Session(seeded, command_line="infr lxc c1 http FORWARD"), "c1", "FORWARD")
    assert Store(seeded).load().lxcs["c1"].http == "FORWARD"  # saved...
    assert (seeded / history.PENDING).exists()

    set_http(Session(seeded, command_line="infr lxc c2 http FORWARD"), "c2", "FORWARD")

    assert git(seeded, "status", "--porcelain") == ""  # ...and now in git, each under its own line
    assert not (seeded / history.PENDING).exists()
    subjects = git(seeded, "log", "--format=%s", "-2").splitlines()
    assert subjects == ["infr lxc c2 http FORWARD", "infr lxc c1 http FORWARD"]
    assert git(seeded, "log", "-1", "--format=", "--name-only", "HEAD").split() == ["lxcs/c2.toml"]
    assert git(seeded, "log", "-1", "--format=", "--name-only", "HEAD~1").split() == ["lxcs/c1.toml"]
    # Only a commit made late says so.
    assert ("interrupted" in git(seeded, "log", "-1", "--format=%b", "HEAD~1")) == (killed_in == "commit")


def test_a_half_written_pending_record_is_dropped(seeded: Path) -> None:
    (seeded / history.PENDING).write_bytes(b'{"paths": ["lxcs/c')
    set_http(Session(seeded, command_line="infr lxc c1 http FORWARD"), "c1", "FORWARD")
    assert not (seeded / history.PENDING).exists()
    assert git(seeded, "status", "--porcelain") == ""
