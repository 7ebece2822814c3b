"""Fixtures for the lab suite: real Debian 12 VMs under qemu, shared by the whole session.

Fixtures
    lab_key     an ed25519 key pair for the admin (ssh-keygen in a temp dir): LabKey
    lab         the `Lab` object, its directory in the session's temp dir; torn down
                at session end, whatever happened
    lab_hosts   the running hosts (2, or $INFR_LAB_HOSTS); a lab that cannot start
                FAILS the tests that use it: it is never skipped
    fleet       one infr state with both lab hosts adopted (bob and tom) and a container
                image: shared by the adopt, container, backup and mesh tests, because
                adopting a host costs minutes under emulation. Tom's first adopt is cut
                off half-way on purpose; how the next run repaired it is in fleet.cutoff.

Helpers
    infr(state, key, *args)   run the infr CLI against a state, return CompletedProcess
    ssh(host, key, command)   run a command as root over SSH (paramiko), return (rc, output)
    wait_for_ssh(ip, ...)     wait until sshd answers again (after a reboot)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest

from infr.lab import Lab, LabHost

BOOT_TIMEOUT = 300.0
INFR = [str(Path(sys.executable).with_name("infr"))]


@dataclass(frozen=True)
class LabKey:
    private: Path
    public: str


# Lab modules run in this order, each on what the ones before left: test_lab.py on untouched
# VMs; adopting turns root logins off; containers, backups and the mesh use the adopted
# fleet; plan/apply after backups (it starts and stops the pair that test_backups.py
# expects to find with no backups yet); the reinstall leaves its VM in the Debian
# installer. Stopping the lab is last of all.
MODULE_ORDER = (
    "test_lab.py",
    "test_adopt.py",
    "test_containers.py",
    "test_backups.py",
    "test_lab_mesh.py",
    "test_plan_apply.py",
    "test_lab_reinstall.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the lab's tests in MODULE_ORDER, `test_down_leaves_nothing_behind` last."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if item.path.is_relative_to(here)]

    def rank(item: pytest.Item) -> float:
        if item.name == "test_down_leaves_nothing_behind":
            return len(MODULE_ORDER)
        name = item.path.name
        # A module not listed yet runs before the reinstall, which leaves its VM unusable.
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else MODULE_ORDER.index("test_lab_reinstall.py") - 0.5

    ordered = sorted((items[i] for i in slots), key=rank)
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@pytest.fixture(scope="session")
def lab_key(tmp_path_factory: pytest.TempPathFactory) -> LabKey:
    private = tmp_path_factory.mktemp("lab-keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@lab",
                    "-f", str(private)], check=True, stdin=subprocess.DEVNULL)
    return LabKey(private, private.with_suffix(".pub").read_text().strip())


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_key: LabKey) -> Iterator[Lab]:
    the_lab = Lab(tmp_path_factory.mktemp("lab"), lab_key.public)
    try:
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture(scope="session")
def lab_hosts(lab: Lab) -> list[LabHost]:
    count = int(os.environ.get("INFR_LAB_HOSTS", "2"))
    started = time.monotonic()
    hosts = lab.up(count, progress=lambda msg: print(f"[lab {time.monotonic() - started:5.0f}s] {msg}"))
    assert len(hosts) == count
    return hosts


def connect(ip: str, *, key: Path | None = None, password: str | None = None,
            timeout: float = 20.0) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # fresh VMs, fresh host keys
    client.connect(ip, username="root", key_filename=str(key) if key else None,
                   password=password, look_for_keys=False, allow_agent=False,
                   timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
    return client


def ssh(host: LabHost, key: LabKey, command: str, timeout: float = 120.0) -> tuple[int, str]:
    """Run `command` as root on `host`; return its exit code and its stdout+stderr."""
    client = connect(host.ip, key=key.private)
    try:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=timeout)
        channel.set_combine_stderr(True)
        channel.settimeout(timeout)
        channel.exec_command(command)
        output = channel.makefile("rb").read().decode(errors="replace")
        return channel.recv_exit_status(), output
    finally:
        client.close()


def wait_for_ssh(host: LabHost, key: LabKey, timeout: float = BOOT_TIMEOUT) -> float:
    """Wait until `host` accepts a root login again; return the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            connect(host.ip, key=key.private, timeout=5.0).close()
            return time.monotonic() - started
        except (OSError, paramiko.SSHException):
            if time.monotonic() - started > timeout:
                raise
            time.sleep(2.0)


def wait_for_manager(host: LabHost, key: LabKey, timeout: float = BOOT_TIMEOUT) -> float:
    """Wait until `host` takes manager's login again (adopted hosts refuse root); the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            client.connect(host.ip, username="manager", key_filename=str(key.private), look_for_keys=False,
                           allow_agent=False, timeout=5.0, banner_timeout=5.0, auth_timeout=5.0)  # fmt: skip
            client.close()
            return time.monotonic() - started
        except (OSError, paramiko.SSHException):
            if time.monotonic() - started > timeout:
                raise
            time.sleep(2.0)


def infr(state: Path, key: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    """The infr CLI as a user runs it, against `state`, logging in with `key`."""
    return subprocess.run(
        [*INFR, "-w", str(state), "-i", str(key), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class CutOff:
    """Tom's first adopt, killed while installing software, and the run that repaired it."""

    killed_output: str = ""
    killed_status: int | None = None
    status_after_kill: str = ""
    repair: subprocess.CompletedProcess[str] | None = None


@dataclass
class Fleet:
    state: Path
    bob: LabHost
    tom: LabHost
    rootfs: Path
    cutoff: CutOff = field(default_factory=CutOff)


def _in_thread(work: Callable[[], object]) -> Callable[[], object]:
    """Start `work` in a thread; the returned function waits and returns (or raises) its result."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # re-raised in the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def wait() -> object:
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box.get("value")

    return wait


def _cut_off_then_repair(state: Path, key: LabKey, tom: LabHost) -> CutOff:
    from infr.state.session import Session

    evidence = CutOff()
    command = [*INFR, "-w", str(state), "-i", str(key.private), "hosts", "add", "--adopt", "--yes", "tom", tom.ip]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert first.stdout is not None
    seen = []
    for line in first.stdout:  # wait until it is busy on the host, then cut it off
        seen.append(line)
        if "installing software" in line:
            time.sleep(5)
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=60)
    evidence.killed_output, evidence.killed_status = "".join(seen), first.returncode
    evidence.status_after_kill = Session(state).inventory().hosts["tom"].status
    evidence.repair = infr(state, key.private, "hosts", "add", "--adopt", "--yes", "tom", tom.ip)
    return evidence


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, lab_key: LabKey, lab: Lab, lab_hosts: list[LabHost]) -> Fleet:
    """Bob and tom adopted into one state; tom first through a cut-off adopt in a scratch state."""
    from infr.lab.rootfs import ensure_rootfs
    from infr.state.config import init_state
    from tests.conftest import DEFAULT_SETTINGS

    bob, tom = lab_hosts[0], lab_hosts[1]
    root = tmp_path_factory.mktemp("fleet")
    state, scratch = root / "state", root / "cutoff-state"
    for path in (state, scratch):
        init_state(path, dict(DEFAULT_SETTINGS), lab_key.public, "admin")
    started = time.monotonic()
    # Three slow things at once: the two VMs and debootstrap here each keep a core busy.
    image = _in_thread(lambda: ensure_rootfs(lab.config.cache_dir))
    cutoff = _in_thread(lambda: _cut_off_then_repair(scratch, lab_key, tom))
    adopted_bob = infr(state, lab_key.private, "hosts", "add", "--adopt", "--yes", "bob", bob.ip)
    assert adopted_bob.returncode == 0, f"adopting bob failed: {adopted_bob.stderr}{adopted_bob.stdout}"
    evidence = cutoff()
    assert isinstance(evidence, CutOff)
    # Tom's manager login already works: joining this state is a quick second adopt.
    adopted_tom = infr(state, lab_key.private, "hosts", "add", "--adopt", "--yes", "tom", tom.ip)
    assert adopted_tom.returncode == 0, f"adopting tom failed: {adopted_tom.stderr}{adopted_tom.stdout}"
    rootfs = image()
    assert isinstance(rootfs, Path)
    set_image = infr(state, lab_key.private, "config", "set", "lxcImageSource", str(rootfs))
    assert set_image.returncode == 0, set_image.stderr
    print(f"[fleet {time.monotonic() - started:5.0f}s] bob and tom adopted, container image {rootfs}")
    return Fleet(state, bob, tom, rootfs, evidence)
