"""SSH connections to hosts, on paramiko: pinned host keys, timeouts, atomic uploads.

Every command goes through `SSHConnection.run`, which quotes it (via `command.quote`),
logs it and its output to the operation log, and turns every failure into a
`RemoteError` that says what was seen. Output too large to hold (a `btrfs send`, a
`tar` of a directory) is streamed instead: `stream` hands a command's stdout over chunk
by chunk, `open_writer` feeds a command's stdin, and `pipe` joins the two across hosts.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paramiko

from infr.connector import command, sshconfig
from infr.errors import HostKeyError, RemoteError, UsageError
from infr.oplog import get_logger, mask, register_secret

DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_COMMAND_TIMEOUT = 300.0
# Below the idle timeouts of common NAT gateways and firewalls (often 60 s or more).
KEEPALIVE_INTERVAL = 15
_CHUNK = 32768
# Output beyond this per stream is cut in the log: a `cat` of a large file or a noisy
# apt run should not swamp the operation log.
_LOG_LIMIT = 64 * 1024
_ERROR_TAIL = 800
_TIMEOUT_HINT = "the host may be overloaded or the command stuck; see the operation log"
_LOG_HINT = "full output in the operation log"

log = get_logger("remote")


class _IntoOperationLog(logging.Handler):
    """paramiko's own messages (a transport thread's traceback when a host does not
    answer) go to the operation log, not to stderr: the error the user sees is ours."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("paramiko %s: %s", record.levelname.lower(), record.getMessage())


_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(_IntoOperationLog())
_paramiko_log.propagate = False


@dataclass(frozen=True)
class Result:
    """What a remote command returned."""

    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        """stdout as text."""
        return self.stdout.decode("utf-8", "replace")


@dataclass(frozen=True)
class Target:
    """How to reach one host: address, login and the host key pinned in state.

    Authentication: `password` if given (and only it: `-p` means the admin wants a
    password login); otherwise `key_file` and ~/.ssh/config's IdentityFile (or the
    default keys), and the ssh-agent. `first_login` (logging in to a server infr does
    not manage yet) lets ~/.ssh/config's User replace `user`.
    """

    name: str
    host: str
    port: int = 22
    user: str = "manager"
    key_file: Path | None = None
    password: str | None = field(default=None, repr=False)
    use_agent: bool = True
    pinned_key: str | None = None
    timeout: float = DEFAULT_CONNECT_TIMEOUT
    first_login: bool = False


def server_host_key(ip: str, port: int) -> str:
    """The key the SSH server presents ("<type> <base64>"), without logging in; "" if none."""
    try:
        with socket.create_connection((ip, port), timeout=10.0) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=10.0)
                key = transport.get_remote_server_key()
                return f"{key.get_name()} {key.get_base64()}"
            finally:
                transport.close()
    except (OSError, paramiko.SSHException, EOFError):
        return ""


def fingerprint(key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key given as "<type> <base64>"."""
    blob = base64.b64decode(key.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    return f"SHA256:{digest.rstrip('=')}"


def default_key_files(home: Path | None = None) -> list[Path]:
    """The admin's default private keys that exist, in OpenSSH's order of preference."""
    ssh_dir = (home or Path.home()) / ".ssh"
    return [p for p in (ssh_dir / "id_ed25519", ssh_dir / "id_rsa") if p.is_file()]


def _parse_key(key: str) -> paramiko.PKey:
    try:
        key_type, data = key.split()[:2]
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))
    except (ValueError, paramiko.SSHException) as e:
        raise ValueError(f"unreadable host key {key!r}: {e}") from e


def _key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def _repin_hint(name: str) -> str:
    return f"if the host was reinstalled, re-pin its key with: infr host {name} reconfigure -k"


def _auth_args(target: Target, key_files: Sequence[Path]) -> dict[str, Any]:
    if target.password is not None:
        register_secret(target.password)
        return {"password": target.password, "allow_agent": False, "look_for_keys": False}
    if target.key_file is not None and not target.key_file.is_file():
        raise UsageError(
            f"key file {target.key_file} not found",
            "pass -i with a private key (it replaces a remembered one that is gone)",
        )
    keys = list(key_files) or default_key_files()
    return {
        "key_filename": [str(k) for k in keys] or None,
        "allow_agent": target.use_agent,
        "look_for_keys": False,
    }


def _new_client(target: Target) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    if target.pinned_key is None:
        # First contact: accept what the host offers; the caller pins it.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return client
    try:
        key = _parse_key(target.pinned_key)
    except ValueError as e:
        raise HostKeyError(f"{target.name}: pinned {e}", _repin_hint(target.name)) from None
    client.get_host_keys().add(_as_known(target.host, target.port), key.get_name(), key)
    # Belt and braces: should the lookup ever miss, refuse rather than accept.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _where(target: Target) -> str:
    return f"{target.name} ({target.user}@{target.host}:{target.port})"


def _skip_hint(name: str) -> str:
    return f"if {name} is down, skip it with: infr -D {name} ..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def why_unreachable(e: BaseException, port: int, timeout: float) -> tuple[str, str]:
    """What failed when connecting, in a few words, and what to check."""
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError) and e.errors:
        e = next(iter(e.errors.values()))  # one socket error per address tried
    code = getattr(e, "errno", None)
    if isinstance(e, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return "connection refused", f"is the host up, with sshd listening on port {port}?"
    if isinstance(e, TimeoutError) or code == errno.ETIMEDOUT:
        return f"no answer within {timeout:g}s", f"is the host up? a firewall may drop port {port}"
    if code == errno.EHOSTUNREACH:
        return "no route to host", "is the host up, and its address right?"
    if code == errno.ENETUNREACH:
        return "network unreachable", "is this machine online?"
    if isinstance(e, socket.gaierror):
        return f"the address does not resolve ({e.strerror})", "check the address"
    if isinstance(e, ConnectionResetError | EOFError):
        return "the connection was closed before login", "sshd refused it: a firewall, or too many connections?"
    if isinstance(e, paramiko.SSHException):
        said = _one_line(str(e))
        # What paramiko says when the server's banner or key exchange did not come in time.
        if not said or said.startswith(("No existing session", "Error reading SSH protocol banner")):
            what = f"no SSH handshake within {timeout:g}s"
        else:
            what = f"SSH handshake failed: {said}"
        return what, f"port {port} answers, but not as an SSH server, or the host is overloaded"
    return _one_line(str(e)) or type(e).__name__, "is the host up?"


def _connect_error(target: Target, e: BaseException, via: str = "") -> RemoteError:
    where = _where(target) + via
    if isinstance(e, paramiko.BadHostKeyException):
        return HostKeyError(
            f"host key of {where} changed: pinned {fingerprint(_key_line(e.expected_key))}, "
            f"offered {fingerprint(_key_line(e.key))}; refusing to connect",
            f"{_repin_hint(target.name)}; {_skip_hint(target.name)}",
        )
    if isinstance(e, paramiko.AuthenticationException):
        return RemoteError(
            f"login to {where} refused: {_one_line(str(e))}",
            f"pass -i KEY, add the key to ssh-agent, or set IdentityFile in ~/.ssh/config; {_skip_hint(target.name)}",
        )
    what, check = why_unreachable(e, target.port, target.timeout)
    sep = " " if check.endswith("?") else "; "
    return RemoteError(f"cannot reach {where}: {what}", f"{check}{sep}{_skip_hint(target.name)}")


def _cause(client: paramiko.SSHClient, e: BaseException) -> BaseException:
    """The transport thread's own error behind a vague "No existing session", if it kept one."""
    if type(e) is not paramiko.SSHException:
        return e
    transport = client.get_transport()
    saved = getattr(transport, "saved_exception", None)
    return saved if isinstance(saved, Exception) else e


def _known_hosts(home: Path | None = None) -> paramiko.HostKeys:
    known = paramiko.HostKeys()
    path = (home or Path.home()) / ".ssh" / "known_hosts"
    with contextlib.suppress(FileNotFoundError):
        known.load(str(path))
    return known


def _as_known(host: str, port: int) -> str:
    # paramiko (like OpenSSH) looks keys up under "[host]:port" for non-standard ports.
    return host if port == 22 else f"[{host}]:{port}"


def _jump_client(hop: sshconfig.Hop, target: Target) -> paramiko.SSHClient:
    """A client for a jump host that trusts only the keys ~/.ssh/known_hosts has for it."""
    known = _known_hosts()
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    server = _as_known(hop.host, hop.port)
    for name in dict.fromkeys([_as_known(hop.name, hop.port), server]):
        for key in (known.lookup(name) or {}).values():
            client.get_host_keys().add(server, key.get_name(), key)
    if not client.get_host_keys().lookup(server):
        raise HostKeyError(
            f"jump host {hop.label} (on the way to {target.name}) is not in ~/.ssh/known_hosts",
            f"ssh to it once with OpenSSH to check and record its key; {_skip_hint(target.name)}",
        )
    return client


def _connect_jumps(target: Target, jumps: Sequence[sshconfig.Hop]) -> tuple[list[paramiko.SSHClient], Any]:
    """Log in to each jump host through the one before; returns them and a channel to the target."""
    clients: list[paramiko.SSHClient] = []
    sock: Any = None
    try:
        for i, hop in enumerate(jumps):
            client = _jump_client(hop, target)
            clients.append(client)
            via = f" via jump host {hop.label} ({hop.user}@{hop.host}:{hop.port})"
            hop_target = replace(target, host=hop.host, port=hop.port, user=hop.user, key_file=None, password=None)
            try:
                client.connect(
                    hop.host,
                    port=hop.port,
                    username=hop.user,
                    sock=sock,
                    **_timeouts(target.timeout),
                    **_auth_args(hop_target, hop.key_files),
                )
                transport = client.get_transport()
                assert transport is not None, "connect() returned without a transport"
                transport.set_keepalive(KEEPALIVE_INTERVAL)
                nxt = jumps[i + 1] if i + 1 < len(jumps) else None
                dest = (nxt.host, nxt.port) if nxt else (target.host, target.port)
                sock = transport.open_channel("direct-tcpip", dest, ("127.0.0.1", 0), timeout=target.timeout)
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise _connect_error(target, _cause(client, e), via) from None
    except BaseException:
        for client in reversed(clients):
            client.close()
        raise
    return clients, sock


def _timeouts(timeout: float) -> dict[str, Any]:
    return {"timeout": timeout, "banner_timeout": timeout, "auth_timeout": timeout, "channel_timeout": timeout}


class SSHConnection:
    """One authenticated SSH connection to a host.

    Several threads may run commands on it at once: each command gets its own channel.
    """

    def __init__(self, target: Target, client: paramiko.SSHClient, jumps: Sequence[paramiko.SSHClient] = ()) -> None:
        self.target = target
        self._client = client
        self._jumps = list(jumps)
        transport = client.get_transport()
        assert transport is not None, "connect() returned without a transport"
        self._transport = transport
        transport.set_keepalive(KEEPALIVE_INTERVAL)
        self.host_key = _key_line(transport.get_remote_server_key())
        """The key the host presented, "<type> <base64>": pin this one."""

    @classmethod
    def connect(cls, target: Target) -> SSHConnection:
        """Connect and log in, checking the host key against `target.pinned_key`.

        ~/.ssh/config applies (see `sshconfig.resolve`): its Port, User on a first
        login, IdentityFile, and ProxyJump through jump hosts known in ~/.ssh/known_hosts.
        """
        reach = sshconfig.resolve(
            sshconfig.load(),
            target.name,
            target.host,
            port=target.port,
            user=target.user,
            key_file=target.key_file,
            first_login=target.first_login,
        )
        target = replace(target, port=reach.port, user=reach.user)
        auth = _auth_args(target, reach.key_files)
        client = _new_client(target)
        log.info("connect %s%s", _where(target), "".join(f" via {hop.label}" for hop in reach.jumps))
        jumps, sock = _connect_jumps(target, reach.jumps)
        try:
            client.connect(
                target.host, port=target.port, username=target.user, sock=sock, **_timeouts(target.timeout), **auth
            )
        except BaseException as e:
            cause = _cause(client, e)
            client.close()
            for jump in reversed(jumps):
                jump.close()
            if isinstance(e, paramiko.SSHException | OSError | EOFError):
                raise _connect_error(target, cause) from None
            raise
        conn = cls(target, client, jumps)
        if target.pinned_key is None:
            log.info("%s: first contact, host key %s", target.name, conn.fingerprint)
        return conn

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint of the host key, as OpenSSH shows it."""
        return fingerprint(self.host_key)

    @property
    def alive(self) -> bool:
        return self._transport.is_active()

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = True,
        input: bytes | None = None,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
        check: bool = True,
        secret_output: bool = False,
    ) -> Result:
        """Run `argv` on the host, as root via `sudo -n` unless `sudo=False`.

        Raises RemoteError if it exits non-zero (unless `check=False`), runs longer
        than `timeout` seconds, or the connection fails. `secret_output` keeps stdout
        out of the log (e.g. reading a private key).
        """
        text = command.quote(self._as_root(argv) if sudo else argv)
        return self._run_text(text, input, timeout, check, secret_output)

    def put_file(
        self,
        path: str,
        data: bytes,
        *,
        owner: str = "root",
        group: str = "root",
        mode: int = 0o644,
        timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        """Replace `path` atomically with `data`, owned by owner:group with `mode`.

        Readers see the old file or the new one, never a partial one. The data is
        not logged (files may hold secrets), only its size.
        """
        steps = command.write_file_cmds(path, owner, group, mode, command.tmp_path_for(path))
        # One round trip: the steps are chained with && and only dd reads stdin.
        text = command.quote_chain([self._as_root(step) for step in steps])
        size, name = len(data), self.target.name
        log.info("%s: upload %d bytes to %s (%s:%s %04o)", name, size, path, owner, group, mode)
        self._run_text(text, data, timeout, check=True, secret_output=False)

    def get_file(self, path: str, *, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> bytes:
        """The contents of `path` (read as root). Not logged: files may hold secrets."""
        return self.run(command.cat(path), timeout=timeout, secret_output=True).stdout

    def stream(
        self,
        argv: Sequence[str],
        write: Callable[[bytes], object],
        *,
        sudo: bool = True,
        idle_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        check: bool = True,
    ) -> Result:
        """Run `argv` and hand its stdout to `write` as it comes, never holding it all.

        The Result carries stderr only. `idle_timeout` bounds a silence, not the whole
        run (a large `btrfs send` takes hours). An exception from `write` stops the
        command (its channel is closed) and propagates as it is.
        """
        text = command.quote(self._as_root(argv) if sudo else argv)
        name = self.target.name
        log.info("%s: $ %s (output streamed)", name, text)
        chan = self._open(text, idle_timeout)
        err, size = bytearray(), 0
        try:
            chan.shutdown_write()
            while data := _recv(chan, f"{name}: `{text}`", idle_timeout):
                write(data)
                size += len(data)
                while chan.recv_stderr_ready():
                    _keep_tail(err, chan.recv_stderr(_CHUNK))
            done = self._finish(chan, f"{name}: `{text}`", idle_timeout)
        finally:
            chan.close()
        result = Result(done.exit_status, b"", bytes(err) + done.stderr)
        log.info("%s: exit %d, %d bytes streamed", name, result.exit_status, size)
        _log_output(name, result, False)
        if check and result.exit_status != 0:
            what = f"{name}: `{text}` exited with status {result.exit_status}"
            raise _failure(what, result, False, _LOG_HINT)
        return result

    def open_writer(
        self, argv: Sequence[str], *, sudo: bool = True, idle_timeout: float = DEFAULT_COMMAND_TIMEOUT
    ) -> RemoteWriter:
        """Start `argv` with its stdin open: `write` feeds it, `finish` ends it and waits."""
        text = command.quote(self._as_root(argv) if sudo else argv)
        log.info("%s: $ %s (input streamed)", self.target.name, text)
        return RemoteWriter(self, text, self._open(text, idle_timeout), idle_timeout)

    def _open(self, text: str, timeout: float) -> paramiko.Channel:
        try:
            chan = self._transport.open_session(timeout=timeout)
            chan.settimeout(timeout)
            chan.exec_command(text)
        except (paramiko.SSHException, OSError, EOFError) as e:
            what = f"{self.target.name}: connection lost while starting `{text}`: {e or type(e).__name__}"
            raise RemoteError(mask(what)) from None
        return chan

    def _finish(self, chan: paramiko.Channel, what: str, timeout: float) -> Result:
        try:
            return _collect(chan, time.monotonic() + timeout)
        except _Timeout:
            raise RemoteError(f"{what} did not exit within {timeout:g}s of its last output", _TIMEOUT_HINT) from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise RemoteError(mask(f"{what}: connection lost: {e or type(e).__name__}")) from None

    def close(self) -> None:
        self._client.close()
        for jump in reversed(self._jumps):
            jump.close()

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _as_root(self, argv: Sequence[str]) -> list[str]:
        # Root needs no sudo, and a fresh server being adopted may not have it yet.
        return list(argv) if self.target.user == "root" else command.sudo(argv)

    def _run_text(self, text: str, input: bytes | None, timeout: float, check: bool, secret_output: bool) -> Result:
        name = self.target.name
        log.info("%s: $ %s", name, text)
        try:
            result = self._exec(text, input, timeout)
        except _Timeout as t:
            _log_output(name, t.partial, secret_output)
            what = f"{name}: `{text}` timed out after {timeout:g}s"
            raise _failure(what, t.partial, secret_output, _TIMEOUT_HINT) from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            what = f"{name}: connection lost while running `{text}`: {e or type(e).__name__}"
            raise RemoteError(mask(what)) from None
        log.info("%s: exit %d", name, result.exit_status)
        _log_output(name, result, secret_output)
        if check and result.exit_status != 0:
            what = f"{name}: `{text}` exited with status {result.exit_status}"
            raise _failure(what, result, secret_output, "full output in the operation log")
        return result

    def _exec(self, text: str, input: bytes | None, timeout: float) -> Result:
        deadline = time.monotonic() + timeout
        chan = self._transport.open_session(timeout=timeout)
        feeder = None
        try:
            chan.settimeout(timeout)
            chan.exec_command(text)
            if input is None:
                chan.shutdown_write()  # a command that reads stdin gets EOF, not a hang
            else:
                # A separate thread, so a command that writes a lot before it has read
                # all its input cannot deadlock against us.
                feeder = threading.Thread(target=_feed, args=(chan, input), daemon=True)
                feeder.start()
            return _collect(chan, deadline)
        finally:
            chan.close()
            if feeder is not None:
                feeder.join(timeout=5)


class RemoteWriter:
    """A command on a host whose stdin this side writes (SSHConnection.open_writer)."""

    def __init__(self, conn: SSHConnection, text: str, chan: paramiko.Channel, idle_timeout: float) -> None:
        self.conn = conn
        self.text = text
        self._chan = chan
        self._timeout = idle_timeout
        self._out, self._err = bytearray(), bytearray()

    @property
    def what(self) -> str:
        return f"{self.conn.target.name}: `{self.text}`"

    def write(self, data: bytes) -> None:
        """Send `data` to the command; RemoteError if it stopped reading (see `finish` for why)."""
        self._drain()  # what it says meanwhile, so that its output never blocks it
        try:
            self._chan.sendall(data)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise RemoteError(mask(f"{self.what} stopped reading its input: {e or type(e).__name__}")) from None

    def finish(self, *, check: bool = True, timeout: float | None = None) -> Result:
        """Close its stdin and wait for it to exit; its output is kept (the tail of each stream)."""
        with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
            self._chan.shutdown_write()  # fails only if it exited already: its status says how
        done = self.conn._finish(self._chan, self.what, self._timeout if timeout is None else timeout)
        self._chan.close()
        result = Result(done.exit_status, bytes(self._out) + done.stdout, bytes(self._err) + done.stderr)
        name = self.conn.target.name
        log.info("%s: exit %d", name, result.exit_status)
        _log_output(name, result, False)
        if check and result.exit_status != 0:
            raise _failure(f"{self.what} exited with status {result.exit_status}", result, False, _LOG_HINT)
        return result

    def close(self) -> None:
        self._chan.close()

    def __enter__(self) -> RemoteWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _drain(self) -> None:
        while self._chan.recv_ready():
            _keep_tail(self._out, self._chan.recv(_CHUNK))
        while self._chan.recv_stderr_ready():
            _keep_tail(self._err, self._chan.recv_stderr(_CHUNK))


def pipe(
    source: SSHConnection,
    send_argv: Sequence[str],
    sink: SSHConnection,
    receive_argv: Sequence[str],
    *,
    idle_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    progress: Callable[[int], object] | None = None,
) -> int:
    """`send_argv` on `source` piped into `receive_argv` on `sink`, through this machine
    (the hosts need no way into each other); returns the bytes moved.

    Either side failing fails the pipe with a RemoteError that names the side that
    failed first: the sender when it exited non-zero (the receiver then only saw a cut
    stream), else the receiver.
    """
    moved, receiver_quit = 0, False

    def forward(data: bytes) -> None:
        nonlocal moved, receiver_quit
        try:
            writer.write(data)
        except RemoteError:
            receiver_quit = True
            raise
        moved += len(data)
        if progress is not None:
            progress(moved)

    with sink.open_writer(receive_argv, idle_timeout=idle_timeout) as writer:
        try:
            sent = source.stream(send_argv, forward, idle_timeout=idle_timeout, check=False)
        except RemoteError:
            if not receiver_quit:
                raise  # the sender's side failed; closing the writer cuts the receiver off
            received = writer.finish(check=False, timeout=30)
            what = f"{writer.what} exited with status {received.exit_status}"
            raise _failure(what, received, False, _LOG_HINT) from None
        received = writer.finish(check=False)
    if sent.exit_status != 0:
        what = f"{source.target.name}: `{command.quote(send_argv)}` exited with status {sent.exit_status}"
        raise _failure(what, sent, False, _LOG_HINT)
    if received.exit_status != 0:
        raise _failure(f"{writer.what} exited with status {received.exit_status}", received, False, _LOG_HINT)
    return moved


class ConnectionPool:
    """At most one open connection per host name, shared by everything one command does.

    Thread-safe: parallel workers asking for the same host wait for one connect.
    """

    def __init__(self) -> None:
        self._conns: dict[str, SSHConnection] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, target: Target) -> SSHConnection:
        """The open connection to `target.name`, connecting (again) if there is none."""
        with self._guard:
            lock = self._locks.setdefault(target.name, threading.Lock())
        with lock:
            conn = self._conns.get(target.name)
            if conn is None or not conn.alive:
                if conn is not None:
                    conn.close()
                conn = self._conns[target.name] = SSHConnection.connect(target)
            return conn

    def close(self) -> None:
        with self._guard:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()

    def __enter__(self) -> ConnectionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Timeout(Exception):
    def __init__(self, partial: Result) -> None:
        super().__init__("timeout")
        self.partial = partial


def _feed(chan: paramiko.Channel, data: bytes) -> None:
    try:
        chan.sendall(data)
        chan.shutdown_write()
    except OSError:
        pass  # the command exited without reading everything; its exit status tells why


def _recv(chan: paramiko.Channel, what: str, timeout: float) -> bytes:
    """The next chunk of stdout; b"" at its end."""
    try:
        return bytes(chan.recv(_CHUNK))
    except TimeoutError:  # socket.timeout
        raise RemoteError(f"{what} sent nothing for {timeout:g}s", _TIMEOUT_HINT) from None
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise RemoteError(mask(f"{what}: connection lost: {e or type(e).__name__}")) from None


def _keep_tail(buffer: bytearray, data: bytes) -> None:
    """Append, keeping only the last _LOG_LIMIT bytes: a streamed command may talk a lot."""
    buffer += data
    if len(buffer) > _LOG_LIMIT:
        del buffer[: len(buffer) - _LOG_LIMIT]


def _drain(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
    while chan.recv_ready():
        out += chan.recv(_CHUNK)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(_CHUNK)


def _collect(chan: paramiko.Channel, deadline: float) -> Result:
    """Read stdout and stderr until the command exits, or raise _Timeout at `deadline`."""
    out, err = bytearray(), bytearray()
    while True:
        _drain(chan, out, err)
        if chan.eof_received and chan.exit_status_ready():
            _drain(chan, out, err)  # data that arrived between the drain and the EOF
            return Result(chan.recv_exit_status(), bytes(out), bytes(err))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout(Result(-1, bytes(out), bytes(err)))
        if chan.eof_received:
            chan.status_event.wait(remaining)  # output is done; only the exit status is due
        else:
            # The channel's fileno becomes readable when stdout or stderr has data.
            select.select([chan], [], [], remaining)


def _clip(data: bytes, limit: int) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else f"...({len(text) - limit} chars cut){text[-limit:]}"


def _failure(what: str, result: Result, secret_output: bool, hint: str) -> RemoteError:
    """A RemoteError that shows the tail of what the command printed, secrets masked."""
    shown = (result.stderr or (b"" if secret_output else result.stdout)).strip()
    seen = f": {_clip(shown, _ERROR_TAIL)}" if shown else " (no output)"
    return RemoteError(mask(what + seen), hint)


def _log_output(name: str, result: Result, secret_output: bool) -> None:
    if secret_output and result.stdout:
        log.debug("%s: stdout: %d bytes, not logged", name, len(result.stdout))
    elif result.stdout:
        log.debug("%s: stdout:\n%s", name, _clip(result.stdout, _LOG_LIMIT))
    if result.stderr:
        log.debug("%s: stderr:\n%s", name, _clip(result.stderr, _LOG_LIMIT))
