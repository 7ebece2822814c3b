"""Restores on real hosts: list restore points, bring a container back (onto its own
host or another), copy files out of a host backup, and rehearse a restore (drill).

The commands come from infr.restore.choose; this module reads state, connects (as
`manager`, with sudo) and runs them in an order where a failure leaves what runs
alone. Backups stream from the backup host to the target through this machine
(connector.pipe): the admin's logins reach every host, while no host may log in to
another (the backup host's key only reaches FROM's `infr-backup` filter, which refuses
`btrfs receive`). It costs the admin's bandwidth twice; a same-host restore copies
nothing (a snapshot).
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infr.backups import btrbk as backups_btrbk
from infr.backups import pairs
from infr.backups.btrbk import HOST_SUBVOL, RestorePoint
from infr.connector import SSHConnection
from infr.connector.ssh import pipe
from infr.engine import fleet
from infr.engine.fleet import get_host, get_lxc, target
from infr.errors import ConflictError, InfrError, NotFoundError, RemoteError, UsageError
from infr.lxcs import containers
from infr.restore import choose
from infr.restore.choose import LXC_ROOT, RUNNING, At, DrillCheck, Located, LxcPaths
from infr.state.model import BACKUP_ACTIVE, HOST_READY
from infr.state.session import Session

Report = Callable[[str], None]
STREAM_IDLE = 600.0  # seconds a stream may stall (btrfs reading a large extent, a busy disk)
PROGRESS_EVERY = 15.0  # seconds between "N MiB received" lines
UNREACHABLE = "unreachable"
LEFTOVER = "LEFTOVER"  # a directory of that name, but no container LXC knows
MIB = 1024 * 1024
WARNINGS_SHOWN = 10


# --- restore points -----------------------------------------------------------------------


def _pick(
    session: Session, subvol: str, at: At | None, what: str, hint: str, prefer: str | None, from_host: str | None = None
) -> Located:
    found = pairs.find_points(session, from_host=from_host, subvol=subvol)
    if not found.points and found.skipped:
        hint = f"backup host(s) {', '.join(found.skipped)} skipped (-D)"
    return choose.choose(found.points, subvol, at, what, hint, prefer)


# --- container restore -----------------------------------------------------------------------


@dataclass(frozen=True)
class LxcPlan:
    """What `lxc NAME restore` will do, as read from state and the hosts."""

    name: str
    point: Located
    target: str  # the host it will run on
    current: str  # its host in state now
    on_target: str  # lxc-info's state of a container of that name on target ("" if none)
    old_copy: str = ""  # when moving: its state on the current host, "" or UNREACHABLE

    @property
    def moving(self) -> bool:
        return self.target != self.current

    @property
    def replaces(self) -> bool:
        """Whether a container gets destroyed (which the admin confirms)."""
        return bool(self.on_target) or self.old_copy not in ("", UNREACHABLE)

    def lines(self, now: datetime) -> list[str]:
        p = self.point
        age = choose.age_text(now - p.point.at)
        out = [f"restore {p.point.name} ({choose.when(p.point.at)}, {age} ago) from {p.to_host}:{p.path}"]
        where = f"onto {self.target}" + (f", moving it from {self.current}" if self.moving else "")
        copy = "snapshot it there" if p.to_host == self.target else f"stream it from {p.to_host} through this machine"
        out.append(f"{where}: {copy}, while the current container keeps running")
        if self.on_target == LEFTOVER:
            out.append(f"then put it in place of {LXC_ROOT}/{self.name} on {self.target} (left over, not a container)")
            out.append(" and start it; the leftover is deleted once the restored one runs")
        elif self.on_target:
            out.append(f"then stop {self.name} on {self.target} ({self.on_target.lower()}), swap it for the restored")
            out.append(" one and start that; the replaced one is destroyed once the restored one runs")
        else:
            out.append(f"then start it on {self.target} (no {self.name} there now)")
        if self.moving:
            out.append(f"state: {self.name}'s host becomes {self.target}; HAProxy on {self.current} and {self.target},")
            out.append(" the private network's routes and the backup hosts' btrbk.conf follow")
            if self.old_copy == UNREACHABLE:
                out.append(f"{self.current} is not reachable: its copy of {self.name} is left there")
            elif self.old_copy:
                out.append(f"{self.name} on {self.current} ({self.old_copy.lower()}) is destroyed at the end")
        return out


def plan_lxc(session: Session, name: str, at: At | None, to: str | None) -> LxcPlan:
    """Read state and the hosts; change nothing."""
    inv = session.inventory()
    lxc = get_lxc(inv, name)
    dest = to or lxc.host
    host = get_host(inv, dest)
    if host.status != HOST_READY:
        raise ConflictError(f"host {dest} is {host.status}", f"finish it first: infr hosts add --adopt {dest} IP")
    if dest in session.down_hosts:
        raise UsageError(f"host {dest} is marked down (-D)", "restore onto a host that is up")
    hint = f"list them with 'infr lxc {name} backups'; back {lxc.host} up with 'infr backup start {lxc.host} HOST'"
    point = _pick(session, backups_btrbk.lxc_subvol(name), at, f"LXC {name}", hint, dest)
    with fleet.connect(session, dest) as conn:
        _check_no_leftover(conn, LxcPaths(name))
        on_target = _on_host(conn, LxcPaths(name))
    old_copy = ""
    if dest != lxc.host:
        old_copy = _state_on(session, lxc.host, name)
    return LxcPlan(name, point, dest, lxc.host, on_target, old_copy)


def _state_on(session: Session, host: str, name: str) -> str:
    if host in session.down_hosts:
        return UNREACHABLE
    try:
        with SSHConnection.connect(target(session, session.inventory().hosts[host])) as conn:
            return _lxc_state(conn, name)
    except RemoteError:
        return UNREACHABLE


def _lxc_state(conn: SSHConnection, name: str) -> str:
    result = conn.run(choose.lxc_state_argv(name), check=False)
    return result.text.strip() if result.exit_status == 0 else ""


def _on_host(conn: SSHConnection, paths: LxcPaths) -> str:
    """The container's state; LEFTOVER for a directory LXC does not take for a container."""
    state = _lxc_state(conn, paths.name)
    if state or conn.run(["test", "-e", paths.container], check=False).exit_status != 0:
        return state
    return LEFTOVER


def _check_no_leftover(conn: SSHConnection, paths: LxcPaths) -> None:
    if conn.run(["test", "-e", paths.old], check=False).exit_status == 0:
        raise ConflictError(
            f"{conn.target.name}: {paths.old} is left from an earlier restore (the container it replaced)",
            f"look at it, then delete it: infr host {conn.target.name} ssh -- sudo sh -c "
            f"'btrfs subvolume delete {paths.old}/rootfs && rm -rf {paths.old}'",
        )


def apply_lxc(session: Session, plan: LxcPlan, report: Report) -> list[str]:
    """Carry the plan out: restore on the target and, when moving, record the move.
    Returns what changed. What the move touches besides (routing, the mesh, backups,
    the old copy, the inside) is infr.followups.restore_lxc's to do."""
    with session.locked():
        inv = session.inventory()
        lxc = get_lxc(inv, plan.name)
        if lxc.host != plan.current:
            raise ConflictError(f"{plan.name} moved to {lxc.host} meanwhile", "run the restore again")
        host = inv.hosts[plan.target]
        config = containers.container_config(replace(lxc, host=plan.target), host, session.settings())
        with fleet.connect(session, plan.target) as dest:
            if plan.point.to_host == plan.target:
                changes = restore_container(dest, dest, plan.point.path, plan.name, config, report)
            else:
                with fleet.connect(session, plan.point.to_host) as source:
                    changes = restore_container(source, dest, plan.point.path, plan.name, config, report)
        if plan.moving:
            changes += record_move(session, plan, report)
    return changes


def restore_container(
    source: SSHConnection,
    dest: SSHConnection,
    point_path: str,
    name: str,
    config: bytes,
    report: Report,
    paths: LxcPaths | None = None,
) -> list[str]:
    """On the hosts themselves: the backup at `point_path` on `source` becomes container
    `name` on `dest` (the same connection: a snapshot, no copy), running; the one it
    replaces is deleted only once the restored one runs."""
    paths = paths or LxcPaths(name)
    _check_no_leftover(dest, paths)
    _stage(source, dest, point_path, paths, config, report)
    was = _on_host(dest, paths)
    if was == RUNNING:
        report(f"stopping {name} on {dest.target.name}")
        dest.run(choose.stop_argv(name), timeout=180)
    dest.run(choose.swap_in_argv(paths))
    try:
        dest.run(choose.start_argv(name))
        dest.run(choose.wait_running_argv(name), timeout=90)
    except RemoteError as e:
        raise _rolled_back(dest, paths, name, was, e) from None
    changes = [f"restored {name} on {dest.target.name} from {posixpath.basename(point_path)}"]
    report(f"{name} runs on {dest.target.name}, restored from {posixpath.basename(point_path)}")
    if was and dest.run(choose.clear_argv(paths.old), check=False).exit_status != 0:
        report(f"warning: could not delete the replaced container in {paths.old}: delete it by hand")
    return changes


def _stage(
    source: SSHConnection, dest: SSHConnection, point_path: str, paths: LxcPaths, config: bytes, report: Report
) -> None:
    dest.run(choose.clear_argv(paths.staged))  # a restore cut off before: only a copy of a backup
    dest.run(choose.make_dirs_argv(paths))
    rootfs = posixpath.join(paths.staged, "rootfs")
    if source is dest:
        dest.run(choose.snapshot_argv(point_path, rootfs))
    else:
        report(f"receiving {posixpath.basename(point_path)} from {source.target.name}")
        started = time.monotonic()
        size = pipe(
            source,
            choose.send_argv(point_path),
            dest,
            choose.receive_argv(paths.staged),
            idle_timeout=STREAM_IDLE,
            progress=_progress(report),
        )
        report(f"received {size / MIB:.1f} MiB in {time.monotonic() - started:.0f}s")
        received = posixpath.join(paths.staged, posixpath.basename(point_path))
        dest.run(choose.snapshot_argv(received, rootfs))
        dest.run(choose.delete_subvolume_argv(received))
    dest.put_file(posixpath.join(paths.staged, "config"), config)
    dest.run(choose.mark_argv(paths, containers.CREATED_MARK))


def _progress(report: Report) -> Callable[[int], None]:
    last = time.monotonic()

    def tell(moved: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY:
            last = time.monotonic()
            report(f"{moved / MIB:.0f} MiB received")

    return tell


def _rolled_back(dest: SSHConnection, paths: LxcPaths, name: str, was: str, error: RemoteError) -> RemoteError:
    """Put the replaced container back after the restored one failed to start."""
    where = dest.target.name
    dest.run(choose.stop_argv(name, kill=True), check=False)
    back = dest.run(choose.swap_back_argv(paths), check=False)
    if back.exit_status != 0:
        return RemoteError(
            f"{where}: the restored {name} did not start ({error.message}), and the old one could not be moved back",
            f"it is in {paths.old}; see the operation log",
        )
    again = ""
    if was == RUNNING:
        started = dest.run(choose.start_argv(name), check=False)
        again = " and running" if started.exit_status == 0 else " but did not start again"
    old = f"the container it replaced is back{again}" if was else "nothing replaced it"
    return RemoteError(
        f"{where}: the restored {name} did not start: {error.message}; {old}",
        f"the restored copy is kept in {paths.staged} to look at",
    )


def record_move(session: Session, plan: LxcPlan, report: Report) -> list[str]:
    """State says the container now runs on plan.target."""
    with session.change() as change:
        lxc = change.inv.lxcs[plan.name]
        change.put_lxc(replace(lxc, host=plan.target))
        change.note(f"LXC {plan.name} moved from {plan.current} to {plan.target}")
    report(change.notes[0])
    return list(change.notes)


def reachable_hosts(plan: LxcPlan) -> set[str]:
    """The hosts a move touches that answered when it was planned."""
    return {plan.target} | ({plan.current} if plan.old_copy != UNREACHABLE else set())


def leave_old_host(session: Session, plan: LxcPlan, report: Report) -> list[str]:
    """After a move: warnings, then the old copy destroyed (or how to destroy it)."""
    changes: list[str] = []
    inv = session.inventory()
    if not any(b.from_host == plan.target and b.status == BACKUP_ACTIVE for b in inv.backups):
        report(f"warning: {plan.target} is not backed up, nor is {plan.name}: infr backup start {plan.target} HOST")
    if plan.old_copy == UNREACHABLE:
        report(
            f"warning: {plan.current} was not reached: when it is back, run 'infr host {plan.current} reconfigure' "
            f"and destroy its old {plan.name} before it starts: "
            f"infr host {plan.current} ssh -- sudo lxc-destroy -n {plan.name} -f"
        )
    elif plan.old_copy:

        def destroy() -> list[str]:
            with fleet.connect(session, plan.current) as conn:
                conn.run(choose.destroy_argv(plan.name), timeout=180)
            report(f"destroyed the old {plan.name} on {plan.current}")
            return [f"destroyed the old {plan.name} on {plan.current}"]

        hint = f"infr host {plan.current} ssh -- sudo lxc-destroy -n {plan.name} -f"
        changes += after_restore(plan, hint, destroy)
    return changes


def after_restore(plan: LxcPlan, hint: str, step: Callable[[], list[str]]) -> list[str]:
    """A step after the restore itself: its failure must not hide that the restore worked."""
    try:
        return step()
    except InfrError as e:
        done = f"{plan.name} is restored and runs on {plan.target}, state says so"
        raise InfrError(f"{done}, but then: {e.message}", f"finish with: {hint}") from None


# --- files out of a host backup --------------------------------------------------------------


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
    relative = choose.relative_path(path)
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
    found = conn.run(choose.check_path_argv(point_path, relative), check=False)
    if found.exit_status == choose.PATH_MISSING:
        raise NotFoundError(f"/{relative} is not in {point_path}", "pick another time with --at, or another path")
    if found.exit_status == choose.PATH_LEAVES:
        raise UsageError(
            f"a symlink on the way to /{relative} leads out of the backup", "ask for the path it points to"
        )
    if found.exit_status != 0:
        raise RemoteError(f"{conn.target.name}: cannot read {point_path}: {found.stderr.decode().strip()}")
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen(choose.tar_extract_argv(str(into)), stdin=subprocess.PIPE, stderr=errors)
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
            conn.stream(choose.tar_create_argv(point_path, relative), write, idle_timeout=STREAM_IDLE)
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


# --- drill -------------------------------------------------------------------------------------


def drill(
    session: Session, from_host: str, to_host: str, report: Report, now: datetime | None = None
) -> list[DrillCheck]:
    """Restore the newest backup of FROM's root and of each of its containers into a
    scratch directory on TO, look inside, delete it; one DrillCheck per subvolume."""
    inv, settings = session.inventory(), pairs.settings_for(session)
    pair = inv.find_backup(from_host, to_host)
    if pair is None:
        raise NotFoundError(f"no backup {from_host} -> {to_host}", "list them with 'infr backups'")
    if pair.status != BACKUP_ACTIVE:
        raise ConflictError(f"backup {from_host} -> {to_host} is {pair.status}", "drill an active pair")
    expected = [HOST_SUBVOL, *sorted(backups_btrbk.lxc_subvol(c.name) for c in inv.lxcs_on(from_host))]
    directory = backups_btrbk.backup_dir(from_host, settings)
    moment = now or datetime.now(UTC)
    with fleet.connect(session, to_host) as conn:
        points = pairs.read_points(conn, directory)
        scratch = choose.drill_dir(from_host, settings)
        return drill_on(conn, points, directory, expected, scratch, moment, pairs.max_age(session), report)


def drill_on(
    conn: SSHConnection,
    points: list[RestorePoint],
    directory: str,
    expected: list[str],
    scratch: str,
    now: datetime,
    max_age: timedelta,
    report: Report,
) -> list[DrillCheck]:
    """On the backup host: each expected subvolume's newest backup as a writable
    snapshot in `scratch`, checked, deleted. The scratch goes whatever happens."""
    newest = backups_btrbk.newest_by_subvol(points)
    conn.run(choose.clear_argv(scratch))  # a drill cut off before
    conn.run(["install", "-d", "-m", "700", "--", scratch])
    checks = []
    try:
        for subvol in expected:
            point = newest.get(subvol)
            started = time.monotonic()
            figures: dict[str, str] = {}
            if point is not None:
                report(f"{subvol}: checking {point.name}")
                copy = posixpath.join(scratch, point.name)
                conn.run(choose.snapshot_argv(posixpath.join(directory, point.name), copy))
                figures = choose.parse_drill(conn.run(choose.drill_check_argv(copy), timeout=1800).text)
                conn.run(choose.delete_subvolume_argv(copy))
            checks.append(choose.judge(subvol, point, figures, now, max_age, time.monotonic() - started))
    finally:
        conn.run(choose.clear_argv(scratch), check=False)
    return checks
