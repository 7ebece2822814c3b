"""LXCs on their hosts: add, remove, start, stop, restart, ssh, and applying routing changes."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from infr.connector import SSHConnection
from infr.engine import steps
from infr.engine.container import Attached
from infr.engine.fleet import get_host, get_lxc, target
from infr.engine.templating import fill
from infr.errors import ConflictError, InfrError, RemoteError, UsageError
from infr.hosts.desired import MANAGER
from infr.lxcs import desired, osrelease
from infr.lxcs.desired import CONTAINER_PACKAGES, CREATED_MARK, LXC_ROOT
from infr.routing import deploy
from infr.state import validate
from infr.state.change import Change
from infr.state.model import HOST_READY, LXC_CREATING, LXC_READY, Host, Lxc, timestamp
from infr.state.session import Session

Report = Callable[[str], None]
Runner = steps.Runner
IMAGE_CACHE = "/var/cache/infr/lxc-images"


def _check_new_lxc(session: Session, name: str, distro: str, release: str, host_name: str) -> Host:
    inv = session.inventory()
    checks = (validate.dns_label(name, "LXC name"), validate.distro(distro), validate.release(release))
    if problems := [problem for problem in checks if problem]:
        raise UsageError("; ".join(problems), "e.g. infr lxcs add web debian bookworm HOST")
    if kind := inv.kind_of(name):
        raise ConflictError(f"{name} is already a {kind}'s name", "hosts, LXCs and peers share names: pick another")
    host = get_host(inv, host_name)
    if host.status != HOST_READY:
        raise ConflictError(
            f"host {host_name} is {host.status}", f"finish it first: infr hosts add --adopt {host_name} IP"
        )
    return host


def record_lxc(
    session: Session, name: str, distro: str, release: str, host_name: str, ip: str | None, any_os: bool = False
) -> Lxc:
    """The LXC as recorded in state, recording it first if new; resumes a cut-off add.

    `any_os`: the distro and release recorded may be the image's rather than the ones asked.
    """
    with session.change() as change:
        if name in change.inv.lxcs:
            lxc = change.inv.lxcs[name]
            asked = (host_name, distro, release, ip or lxc.vnet_ip)
            if any_os:
                asked = (host_name, lxc.distro, lxc.release, ip or lxc.vnet_ip)
            if (lxc.host, lxc.distro, lxc.release, lxc.vnet_ip) != asked:
                raise ConflictError(
                    f"LXC {name} already exists on {lxc.host} ({lxc.distro} {lxc.release}, {lxc.vnet_ip})",
                    f"pick another name, or remove it first: infr lxc {name} remove",
                )
            return lxc
        _check_new_lxc(session, name, distro, release, host_name)
        lxc = Lxc(name, host_name, distro, release, change.allocate_address(ip), status=LXC_CREATING, added=timestamp())
        change.put_lxc(lxc)
        change.note(f"LXC {name} recorded on {host_name} with vnet address {lxc.vnet_ip}")
        return lxc


def _image_on_host(conn: Runner, source: str) -> str:
    """The rootfs tarball's path on the host, fetched or uploaded once (named by its source/content)."""
    conn.run(["install", "-d", "-m", "755", IMAGE_CACHE])
    if source.startswith(("http://", "https://")):
        path = f"{IMAGE_CACHE}/{hashlib.sha256(source.encode()).hexdigest()[:16]}.tar"
        if conn.run(["test", "-s", path], check=False).exit_status != 0:
            conn.run(["curl", "-fsSL", "-o", path + ".part", "--", source], timeout=1800)
            conn.run(["mv", "-f", "--", path + ".part", path])
        return path
    data = Path(source).expanduser().read_bytes()
    path = f"{IMAGE_CACHE}/{hashlib.sha256(data).hexdigest()[:16]}.tar"
    if conn.run(["test", "-s", path], check=False).exit_status != 0:
        conn.put_file(path, data, owner="root", group="root", mode=0o600, timeout=1800)
    return path


def _created(conn: Runner, name: str) -> bool:
    return conn.run(["test", "-e", f"{LXC_ROOT}/{name}/{CREATED_MARK}"], check=False).exit_status == 0


def _create(conn: Runner, lxc: Lxc, source: str, report: Report) -> str | None:
    """Make the container's rootfs afresh; returns a tarball's os-release text (None: downloaded)."""
    # A container without the mark is what a cut-off run left: start it over.
    _destroy_leftover(conn, lxc.name)
    report(f"creating {lxc.name} from {'the LXC image server' if source == 'download' else source}")
    if source == "download":
        create = ["lxc-create", "-n", lxc.name, "-B", "btrfs", "-t", "download"]
        conn.run([*create, "--", "-d", lxc.distro, "-r", lxc.release, "-a", "amd64"], timeout=1800)
        return None
    tarball = _image_on_host(conn, source)
    # `lxc-create -t none -B btrfs` makes no rootfs at all (LXC 5): make the subvolume here.
    rootfs = f"{LXC_ROOT}/{lxc.name}/rootfs"
    conn.run(["install", "-d", "-m", "770", "--", f"{LXC_ROOT}/{lxc.name}"])
    conn.run(["btrfs", "-q", "subvolume", "create", "--", rootfs])
    conn.run(["tar", "-xpf", tarball, "--numeric-owner", "-C", rootfs], timeout=1800)
    # One tarball makes many containers: each gets its own SSH host keys and machine id.
    conn.run(["sh", "-c", 'rm -f "$1"/etc/ssh/ssh_host_* && : > "$1"/etc/machine-id', "-", rootfs])
    return _read_os_release(conn, rootfs)


# etc/ first, as os-release(5) says; a symlink is followed only while it stays inside the
# image (an absolute one would name the host's own file). 64 KiB is plenty for the file.
_OS_RELEASE = """root=$(realpath -e -- "$1") || exit 0
for f in etc/os-release usr/lib/os-release; do
  p=$(realpath -e -- "$root/$f" 2>/dev/null) || continue
  case "$p" in "$root"/*) if [ -f "$p" ]; then exec head -c 65536 -- "$p"; fi;; esac
done"""


def _read_os_release(conn: Runner, rootfs: str) -> str:
    """The unpacked image's os-release text; empty if it has none."""
    return conn.run(["sh", "-c", _OS_RELEASE, "sh", rootfs]).text


@dataclass(frozen=True)
class Refusal:
    """What `lxcs add` does when the image is not what was asked, and how to undo its record."""

    record_image_os: bool
    # The IPAM cursor before this run recorded the LXC; None if an earlier run recorded it.
    cursor: str | None


def _settle_image(
    session: Session, conn: Runner, lxc: Lxc, image: str, refusal: Refusal, report: Report
) -> Lxc:
    """The LXC as it will be recorded, given its image's os-release: as asked if the image is
    that; the image's own distro and release if the user said so; else refused, undone."""
    problem = osrelease.mismatch(image, lxc.distro, lxc.release)
    if problem is None:
        return lxc
    found = osrelease.image_os(image)
    if not refusal.record_image_os or found is None:
        _destroy_leftover(conn, lxc.name)
        if lxc.status == LXC_CREATING:  # an LXC once made keeps its record, and its routes
            _forget(session, lxc, refusal.cursor)
        wanted = f"set lxcImageSource to an image of {lxc.distro} {lxc.release}"
        if found is None:
            raise ConflictError(f"{problem} (lxcImageSource); {lxc.name} was not created", wanted)
        raise ConflictError(
            f"{problem} (lxcImageSource); {lxc.name} was not created",
            f"{wanted}, ask for {found}, or record what it is: infr lxcs add ... --record-image-os",
        )
    with session.change() as change:
        recorded = change.inv.lxcs[lxc.name]
        asked = f"{recorded.distro} {recorded.release}"
        recorded.distro, recorded.release = found.distro, found.release
        change.put_lxc(recorded)
        change.note(f"LXC {lxc.name} recorded as {found}, what its image is (asked: {asked})")
    report(change.notes[0])
    return recorded


def _forget(session: Session, lxc: Lxc, cursor: str | None) -> None:
    """Take back the record of an LXC that was never made (and its address, if this run took it)."""
    with session.change() as change:
        change.delete_lxc(lxc.name)
        if cursor is not None:
            change.rewind_addresses(cursor)
        change.note(f"LXC {lxc.name} forgotten; {lxc.vnet_ip} is free")


def _destroy_leftover(conn: Runner, name: str) -> None:
    """Remove what a cut-off add left, whether or not LXC knows the container yet."""
    conn.run(["lxc-destroy", "-n", name, "-f"], check=False)
    folder = f"{LXC_ROOT}/{name}"
    conn.run(["btrfs", "-q", "subvolume", "delete", "--", f"{folder}/rootfs"], check=False)
    conn.run(["rm", "-rf", "--one-file-system", "--", folder])


def start(conn: Runner, name: str) -> list[str]:
    if _running(conn, name):
        return []
    conn.run(["lxc-start", "-n", name])
    conn.run(["lxc-wait", "-n", name, "-s", "RUNNING", "-t", "60"])
    return [f"started {name}"]


def _inside(conn: Runner, session: Session, lxc: Lxc, host: Host) -> list[str]:
    """sshd, the manager account with the admin keys and sudo, inside the running container."""
    box = Attached(conn, lxc.name)
    # systemd must be up before packages and sshd are touched (a unit reload needs it).
    box.run(["systemctl", "is-system-running", "--wait"], check=False)
    changes = []
    for spec in desired.system_files(lxc, host, session.settings()):
        changes += steps.ensure_file(box, spec)
    changes += steps.ensure_packages(box, CONTAINER_PACKAGES)
    box.run(["ssh-keygen", "-A"])  # only the missing keys: a no-op once they exist
    box.run(["systemctl", "enable", "--now", "ssh"])
    changes += steps.ensure_user(box, MANAGER, ["sudo"])
    box.run(["install", "-d", "-m", "700", "-o", "manager", "-g", "manager", "--", "/home/manager/.ssh"])
    for spec in desired.account_files(session.inventory()):
        changes += steps.ensure_file(box, spec)
    return changes


def add(
    session: Session,
    name: str,
    distro: str,
    release: str,
    host_name: str,
    ip: str | None,
    report: Report,
    record_image_os: bool = False,
) -> list[str]:
    """Make the LXC on its host as state describes it; safe to run again.

    `record_image_os`: a tarball image that is not DISTRO RELEASE is recorded as what it is
    (its os-release) instead of refused.
    """
    with session.locked():
        inv = session.inventory()
        cursor = None if name in inv.lxcs else inv.ipam_last
        lxc = record_lxc(session, name, distro, release, host_name, ip, any_os=record_image_os)
        try:
            changes = _make(session, lxc, report, Refusal(record_image_os, cursor))
        except InfrError:
            if name in session.inventory().lxcs and lxc.status == LXC_CREATING:
                report(f"left '{LXC_CREATING}' in state: run the same command again to finish it, "
                       f"or remove it: infr lxc {name} remove")
            raise
        changes += _mark_ready(session, name)
    return changes


def _make(session: Session, lxc: Lxc, report: Report, refusal: Refusal) -> list[str]:
    host = get_host(session.inventory(), lxc.host)
    with SSHConnection.connect(target(session, host)) as conn:
        return make(conn, session, lxc, report, refusal)


def make(conn: Runner, session: Session, lxc: Lxc, report: Report, refusal: Refusal) -> list[str]:
    """The container on its host (`conn`) as state describes it, running with sshd and manager
    inside: what `lxcs add` does, and how the lxcs feature makes a container that is missing."""
    host = get_host(session.inventory(), lxc.host)
    settings = session.settings()
    changes: list[str] = []
    if not _created(conn, lxc.name):
        image = _create(conn, lxc, str(settings["lxcImageSource"]), report)
        if image is not None:
            lxc = _settle_image(session, conn, lxc, image, refusal, report)
        conn.run(["touch", "--", f"{LXC_ROOT}/{lxc.name}/{CREATED_MARK}"])
        changes.append(f"created container {lxc.name}")
    changes += steps.ensure_file(conn, desired.config_file(lxc, host, settings))
    changes += start(conn, lxc.name)
    return changes + _inside(conn, session, lxc, host)


def _mark_ready(session: Session, name: str) -> list[str]:
    with session.change() as change:
        lxc = change.inv.lxcs[name]
        if lxc.status == LXC_READY:
            return []
        lxc.status = LXC_READY
        change.put_lxc(lxc)
        change.note(f"LXC {name} is ready")
    return change.notes


def remove(session: Session, name: str, report: Report) -> list[str]:
    """Destroy the container, then forget it; its host's HAProxy stops routing to it.

    An LXC still "creating" (its add failed or was cut off) may be anywhere between an
    empty folder and a whole container: whatever the add left is removed.
    """
    with session.locked():
        lxc = get_lxc(session.inventory(), name)
        host = get_host(session.inventory(), lxc.host)
        with SSHConnection.connect(target(session, host)) as conn:
            if conn.run(["lxc-info", "-n", name], check=False).exit_status == 0:
                conn.run(["lxc-destroy", "-n", name, "-f"])
                report(f"destroyed container {name}")
            leftover = conn.run(["test", "-e", f"{LXC_ROOT}/{name}"], check=False).exit_status == 0
            if lxc.status == LXC_CREATING and leftover:
                _destroy_leftover(conn, name)
                report(f"removed what the unfinished add of {name} left")
            with session.change() as change:
                record_removal(change, lxc)
            changes = deploy.deploy(conn, session, host, report)
    return [*change.notes, *changes]


def record_removal(change: Change, lxc: Lxc) -> None:
    change.delete_lxc(lxc.name)
    change.note(f"LXC {lxc.name} removed; {lxc.vnet_ip} is free")


def _running(conn: Runner, name: str) -> bool:
    return conn.run(["lxc-info", "-n", name, "-s", "-H"]).text.strip() == "RUNNING"


def stop(conn: Runner, name: str) -> bool:
    """Stop the container if it runs; whether it did."""
    if not _running(conn, name):
        return False
    conn.run(["lxc-stop", "-n", name], timeout=120)
    return True


def restart_if_running(conn: Runner, name: str) -> list[str]:
    """A running container reads a new config; a stopped one reads it when it starts."""
    if not stop(conn, name):
        return []
    start(conn, name)
    return [f"restarted {name}"]


def power(session: Session, name: str, action: str) -> str:
    """start, stop or restart the container; says what it did."""
    lxc = get_lxc(session.inventory(), name)
    host = get_host(session.inventory(), lxc.host)
    _record_power(session, name, stopped=action == "stop")
    with SSHConnection.connect(target(session, host)) as conn:
        if action == "start":
            return "started" if start(conn, name) else "already running"
        stopped = stop(conn, name)
        if action == "stop":
            # Recorded in state: 'infr apply' leaves it stopped until 'infr lxc NAME start'.
            return "stopped (it stays stopped until you start it)" if stopped else "already stopped"
        start(conn, name)
        return "restarted" if stopped else "started"


def _record_power(session: Session, name: str, *, stopped: bool) -> None:
    """Whether the container is meant to be stopped: `infr apply` keeps it so."""
    if session.inventory().lxcs[name].stopped == stopped:
        return
    with session.change() as change:
        change.put_lxc(replace(change.inv.lxcs[name], stopped=stopped))
        change.note(f"LXC {name} {'stopped on purpose' if stopped else 'running again'}")


def ssh_argv(session: Session, name: str, remote: list[str]) -> list[str]:
    """OpenSSH into the container as manager, through its host; both keys pinned."""
    from infr.hosts import ssh
    from infr.state.files import write_atomic

    lxc = get_lxc(session.inventory(), name)
    hop = ssh.ssh_argv(session, lxc.host, [])  # also writes the host's pinned key
    proxy = [*hop[:-1], "-W", "%h:%p", hop[-1]]
    alias = f"infr-lxc-{name}"
    known_hosts = session.root / ".cache" / f"known_hosts-lxc-{name}"
    line = fill("{alias} {host_key}\n", alias=alias, host_key=container_host_key(session, lxc))
    write_atomic(known_hosts, line.encode(), 0o600)
    argv = ["ssh", "-A", "-o", f"ProxyCommand={shlex.join(proxy)}", "-o", f"HostKeyAlias={alias}"]
    argv += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    if session.identity_file:
        argv += ["-i", session.identity_file]
    return [*argv, f"manager@{lxc.vnet_ip}", *(["--", *remote] if remote else [])]


def container_host_key(session: Session, lxc: Lxc) -> str:
    """The container's SSH host key, read through its host (whose key is pinned)."""
    host = get_host(session.inventory(), lxc.host)
    with SSHConnection.connect(target(session, host)) as conn:
        key = Attached(conn, lxc.name).run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).text.split()
    if len(key) < 2:
        raise RemoteError(f"{lxc.name} has no SSH host key", f"set it up again: infr lxcs add {lxc.name} ...")
    return f"{key[0]} {key[1]}"
