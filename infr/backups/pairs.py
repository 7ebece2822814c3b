"""Backups on real hosts: start and stop a pair, and read back how fresh its backups are.

What gets installed is rendered by infr.backups.btrbk and laid out by infr.backups.desired
(which the backups feature of the plan engine shares); this module records pairs in state
and converges the two hosts over SSH (as `manager` with sudo), so running a command
again changes nothing and repairs a run that was cut off half-way.

TO holds the btrbk config, the units and its own key pair (the private key never
leaves it); FROM holds the `infr-backup` user, which TO's key can only use through the
filter. Stopping a pair archives TO's backups of FROM (Infr's way), never deletes them;
starting the pair again moves the archive back so that incrementals resume.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import replace

from infr.backups import btrbk as backups_btrbk
from infr.backups import desired, points
from infr.backups.btrbk import BackupSettings
from infr.connector import SSHConnection
from infr.engine import steps
from infr.engine.fleet import get_host, target
from infr.engine.steps import FileSpec, Runner
from infr.errors import ConflictError, InfrError, NotFoundError, RemoteError, UsageError
from infr.state.model import BACKUP_ACTIVE, BACKUP_ARCHIVED, HOST_READY, Backup, Inventory, timestamp
from infr.state.session import Session

Report = Callable[[str], None]


def settings_for(session: Session) -> BackupSettings:
    return BackupSettings.from_config({k: str(v) for k, v in session.settings().items()})


def _check_pair(inv: Inventory, from_host: str, to_host: str) -> None:
    if from_host == to_host:
        raise UsageError("a host cannot back itself up", "pick another host as TO")
    for name in (from_host, to_host):
        host = get_host(inv, name)
        if host.status != HOST_READY:
            raise ConflictError(f"host {name} is {host.status}", f"finish it first: infr hosts add --adopt {name} IP")


def record_start(session: Session, from_host: str, to_host: str) -> bool:
    """Record the pair as active; True if it was archived (its backups need moving back)."""
    with session.change() as change:
        _check_pair(change.inv, from_host, to_host)
        found = change.inv.find_backup(from_host, to_host)
        if found is not None and found.status == BACKUP_ACTIVE:
            return False  # already started: converge the hosts again, state stays
        others = [b for b in change.inv.backups if b.pair != (from_host, to_host)]
        change.set_backups([*others, Backup(from_host, to_host, BACKUP_ACTIVE, timestamp())])
        change.note(f"backup {from_host} -> {to_host} started")
        return found is not None


def record_stop(session: Session, from_host: str, to_host: str) -> None:
    with session.change() as change:
        found = _find(change.inv, from_host, to_host)
        if found.status == BACKUP_ARCHIVED:
            return  # stopped before: clean the hosts up again, state stays
        change.set_backups(_archived(change.inv, found).backups)
        change.note(f"backup {from_host} -> {to_host} stopped; its backups are archived on {to_host}")


def _find(inv: Inventory, from_host: str, to_host: str) -> Backup:
    found = inv.find_backup(from_host, to_host)
    if found is None:
        raise NotFoundError(f"no backup {from_host} -> {to_host}", "list them with 'infr backups'")
    return found


def _archived(inv: Inventory, pair: Backup) -> Inventory:
    """The inventory with `pair` archived, unsaved: what TO is set up from before state says so."""
    return replace(inv, backups=[replace(b, status=BACKUP_ARCHIVED) if b is pair else b for b in inv.backups])




def start(session: Session, from_host: str, to_host: str, report: Report) -> list[str]:
    """Start (or resume, or reactivate) backing FROM up onto TO; returns what changed."""
    with session.locked():
        _refuse_clones(session, from_host, to_host)
        reactivated = record_start(session, from_host, to_host)
        inv, settings = session.inventory(), settings_for(session)
        changes: list[str] = []
        with SSHConnection.connect(target(session, inv.hosts[to_host])) as to_conn:
            if reactivated:
                changes += unarchive(to_conn, to_host, from_host, settings)
            public_key = ensure_key_pair(to_conn, to_host, settings)
            with SSHConnection.connect(target(session, inv.hosts[from_host])) as from_conn:
                changes += _deploy_source(from_conn, to_host, public_key, settings)
                _make_dirs({from_host: from_conn, to_host: to_conn}, from_host, to_host, settings)
            changes += _deploy_target(to_conn, inv, to_host, settings)
    for line in changes:
        report(line)
    return changes


def _refuse_clones(session: Session, from_host: str, to_host: str) -> None:
    """Refuse a pair whose root filesystems came from one disk image.

    btrbk tells filesystems apart by the UUIDs of the top level and of the subvolumes;
    on clones it takes TO's filesystem for FROM's, so every run after the first full one
    fails and half-received backups go unseen.
    """
    inv = session.inventory()
    if from_host not in inv.hosts or to_host not in inv.hosts or from_host == to_host:
        return  # record_start names the problem
    uuids = {}
    for name in (from_host, to_host):
        with SSHConnection.connect(target(session, inv.hosts[name])) as conn:
            shown = [conn.run(["btrfs", "subvolume", "show", *where, "/"]).text for where in (["--rootid=5"], [])]
            uuids[name] = {uuid for uuid in map(points.root_subvolume_uuid, shown) if uuid}
    shared = sorted(uuids[from_host] & uuids[to_host])
    if shared:
        raise ConflictError(
            f"{from_host} and {to_host} share the btrfs UUID {shared[0]}: their disks were cloned from one"
            " image, and btrbk cannot tell their filesystems apart",
            f"back {from_host} up onto a host installed on its own, or reinstall one: infr hosts add NAME IP",
        )


def stop(session: Session, from_host: str, to_host: str, report: Report) -> list[str]:
    """Stop backing FROM up onto TO: TO stops pulling and archives its backups, then state
    records the pair archived, then FROM revokes TO's key; returns what changed.

    TO comes first and state only after it: a TO that cannot be reached leaves the pair
    active in state, as it is on TO. A host marked down (-D) is skipped and told; running
    the command again (the pair is archived by then) finishes it.
    """
    again = f"infr backup stop {from_host} {to_host}"
    with session.locked():
        inv, settings = session.inventory(), settings_for(session)
        pair = _find(inv, from_host, to_host)
        changes: list[str] = []
        if to_host in session.down_hosts:
            report(f"{to_host}: not updated (marked down): it still pulls {from_host} and its backups of "
                   f"{from_host} are not archived; once it is up: {again}")
        else:
            try:
                with SSHConnection.connect(target(session, inv.hosts[to_host])) as to_conn:
                    changes += _deploy_target(to_conn, _archived(inv, pair), to_host, settings)
                    changes += archive(to_conn, to_host, from_host, settings)
            except RemoteError as exc:
                still = "is still active in state" if pair.status == BACKUP_ACTIVE else "is archived in state"
                raise RemoteError(
                    f"backup {from_host} -> {to_host} {still}, {to_host} not updated: {exc.message}",
                    f"nothing was archived; run '{again}' once {to_host} is reachable,"
                    f" or if it is gone: infr -D {to_host} backup stop {from_host} {to_host}",
                ) from None
        record_stop(session, from_host, to_host)
        if from_host in session.down_hosts:
            report(f"{from_host}: not cleaned up (marked down): {to_host}'s key can still log in to it; "
                   f"once it is up: {again}")
        else:
            changes += _clean_source_of(session, from_host, to_host, settings)
    for line in changes:
        report(line)
    return changes or ([] if pair.status == BACKUP_ARCHIVED else [f"backup {from_host} -> {to_host} archived"])


def _clean_source_of(session: Session, from_host: str, to_host: str, settings: BackupSettings) -> list[str]:
    try:
        with SSHConnection.connect(target(session, session.inventory().hosts[from_host])) as from_conn:
            return _clean_source(from_conn, to_host, settings)
    except RemoteError as exc:
        raise RemoteError(
            f"backup {from_host} -> {to_host} is stopped and archived on {to_host}, but {from_host} was not"
            f" cleaned up ({to_host}'s key can still log in to it): {exc.message}",
            f"run 'infr backup stop {from_host} {to_host}' again once {from_host} is reachable",
        ) from None


def redeploy_targets(session: Session, hosts: set[str], report: Report) -> list[str]:
    """btrbk's config again on every backup host pulling from `hosts`: after a container
    was added, removed or moved, each pulls the containers state now puts on them.

    A backup host that cannot be reached is reported, not raised: the change that called
    this is done, and `infr backup start FROM TO` catches the backup host up later.
    """
    inv, settings = session.inventory(), settings_for(session)
    changes: list[str] = []
    for to_host in sorted({b.to_host for b in inv.backups if b.from_host in hosts and b.status == BACKUP_ACTIVE}):
        later = f"later: infr backup start {' / '.join(sorted(hosts))} {to_host}"
        if to_host in session.down_hosts:
            report(f"{to_host}: btrbk.conf not updated (marked down); {later}")
            continue
        try:
            with SSHConnection.connect(target(session, inv.hosts[to_host])) as conn:
                done = _deploy_target(conn, inv, to_host, settings)
        except RemoteError as exc:
            report(f"{to_host}: btrbk.conf not updated ({exc}); {later}")
            continue
        for line in done:
            report(f"{to_host}: {line}")
        changes += done
    return changes


def _make_dirs(conns: dict[str, SSHConnection], from_host: str, to_host: str, settings: BackupSettings) -> None:
    # `mkdir -p`: nothing worth reporting, and a no-op the second time.
    for cmd in backups_btrbk.setup_commands(from_host, to_host, settings):
        conns[cmd.host].run(cmd.argv)


def ensure_key_pair(conn: Runner, to_host: str, settings: BackupSettings) -> str:
    """TO's backup key, made on TO so that the private half never travels; its public half."""
    identity = settings.ssh_identity
    if conn.run(["test", "-f", identity], check=False).exit_status != 0:
        conn.run(["install", "-d", "-m", "700", "--", posixpath.dirname(identity)])
        conn.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"infr-backup@{to_host}", "-f", identity])
    return conn.run(["cat", "--", f"{identity}.pub"]).text.strip()


def _deploy_target(conn: SSHConnection, inv: Inventory, to_host: str, settings: BackupSettings) -> list[str]:
    """btrbk config, units and pinned keys for every active pair pulling onto TO; the timer."""
    specs = desired.target_files(inv, to_host, settings)
    changes = steps.ensure_packages(conn, desired.target_packages(settings))
    for spec in specs:
        changes += steps.ensure_file(conn, spec)
    changes += _remove_unused_mail_files(conn, specs, settings)
    return changes + _ensure_timers(conn, enabled=desired.pulls(inv, to_host))


def _remove_unused_mail_files(conn: SSHConnection, specs: list[FileSpec], settings: BackupSettings) -> list[str]:
    removed = []
    for path in desired.unused_mail_files(settings, specs):
        if _exists(conn, path):
            conn.run(["rm", "-f", "--", path])
            removed.append(f"removed {path}")
    return removed


def _ensure_timers(conn: SSHConnection, *, enabled: bool) -> list[str]:
    changes = []
    for unit, wanted in desired.timers(enabled=enabled):
        if _unit_state(conn, unit) != (wanted, wanted):
            conn.run(["systemctl", "enable" if wanted else "disable", "--now", unit])
            changes.append(f"{'enabled' if wanted else 'disabled'} {unit}")
    return changes


def _unit_state(conn: SSHConnection, unit: str) -> tuple[bool, bool]:
    """(enabled, active) of a unit; a unit that does not exist is neither."""
    enabled = conn.run(["systemctl", "is-enabled", "--quiet", unit], check=False).exit_status == 0
    active = conn.run(["systemctl", "is-active", "--quiet", unit], check=False).exit_status == 0
    return enabled, active


def archive_dir(from_host: str, settings: BackupSettings) -> str:
    """Where `backup stop` moves TO's backups of FROM: beside the live backups, not among them."""
    return posixpath.join(posixpath.dirname(settings.backup_dir), "archive", from_host)


def archive(conn: Runner, to_host: str, from_host: str, settings: BackupSettings) -> list[str]:
    live, archived = backups_btrbk.backup_dir(from_host, settings), archive_dir(from_host, settings)
    conn.run(["mkdir", "-p", posixpath.dirname(archived)])
    return _move(conn, to_host, live, archived)


def unarchive(conn: Runner, to_host: str, from_host: str, settings: BackupSettings) -> list[str]:
    return _move(conn, to_host, archive_dir(from_host, settings), backups_btrbk.backup_dir(from_host, settings))


def _move(conn: Runner, host: str, source: str, dest: str) -> list[str]:
    """Rename a directory of subvolumes (same filesystem: nothing is copied). Refuses to
    merge into an existing one: two sets of backups are for the admin to sort out."""
    script = 'if [ ! -e "$1" ]; then exit 3; fi; if [ -e "$2" ]; then exit 4; fi; mv -T -- "$1" "$2"'
    result = conn.run(["sh", "-c", script, "sh", source, dest], check=False)
    if result.exit_status == 3:
        return []
    if result.exit_status == 4:
        raise ConflictError(f"{host}: both {source} and {dest} exist", "move one of them aside by hand")
    if result.exit_status != 0:
        raise InfrError(f"{host}: could not move {source} to {dest}: {result.stderr.decode().strip()}")
    return [f"moved {source} to {dest}"]




def _deploy_source(conn: SSHConnection, to_host: str, public_key: str, settings: BackupSettings) -> list[str]:
    """The backup user that TO's key logs in as, its filter and sudoers."""
    changes = ensure_system_user(conn, settings)
    for spec in desired.source_files(settings):
        changes += steps.ensure_file(conn, spec)
    line = backups_btrbk.render_authorized_key(to_host, public_key, settings)
    return changes + _edit_authorized_keys(conn, to_host, line, settings)


def ensure_system_user(conn: Runner, settings: BackupSettings) -> list[str]:
    # Not steps.ensure_user: a system account in no group, whose shell must still run
    # the forced command (so not nologin).
    user = settings.ssh_user
    if conn.run(["id", "-u", "--", user], check=False).exit_status == 0:
        return []
    home = desired.home(settings)
    conn.run(["useradd", "--system", "--create-home", "--home-dir", home, "--shell", "/bin/sh", "--", user])
    return [f"created user {user}"]


def _edit_authorized_keys(conn: SSHConnection, to_host: str, line: str | None, settings: BackupSettings) -> list[str]:
    """Put TO's line in the backup user's authorized_keys (`line` None takes it out)."""
    path = desired.authorized_keys_path(settings)
    current = conn.get_file(path).decode() if _exists(conn, path) else ""
    return write_authorized_keys(conn, desired.authorized_keys_text(current, to_host, line), settings)


def write_authorized_keys(conn: Runner, text: str, settings: BackupSettings) -> list[str]:
    """The whole file, in a directory only the backup user can read (sshd's StrictModes)."""
    user, path = settings.ssh_user, desired.authorized_keys_path(settings)
    conn.run(["install", "-d", "-m", "700", "-o", user, "-g", user, "--", posixpath.dirname(path)])
    return steps.ensure_file(conn, desired.authorized_keys_spec(text, settings))


def _exists(conn: Runner, path: str) -> bool:
    return conn.run(["test", "-e", path], check=False).exit_status == 0


def _clean_source(conn: SSHConnection, to_host: str, settings: BackupSettings) -> list[str]:
    """TO's key off FROM, and the snapshots TO took (only the archive on TO stays)."""
    changes = _edit_authorized_keys(conn, to_host, None, settings)
    if _exists(conn, backups_btrbk.snapshot_dir(to_host, settings)):
        changes += delete_snapshots(conn, to_host, settings)
    return changes


def delete_snapshots(conn: Runner, to_host: str, settings: BackupSettings) -> list[str]:
    """The snapshots TO took on FROM, and their directory."""
    snapshots = backups_btrbk.snapshot_dir(to_host, settings)
    script = 'for s in "$1"/*; do if [ -e "$s" ]; then btrfs subvolume delete -- "$s"; fi; done; rmdir -- "$1"'
    conn.run(["sh", "-c", script, "sh", snapshots])
    return [f"deleted the snapshots in {snapshots}"]
