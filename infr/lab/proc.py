"""Running commands and handling the lab's long-lived processes by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from infr.errors import LabError
from infr.oplog import get_logger

log = get_logger("lab")


def run(argv: list[str], *, log_file: Path | None = None, timeout: float | None = None,
        input_text: str | None = None) -> str:
    """Run `argv`, return its stdout; raise LabError naming the command if it fails.

    With `log_file`, stdout and stderr go to that file instead (long build steps).
    """
    log.debug("run: %s", " ".join(argv))
    try:
        if log_file is not None:
            with log_file.open("a", encoding="utf-8") as out:
                out.write(f"\n$ {' '.join(argv)}\n")
                out.flush()
                subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True,
                               timeout=timeout, input=input_text, text=True)
            return ""
        done = subprocess.run(argv, capture_output=True, check=True, timeout=timeout,
                              input=input_text, text=True)
        return done.stdout
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed",
                       "install the packages listed in .ci/lab-packages.txt") from exc
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip().splitlines()[-3:]
        where = f"see {log_file}" if log_file else " / ".join(detail) or "no output"
        raise LabError(f"`{' '.join(argv[:3])} ...` failed with exit code {exc.returncode}",
                       where) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv[:3])} ...` timed out after {timeout} s",
                       f"see {log_file}" if log_file else None) from exc


def alive(pid: int | None) -> bool:
    """True if `pid` runs and is not a zombie (a killed daemon waits for its reaper)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int | None, marker: str) -> bool:
    """True if `pid` is alive and its command line contains `marker`.

    Guards against killing an unrelated process that reused a PID from a stale state file.
    """
    return bool(pid) and alive(pid) and any(marker in arg for arg in cmdline(pid or 0))


def stop(pid: int, *, group: bool = False, grace: float = 5.0) -> None:
    """SIGTERM `pid` (or its process group), then SIGKILL after `grace` seconds."""
    send = os.killpg if group else os.kill
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            send(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if not alive(pid):
            break
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect `pid` if it is our own child, so that it leaves no zombie behind."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
