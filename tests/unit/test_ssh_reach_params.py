"""Building how to reach a host: ~/.ssh/config, the remembered identity, -i, and why a connect failed."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import paramiko
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infr import userconfig
from infr.cli.main import choose_identity
from infr.connector.reach import _connect_error, why_unreachable
from infr.connector.sshconfig import Hop, resolve
from infr.connector.target import Target
from infr.errors import StateError, UsageError

ports = st.integers(min_value=1, max_value=65535)
users = st.from_regex(r"[a-z_][a-z0-9_-]{0,15}", fullmatch=True)


def config(text: str) -> paramiko.SSHConfig:
    return paramiko.SSHConfig.from_text(text)


def reach(cfg: paramiko.SSHConfig, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"port": 22, "user": "manager", "key_file": None, "first_login": False, **kw}
    return resolve(cfg, "bob", "203.0.113.10", **args)  # type: ignore[arg-type]


@given(port=ports, user=users)
def test_config_port_applies_by_address_or_name_and_user_only_on_a_first_login(port: int, user: str) -> None:
    for pattern in ("203.0.113.10", "bob", "203.0.113.*"):
        cfg = config(f"Host {pattern}\n  Port {port}\n  User {user}\n")
        assert (reach(cfg).port, reach(cfg).user) == (port, "manager")
        assert reach(cfg, user="root", first_login=True).user == user
        # A port infr recorded (not the default 22) is infr's own.
        assert reach(cfg, port=2202).port == 2202


def test_first_value_wins_address_block_before_name_block() -> None:
    cfg = config("Host 203.0.113.10\n  Port 2001\nHost bob\n  Port 2002\n  User admin\n")
    assert (reach(cfg, user="root", first_login=True).port, reach(cfg, first_login=True).user) == (2001, "admin")


def test_no_config_changes_nothing() -> None:
    r = reach(config(""), port=22)
    assert (r.port, r.user, r.key_files, r.jumps) == (22, "manager", (), ())


def test_identity_order_given_key_first_then_identityfile_missing_ones_skipped(tmp_path: Path) -> None:
    given_key, listed, missing = tmp_path / "given", tmp_path / "listed", tmp_path / "missing"
    given_key.write_text("k")
    listed.write_text("k")
    cfg = config(f"Host bob\n  IdentityFile {listed}\n  IdentityFile {missing}\n  IdentityFile {given_key}\n")
    assert reach(cfg, key_file=given_key).key_files == (given_key, listed)
    assert reach(cfg).key_files == (listed, given_key)


@given(port=ports, user=users)
def test_proxyjump_hops_take_their_own_block(port: int, user: str) -> None:
    cfg = config(
        f"Host bob\n  ProxyJump bastion,{user}@198.51.100.9:{port}\n"
        f"Host bastion\n  HostName 198.51.100.7\n  Port 2200\n  User jumper\n"
    )
    first, second = reach(cfg).jumps
    assert first == Hop("bastion", "bastion", "198.51.100.7", 2200, "jumper", ())
    assert (second.host, second.port, second.user) == ("198.51.100.9", port, user)
    assert reach(config("Host bob\n  ProxyJump none\n")).jumps == ()


def test_bad_port_in_config_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="Port 'ssh' for bob is not a port number"):
        reach(config("Host bob\n  Port ssh\n"))


REASONS = [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection refused"),
    (
        paramiko.ssh_exception.NoValidConnectionsError(
            {("127.0.0.1", 1): ConnectionRefusedError(errno.ECONNREFUSED, "x")}
        ),
        "connection refused",
    ),
    (TimeoutError(), "no answer within 15s"),
    (OSError(errno.EHOSTUNREACH, "x"), "no route to host"),
    (OSError(errno.ENETUNREACH, "x"), "network unreachable"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "the address does not resolve"),
    (EOFError(), "the connection was closed before login"),
    (paramiko.SSHException("No existing session"), "no SSH handshake within 15s"),
    (paramiko.SSHException("Error reading SSH protocol banner[Errno 104] reset"), "no SSH handshake within 15s"),
    (paramiko.SSHException("Incompatible version (1.5 instead of 2.0)"), "SSH handshake failed: Incompatible version"),
]


@pytest.mark.parametrize(("error", "said"), REASONS)
def test_every_connect_failure_is_one_line_naming_host_reason_and_skip(error: BaseException, said: str) -> None:
    assert why_unreachable(error, 22, 15.0)[0].startswith(said)
    message = str(_connect_error(Target("bob", "203.0.113.10"), error))
    assert message.startswith(f"cannot reach bob (manager@203.0.113.10:22): {said}")
    assert message.endswith("if bob is down, skip it with: infr -D bob ...)")
    assert "\n" not in message


@given(st.text())
def test_a_paramiko_message_never_makes_a_second_line(text: str) -> None:
    for error in (paramiko.SSHException(text), paramiko.AuthenticationException(text), OSError(text)):
        assert "\n" not in str(_connect_error(Target("bob", "203.0.113.10"), error))


def test_the_first_i_is_remembered_later_ones_are_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("k")
    second.write_text("k")
    assert choose_identity(None, remember=False) is None
    assert choose_identity(str(first), remember=False) == str(first)
    assert f"remembered {first}" in capsys.readouterr().err
    assert userconfig.config_file().stat().st_mode & 0o777 == 0o600
    assert choose_identity(None, remember=False) == str(first)
    assert choose_identity(str(second), remember=False) == str(second)  # a one-off
    assert choose_identity(None, remember=False) == str(first)
    assert choose_identity(str(second), remember=True) == str(second)  # `infr -i KEY init`
    assert choose_identity(None, remember=False) == str(second)
    second.unlink()
    assert choose_identity(str(first), remember=False) == str(first)  # the remembered one is gone
    assert choose_identity(None, remember=False) == str(first)


def test_a_missing_key_is_not_remembered(tmp_path: Path) -> None:
    choose_identity(str(tmp_path / "nope"), remember=False)
    assert not userconfig.config_file().exists()


@pytest.mark.parametrize("text", ["identity = 3\n", "identity = [\n", 'identity = "a\\nb"\n', b"\xff"])
def test_a_broken_user_config_names_the_file(text: str | bytes) -> None:
    path = userconfig.config_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(StateError, match=str(path)):
        choose_identity(None, remember=False)


def test_host_ssh_has_a_connect_timeout_the_pinned_key_and_the_ssh_config(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infr.hosts.ssh import ssh_argv
    from infr.state.session import Session
    from tests.conftest import seed_host

    home, key = tmp_path / "home", tmp_path / "work_key"
    (home / ".ssh").mkdir(parents=True)
    key.write_text("k")
    (home / ".ssh" / "config").write_text("Host bob\n  Port 2200\n  ProxyJump bastion\n")
    monkeypatch.setenv("HOME", str(home))
    pinned = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    seed_host(state_dir, "bob", "203.0.113.10", host_key=pinned)
    argv = ssh_argv(Session(state_dir, identity_file=str(key)), "bob", ["uptime"])
    joined = " ".join(argv)
    assert "-o ConnectTimeout=15" in joined and "-o StrictHostKeyChecking=yes" in joined
    assert "-o HostKeyAlias=infr-bob" in joined
    assert (state_dir / ".cache" / "known_hosts").read_text() == f"infr-bob {pinned}\n"
    assert "-p 2200 " in joined and f"-i {key} " in joined and "-J bastion " in joined
    assert argv[-3:] == ["manager@203.0.113.10", "--", "uptime"]
