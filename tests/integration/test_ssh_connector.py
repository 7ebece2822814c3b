"""The SSH connector against real sshd servers on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infr import oplog
from infr.connector import (
    ConnectionPool,
    Event,
    EventKind,
    SSHConnection,
    Target,
    command,
    fingerprint,
    run_parallel,
)
from infr.errors import HostKeyError, RemoteError
from tests.integration.sshd import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    KeyPair,
    Sshd,
    SystemUser,
    agent_sock_fixture,
    client_key_fixture,
    infrtest_user_fixture,
    make_keypair,
    sshd_factory_fixture,
)

pytestmark = pytest.mark.integration

StartSshd = Callable[..., Sshd]

NASTY = ["a b", "it's", '"q"', "x; touch /tmp/pwned", "$(id)", "`id`", "l1\nl2", "*", ""]


def root_target(server: Sshd, key: KeyPair, pinned_key: str | None = None) -> Target:
    return Target("h1", server.host, server.port, user="root", key_file=key.private, pinned_key=pinned_key)


@pytest.fixture
def server(sshd_factory: StartSshd) -> Sshd:
    return sshd_factory()


@pytest.fixture
def root_conn(server: Sshd, client_key: KeyPair) -> Iterator[SSHConnection]:
    with SSHConnection.connect(root_target(server, client_key)) as conn:
        yield conn


@pytest.fixture
def oplog_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "operations.log"
    oplog.setup(path, verbose=False)
    yield path
    root = logging.getLogger(oplog.LOGGER_NAME)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.propagate = True


def test_run_as_root_with_a_key_file(root_conn: SSHConnection) -> None:
    result = root_conn.run(["id", "-un"])
    assert (result.exit_status, result.text, result.stderr) == (0, "root\n", b"")


def test_arguments_survive_the_remote_shell(root_conn: SSHConnection) -> None:
    out = root_conn.run(["printf", "%s\\0", *NASTY]).stdout
    assert out.decode().split("\0")[:-1] == NASTY
    assert not os.path.exists("/tmp/pwned")


def test_stdin_input_small_and_large(root_conn: SSHConnection) -> None:
    assert root_conn.run(["cat"], input=b"line\n\0binary\xff").stdout == b"line\n\0binary\xff"
    # Larger than SSH's channel windows both ways: proves input and output cannot deadlock.
    big = os.urandom(6 * 1024 * 1024)
    assert root_conn.run(["cat"], input=big, timeout=60).stdout == big


def test_command_without_input_gets_eof(root_conn: SSHConnection) -> None:
    assert root_conn.run(["cat"], timeout=5).stdout == b""


def test_nonzero_exit_raises_with_stderr(root_conn: SSHConnection) -> None:
    failing = ["sh", "-c", "echo some output; echo 'it broke' >&2; exit 3"]
    with pytest.raises(RemoteError, match=r"exited with status 3: it broke") as err:
        root_conn.run(failing)
    assert "h1" in str(err.value)
    result = root_conn.run(failing, check=False)
    assert (result.exit_status, result.text, result.stderr) == (3, "some output\n", b"it broke\n")


def test_command_timeout_says_what_it_saw(root_conn: SSHConnection) -> None:
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"timed out after 1s: got this far") as err:
        root_conn.run(["sh", "-c", "echo got this far; sleep 30"], timeout=1)
    assert time.monotonic() - started < 5
    assert "sleep 30" in str(err.value)
    assert root_conn.run(["true"]).exit_status == 0, "the connection survives a timed-out command"


def test_connect_timeout_when_the_host_never_answers(client_key: KeyPair) -> None:
    with socket.socket() as mute:  # accepts TCP (the kernel does) but never says a word
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        port = mute.getsockname()[1]
        target = Target("mute", "127.0.0.1", port, key_file=client_key.private, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(RemoteError, match="cannot reach mute .*: no SSH handshake within 1s"):
            SSHConnection.connect(target)
        assert time.monotonic() - started < 5


def test_connection_refused(client_key: KeyPair) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RemoteError, match="cannot reach gone .*: connection refused .*infr -D gone"):
        SSHConnection.connect(Target("gone", "127.0.0.1", port, key_file=client_key.private))


def test_unknown_key_is_refused(server: Sshd, tmp_path: Path) -> None:
    stranger = make_keypair(tmp_path / "stranger")
    with pytest.raises(RemoteError, match="login to h1 .* refused") as err:
        SSHConnection.connect(root_target(server, stranger))
    assert not isinstance(err.value, HostKeyError)


def test_host_key_pinned_at_first_contact_then_checked(
    server: Sshd,
    client_key: KeyPair,
) -> None:
    with SSHConnection.connect(root_target(server, client_key)) as first:
        assert first.host_key == server.host_key
        seen = first.host_key
    pub = server.directory / "host_key.pub"
    openssh = subprocess.run(["ssh-keygen", "-lf", pub], capture_output=True, text=True).stdout
    assert fingerprint(seen) == openssh.split()[1]
    with SSHConnection.connect(root_target(server, client_key, pinned_key=seen)) as again:
        assert again.fingerprint == fingerprint(seen)


def test_changed_host_key_is_refused_before_login(
    sshd_factory: StartSshd,
    client_key: KeyPair,
) -> None:
    old, new = sshd_factory(), sshd_factory()
    with pytest.raises(HostKeyError) as err:
        SSHConnection.connect(root_target(new, client_key, pinned_key=old.host_key))
    assert fingerprint(old.host_key) in err.value.message
    assert fingerprint(new.host_key) in err.value.message
    assert err.value.hint is not None and "infr host h1 reconfigure -k" in err.value.hint
    assert "Accepted publickey" not in new.log(), "the key was checked before authenticating"


def test_unreadable_pinned_key_is_refused(server: Sshd, client_key: KeyPair) -> None:
    with pytest.raises(HostKeyError, match="reconfigure -k"):
        SSHConnection.connect(root_target(server, client_key, pinned_key="ssh-ed25519 !!"))


def test_manager_style_user_runs_through_sudo(
    server: Sshd,
    client_key: KeyPair,
    infrtest_user: SystemUser,
) -> None:
    target = Target("h1", server.host, server.port, user=infrtest_user.name, key_file=client_key.private)
    with SSHConnection.connect(target) as conn:
        assert conn.run(["id", "-u"]).text == "0\n"
        assert conn.run(["id", "-u"], sudo=False).text == f"{infrtest_user.uid}\n"
        assert conn.run(["printf", "%s\\0", *NASTY]).stdout.decode().split("\0")[:-1] == NASTY


def test_password_login(
    sshd_factory: StartSshd,
    infrtest_user: SystemUser,
) -> None:
    server = sshd_factory(password_auth=True)
    target = Target("h1", server.host, server.port, user=infrtest_user.name, password=infrtest_user.password)
    assert infrtest_user.password not in repr(target)
    with SSHConnection.connect(target) as conn:
        assert conn.run(["whoami"], sudo=False).text == f"{infrtest_user.name}\n"
    wrong = Target("h1", server.host, server.port, user=infrtest_user.name, password="wrong-pw")
    with pytest.raises(RemoteError, match="refused"):
        SSHConnection.connect(wrong)


def test_agent_login_without_key_file(
    server: Sshd, client_key: KeyPair, agent_sock: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "SSH_AUTH_SOCK": agent_sock}
    subprocess.run(["ssh-add", "-q", client_key.private], env=env, check=True)
    monkeypatch.setenv("SSH_AUTH_SOCK", agent_sock)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
    with SSHConnection.connect(Target("h1", server.host, server.port, user="root")) as conn:
        assert conn.run(["true"]).exit_status == 0


def test_put_file_atomic_with_owner_and_mode(
    server: Sshd,
    client_key: KeyPair,
    infrtest_user: SystemUser,
    tmp_path: Path,
) -> None:
    # A root-owned directory the login user cannot write to: only sudo gets the file there.
    directory = Path(f"/tmp/infr-put-{os.getpid()}-{tmp_path.name}") / "it's a $(dir)"
    directory.mkdir(parents=True)
    try:
        path = directory / "conf;file"
        path.write_bytes(b"old contents")
        old_inode = path.stat().st_ino
        target = Target("h1", server.host, server.port, user=infrtest_user.name, key_file=client_key.private)
        with SSHConnection.connect(target) as conn:
            data = b"new\0contents\n" * 1000
            conn.put_file(str(path), data, owner=infrtest_user.name, group="root", mode=0o640)
            assert path.read_bytes() == data
            stat = path.stat()
            assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o7777) == (infrtest_user.uid, 0, 0o640)
            assert stat.st_ino != old_inode, "replaced by a rename, not rewritten in place"
            assert sorted(p.name for p in directory.iterdir()) == ["conf;file"], "no temp left"
            assert conn.get_file(str(path)) == data
            with pytest.raises(RemoteError, match="No such file or directory"):
                conn.put_file(str(directory / "missing" / "f"), b"x")
    finally:
        subprocess.run(["rm", "-rf", "--", str(directory.parent)], check=True)


def test_pool_keeps_one_connection_per_host(server: Sshd, client_key: KeyPair) -> None:
    target = root_target(server, client_key)
    with ConnectionPool() as pool:
        first = pool.get(target)
        assert pool.get(target) is first
        first.close()
        second = pool.get(target)
        assert second is not first and second.run(["true"]).exit_status == 0
    assert not second.alive


def test_parallel_run_on_three_hosts(
    sshd_factory: StartSshd,
    client_key: KeyPair,
) -> None:
    servers = {name: sshd_factory() for name in ("h1", "h2", "h3")}
    servers["h3"].stop()  # h3 fails: nothing listens any more
    targets = {
        name: Target(name, s.host, s.port, user="root", key_file=client_key.private) for name, s in servers.items()
    }
    events: list[Event] = []

    with ConnectionPool() as pool:

        def work(target: Target, report: Callable[[str], None]) -> str:
            conn = pool.get(target)
            report("asking the hostname")
            return conn.run(["echo", target.name]).text.strip()

        outcomes = run_parallel(targets, work, max_workers=2, skip={"h2"}, on_event=events.append)

    assert list(outcomes) == ["h1", "h2", "h3"]
    assert (outcomes["h1"].status, outcomes["h1"].value) == (EventKind.OK, "h1")
    assert outcomes["h2"].status is EventKind.SKIPPED
    assert outcomes["h3"].status is EventKind.FAILED
    assert isinstance(outcomes["h3"].error, RemoteError)
    assert [(e.kind, e.message) for e in events if e.host == "h1"] == [
        (EventKind.STARTED, ""),
        (EventKind.STEP, "asking the hostname"),
        (EventKind.OK, ""),
    ]
    assert [e.kind for e in events if e.host == "h2"] == [EventKind.SKIPPED]
    h3 = [e for e in events if e.host == "h3"]
    assert [e.kind for e in h3] == [EventKind.STARTED, EventKind.FAILED]
    assert "cannot reach h3" in h3[-1].message


def test_log_has_commands_and_output_with_secrets_masked(
    oplog_file: Path,
    sshd_factory: StartSshd,
    infrtest_user: SystemUser,
) -> None:
    server = sshd_factory(password_auth=True)
    secret = infrtest_user.password
    target = Target("h1", server.host, server.port, user=infrtest_user.name, password=secret)
    with SSHConnection.connect(target) as conn:  # registers the password as a secret
        conn.run(["echo", "the password is", secret], sudo=False)
        with pytest.raises(RemoteError) as err:
            conn.run(["sh", "-c", f"echo {secret} >&2; exit 1"], sudo=False)
        conn.put_file("/tmp/infr-secret-test", secret.encode(), mode=0o600)
        assert conn.get_file("/tmp/infr-secret-test") == secret.encode()
        conn.run(command.rm("/tmp/infr-secret-test"))
    assert secret not in str(err.value) and oplog.MASK in str(err.value)
    text = oplog_file.read_text()
    assert secret not in text
    assert f"h1: $ echo 'the password is' {oplog.MASK}" in text
    assert f"the password is {oplog.MASK}" in text, "output is logged too"
    assert "h1: exit 1" in text
    assert f"upload {len(secret)} bytes to /tmp/infr-secret-test (root:root 0600)" in text
    assert "sudo -n -- cat -- /tmp/infr-secret-test" in text
    assert f"stdout: {len(secret)} bytes, not logged" in text
