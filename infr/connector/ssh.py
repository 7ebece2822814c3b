"""SSH connections to hosts, on paramiko: pinned host keys, timeouts, atomic uploads.

Every command goes through `SSHConnection.run`, which quotes it (via `command.quote`),
logs it and its output to the operation log, and turns every failure into a
`RemoteError` that says what was seen. Output too large to hold (a `btrfs send`, a
`tar` of a directory) is streamed instead: `stream` hands a command's stdout over chunk
by chunk, `open_writer` feeds a command's stdin, and `pipe` joins the two across hosts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import paramiko

from infr.connector import command, sshconfig
from infr.connector.channel import (
    _CHUNK,
    _LOG_HINT,
    _TIMEOUT_HINT,
    _collect,
    _failure,
    _feed,
    _keep_tail,
    _log_output,
    _recv,
    _Timeout,
)
from infr.connector.hostkeys import _key_line, fingerprint
from infr.connector.reach import _auth_args, _cause, _connect_error, _connect_jumps, _new_client, _timeouts, _where
from infr.connector.target import DEFAULT_COMMAND_TIMEOUT, KEEPALIVE_INTERVAL, Result, Target, log
from infr.errors import RemoteError
from infr.oplog import mask


class _IntoOperationLog(logging.Handler):
    """paramiko's own messages (a transport thread's traceback when a host does not
    answer) go to the operation log, not to stderr: the error the user sees is ours."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("paramiko %s: %s", record.levelname.lower(), record.getMessage())


_paramiko_log = logging.getLogger("paramiko")


_paramiko_log.addHandler(_IntoOperationLog())


_paramiko_log.propagate = False


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
