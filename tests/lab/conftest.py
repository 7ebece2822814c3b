"""Fixtures for the lab suite: real Debian 12 VMs under qemu, shared by the whole session.

Fixtures
    lab_key     an ed25519 key pair for the admin (ssh-keygen in a temp dir): LabKey
    lab         the `Lab` object, its directory in the session's temp dir; torn down
                at session end, whatever happened
    lab_hosts   the running hosts (2, or $INFR_LAB_HOSTS); a lab that cannot start
                FAILS the tests that use it: it is never skipped

Helpers
    ssh(host, key, command)   run a command as root over SSH (paramiko), return (rc, output)
    wait_for_ssh(ip, ...)     wait until sshd answers again (after a reboot)
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from infr.lab import Lab, LabHost

BOOT_TIMEOUT = 300.0


@dataclass(frozen=True)
class LabKey:
    private: Path
    public: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within the lab suite: test_lab.py first, on untouched VMs; stopping the lab last.

    Other lab tests change the hosts (e.g. adopting one turns root logins off), and the
    check that `down` leaves nothing behind ends the lab for everyone after it. Just
    before it, test_lab_reinstall.py, which leaves its VM in the Debian installer.
    """
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if item.path.is_relative_to(here)]

    def rank(item: pytest.Item) -> int:
        if item.name == "test_down_leaves_nothing_behind":
            return 3
        if item.path.name == "test_lab_reinstall.py":
            return 2
        return 0 if item.path.name == "test_lab.py" else 1

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
