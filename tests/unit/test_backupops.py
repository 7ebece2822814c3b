"""infr.backups.pairs against a fake host: authorized_keys edits, timers, archive moves, freshness."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infr.backups import pairs
from infr.backups import status as backups_status
from infr.backups.btrbk import BackupSettings
from infr.backups.points import RestorePoint
from infr.connector.target import Result
from infr.errors import ConflictError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFdlbGwsIHRoaXMgaXMgbm90IHRoZSByZWFsIGtleSE="


class FakeHost:
    """Files in a dict; commands answered by `answers` (argv prefix -> exit status)."""

    def __init__(self, files: dict[str, bytes] | None = None, answers: dict[tuple[str, ...], int] | None = None):
        self.files = dict(files or {})
        self.answers = answers or {}
        self.ran: list[tuple[str, ...]] = []
        self.target = type("T", (), {"name": "fake"})()

    def run(self, argv: Sequence[str], *, check: bool = True, secret_output: bool = False, **_: object) -> Result:
        argv = tuple(argv)
        self.ran.append(argv)
        if argv[0] == "stat":
            return Result(0 if argv[-1] in self.files else 1, b"root:root:600\n", b"")
        if argv[0] == "test":
            return Result(0 if argv[-1] in self.files else 1, b"", b"")
        if argv[0] == "cat":
            return Result(0, self.files[argv[-1]], b"")
        status = next((code for prefix, code in self.answers.items() if argv[: len(prefix)] == prefix), 0)
        return Result(status, b"", b"")

    def get_file(self, path: str) -> bytes:
        return self.files[path]

    def put_file(self, path: str, data: bytes, **_: object) -> None:
        self.files[path] = data


AUTH = "/var/lib/infr-backup/.ssh/authorized_keys"


def test_authorized_keys_keep_other_backup_hosts_and_swap_our_line() -> None:
    other = f'command="x",restrict {KEY} infr-backup@ann\n'.encode()
    host = FakeHost({AUTH: other + f"restrict {KEY} infr-backup@tom\n".encode()})
    line = f'command="y",restrict {KEY} infr-backup@tom'
    assert pairs._edit_authorized_keys(host, "tom", line, BackupSettings()) == [f"wrote {AUTH}"]  # type: ignore[arg-type]
    assert host.files[AUTH] == other + f"{line}\n".encode()
    assert pairs._edit_authorized_keys(host, "tom", None, BackupSettings()) == [f"wrote {AUTH}"]  # type: ignore[arg-type]
    assert host.files[AUTH] == other


def test_timers_are_switched_only_when_they_differ() -> None:
    off = FakeHost(answers={("systemctl", "is-enabled"): 1, ("systemctl", "is-active"): 1})
    assert pairs._ensure_timers(off, enabled=False) == []  # type: ignore[arg-type]
    assert pairs._ensure_timers(off, enabled=True) == ["enabled infr-backup.timer"]  # type: ignore[arg-type]
    on = FakeHost()
    assert pairs._ensure_timers(on, enabled=True) == ["disabled btrbk.timer"]  # type: ignore[arg-type]


def test_move_refuses_to_merge_two_sets_of_backups() -> None:
    assert pairs._move(FakeHost(answers={("sh",): 3}), "tom", "/a", "/b") == []  # type: ignore[arg-type]
    assert pairs._move(FakeHost(), "tom", "/a", "/b") == ["moved /a to /b"]  # type: ignore[arg-type]
    with pytest.raises(ConflictError):
        pairs._move(FakeHost(answers={("sh",): 4}), "tom", "/a", "/b")  # type: ignore[arg-type]


def test_archive_sits_beside_the_live_backups() -> None:
    assert pairs.archive_dir("bob", BackupSettings()) == "/var/lib/backups/archive/bob"


def test_a_pair_is_as_fresh_as_its_stalest_subvolume() -> None:
    def point(subvol: str, minute: int) -> RestorePoint:
        return RestorePoint(datetime(2026, 1, 1, 12, minute, tzinfo=UTC), 0, subvol, f"{subvol}.x")

    found = [point("host", 0), point("host", 10), point("lxc-web", 5)]
    assert backups_status._newest_complete(found, ["host", "lxc-web"]) == datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    assert backups_status._newest_complete(found, ["host", "lxc-db"]) is None


SHOW = """@rootfs
\tName: \t\t\t@rootfs
\tUUID: \t\t\t{uuid}
\tParent UUID: \t\t-
\tReceived UUID: \t\t-
"""


def test_root_subvolume_uuid_is_read_from_subvolume_show() -> None:
    from infr.backups.points import root_subvolume_uuid

    assert root_subvolume_uuid(SHOW.format(uuid="067c11f4-60d1-f749-9d85-8734eeb4e5c8")) == (
        "067c11f4-60d1-f749-9d85-8734eeb4e5c8"
    )
    assert root_subvolume_uuid(SHOW.format(uuid="-")) == ""


class ShowHost:
    """Answers `btrfs subvolume show [--rootid=5] /` with the top level's and the root's UUIDs."""

    def __init__(self, top: str, root: str) -> None:
        self.uuids = {True: top, False: root}

    def __enter__(self) -> ShowHost:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, argv: Sequence[str], **_: object) -> Result:
        assert list(argv) in (["btrfs", "subvolume", "show", "/"], ["btrfs", "subvolume", "show", "--rootid=5", "/"])
        return Result(0, SHOW.format(uuid=self.uuids["--rootid=5" in argv]).encode(), b"")


@pytest.mark.parametrize(
    ("bob", "tom", "refused"),
    [
        (("t-1", "u-1"), ("t-1", "u-1"), True),  # a plain copy of one disk
        (("t-1", "u-1"), ("t-1", "u-2"), True),  # a new root subvolume on a copied filesystem
        (("t-1", "u-1"), ("t-2", "u-2"), False),
        (("-", "u-1"), ("-", "u-2"), False),  # btrfs-progs before 4.16 gave the top level no UUID
    ],
)
def test_hosts_cloned_from_one_image_are_refused_before_anything_is_recorded(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, bob: tuple[str, str], tom: tuple[str, str], refused: bool
) -> None:
    from infr.state.session import Session
    from tests.conftest import seed_host

    seed_host(state_dir, "bob", "203.0.113.10", status="ready")
    seed_host(state_dir, "tom", "203.0.113.11", status="ready")
    uuids = {"203.0.113.10": bob, "203.0.113.11": tom}
    monkeypatch.setattr(pairs.SSHConnection, "connect", lambda target: ShowHost(*uuids[target.host]))
    session = Session(state_dir)
    if refused:
        with pytest.raises(ConflictError, match="cloned from one image"):
            pairs._refuse_clones(session, "bob", "tom")
    else:
        pairs._refuse_clones(session, "bob", "tom")
    assert Session(state_dir).inventory().backups == []


def test_a_backup_host_out_of_reach_is_reported_not_raised(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After `lxcs add` or `lxc remove` the change is done; a TO that does not answer is told."""
    from infr.errors import RemoteError
    from infr.state.model import Backup
    from infr.state.session import Session
    from tests.conftest import seed_host

    seed_host(state_dir, "bob", "203.0.113.10", status="ready")
    seed_host(state_dir, "tom", "203.0.113.11", status="ready")
    with Session(state_dir).change() as change:
        change.set_backups([Backup("bob", "tom")])

    def unreachable(target: object) -> None:
        raise RemoteError("tom: connection refused")

    monkeypatch.setattr(pairs.SSHConnection, "connect", unreachable)
    said: list[str] = []
    assert pairs.redeploy_targets(Session(state_dir), {"bob"}, said.append) == []
    assert said == ["tom: btrbk.conf not updated (tom: connection refused); later: infr backup start bob tom"]


FAILED_RUN = """\
startup v0.32.5 - - - # btrbk command line client, version 0.32.5
WARNING: Skipping subvolume "198.18.1.11:/": Failed to fetch subvolume detail
WARNING: ... SSH command failed (exitcode=255)
WARNING: ... No ED25519 host key is known for 198.18.1.11 and you have requested strict checking.
WARNING: ... Host key verification failed.
abort_subvolume ABORT ssh://198.18.1.11/ - - # Failed to fetch subvolume detail
infr-backup.service: Main process exited, code=exited, status=10/n/a
"""


def test_a_failed_run_is_told_by_its_last_detail_line() -> None:
    assert backups_status._last_error(FAILED_RUN) == "Host key verification failed."
    assert backups_status._last_error("ERROR: Error while resuming backups, aborting\nfinished\n") == (
        "ERROR: Error while resuming backups, aborting"
    )
    assert backups_status._last_error("") == "the journal is empty"


class RunHost(FakeHost):
    """TO: `systemctl start` answers `status`; the journal is FAILED_RUN; one backup exists."""

    def __init__(self, status: int) -> None:
        super().__init__({"/var/lib/backups/backups/bob": b""}, {("systemctl", "start"): status})

    def __enter__(self) -> RunHost:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, argv: Sequence[str], **kwargs: object) -> Result:
        if argv[0] == "journalctl":
            return Result(0, FAILED_RUN.encode(), b"")
        if argv[0] == "sh":  # findmnt, then btrfs subvolume list: see backups.list_points_argv
            listing = (
                "/ /@rootfs\nID 258 gen 17 top level 5 received_uuid dd0b3fb4-f79a-b847-aa9f-bf0f587a1e31"
                " path @rootfs/var/lib/backups/backups/bob/host.20261123T0310\n"
            )
            return Result(0, listing.encode(), b"")
        return super().run(argv, **kwargs)


@pytest.mark.parametrize("status", [0, 1])
def test_run_now_starts_the_service_on_to_and_tells_a_failure(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    from infr.errors import RemoteError
    from infr.state.model import Backup
    from infr.state.session import Session
    from tests.conftest import seed_host

    seed_host(state_dir, "bob", "203.0.113.10", status="ready")
    seed_host(state_dir, "tom", "203.0.113.11", status="ready")
    with pytest.raises(ConflictError, match="bob is not being backed up onto tom"):
        backups_status.run_now(Session(state_dir), "bob", "tom", print)
    with Session(state_dir).change() as change:
        change.set_backups([Backup("bob", "tom")])
    host = RunHost(status)
    monkeypatch.setattr(pairs.SSHConnection, "connect", lambda target: host)
    if status:
        with pytest.raises(RemoteError, match="the backup run on tom failed: Host key verification failed"):
            backups_status.run_now(Session(state_dir), "bob", "tom", print)
    else:
        newest = backups_status.run_now(Session(state_dir), "bob", "tom", print)
        assert newest is not None and newest.name == "host.20261123T0310"
    assert ("systemctl", "start", "infr-backup.service") in host.ran


# --- backup stop: TO first, then state, then FROM; -D honoured -------------------------------


class Reached(FakeHost):
    """A host that answers every command (and was connected to, `connected` says)."""

    connected = 0

    def __enter__(self) -> Reached:
        self.connected += 1
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def pair(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Reached | None]:
    """bob backed up onto tom; hosts by address: a Reached, or None for one that does not answer."""
    from infr.errors import RemoteError
    from infr.state.model import Backup
    from infr.state.session import Session
    from tests.conftest import seed_host

    seed_host(state_dir, "bob", "203.0.113.10", status="ready")
    seed_host(state_dir, "tom", "203.0.113.11", status="ready")
    with Session(state_dir).change() as change:
        change.set_backups([Backup("bob", "tom")])
    hosts: dict[str, Reached | None] = {"bob": Reached(), "tom": Reached()}

    def connect(target: object) -> Reached:
        name = {"203.0.113.10": "bob", "203.0.113.11": "tom"}[target.host]  # type: ignore[attr-defined]
        host = hosts[name]
        if host is None:
            raise RemoteError(f"cannot connect to {name}: connection refused")
        return host

    monkeypatch.setattr(pairs.SSHConnection, "connect", connect)
    return hosts


def _status(root: Path) -> str:
    from infr.state.store import Store

    return Store(root).load().backups[0].status


def test_stop_with_to_unreachable_archives_nothing_and_says_so(
    state_dir: Path, pair: dict[str, Reached | None]
) -> None:
    from infr.errors import RemoteError
    from tests.conftest import run_cli, snapshot

    pair["tom"] = None
    before = snapshot(state_dir)
    result = run_cli(state_dir, "backup", "stop", "bob", "tom")
    assert isinstance(result.exception, RemoteError)
    assert str(result.exception) == (
        "backup bob -> tom is still active in state, tom not updated: cannot connect to tom: connection refused"
        " (nothing was archived; run 'infr backup stop bob tom' once tom is reachable,"
        " or if it is gone: infr -D tom backup stop bob tom)"
    )
    assert snapshot(state_dir) == before
    assert pair["bob"] is not None and pair["bob"].connected == 0


@pytest.mark.parametrize(("down", "up"), [("tom", "bob"), ("bob", "tom")])
def test_stop_skips_the_host_marked_down_and_the_rerun_finishes(
    state_dir: Path, pair: dict[str, Reached | None], down: str, up: str
) -> None:
    from tests.conftest import run_cli

    skipped, reached = pair[down], pair[up]
    assert skipped is not None and reached is not None
    result = run_cli(state_dir, "-D", down, "backup", "stop", "bob", "tom")
    assert result.exit_code == 0, (result.output, result.exception)
    assert skipped.connected == 0 and reached.connected == 1
    assert _status(state_dir) == "archived"
    told = next(line for line in result.stdout.splitlines() if "marked down" in line)
    assert told.startswith(f"bob -> tom: {down}: not ") and told.endswith("once it is up: infr backup stop bob tom")
    assert result.stdout.splitlines()[-1] == "bob -> tom: stopped"

    again = run_cli(state_dir, "backup", "stop", "bob", "tom")
    assert again.exit_code == 0, (again.output, again.exception)
    assert skipped.connected == 1 and _status(state_dir) == "archived"


def test_stop_with_from_unreachable_is_recorded_and_says_what_is_left(
    state_dir: Path, pair: dict[str, Reached | None]
) -> None:
    from infr.errors import RemoteError
    from tests.conftest import run_cli

    pair["bob"] = None
    result = run_cli(state_dir, "backup", "stop", "bob", "tom")
    assert isinstance(result.exception, RemoteError)
    assert str(result.exception) == (
        "backup bob -> tom is stopped and archived on tom, but bob was not cleaned up (tom's key can still"
        " log in to it): cannot connect to bob: connection refused"
        " (run 'infr backup stop bob tom' again once bob is reachable)"
    )
    assert _status(state_dir) == "archived"
