"""Real processes against one state directory: SIGKILL in the middle of writes, the lock between two infr
processes, and concurrent writers."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from infr.state.history import GIT_LOCKS
from infr.state.model import TcpForward
from infr.state.store import Store
from tests.conftest import INFR_BIN, clone_state, run_infr, seed_host, seed_lxc, snapshot

LXCS = ("c1", "c2", "c3", "c4")

# A writer that never stops: transaction g sets every LXC's `zone` to "g<g>" and the host's
# `added` to g seconds after the epoch (state holds times there), five files, one generation,
# and says so once the change is committed.
WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from infr.state.session import Session

    root = Path(sys.argv[1])
    lxcs = sys.argv[2].split(",")
    session = Session(root, command_line="writer")
    added = session.inventory().hosts["bob"].added
    generation = int(datetime.fromisoformat(added).timestamp()) if added else 0
    while True:
        generation += 1
        with Session(root, command_line=f"writer g{generation}").change() as change:
            for name in lxcs:
                lxc = change.inv.lxcs[name]
                lxc.zone = f"g{generation}"
                lxc.http_port = 1000 + generation % 60000
                change.put_lxc(lxc)
            host = change.inv.hosts["bob"]
            host.added = datetime.fromtimestamp(generation, UTC).isoformat()
            change.put_host(host)
        print(generation, flush=True)
    """
)

# Holds the state lock as 'infr lxc c1 http FORWARD' would, until told to let go (stdin closes).
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from infr.state.session import Session

    with Session(Path(sys.argv[1]), command_line="infr lxc c1 http FORWARD").locked():
        print("locked", flush=True)
        sys.stdin.read()
    """
)


def seed(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151")
    seed_host(root, "tom", "45.32.191.152")
    for name in LXCS:
        seed_lxc(root, name, "bob")


@pytest.fixture
def world(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    return clone_state(state_template("processes", seed), tmp_path / "state")


def generation_of(root: Path) -> int:
    """The one generation every file of the last transaction carries; fails on a torn state."""
    inv = Store(root).load()  # also rolls a committed change forward, and validates everything
    added = inv.hosts["bob"].added
    generations = {int(datetime.fromisoformat(added).timestamp()) if added else 0}
    generations |= {int(inv.lxcs[name].zone[1:] or 0) for name in LXCS}
    ports = {inv.lxcs[name].http_port for name in LXCS}
    assert len(generations) == 1 and len(ports) == 1, f"torn state: {generations} {ports}"
    (only,) = generations
    return only


def test_sigkill_during_multi_file_transactions_never_tears_the_state(world: Path) -> None:
    rng = random.Random(int(os.environ.get("INFR_KILL_SEED", "0")) or None)
    iterations = int(os.environ.get("INFR_KILL_ITERATIONS", "25"))
    committed = 0  # the newest generation a writer reported as committed
    for _ in range(iterations):
        # Unbuffered (bufsize=0): readline() then takes only the first line from the pipe.
        # A buffered reader may take more, and communicate() reads the pipe itself, past the
        # buffer: the generations in it were lost, and a loaded machine failed this test.
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(world), ",".join(LXCS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        assert writer.stdout is not None
        first = writer.stdout.readline().decode()  # wait for one commit, so the kill lands amid writing
        assert first.strip(), writer.stderr.read() if writer.stderr else ""
        time.sleep(rng.uniform(0, 0.15))
        writer.send_signal(signal.SIGKILL)
        rest, errors = (out.decode() for out in writer.communicate())
        reported = [int(line) for line in (first + rest).split()]
        assert not errors.strip(), errors
        committed = max(committed, *reported)
        found = generation_of(world)
        # What was reported committed is there; at most the one change in flight on top.
        assert committed <= found <= committed + 1, (committed, found)
        committed = found
    # A last clean run: git history and files agree again, and infr itself reads the state.
    final = subprocess.run(
        [sys.executable, "-c", WRITER.replace("while True:", "for _ in range(1):"), str(world), ",".join(LXCS)],
        capture_output=True,
        text=True,
    )
    assert final.returncode == 0, final.stderr
    assert generation_of(world) == committed + 1
    assert subprocess.run(["git", "-C", str(world), "status", "--porcelain"], capture_output=True).stdout == b""
    assert run_infr(world, "lxcs").returncode == 0


def test_sigkill_of_the_infr_command_mid_change_leaves_old_or_new(world: Path) -> None:
    """A shell loop of real `infr` commands adding and removing a forward, killed at random moments."""
    rng = random.Random(int(os.environ.get("INFR_KILL_SEED", "0")) or None)
    loop = (
        f"while true; do {INFR_BIN} -w {world} lxc c1 add-tcp-forward 2222 22; "
        f"{INFR_BIN} -w {world} lxc c1 remove-tcp-forward 2222; done"
    )
    for _ in range(int(os.environ.get("INFR_KILL_ITERATIONS", "25")) // 2):
        shell = subprocess.Popen(
            ["bash", "-c", loop], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        time.sleep(rng.uniform(0.2, 0.9))
        os.killpg(shell.pid, signal.SIGKILL)
        _, errors = shell.communicate()
        assert b"Traceback" not in errors and b"internal error" not in errors, errors.decode()
        forwards = Store(world).load().lxcs["c1"].tcp_forwards
        assert forwards in ([], [TcpForward(2222, 22)])
        stale = [name for name in GIT_LOCKS if (world / name).exists()]
        if stale:  # git itself was killed mid-commit (its whole process group was)
            before = snapshot(world)
            refused = run_infr(world, "lxc", "c1", "http", "FORWARD")
            assert refused.returncode == 1 and snapshot(world) == before
            assert refused.stderr == (
                f"infr: error: git in the state directory is locked ({world / stale[0]} exists) "
                "(a git command is running there, or was killed: if none is running, remove that file)\n"
            )
            for name in stale:  # as the message says
                (world / name).unlink()
    check = run_infr(world, "config", "validate")
    assert check.returncode == 0, check.stderr
    # And the next command works: no lock, journal or git lock left in the way.
    result = run_infr(world, "lxc", "c2", "add-tcp-forward", "2223", "22")
    assert result.returncode == 0, result.stderr
    assert subprocess.run(["git", "-C", str(world), "status", "--porcelain"], capture_output=True).stdout == b""


# ---- the lock between processes ------------------------------------------------------------------


def hold_lock(root: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


WHO = r"\S+@\S+ \(pid (\d+)\) since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 running 'infr lxc c1 http FORWARD'"


def test_a_second_infr_gives_up_after_lock_timeout_naming_the_holder(world: Path) -> None:
    holder = hold_lock(world)
    try:
        before = snapshot(world)
        started = time.monotonic()
        result = run_infr(world, "--lock-timeout", "0.5", "lxc", "c1", "https", "TERMINATE")
        waited = time.monotonic() - started
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 2, result.stderr
        waiting = re.fullmatch(f"infr: waiting for the state lock held by {WHO}", lines[0])
        assert waiting and int(waiting.group(1)) == holder.pid
        assert re.fullmatch(
            f"infr: error: state is locked by {WHO} \\(wait for that command to finish, or raise --lock-timeout\\)",
            lines[1],
        )
        assert 0.5 <= waited < 10
        assert snapshot(world) == before
        assert "Traceback" not in result.stderr
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)


def test_a_second_infr_waits_for_the_lock_then_runs(world: Path) -> None:
    holder = hold_lock(world)
    assert holder.stdin is not None and holder.stdout is not None
    waiter = subprocess.Popen(
        [str(INFR_BIN), "-w", str(world), "lxc", "c1", "https", "TERMINATE"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiter.stderr is not None
    line = waiter.stderr.readline()  # printed while it waits
    assert re.fullmatch(f"infr: waiting for the state lock held by {WHO}\n", line), line
    assert Store(world).load().lxcs["c1"].https == "NONE"  # still waiting: nothing written yet
    holder.stdin.close()
    holder.wait(10)
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert out.splitlines()[0] == "c1: https NONE -> TERMINATE"
    assert Store(world).load().lxcs["c1"].https == "TERMINATE"


def commits(root: Path) -> int:
    return int(subprocess.run(["git", "-C", str(root), "rev-list", "--count", "HEAD"], capture_output=True).stdout)


def test_concurrent_writers_all_land_one_after_another(world: Path) -> None:
    """Eight infr processes edit the same file at once: every change is kept, each in its own commit."""
    ports = list(range(3000, 3008))
    before = commits(world)
    writers = [
        subprocess.Popen(
            [str(INFR_BIN), "-w", str(world), "lxc", "c1", "add-tcp-forward", str(port), "80"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
    forwards = Store(world).load().lxcs["c1"].tcp_forwards
    assert sorted(f.host_port for f in forwards) == ports  # no lost update
    log = subprocess.run(
        ["git", "-C", str(world), "log", "--format=%s", f"-n{len(ports)}"], capture_output=True, text=True
    ).stdout.splitlines()
    assert int(
        subprocess.run(["git", "-C", str(world), "rev-list", "--count", "HEAD"], capture_output=True).stdout
    ) == (before + len(ports))
    assert sorted(log) == sorted(f"infr -w {world} lxc c1 add-tcp-forward {port} 80" for port in ports)
    assert subprocess.run(["git", "-C", str(world), "status", "--porcelain"], capture_output=True).stdout == b""


# ---- a kill at every instant of a change (issue 12 item 14) -------------------------------------

# One change in a child that SIGKILLs itself at its N-th instant: an instant is just before or
# just after any file-system call that makes a change durable, or any git command. N = 0 runs
# the change to the end and prints how many instants it had.
KILLED_CHANGE = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    from pathlib import Path

    root, kind, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    instants = 0

    def instant():
        global instants
        instants += 1
        if instants == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def killable(module, name):
        original = getattr(module, name)

        def call(*args, **kwargs):
            instant()
            result = original(*args, **kwargs)
            instant()
            return result

        setattr(module, name, call)

    for name in ("open", "replace", "rename", "fsync", "unlink", "mkdir", "rmdir", "chmod", "fchmod"):
        killable(os, name)
    killable(subprocess, "run")

    from infr.state.session import Session
    from infr.state.model import Lxc

    with Session(root, command_line=f"infr change {kind}").change() as change:
        if kind == "add":  # a new file, and the IPAM cursor moved
            change.put_lxc(Lxc("c9", "bob", "debian", "bookworm", change.allocate_address()))
        else:  # a deleted file and a changed one
            change.delete_lxc("c1")
            lxc = change.inv.lxcs["c2"]
            lxc.http = "FORWARD"
            change.put_lxc(lxc)
    print(instants)
    """
)


def git_out(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("kind", ["add", "delete"])
def test_a_kill_at_any_instant_of_a_change_is_recovered_by_the_next_command(
    state_template: Callable[..., Path], tmp_path: Path, kind: str
) -> None:
    template = state_template("processes", seed)
    dry = subprocess.run(
        [sys.executable, "-c", KILLED_CHANGE, str(clone_state(template, tmp_path / "dry")), kind, "0"],
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    total = int(dry.stdout)
    assert total > 20  # the wrapping took: lock, load, journal, renames, git
    for kill_at in range(1, total + 1):
        world = clone_state(template, tmp_path / f"kill-{kill_at}")
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_CHANGE, str(world), kind, str(kill_at)], capture_output=True, text=True
        )
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr)
        lxcs = set(Store(world).load().lxcs)  # old or new, never torn
        assert lxcs in (
            {"c1", "c2", "c3", "c4"},
            {"c1", "c2", "c3", "c4", "c9"} if kind == "add" else {"c2", "c3", "c4"},
        )
        # The next command works, and commits the interrupted change if it was saved.
        after = run_infr(world, "lxc", "--no-apply", "c3", "http", "FORWARD")
        assert after.returncode == 0, (kill_at, after.stderr)
        assert git_out(world, "status", "--porcelain") == "", kill_at
        tracked = set(git_out(world, "ls-files", "lxcs").split())
        assert tracked == {f"lxcs/{name}.toml" for name in lxcs} | {"lxcs/.gitkeep"}, kill_at
        shutil.rmtree(world)
