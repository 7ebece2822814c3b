"""restore-files: a path from a backup copied into a local directory."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infr.backups.btrbk import HOST_SUBVOL
from infr.backups.find import Located
from infr.connector import SSHConnection
from infr.engine import fleet
from infr.engine.fleet import get_host
from infr.errors import ConflictError, InfrError, NotFoundError, RemoteError, UsageError
from infr.restore import choose, commands
from infr.restore.choose import At
from infr.restore.container import STREAM_IDLE, WARNINGS_SHOWN, Report, _pick
from infr.state.session import Session


@dataclass(frozen=True)
class Copied:
    point: Located
    path: Path  # where PATH landed here
    size: int  # bytes of tar stream


def check_into(into: Path) -> None:
    """Restored files never overwrite anything: INTO must be new or empty."""
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise ConflictError(f"{into} exists and is not empty", "give a new or empty directory")
    if shutil.which("tar") is None:
        raise UsageError("restore-files needs tar on this machine", "install it (apt-get install tar)")


def restore_files(session: Session, host: str, path: str, at: At | None, into: Path, report: Report) -> Copied:
    """Copy PATH, as it was on `host` in a backup, to INTO/PATH on this machine."""
    relative = commands.relative_path(path)
    check_into(into)
    get_host(session.inventory(), host)
    hint = f"list them with 'infr host {host} backups'; start one with 'infr backup start {host} HOST'"
    point = _pick(session, HOST_SUBVOL, at, f"host {host}", hint, None, from_host=host)
    report(f"copying /{relative} from {point.point.name} ({choose.when(point.point.at)}) on {point.to_host}")
    with fleet.connect(session, point.to_host) as conn:
        size = copy_out(conn, point.path, relative, into, report)
    return Copied(point, into / relative, size)


def copy_out(conn: SSHConnection, point_path: str, relative: str, into: Path, report: Report) -> int:
    """tar on the backup host, streamed into tar here; returns the stream's size. What
    tar here warns about (owners and privileged xattrs, when not run as root) is reported."""
    found = conn.run(commands.check_path_argv(point_path, relative), check=False)
    if found.exit_status == commands.PATH_MISSING:
        raise NotFoundError(f"/{relative} is not in {point_path}", "pick another time with --at, or another path")
    if found.exit_status == commands.PATH_LEAVES:
        raise UsageError(
            f"a symlink on the way to /{relative} leads out of the backup", "ask for the path it points to"
        )
    if found.exit_status != 0:
        raise RemoteError(f"{conn.target.name}: cannot read {point_path}: {found.stderr.decode().strip()}")
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen(commands.tar_extract_argv(str(into)), stdin=subprocess.PIPE, stderr=errors)
        stdin = tar.stdin
        assert stdin is not None
        size, local_failed = 0, False

        def write(data: bytes) -> None:
            nonlocal size, local_failed
            try:
                stdin.write(data)
            except BrokenPipeError:
                local_failed = True
                raise
            size += len(data)

        try:
            conn.stream(commands.tar_create_argv(point_path, relative), write, idle_timeout=STREAM_IDLE)
        except (RemoteError, BrokenPipeError):
            if not local_failed:
                raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
            code = tar.wait()
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip()
        if code != 0 or local_failed:
            hint = f"{into} may be partly written"
            raise InfrError(f"tar on this machine failed (status {code}): {said[-800:] or 'no output'}", hint)
    for line in said.splitlines()[:WARNINGS_SHOWN]:  # e.g. a capability only root may set
        report(f"warning: {line}")
    return size
