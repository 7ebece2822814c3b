"""Restores on real hosts: list restore points, bring a container back (onto its own
host or another), copy files out of a host backup, and rehearse a restore (drill).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from infr.backups import btrbk, find
from infr.backups.find import Located
from infr.connector import SSHConnection
from infr.connector.ssh import pipe
from infr.engine import fleet
from infr.engine.fleet import get_host, get_lxc, target
from infr.errors import ConflictError, InfrError, RemoteError, UsageError
from infr.lxcs import desired
from infr.restore import choose
from infr.restore import commands as restore_commands
from infr.restore.choose import RUNNING, At
from infr.restore.commands import LXC_ROOT, LxcPaths
from infr.state.model import BACKUP_ACTIVE, HOST_READY
from infr.state.session import Session

Report = Callable[[str], None]


STREAM_IDLE = 600.0  # seconds a stream may stall (btrfs reading a large extent, a busy disk)


PROGRESS_EVERY = 15.0  # seconds between "N MiB received" lines


UNREACHABLE = "unreachable"


LEFTOVER = "LEFTOVER"  # a directory of that name, but no container LXC knows


MIB = 1024 * 1024


WARNINGS_SHOWN = 10


def _pick(
    session: Session, subvol: str, at: At | None, what: str, hint: str, prefer: str | None, from_host: str | None = None
) -> Located:
    found = find.find_points(session, from_host=from_host, subvol=subvol)
    if not found.points and found.skipped:
        hint = f"backup host(s) {', '.join(found.skipped)} skipped (-D)"
    return choose.choose(found.points, subvol, at, what, hint, prefer)


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
    point = _pick(session, btrbk.lxc_subvol(name), at, f"LXC {name}", hint, dest)
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
    result = conn.run(restore_commands.lxc_state_argv(name), check=False)
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
        config = desired.container_config(replace(lxc, host=plan.target), host, session.settings())
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
        dest.run(restore_commands.stop_argv(name), timeout=180)
    dest.run(restore_commands.swap_in_argv(paths))
    try:
        dest.run(restore_commands.start_argv(name))
        dest.run(restore_commands.wait_running_argv(name), timeout=90)
    except RemoteError as e:
        raise _rolled_back(dest, paths, name, was, e) from None
    changes = [f"restored {name} on {dest.target.name} from {posixpath.basename(point_path)}"]
    report(f"{name} runs on {dest.target.name}, restored from {posixpath.basename(point_path)}")
    if was and dest.run(restore_commands.clear_argv(paths.old), check=False).exit_status != 0:
        report(f"warning: could not delete the replaced container in {paths.old}: delete it by hand")
    return changes


def _stage(
    source: SSHConnection, dest: SSHConnection, point_path: str, paths: LxcPaths, config: bytes, report: Report
) -> None:
    dest.run(restore_commands.clear_argv(paths.staged))  # a restore cut off before: only a copy of a backup
    dest.run(restore_commands.make_dirs_argv(paths))
    rootfs = posixpath.join(paths.staged, "rootfs")
    if source is dest:
        dest.run(restore_commands.snapshot_argv(point_path, rootfs))
    else:
        report(f"receiving {posixpath.basename(point_path)} from {source.target.name}")
        started = time.monotonic()
        size = pipe(
            source,
            restore_commands.send_argv(point_path),
            dest,
            restore_commands.receive_argv(paths.staged),
            idle_timeout=STREAM_IDLE,
            progress=_progress(report),
        )
        report(f"received {size / MIB:.1f} MiB in {time.monotonic() - started:.0f}s")
        received = posixpath.join(paths.staged, posixpath.basename(point_path))
        dest.run(restore_commands.snapshot_argv(received, rootfs))
        dest.run(restore_commands.delete_subvolume_argv(received))
    dest.put_file(posixpath.join(paths.staged, "config"), config)
    dest.run(restore_commands.mark_argv(paths, desired.CREATED_MARK))


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
    dest.run(restore_commands.stop_argv(name, kill=True), check=False)
    back = dest.run(restore_commands.swap_back_argv(paths), check=False)
    if back.exit_status != 0:
        return RemoteError(
            f"{where}: the restored {name} did not start ({error.message}), and the old one could not be moved back",
            f"it is in {paths.old}; see the operation log",
        )
    again = ""
    if was == RUNNING:
        started = dest.run(restore_commands.start_argv(name), check=False)
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
                conn.run(restore_commands.destroy_argv(plan.name), timeout=180)
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
