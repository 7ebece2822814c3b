"""Real OpenSSH servers for tests, on 127.0.0.1 (or an address given) with random ports.

Each server has its own directory with its config, host key, authorized_keys and
log, and runs in the foreground (`sshd -D`) so its PID is ours to kill. The
directory is world-traversable because sshd reads authorized_keys as the user
logging in, which may be the unprivileged test user.

A test module in this directory gets the fixtures `client_key`, `sshd_factory`, `agent_sock` and
`infrtest_user` by importing them (under names that don't shadow the arguments):

    from tests.integration.sshd import client_key_fixture, sshd_factory_fixture  # noqa: F401
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"  # sshd re-execs itself and insists on an absolute path
TEST_USER = "infrtest"
_READY_TIMEOUT = 10.0

_CONFIG = """\
ListenAddress {listen}
Port {port}
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
# The keys live under /tmp (mode 1777), which StrictModes would refuse.
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication {password}
KbdInteractiveAuthentication no
UseDNS no
LogLevel VERBOSE
"""


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str  # "<type> <base64> <comment>", an authorized_keys line


@dataclass
class Sshd:
    """One running sshd; `stop()` kills it by PID and removes its directory."""

    port: int
    directory: Path
    proc: subprocess.Popen[bytes]
    host_key: str  # "<type> <base64>", as the connector reports and pins it
    host: str = "127.0.0.1"

    def log(self) -> str:
        return (self.directory / "sshd.log").read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def make_keypair(path: Path, key_type: str = "ed25519") -> KeyPair:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "infr-test", "-f", str(path)],
        check=True,
    )
    return KeyPair(path, path.with_suffix(".pub").read_text().strip())


def _free_port(listen: str) -> int:
    with socket.socket() as s:
        s.bind((listen, 0))
        return int(s.getsockname()[1])


def _wait_ready(server: Sshd) -> None:
    """Wait for the SSH banner: the port answering is not enough while sshd starts."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {server.proc.returncode}:\n{server.log()}")
        try:
            with socket.create_connection((server.host, server.port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd on port {server.port} not ready:\n{server.log()}")


def _launch(directory: Path, host_key: str, password_auth: bool, listen: str, port: int, wrap: Sequence[str]) -> Sshd:
    port = port or _free_port(listen)
    config = _CONFIG.format(listen=listen, port=port, dir=directory, password="yes" if password_auth else "no")
    (directory / "sshd_config").write_text(config)
    cmd = [*wrap, SSHD, "-D", "-f", str(directory / "sshd_config"), "-E", str(directory / "sshd.log")]
    return Sshd(port, directory, subprocess.Popen(cmd), host_key, listen)


def start_sshd(
    authorized_keys: list[str],
    *,
    password_auth: bool = False,
    listen: str = "127.0.0.1",
    port: int = 0,
    wrap: Sequence[str] = (),
) -> Sshd:
    """Start an sshd on `listen` that accepts `authorized_keys` (for any user) and, optionally, passwords.

    `wrap` runs it inside something (`ip netns exec NS`), which must exec sshd so that the
    PID stays sshd's; give `port` there too: a free port of this namespace means nothing
    in another one.
    """
    if not os.path.exists(SSHD):
        pytest.fail(f"{SSHD} missing: install openssh-server (apt-get install openssh-server)")
    # Privilege separation directory; systemd-tmpfiles would make it on a booted system.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="infr-sshd-"))
    directory.chmod(0o755)
    host_key = " ".join(make_keypair(directory / "host_key").public.split()[:2])
    (directory / "authorized_keys").write_text("".join(k + "\n" for k in authorized_keys))
    try:
        return _start_on_a_free_port(directory, host_key, password_auth, listen, port, wrap)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _start_on_a_free_port(
    directory: Path, host_key: str, password_auth: bool, listen: str, port: int, wrap: Sequence[str]
) -> Sshd:
    errors = []
    for _ in range(3):  # someone else may take the free port before sshd binds it
        server = _launch(directory, host_key, password_auth, listen, port, wrap)
        try:
            _wait_ready(server)
            return server
        except BaseException as e:
            server.kill()
            if not isinstance(e, RuntimeError):
                raise
            errors.append(str(e))
    raise RuntimeError("sshd did not start:\n" + "\n".join(errors))


@pytest.fixture(scope="session", name="client_key")
def client_key_fixture(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """The admin's key pair, as infr would use it with -i."""
    return make_keypair(tmp_path_factory.mktemp("client") / "id_ed25519")


@pytest.fixture(name="sshd_factory")
def sshd_factory_fixture(client_key: KeyPair) -> Iterator[Callable[..., Sshd]]:
    """Start any number of sshds that accept `client_key`; all are killed at teardown."""
    started: list[Sshd] = []

    def start(*, password_auth: bool = False, listen: str = "127.0.0.1") -> Sshd:
        server = start_sshd([client_key.public], password_auth=password_auth, listen=listen)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass(frozen=True)
class SystemUser:
    name: str
    password: str
    uid: int
    gid: int
    group: str


def _remove_user(name: str) -> None:
    Path(f"/etc/sudoers.d/{name}").unlink(missing_ok=True)
    subprocess.run(["userdel", "-r", name], capture_output=True, check=False)


@pytest.fixture(scope="session", name="infrtest_user")
def infrtest_user_fixture() -> Iterator[SystemUser]:
    """An unprivileged user with a password and passwordless sudo, like infr's `manager`.

    Removed (with its home and sudoers entry) at the end of the session.
    """
    _remove_user(TEST_USER)  # left over by a run that was killed
    password = secrets.token_urlsafe(16)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", TEST_USER], check=True)
    try:
        # chpasswd also unlocks the account: with UsePAM no, sshd refuses locked ones.
        subprocess.run(["chpasswd"], input=f"{TEST_USER}:{password}".encode(), check=True)
        sudoers = Path(f"/etc/sudoers.d/{TEST_USER}")
        sudoers.write_text(f"{TEST_USER} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        entry = pwd.getpwnam(TEST_USER)
        group = grp.getgrgid(entry.pw_gid).gr_name
        yield SystemUser(TEST_USER, password, entry.pw_uid, entry.pw_gid, group)
    finally:
        _remove_user(TEST_USER)


@pytest.fixture(name="agent_sock")
def agent_sock_fixture(tmp_path: Path) -> Iterator[str]:
    """A private ssh-agent's socket; the agent is killed by PID at teardown."""
    sock = str(tmp_path / "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": sock}
        # `ssh-add -l` exits 1 for "no identities" once the agent answers, 2 before.
        deadline = time.monotonic() + 10
        while subprocess.run(["ssh-add", "-l"], env=env, capture_output=True).returncode == 2:
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        yield sock
    finally:
        agent.kill()
        agent.wait()
