"""One command's channel: feeding stdin, collecting output within a deadline, and logging what came back."""

from __future__ import annotations

import select
import time

import paramiko

from infr.connector.target import Result, log
from infr.errors import RemoteError
from infr.oplog import mask

_CHUNK = 32768


# Output beyond this per stream is cut in the log: a `cat` of a large file or a noisy
# apt run should not swamp the operation log.
_LOG_LIMIT = 64 * 1024


_ERROR_TAIL = 800


_TIMEOUT_HINT = "the host may be overloaded or the command stuck; see the operation log"


_LOG_HINT = "full output in the operation log"


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
