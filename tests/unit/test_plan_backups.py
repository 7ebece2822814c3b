"""The backups feature's plan as data: a TO's and a FROM's facts in, steps out; plan() on a fake host."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from infr.backups import desired, pairs
from infr.backups.btrbk import BackupSettings, backup_dir, render_authorized_key, snapshot_dir
from infr.backups.desired import SourceWant, TargetWant, desired_source, desired_target
from infr.backups.feature import Backups, touched
from infr.backups.plan import SourceFacts, TargetFacts, decide_source, decide_target
from infr.connector.target import Result
from infr.engine.facts import FileFact, UnitFact
from infr.engine.plan import Step
from infr.engine.steps import FileSpec
from infr.state.model import BACKUP_ACTIVE, BACKUP_ARCHIVED, HOST_READY, Backup, Host, Inventory, Lxc

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUm"
ANN_LINE = f'command="/usr/local/sbin/infr-backup-filter /x",restrict {KEY} infr-backup@ann'
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywt"
S = BackupSettings()
AUTH = desired.authorized_keys_path(S)
LIVE = backup_dir("bob", S)
ARCHIVE = pairs.archive_dir("bob", S)
SNAPSHOTS = snapshot_dir("tom", S)
ON, OFF = UnitFact(enabled=True, active=True), UnitFact(enabled=False, active=False)


def inventory(status: str = BACKUP_ACTIVE, config: dict[str, str] | None = None) -> Inventory:
    """bob (with the LXC web) backed up onto tom; ann is in no pair."""
    hosts = {
        name: Host(name, f"203.0.113.{n}", f"198.18.0.{n}", HOST_READY, host_key=HOST_KEY)
        for n, name in ((10, "bob"), (11, "tom"), (12, "ann"))
    }
    lxcs = {"web": Lxc("web", "bob", "debian", "bookworm", "198.18.0.20")}
    return Inventory(dict(config or {}), hosts, lxcs, backups=[Backup("bob", "tom", status)])


def held(specs: Sequence[FileSpec]) -> dict[str, FileFact | None]:
    return {s.path: FileFact(s.content, f"{s.owner}:{s.group}:{s.mode:o}") for s in specs}


def target(status: str = BACKUP_ACTIVE, settings: BackupSettings = S) -> TargetWant:
    want = desired_target(inventory(status), "tom", settings)
    assert want is not None
    return want


def source(status: str = BACKUP_ACTIVE) -> SourceWant:
    want = desired_source(inventory(status), "bob", S)
    assert want is not None
    return want


def synced_target(want: TargetWant) -> TargetFacts:
    """TO as `backup start` leaves it."""
    return TargetFacts(
        packages=set(want.packages),
        files=held(want.files),
        units={desired.TIMER: ON if want.pulls else OFF, desired.DEBIAN_TIMER: OFF},
        present=frozenset([S.ssh_identity, LIVE if want.pulls else ARCHIVE]),
    )


def our_line() -> str:
    return render_authorized_key("tom", KEY, S).strip()


def synced_source(want: SourceWant) -> SourceFacts:
    """FROM as `backup start` (active) or `backup stop` (archived) leaves it."""
    lines = f"{ANN_LINE}\n" + (f"{our_line()}\n" if want.tos.active else "")
    files = held([*want.files, desired.authorized_keys_spec(lines, S)])
    return SourceFacts(True, files, frozenset([SNAPSHOTS] if want.tos.active else []), {"tom": KEY})


def described(steps: Sequence[Step]) -> list[str]:
    return [step.description for step in steps]


def edit_file(path: str, edit: Callable[[bytes], bytes]) -> Callable[[dict[str, FileFact | None]], None]:
    def change(files: dict[str, FileFact | None]) -> None:
        have = files[path]
        files[path] = None if have is None else replace(have, content=edit(have.content))

    return change


# --- TO ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "change", "expected"),
    [
        (BACKUP_ACTIVE, {}, []),
        (BACKUP_ACTIVE, {"units": {desired.TIMER: OFF}}, ["enable and start infr-backup.timer"]),
        (BACKUP_ACTIVE, {"units": {desired.TIMER: UnitFact(enabled=True, active=False)}}, ["start infr-backup.timer"]),
        (BACKUP_ACTIVE, {"units": {desired.DEBIAN_TIMER: ON}}, ["stop and disable btrbk.timer"]),
        (BACKUP_ACTIVE, {"packages": {"btrfs-progs"}}, ["install btrbk"]),
        (BACKUP_ACTIVE, {"present": {S.ssh_identity}}, [f"create {LIVE}"]),
        (BACKUP_ACTIVE, {"present": {S.ssh_identity, ARCHIVE}}, [f"move the archived backups of bob back to {LIVE}"]),
        # No key yet: it is made, and the timer waits for the next round rather than fail.
        (BACKUP_ACTIVE, {"present": {LIVE}, "units": {desired.TIMER: OFF}}, ["create the backup key on tom"]),
        (BACKUP_ACTIVE, {"files": {S.msmtprc: FileFact(b"account default\n", "root:root:644")}},
         [f"remove {S.msmtprc}"]),
        (BACKUP_ARCHIVED, {}, []),
        (BACKUP_ARCHIVED, {"present": set()}, []),  # a TO that pulls nothing needs no key
        (
            BACKUP_ARCHIVED,
            {"units": {desired.TIMER: ON}, "present": {S.ssh_identity, LIVE}},
            ["stop and disable infr-backup.timer", f"archive the backups of bob (move {LIVE} to {ARCHIVE})"],
        ),
    ],
)
def test_a_to_host_is_planned_from_its_facts(status: str, change: dict[str, object], expected: list[str]) -> None:
    want = target(status)
    have = synced_target(want)
    have = replace(
        have,
        packages=change.get("packages", have.packages),  # type: ignore[arg-type]
        files={**have.files, **change.get("files", {})},  # type: ignore[dict-item]
        units={**have.units, **change.get("units", {})},  # type: ignore[dict-item]
        present=frozenset(change.get("present", have.present)),  # type: ignore[arg-type]
    )
    assert described(decide_target(want, have)) == expected


def test_an_edited_btrbk_conf_is_rewritten_with_its_diff() -> None:
    want = target()
    files = held(want.files)
    rename = edit_file(S.btrbk_conf, lambda text: text.replace(b"name       lxc-web", b"name       lxc-old"))
    rename(files)
    (step,) = decide_target(want, replace(synced_target(want), files=files))
    assert step.description == f"rewrite {S.btrbk_conf}"
    assert "-    snapshot_name       lxc-old\n" in step.diff and "+    snapshot_name       lxc-web\n" in step.diff


def test_the_smtp_password_and_the_private_key_are_never_shown() -> None:
    mail = BackupSettings(admin_email="ops@example.org", smtp_relay="mail.example.org", smtp_user="ops",
                          smtp_password="hunter2-secret")
    want = target(settings=mail)
    have = synced_target(want)
    files = {path: fact for path, fact in have.files.items() if path != mail.smtp_password_file}
    have = replace(have, files=files, present=frozenset([LIVE]))
    steps = {step.description: step for step in decide_target(want, have)}
    assert list(steps) == ["create the backup key on tom", f"create {mail.smtp_password_file}"]
    assert steps["create the backup key on tom"].diff == ""
    assert "hunter2" not in steps[f"create {mail.smtp_password_file}"].diff
    assert "not shown" in steps[f"create {mail.smtp_password_file}"].diff


# --- FROM -------------------------------------------------------------------------------------


def test_a_from_host_as_backup_start_leaves_it_needs_nothing() -> None:
    want = source()
    assert described(decide_source(want, synced_source(want))) == []


def test_our_line_missing_from_authorized_keys_is_put_back_beside_the_others() -> None:
    want = source()
    have = synced_source(want)
    files = {**have.files, AUTH: FileFact(f"{ANN_LINE}\n".encode(), "infr-backup:infr-backup:600")}
    (step,) = decide_source(want, replace(have, files=files))
    assert step.description == f"rewrite {AUTH}"
    assert f"+{our_line()}\n" in step.diff and f" {ANN_LINE}\n" in step.diff


def test_a_to_host_without_a_key_yet_leaves_authorized_keys_for_the_next_round() -> None:
    want = source()
    have = synced_source(want)
    files = {**have.files, AUTH: FileFact(f"{ANN_LINE}\n".encode(), "infr-backup:infr-backup:600")}
    assert described(decide_source(want, replace(have, files=files, keys={}))) == []


def test_a_from_host_never_set_up_gets_the_user_filter_key_and_snapshot_directory() -> None:
    want = source()
    have = SourceFacts(False, dict.fromkeys([*(s.path for s in want.files), AUTH]), frozenset(), {"tom": KEY})
    assert described(decide_source(want, have)) == [
        "create user infr-backup",
        f"create {S.filter_script}",
        "create /etc/sudoers.d/infr-backup",
        f"create {AUTH}",
        f"create {SNAPSHOTS}",
    ]


def test_a_stopped_pair_takes_tos_key_and_snapshots_off_from() -> None:
    want = source(BACKUP_ARCHIVED)
    active = synced_source(source())
    steps = decide_source(want, active)
    assert described(steps) == [f"rewrite {AUTH}", f"delete the snapshots tom took, in {SNAPSHOTS}"]
    assert f"-{our_line()}\n" in steps[0].diff
    assert described(decide_source(want, synced_source(want))) == []


# --- applying ---------------------------------------------------------------------------------


class FakeHost:
    """A host for the batched reads and the steps: files, directories, units, packages, users."""

    def __init__(self, files: dict[str, FileFact | None], present: set[str], units: dict[str, UnitFact],
                 packages: set[str], user: bool = True) -> None:
        self.files = {path: fact for path, fact in files.items() if fact is not None}
        self.present, self.units, self.packages, self.user = present, units, packages, user
        self.ran: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, check: bool = True, **_: object) -> Result:
        argv = tuple(argv)
        self.ran.append(argv)
        if argv[:2] == ("sh", "-c") and "base64" in argv[2]:
            return self._answer("".join(self._file_line(p) for p in argv[4:]))
        if argv[:2] == ("sh", "-c"):
            return self._answer("".join("y\n" if p in self.present or p in self.files else "n\n" for p in argv[4:]))
        if argv[:2] == ("systemctl", "show"):
            blocks = [self._unit(u) for u in argv[4:]]
            return self._answer("\n\n".join(blocks) + "\n")
        if argv[0] == "dpkg-query":
            return self._answer("".join(f"{p} ii \n" for p in argv[5:] if p in self.packages))
        if argv[0] == "id":
            return Result(0 if self.user else 1, b"999\n" if self.user else b"", b"")
        if argv[0] == "stat":
            fact = self.files.get(argv[-1])
            return Result(0, f"{fact.meta}\n".encode(), b"") if fact else Result(1, b"", b"")
        if argv[0] == "cat":
            return self._answer(self.files[argv[-1]].content.decode())
        return Result(0, b"", b"")

    def put_file(self, path: str, data: bytes, *, owner: str, group: str, mode: int) -> None:
        self.files[path] = FileFact(data, f"{owner}:{group}:{mode:o}")

    def _file_line(self, path: str) -> str:
        fact = self.files.get(path)
        return "-\n" if fact is None else f"{fact.meta} {base64.b64encode(fact.content).decode()}\n"

    def _unit(self, unit: str) -> str:
        fact = self.units.get(unit, OFF)
        return (f"Id={unit}\nLoadState=loaded\nUnitFileState={'enabled' if fact.enabled else 'disabled'}\n"
                f"ActiveState={'active' if fact.active else 'inactive'}")

    @staticmethod
    def _answer(text: str) -> Result:
        return Result(0, text.encode(), b"")


def test_the_timer_step_enables_and_starts_it() -> None:
    want = target()
    (step,) = decide_target(want, replace(synced_target(want), units={desired.TIMER: OFF, desired.DEBIAN_TIMER: OFF}))
    host = FakeHost({}, set(), {}, set())
    assert step.run(host) == ["enable and start infr-backup.timer"]
    assert host.ran == [("systemctl", "enable", "--now", "--", "infr-backup.timer")]


def test_the_authorized_keys_step_writes_what_was_planned_in_the_users_own_directory() -> None:
    want = source()
    have = synced_source(want)
    old = FileFact(f"{ANN_LINE}\n".encode(), "infr-backup:infr-backup:600")
    (step,) = decide_source(want, replace(have, files={**have.files, AUTH: old}))
    host = FakeHost({AUTH: old}, set(), {}, set())
    assert step.run(host) == [f"wrote {AUTH}"]
    assert host.files[AUTH].content == f"{ANN_LINE}\n{our_line()}\n".encode()
    ssh_dir = "/var/lib/infr-backup/.ssh"
    assert ("install", "-d", "-m", "700", "-o", "infr-backup", "-g", "infr-backup", "--", ssh_dir) in host.ran


# --- plan() on fake hosts ---------------------------------------------------------------------


def test_plan_reads_each_host_in_one_command_per_kind_and_tos_key_once(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infr.engine.run import Context
    from infr.state.session import Session
    from tests.conftest import seed_host, seed_lxc

    for name, ip in (("bob", "203.0.113.10"), ("tom", "203.0.113.11")):
        seed_host(state_dir, name, ip, status="ready", host_key=HOST_KEY)
    seed_lxc(state_dir, "web", "bob")
    with Session(state_dir).change() as change:
        change.set_backups([Backup("bob", "tom")])
    session = Session(state_dir)
    settings = pairs.settings_for(session)
    inv = session.inventory()
    to_want, from_want = desired_target(inv, "tom", settings), desired_source(inv, "bob", settings)
    assert to_want is not None and from_want is not None
    # tom holds everything but a running timer; bob has the user and filter, not tom's key.
    tom = FakeHost(held(to_want.files), {settings.ssh_identity, backup_dir("bob", settings)},
                   {desired.TIMER: OFF}, set(to_want.packages))
    bob = FakeHost(held(from_want.files), {snapshot_dir("tom", settings)}, {}, set())
    asked: list[str] = []
    feature = Backups(read=lambda ctx, to: asked.append(to.name) or KEY)
    ctx = Context(session)
    host = inv.hosts

    assert described(feature.plan(ctx, host["tom"], tom)) == ["enable and start infr-backup.timer"]
    assert [argv[0] for argv in tom.ran] == ["dpkg-query", "sh", "systemctl", "sh"]
    assert described(feature.plan(ctx, host["bob"], bob)) == [f"create {desired.authorized_keys_path(settings)}"]
    assert [argv[0] for argv in bob.ran] == ["id", "sh", "sh"]
    feature.plan(ctx, host["bob"], bob)
    assert asked == ["tom"]  # once per plan
    feature.plan(Context(session), host["bob"], bob)
    assert asked == ["tom", "tom"]


def test_a_key_not_made_yet_is_asked_for_again_next_round(state_dir: Path) -> None:
    from infr.backups.feature import TargetKeys
    from infr.engine.run import Context
    from infr.state.session import Session

    made: list[str] = []
    keys = TargetKeys(lambda ctx, to: made[-1] if made else "")
    ctx, tom = Context(Session(state_dir)), inventory().hosts["tom"]
    assert keys.get(ctx, tom) == ""
    made.append(KEY)  # TO's step ran
    assert keys.get(ctx, tom) == KEY


# --- touched ----------------------------------------------------------------------------------


def _edit(inv: Inventory, **fields: object) -> Inventory:
    return replace(inv, **fields)  # type: ignore[arg-type]


BOB_WITH_DB = {**inventory().lxcs, "db": Lxc("db", "bob", "debian", "bookworm", "198.18.0.21")}
ANN_WITH_DB = {**inventory().lxcs, "db": Lxc("db", "ann", "debian", "bookworm", "198.18.0.21")}


def _host(name: str, **fields: object) -> dict[str, Host]:
    hosts = inventory().hosts
    return {**hosts, name: replace(hosts[name], **fields)}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (inventory(), set()),
        (inventory(BACKUP_ARCHIVED), {"bob", "tom"}),
        (_edit(inventory(), backups=[Backup("bob", "tom"), Backup("ann", "tom")]), {"ann", "tom"}),
        (_edit(inventory(), backups=[]), {"bob", "tom"}),
        (_edit(inventory(), lxcs=BOB_WITH_DB), {"tom"}),
        (_edit(inventory(), lxcs=ANN_WITH_DB), set()),
        (_edit(inventory(), lxcs={}), {"tom"}),
        (_edit(inventory(), hosts=_host("bob", host_key=KEY)), {"tom"}),
        (_edit(inventory(), hosts=_host("bob", public_ip="203.0.113.99")), {"tom"}),
        (_edit(inventory(), hosts=_host("tom", public_ip="203.0.113.99")), set()),  # TO's own address is in nothing
        (_edit(inventory(), hosts=_host("ann", host_key=KEY)), set()),
        (inventory(config={"adminEmail": "ops@example.org"}), {"tom"}),
    ],
)
def test_touched_names_the_hosts_whose_backup_inputs_changed(after: Inventory, expected: set[str]) -> None:
    assert touched(inventory(), after) == expected


class LocalShell:
    """Runs a read on this machine, as the host would (no sudo: the paths are the test's own)."""

    def run(self, argv: Sequence[str], **_: object) -> Result:
        import subprocess

        done = subprocess.run(list(argv), capture_output=True, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def put_file(self, path: str, data: bytes, *, owner: str, group: str, mode: int) -> None:
        raise AssertionError("a read wrote a file")


def test_present_paths_are_read_in_one_shell_run(tmp_path: Path) -> None:
    from infr.backups.plan import read_present

    (tmp_path / "a dir").mkdir()
    (tmp_path / "key").write_text("k")
    paths = [str(tmp_path / name) for name in ("a dir", "key", "gone", "a dir/gone")]
    assert read_present(LocalShell(), paths) == {paths[0], paths[1]}
    assert read_present(LocalShell(), []) == frozenset()


# --- infr plan / infr apply over a new pair -----------------------------------------------------


class LiveHost(FakeHost):
    """A FakeHost that the steps change, as a host would: units, key, directories, the user."""

    def __enter__(self) -> LiveHost:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, argv: Sequence[str], *, check: bool = True, **kwargs: object) -> Result:
        argv = tuple(argv)
        if argv[:3] in (("systemctl", "enable", "--now"), ("systemctl", "disable", "--now")):
            self.units[argv[-1]] = ON if argv[1] == "enable" else OFF
        elif argv[0] == "ssh-keygen":
            self.present.add(argv[-1])
            self.files[f"{argv[-1]}.pub"] = FileFact(f"{KEY} infr-backup@tom\n".encode(), "root:root:644")
        elif argv[:3] == ("mkdir", "-p", "--"):
            self.present.add(argv[-1])
        elif argv[0] == "useradd":
            self.user = True
        elif argv[0] == "mv":
            self.files[argv[-1]] = self.files.pop(argv[-2])
        elif argv[0] in ("test", "cat") and argv[-1] not in self.files and argv[-1] not in self.present:
            self.ran.append(argv)
            return Result(1, b"", b"")
        return super().run(argv, check=check, **kwargs)


def test_apply_sets_a_new_pair_up_in_rounds_and_plan_then_sees_a_timer_stopped_by_hand(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infr.connector import SSHConnection
    from infr.state.session import Session
    from tests.conftest import run_cli, seed_host

    for name, ip in (("bob", "203.0.113.10"), ("tom", "203.0.113.11")):
        seed_host(state_dir, name, ip, status="ready", host_key=HOST_KEY)
    with Session(state_dir).change() as change:
        change.set_backups([Backup("bob", "tom")])
    packages = {"btrbk", "btrfs-progs"}
    bob, tom = LiveHost({}, set(), {}, packages, user=False), LiveHost({}, set(), {}, packages)
    hosts = {"203.0.113.10": bob, "203.0.113.11": tom}
    # Both the plan's connection to each host and bob's read of tom's key.
    monkeypatch.setattr(SSHConnection, "connect", lambda target: hosts[target.host])

    applied = run_cli(state_dir, "apply", "-f", "backups", "--yes")
    assert applied.exit_code == 0, (applied.output, applied.exception)
    assert run_cli(state_dir, "plan", "-f", "backups").exit_code == 0
    assert f"{KEY} infr-backup@tom" in bob.files[AUTH].content.decode()  # the key tom made in round one

    tom.units[desired.TIMER] = OFF  # `systemctl disable --now` by hand
    drift = run_cli(state_dir, "plan", "-f", "backups")
    assert drift.exit_code == 2
    assert "tom: backups: would enable and start infr-backup.timer" in drift.output
