"""Reaching hosts as a user meets it: unreachable hosts in one line, the remembered key,
ssh-agent, ~/.ssh/config (Port, User, IdentityFile) and ProxyJump, against real sshds."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infr.cli.main import choose_identity
from infr.connector import SSHConnection, Target
from infr.engine import fleet
from infr.errors import HostKeyError
from infr.state.model import HOST_READY
from infr.state.session import Session
from tests.conftest import clone_state, run_infr, seed_host
from tests.integration.sshd import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    KeyPair,
    Sshd,
    SystemUser,
    agent_sock_fixture,
    client_key_fixture,
    infrtest_user_fixture,
    sshd_factory_fixture,
)

pytestmark = pytest.mark.integration

StartSshd = Callable[..., Sshd]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME (no ~/.ssh/id_*, no config) and no ssh-agent."""
    path = tmp_path / "home"
    (path / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return path


# infr refuses loopback as a host's address (in state as on the command line), so the
# host in state sits on an address of this machine's own, put on lo for this module.
BOB = "198.19.255.250"


@pytest.fixture(scope="module", autouse=True)
def bob_address() -> Iterator[str]:
    """BOB on lo, as a /32 route of its own; removed after the module, whatever happened."""
    subprocess.run(["ip", "addr", "add", f"{BOB}/32", "dev", "lo"], check=True)
    try:
        yield BOB
    finally:
        subprocess.run(["ip", "addr", "del", f"{BOB}/32", "dev", "lo"], check=False)


def state_with_bob(tmp_path: Path, state_dir: Path, port: int, host_key: str) -> Path:
    root = clone_state(state_dir, tmp_path / "bob-state")
    seed_host(root, "bob", BOB, ssh_port=port, host_key=host_key, status=HOST_READY)
    return root


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind((BOB, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A port whose TCP connects succeed but that never says a word (a hung or non-SSH server)."""
    with socket.socket() as mute:
        mute.bind((BOB, 0))
        mute.listen()
        yield int(mute.getsockname()[1])


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A port that drops new SYNs (its accept queue is full), as a firewall or a dead host does."""
    with socket.socket() as server:
        server.bind((BOB, 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        queued = []
        for _ in range(3):  # fill the queue; the kernel then drops further SYNs
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex((BOB, port))
            queued.append(c)
        time.sleep(0.2)
        try:
            yield port
        finally:
            for c in queued:
                c.close()


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize(
    ("port_fixture", "said"),
    [
        ("closed_port", "connection refused (is the host up, with sshd listening on port"),
        ("mute_port", "no SSH handshake within 15s (port"),
        ("full_backlog_port", "no answer within 15s (is the host up? a firewall may drop port"),
    ],
)
def test_an_unreachable_host_is_one_line_on_stderr(
    request: pytest.FixtureRequest, tmp_path: Path, state_dir: Path, home: Path, port_fixture: str, said: str
) -> None:
    port = request.getfixturevalue(port_fixture)
    root = state_with_bob(tmp_path, state_dir, port, HOST_KEY)
    done = run_infr(root, "host", "bob", "reconfigure", timeout=60)
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"infr: error: cannot reach bob (manager@{BOB}:{port}): {said}")
    assert done.stderr.endswith("if bob is down, skip it with: infr -D bob ...)\n")
    assert done.returncode == 1


def test_a_command_over_every_host_says_one_line_for_the_unreachable_one(
    tmp_path: Path, state_dir: Path, home: Path, closed_port: int
) -> None:
    root = state_with_bob(tmp_path, state_dir, closed_port, HOST_KEY)
    done = run_infr(root, "certs", timeout=60)
    about_bob = [line for line in done.stderr.splitlines() if "bob" in line]
    assert about_bob == [
        f"bob: cannot reach bob (manager@{BOB}:{closed_port}): connection refused (is the host up, with sshd "
        f"listening on port {closed_port}? if bob is down, skip it with: infr -D bob ...)"
    ]
    assert "Traceback" not in done.stderr
    skipped = run_infr(root, "-D", "bob", "certs", timeout=60)
    assert "cannot reach" not in skipped.stdout + skipped.stderr


def test_host_ssh_gives_up_after_the_connect_timeout(
    tmp_path: Path, state_dir: Path, home: Path, mute_port: int
) -> None:
    root = state_with_bob(tmp_path, state_dir, mute_port, HOST_KEY)
    started = time.monotonic()
    done = run_infr(root, "host", "bob", "ssh", "--", "true", timeout=45)  # it hung past 60 s
    assert done.returncode == 255
    assert time.monotonic() - started < 25
    assert "timed out" in done.stderr


def test_the_remembered_key_logs_in_without_i(
    server: Sshd, client_key: KeyPair, infrtest_user: SystemUser, tmp_path: Path, state_dir: Path, home: Path
) -> None:
    root = state_with_bob(tmp_path, state_dir, server.port, server.host_key)
    first = run_infr(root, "-i", str(client_key.private), "hosts")
    assert first.returncode == 0, first.stderr
    assert f"remembered {client_key.private} as your SSH key" in first.stderr
    # A later command, without -i: the CLI's choice, as `infr host bob ...` builds its login.
    session = Session(root, identity_file=choose_identity(None, remember=False))
    bob = session.inventory().hosts["bob"]
    with SSHConnection.connect(fleet.target(session, bob, user=infrtest_user.name)) as conn:
        assert conn.run(["id", "-un"], sudo=False).text == f"{infrtest_user.name}\n"
    later = run_infr(root, "hosts")
    assert "remembered" not in later.stderr


@pytest.fixture
def server(sshd_factory: StartSshd) -> Sshd:
    return sshd_factory(listen=BOB)


def test_an_agent_key_logs_in_when_no_identity_is_given(
    server: Sshd,
    client_key: KeyPair,
    infrtest_user: SystemUser,
    agent_sock: str,
    tmp_path: Path,
    state_dir: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subprocess.run(
        ["ssh-add", "-q", str(client_key.private)], env={**os.environ, "SSH_AUTH_SOCK": agent_sock}, check=True
    )
    monkeypatch.setenv("SSH_AUTH_SOCK", agent_sock)
    root = state_with_bob(tmp_path, state_dir, server.port, server.host_key)
    session = Session(root, identity_file=choose_identity(None, remember=False))
    assert session.identity_file is None
    with SSHConnection.connect(
        fleet.target(session, session.inventory().hosts["bob"], user=infrtest_user.name)
    ) as conn:
        assert conn.run(["true"], sudo=False).exit_status == 0


def test_ssh_config_port_identityfile_and_first_login_user(
    server: Sshd, client_key: KeyPair, infrtest_user: SystemUser, home: Path
) -> None:
    (home / ".ssh" / "config").write_text(
        f"Host bob\n  Port {server.port}\n  User {infrtest_user.name}\n  IdentityFile {client_key.private}\n"
    )
    # State says port 22 (the default) and no key: both come from ~/.ssh/config.
    first = Target("bob", BOB, 22, user="root", pinned_key=server.host_key, first_login=True)
    with SSHConnection.connect(first) as conn:
        assert (conn.target.port, conn.target.user) == (server.port, infrtest_user.name)
        assert conn.run(["id", "-un"]).text == "root\n"  # through sudo: not root itself
    manager = Target("bob", BOB, 22, user=infrtest_user.name, pinned_key=server.host_key)
    with SSHConnection.connect(manager) as conn:
        assert conn.run(["true"]).exit_status == 0


def test_proxyjump_through_a_bastion(
    sshd_factory: StartSshd, client_key: KeyPair, infrtest_user: SystemUser, home: Path
) -> None:
    bastion, target_sshd = sshd_factory(), sshd_factory()
    (home / ".ssh" / "config").write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {bastion.port}\n  User {infrtest_user.name}\n"
        f"  IdentityFile {client_key.private}\nHost bob\n  ProxyJump bastion\n"
    )
    target = Target(
        "bob",
        "127.0.0.1",
        target_sshd.port,
        user=infrtest_user.name,
        key_file=client_key.private,
        pinned_key=target_sshd.host_key,
    )
    with pytest.raises(HostKeyError, match="jump host bastion .* is not in ~/.ssh/known_hosts"):
        SSHConnection.connect(target)
    (home / ".ssh" / "known_hosts").write_text(f"[bastion]:{bastion.port} {bastion.host_key}\n")
    with SSHConnection.connect(target) as conn:
        assert conn.run(["true"], sudo=False).exit_status == 0
    assert f"Accepted publickey for {infrtest_user.name}" in bastion.log()
    # The bastion's host key is checked too: a different key there is refused.
    (home / ".ssh" / "known_hosts").write_text(f"[bastion]:{bastion.port} {target_sshd.host_key}\n")
    with pytest.raises(HostKeyError, match="host key of bob .* via jump host bastion .* changed"):
        SSHConnection.connect(target)
