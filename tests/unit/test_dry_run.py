"""--dry-run on every command that changes hosts: the plan of the change, and nothing changed.

Every file of the state directory (.git, the cache and the lock files included; only the
operation log, which records every run, is left out) is hashed before and after: a dry run
leaves them byte for byte. The hosts are unreachable: connecting fails at once and is
counted, so a dry run that planned a host tried it once at most (a plan reads, one
connection per host), names it "could not be planned", and never fails with a traceback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click
import pytest

from infr import reconcile
from infr.cli.main import cli
from infr.connector import SSHConnection, Target
from infr.engine.plan import Runner, Step
from infr.engine.run import Context
from infr.errors import RemoteError, ValidationError
from infr.state.model import Host, Inventory, Lxc
from infr.state.session import Session
from tests.conftest import clone_state, make_key, seed_lxc
from tests.unit.fuzzing import WG_KEY, Run, run_main, seed_fuzz_state

# (argv after `infr -w STATE`, the hosts the dry run plans: each is tried once and named)
# bob and carol are ready; web is on bob, with an alias, a tcp forward; a backup bob -> carol.
COMMANDS: list[tuple[list[str], set[str]]] = [
    (["lxc", "web", "http", "REDIRECT-HTTPS", "-n"], {"bob"}),
    (["lxc", "web", "http", "FORWARD", "--dry-run"], {"bob"}),  # already so: a rerun applies what is pending
    (["lxc", "web", "https", "TERMINATE", "-n"], {"bob"}),
    (["lxc", "web", "http-port", "8080", "-n"], {"bob"}),
    (["lxc", "web", "https-port", "8443", "-n"], {"bob"}),
    (["lxc", "web", "add-alias", "www.example.org", "-n"], {"bob"}),
    (["lxc", "web", "remove-alias", "old.example.org", "-n"], {"bob"}),
    (["lxc", "web", "add-tcp-forward", "2222", "22", "-n"], {"bob"}),
    (["lxc", "web", "tcp-forward", "2223", "22", "-n"], {"bob"}),
    (["lxc", "web", "remove-tcp-forward", "2200", "-n"], {"bob"}),
    (["lxc", "web", "zone", "blue", "-n"], {"bob", "carol"}),
    (["keys", "add", "{newkey}", "-n"], {"bob", "carol"}),
    (["keys", "remove", "bob@desk", "-n"], {"bob", "carol"}),
    (["lxcs", "add", "db", "debian", "bookworm", "carol", "-n"], {"carol"}),
    (["lxc", "web", "remove", "-n"], {"bob"}),
    (["host", "bob", "reconfigure", "--dry-run"], {"bob"}),
    (["host", "bob", "reconfigure", "-k", "-n", "--dry-run"], {"bob"}),  # -n is --network here
    (["host", "carol", "remove", "--force", "-n"], {"bob"}),
    (["hosts", "add", "dave", "203.0.113.20", "--adopt", "-n"], set()),
    (["hosts", "add", "dave", "203.0.113.20", "-n"], set()),
    (["backup", "start", "carol", "bob", "-n"], {"bob", "carol"}),
    (["backup", "stop", "bob", "carol", "-n"], {"bob", "carol"}),
    (["vnet", "peers", "add", "phone", "--public-key", WG_KEY.replace("x", "y"), "-n"], {"bob", "carol"}),
    (["vnet", "peers", "remove", "laptop", "-n"], {"bob", "carol"}),
    (["vnet", "apply", "-n"], {"bob", "carol"}),
]
# The words of the commands above that name a command (the rest are its arguments).
WORDS = {"lxc", "http", "https", "http-port", "https-port", "add-alias", "remove-alias", "add-tcp-forward",
         "tcp-forward", "remove-tcp-forward", "zone", "keys", "add", "remove", "lxcs", "host", "reconfigure",
         "hosts", "backup", "start", "stop", "vnet", "peers", "apply", "restore", "dns", "fix"}
# Commands whose dry run needs the hosts or a provider to say anything: they refuse in one
# line (exit 1) when those cannot be reached, and change nothing either.
NEEDS_REMOTE: list[list[str]] = [
    ["lxc", "web", "restore", "-n"],  # its plan is which backup, read on the backup hosts
    ["dns", "fix", "-n"],  # no DNS provider is set here
]


def dry_run_commands(command: click.Command, path: tuple[str, ...] = ()) -> set[str]:
    """Every command (as `group sub`) with a --dry-run flag, walked from click itself."""
    found = {" ".join(path)} if any("--dry-run" in getattr(p, "opts", ()) for p in command.params) else set()
    if isinstance(command, click.Group):
        ctx = click.Context(cli)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            found |= dry_run_commands(sub, (*path, name))
    return found


def test_every_command_with_a_dry_run_is_tested_here() -> None:
    named = {" ".join(w for w in argv if w in WORDS) for argv in [c[0] for c in COMMANDS] + NEEDS_REMOTE}
    # `backup` is the same group as `backups`; `infr apply -n` is `infr plan`, tested with it.
    assert dry_run_commands(cli) - {"apply"} == named | {n.replace("backup ", "backups ") for n in named}


@pytest.fixture
def fleet(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    return clone_state(state_template("dry-run", seed_fuzz_state), tmp_path / "state")


class StandIn:
    """A feature as the engine sees one, the same for every name: it manages every host, reads
    once to plan, and an edit touches the hosts whose record, LXCs or backup pairs changed
    (every host when the keys or peers did). The registry's own features are written in
    parallel with this test; these keep what it expects independent of them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ran: list[str] = []

    def manages(self, inv: Inventory, host: Host) -> bool:
        return True

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        runner.run(["cat", f"/etc/{self.name}"])
        return []

    def touched(self, before: Inventory, after: Inventory) -> set[str]:
        if before.keys != after.keys or before.peers != after.peers:
            return set(after.hosts)
        hosts = {n for n in before.hosts.keys() | after.hosts.keys() if before.hosts.get(n) != after.hosts.get(n)}
        lxcs = [(before.lxcs.get(n), after.lxcs.get(n)) for n in before.lxcs.keys() | after.lxcs.keys()]
        hosts |= {c.host for pair in lxcs if pair[0] != pair[1] for c in pair if c is not None}
        pairs = [b for b in after.backups if b not in before.backups]
        pairs += [b for b in before.backups if b not in after.backups]
        return hosts | {h for b in pairs for h in b.pair}


@pytest.fixture(autouse=True)
def features(monkeypatch: pytest.MonkeyPatch) -> tuple[StandIn, ...]:
    stand_ins = tuple(StandIn(name) for name in ("host", "lxcs", "vnet", "routing", "backups"))
    monkeypatch.setattr(reconcile, "FEATURES", stand_ins)
    return stand_ins


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SSH connection tried (host names); each fails at once as an unreachable host does."""
    tried: list[str] = []

    def unreachable(target: Target) -> SSHConnection:
        tried.append(target.name)
        raise RemoteError(f"{target.name}: connection refused", "is it up?")

    monkeypatch.setattr(SSHConnection, "connect", staticmethod(unreachable))
    return tried


def digest(root: Path) -> dict[str, str]:
    """Every file under `root` (the log aside) with the hash of its bytes and its mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel != "log" and path.is_file():
            found[rel] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {path.stat().st_mode:o}"
    return found


def infr(root: Path, *argv: str) -> Run:
    return run_main(["-w", str(root), *argv])


def with_files(argv: list[str], tmp_path: Path) -> list[str]:
    key = make_key(tmp_path / "newkey", comment="dan@laptop")
    return [str(key) if word == "{newkey}" else word for word in argv]


@pytest.mark.parametrize(("argv", "planned"), COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_a_dry_run_changes_nothing_and_names_the_hosts_it_could_not_plan(
    fleet: Path, tmp_path: Path, connects: list[str], argv: list[str], planned: set[str]
) -> None:
    assert infr(fleet, "hosts").code == 0  # a read first: the cache and locks as any read leaves them
    before = digest(fleet)
    done = infr(fleet, *with_files(argv, tmp_path))
    assert done.code == 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    assert digest(fleet) == before
    assert sorted(connects) == sorted(planned)  # read once each for the plan, and nothing more
    for host in planned:
        assert f"{host}: could not be planned: {host}: connection refused" in done.stderr
    assert done.stdout.splitlines()[-1] == "dry run: nothing was changed"


@pytest.mark.parametrize(("argv", "planned"), COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_a_dry_run_with_every_host_down_reaches_none(
    fleet: Path, tmp_path: Path, connects: list[str], argv: list[str], planned: set[str]
) -> None:
    assert infr(fleet, "hosts").code == 0
    before = digest(fleet)
    done = infr(fleet, "-D", "bob,carol", *with_files(argv, tmp_path))
    assert done.code == 0, (done.stdout, done.stderr)
    assert connects == []
    assert digest(fleet) == before
    for host in planned:
        assert f"{host}: skipped: marked down (-D)" in done.stdout


@pytest.mark.parametrize("argv", NEEDS_REMOTE, ids=[" ".join(a) for a in NEEDS_REMOTE])
def test_a_dry_run_that_cannot_read_what_it_plans_from_refuses_in_one_line(
    fleet: Path, connects: list[str], argv: list[str]
) -> None:
    assert infr(fleet, "hosts").code == 0
    before = digest(fleet)
    done = infr(fleet, *argv)
    assert done.code == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("infr: error: ") and "Traceback" not in done.stderr
    assert digest(fleet) == before
    assert len(connects) <= 2


def test_a_dry_run_prints_what_it_would_save_and_do(fleet: Path, connects: list[str]) -> None:
    done = infr(fleet, "lxcs", "add", "db", "debian", "bookworm", "carol", "-n")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("would save: LXC db recorded on carol with vnet address 10.8.1.")
    made = "would create the container db (debian bookworm) on carol, start it, and set up sshd and manager inside"
    assert made in lines
    assert "db" not in infr(fleet, "lxcs").stdout


def test_a_dry_run_of_what_state_already_says_saves_nothing(fleet: Path, connects: list[str]) -> None:
    done = infr(fleet, "lxc", "web", "http", "FORWARD", "-n")
    assert done.stdout.splitlines()[:2] == ["web: http is already FORWARD", "state: nothing to save"]


def test_a_dry_run_is_refused_as_the_real_command_is(fleet: Path, connects: list[str]) -> None:
    assert infr(fleet, "hosts").code == 0
    before = digest(fleet)
    for argv, code in (
        (["lxc", "web", "add-tcp-forward", "22", "22", "-n"], 2),  # a reserved port: a usage error
        (["lxcs", "add", "web", "debian", "bookworm", "bob", "--ip", "10.8.9.9", "-n"], 1),  # web is elsewhere
        (["host", "bob", "remove", "-n"], 1),  # still used by web and the backup
        (["backup", "stop", "carol", "bob", "-n"], 1),  # no such pair
    ):
        done = infr(fleet, *argv)
        assert (done.code, done.stderr[:13], done.stdout) == (code, "infr: error: ", ""), argv
    assert digest(fleet) == before
    assert connects == []


def test_the_real_command_saves_what_its_dry_run_said_it_would(fleet: Path, connects: list[str]) -> None:
    dry = infr(fleet, "lxc", "web", "add-alias", "www.example.org", "-n").stdout.splitlines()[0]
    real = infr(fleet, "lxc", "--no-apply", "web", "add-alias", "www.example.org")
    assert real.code == 0
    assert dry == "would save: " + real.stdout.splitlines()[0]


# ---- the dry session ------------------------------------------------------------------------


def test_a_dry_session_keeps_its_changes_in_memory_and_the_saved_inventory_apart(fleet: Path) -> None:
    before = digest(fleet)
    session = Session(fleet, dry_run=True)
    with session.change() as change:
        change.put_lxc(Lxc("db", "carol", "debian", "bookworm", change.allocate_address()))
        change.note("LXC db recorded")
    with session.change() as change:  # a second change sees the first
        change.inv.lxcs["db"].http = "FORWARD"
        change.put_lxc(change.inv.lxcs["db"])
    assert session.inventory().lxcs["db"].http == "FORWARD"
    assert "db" not in session.saved_inventory().lxcs
    assert session.dry_notes == ["LXC db recorded"]
    assert session.dry_writes == {"lxcs/db.toml", "ipam.toml"}
    assert digest(fleet) == before
    assert "db" not in Session(fleet).inventory().lxcs


def test_a_dry_session_takes_no_lock(fleet: Path) -> None:
    (fleet / ".lock").unlink()
    session = Session(fleet, dry_run=True)
    with session.locked(), session.change() as change:
        change.note("a note")
    assert not (fleet / ".lock").exists() and not (fleet / ".lock.info").exists()
    assert session.dry_notes == ["a note"] and session.dry_writes == set()


def test_a_dry_session_checks_a_change_as_a_real_one_does(fleet: Path) -> None:
    session = Session(fleet, dry_run=True)
    with pytest.raises(ValidationError), session.change() as change:
        change.put_lxc(Lxc("db", "nohost", "debian", "bookworm", "10.8.1.200"))
    assert "db" not in session.inventory().lxcs  # the refused edit is gone from memory too


# ---- the plan of a dry run is the plan of what the change touches ---------------------------


class RoutingStandIn(StandIn):
    """Routing that plans one step per LXC of a host, each counting whether it ran."""

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        super().plan(ctx, host, runner)
        return [
            Step(self.name, host.name, f"route {c.name} ({c.http})", run=lambda r, n=c.name: self.ran.append(n) or [])
            for c in ctx.inv.lxcs_on(host.name)
        ]


class ReadOnlyHost:
    """A reachable host that answers reads; a write (any put_file) fails the test."""

    def __init__(self, log: list[tuple[str, ...]]) -> None:
        self.log = log

    def __enter__(self) -> ReadOnlyHost:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, argv: Any, **kwargs: Any) -> Any:
        from infr.connector import Result

        self.log.append(tuple(argv))
        return Result(0, b"", b"")

    def put_file(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a dry run wrote a file on a host")


@pytest.fixture
def routing(
    monkeypatch: pytest.MonkeyPatch, features: tuple[StandIn, ...]
) -> Iterator[tuple[RoutingStandIn, list[tuple[str, ...]]]]:
    feature = RoutingStandIn("routing")
    monkeypatch.setattr(reconcile, "FEATURES", tuple(feature if f.name == "routing" else f for f in features))
    commands: list[tuple[str, ...]] = []
    monkeypatch.setattr(SSHConnection, "connect", staticmethod(lambda target: ReadOnlyHost(commands)))
    yield feature, commands


def test_a_dry_run_shows_the_steps_of_the_feature_it_touches_and_runs_none(
    fleet: Path, routing: tuple[RoutingStandIn, list[tuple[str, ...]]]
) -> None:
    feature, commands = routing
    seed_lxc(fleet, "db", "carol")
    before = digest(fleet)
    done = infr(fleet, "-D", "carol", "lxc", "web", "http", "REDIRECT-HTTPS", "-n")
    assert done.code == 0, done.stderr
    assert "bob: routing: would route web (REDIRECT-HTTPS)" in done.stdout.splitlines()
    assert "db" not in done.stdout  # carol is neither touched nor the LXC's host
    assert feature.ran == []
    assert ("cat", "/etc/routing") in commands
    assert digest(fleet) == before


def teammate_changed_web(fleet: Path, tmp_path: Path) -> None:
    """A second clone of the state sets web's http to REDIRECT-HTTPS and pushes it."""
    import subprocess

    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "-C", str(fleet), "remote", "add", "origin", str(remote)], check=True)
    assert infr(fleet, "sync").code == 0
    teammate = tmp_path / "teammate"
    subprocess.run(["git", "clone", "-q", str(remote), str(teammate)], check=True)
    assert infr(teammate, "lxc", "--no-apply", "web", "http", "REDIRECT-HTTPS").code == 0
    assert infr(teammate, "sync").code == 0


def test_sync_ends_with_the_plan_of_the_pulled_changes(
    fleet: Path, tmp_path: Path, routing: tuple[RoutingStandIn, list[tuple[str, ...]]]
) -> None:
    teammate_changed_web(fleet, tmp_path)
    done = infr(fleet, "sync")
    assert done.code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "bob: routing: would route web (REDIRECT-HTTPS)" in lines
    assert lines[-1] == "apply it with: infr apply"
    assert routing[0].ran == []
    again = infr(fleet, "sync")
    assert again.stdout.splitlines()[-1].startswith("state is in sync")  # nothing pulled: no plan


def test_sync_names_each_host_it_could_not_plan_in_one_line(
    fleet: Path, tmp_path: Path, connects: list[str]
) -> None:
    teammate_changed_web(fleet, tmp_path)
    done = infr(fleet, "sync")
    assert done.code == 0, done.stderr
    assert done.stderr.splitlines() == ["bob: could not be planned: bob: connection refused"]
    assert done.stdout.splitlines()[-2:] == ["no changes found; 1 could not be planned", "apply it with: infr apply"]
    assert connects == ["bob"]


# ---- running a command again applies what is pending ------------------------------------------


def test_adding_a_key_again_pushes_it_to_the_hosts_that_missed_it(
    fleet: Path, tmp_path: Path, connects: list[str]
) -> None:
    key = str(make_key(tmp_path / "dan", comment="dan@laptop"))
    first = infr(fleet, "keys", "add", key)
    assert first.code == 1 and "the key change is saved but did not reach bob, carol" in first.stderr
    before = digest(fleet)
    connects.clear()
    dry = infr(fleet, "keys", "add", key, "-n")
    assert dry.stdout.splitlines()[:2] == ["key dan@laptop is already added", "state: nothing to save"]
    assert sorted(connects) == ["bob", "carol"]  # its plan: what the hosts that missed it lack
    connects.clear()
    again = infr(fleet, "keys", "add", key)
    assert again.stdout.splitlines()[0] == "key dan@laptop is already added"
    assert sorted(connects) == ["bob", "carol"]  # pushed again: both still down here
    assert again.code == 1 and "did not reach bob, carol" in again.stderr
    assert digest(fleet) == before


def test_the_same_key_under_another_name_is_still_refused(fleet: Path, tmp_path: Path, connects: list[str]) -> None:
    key = make_key(tmp_path / "dan", comment="dan@laptop")
    assert infr(fleet, "-D", "bob,carol", "keys", "add", str(key)).code == 0
    done = infr(fleet, "keys", "add", "--name", "daniel", str(key))
    assert (done.code, done.stderr) == (1, "infr: error: this key is already added as 'dan@laptop' (nothing to do)\n")
    assert connects == []


def test_the_dry_run_of_a_routing_change_shows_haproxys_config_diff_from_the_host(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infr.engine.facts import FileFact
    from infr.routing import deploy
    from infr.routing.feature import CONFIG
    from infr.routing.feature import FEATURE as ROUTING
    from tests.unit.test_plan_routing import FakeHost

    session = Session(fleet)
    bob = session.inventory().hosts["bob"]
    config = deploy.desired_config(session.inventory(), bob, deploy.settings_for(session))
    files = {s.path: FileFact(s.content, f"{s.owner}:{s.group}:{s.mode:o}") for s in deploy.host_files()}
    files[CONFIG] = FileFact(config.encode(), "root:haproxy:640")  # bob holds what state says now
    units = {u: "enabled active" for u in ("haproxy", deploy.RENEW_TIMER)}
    host = FakeHost(files, units | {deploy.DEBIAN_RENEW_TIMER: "disabled inactive"})
    monkeypatch.setattr(reconcile, "FEATURES", (ROUTING,))
    monkeypatch.setattr(SSHConnection, "connect", staticmethod(lambda target: nullcontext(host)))
    assert infr(fleet, "lxc", "web", "http", "FORWARD", "-n").stdout.splitlines()[-2:] == [
        "no changes: the fleet matches state",
        "dry run: nothing was changed",
    ]
    before = digest(fleet)
    done = infr(fleet, "lxc", "web", "http", "REDIRECT-HTTPS", "-n")
    assert done.code == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "would save: web: http FORWARD -> REDIRECT-HTTPS"
    step = "bob: routing: would update haproxy.cfg: removed backend lxc_web_http; changed frontend http (+1 -1 lines)"
    assert out[1] == step
    redirect = "http-request redirect location https://%[req.hdr(host),field(1,:)]%[pathq] code 301 if host_web"
    assert f"    +    {redirect}" in out
    assert out[-2:] == ["1 change(s) to make", "dry run: nothing was changed"]
    assert digest(fleet) == before
