"""What a change to one thing touches elsewhere, in one place.

An LXC added, removed or moved changes its host's peer entry on every mesh member, the
btrbk config of its host's backup hosts and, when it moves, HAProxy on both hosts; a host
configured joins the mesh and gets HAProxy; a host removed leaves the mesh. The feature
modules (hosts.adopt, lxcs.containers, restore.container, vnet.members, backups.pairs,
routing.deploy) each do their own part and never call one another for these; the CLI calls the functions here, which
call the feature that changed and then the features it touches, in Infr's order.
DNS is fixed after these by the CLI (cmd_dns.fix_after_change), as before.
"""

from __future__ import annotations

from collections.abc import Callable

from infr.backups import pairs
from infr.connector import SSHConnection
from infr.engine.fleet import get_lxc
from infr.errors import InfrError
from infr.hosts import adopt, reinstall
from infr.lxcs import containers
from infr.restore import container as restore_container
from infr.restore.container import LxcPlan
from infr.routing import deploy
from infr.state.model import Host
from infr.state.session import Session
from infr.vnet import members

Report = Callable[[str], None]


# --- hosts ------------------------------------------------------------------------------------


def _host_features(session: Session, steps: adopt.Steps, report: Report) -> adopt.HostFeatures:
    """After a host's base system: it joins the mesh (members learn it), then its HAProxy."""

    def configure(conn: SSHConnection, host: Host) -> list[str]:
        changes: list[str] = []
        if steps.network:
            changes += members.join_host(session, conn, host, report)
        if steps.haproxy:
            changes += deploy.deploy(conn, session, host, report)
        return changes

    return configure


def adopt_host(session: Session, name: str, ip: str, password: str | None, report: Report) -> list[str]:
    return adopt.adopt(session, name, ip, password, report, _host_features(session, adopt.Steps(), report))


def reinstall_host(
    session: Session, name: str, ip: str, opts: reinstall.ReinstallOptions, report: reinstall.PhaseReport
) -> list[str]:
    """Reinstall the box at `ip` as host `name`; returns what the adopt steps changed."""
    with session.locked():
        first_boot = reinstall.install(session, name, ip, opts, report)
        return adopt_host(session, name, ip, None, first_boot)


def reconfigure_host(session: Session, name: str, steps: adopt.Steps, repin: bool, report: Report) -> list[str]:
    return adopt.reconfigure(session, name, steps, repin, report, _host_features(session, steps, report))


def remove_host(session: Session, name: str, force: bool) -> list[str]:
    notes = adopt.remove(session, name, force)
    problems: list[str] = []  # members that could not be told are reported, not raised
    return [*notes, *members.after_host_removed(session, problems.append), *problems]


# --- LXCs -------------------------------------------------------------------------------------


def _lxc_placed(session: Session, host_names: set[str], report: Report) -> list[str]:
    """An LXC came to or left these hosts: its address in their peer entries on every
    member (and the zone rules), its rootfs in their backups (they stay on TO)."""
    changes = members.after_lxc_change(session, report)
    return changes + pairs.redeploy_targets(session, host_names, report)


def add_lxc(
    session: Session,
    name: str,
    distro: str,
    release: str,
    host_name: str,
    ip: str | None,
    report: Report,
    record_image_os: bool = False,
) -> list[str]:
    changes = containers.add(session, name, distro, release, host_name, ip, report, record_image_os)
    changes += _lxc_placed(session, {session.inventory().lxcs[name].host}, report)
    for line in changes:
        report(line)
    return changes


def remove_lxc(session: Session, name: str, report: Report) -> list[str]:
    host = get_lxc(session.inventory(), name).host
    changes = containers.remove(session, name, report)  # its host's HAProxy stops routing to it there
    return changes + _lxc_placed(session, {host}, report)


def restore_lxc(session: Session, plan: LxcPlan, report: Report) -> list[str]:
    """restore.container.apply_lxc; a move then touches routing on both hosts, the mesh, backups and
    the old copy; last, the container set up inside as state wants it now."""
    with session.locked():
        changes = restore_container.apply_lxc(session, plan, report)
        if plan.moving:
            changes += _lxc_moved(session, plan, report)
        changes += _set_up_inside(session, plan.name, report)
    return changes


def _lxc_moved(session: Session, plan: LxcPlan, report: Report) -> list[str]:
    def after(hint: str, step: Callable[[], list[str]]) -> list[str]:
        return restore_container.after_restore(plan, hint, step)

    reachable = restore_container.reachable_hosts(plan)
    changes = after("infr host HOST reconfigure", lambda: deploy.apply_routing(session, reachable, report))
    # Its address now sits behind plan.target: every mesh member's peer entries and routes.
    changes += after("infr vnet apply", lambda: members.after_lxc_change(session, report))
    follow = f"infr backup start FROM TO, for each pair from {plan.current} or {plan.target}"
    changes += after(follow, lambda: pairs.redeploy_targets(session, {plan.current, plan.target}, report))
    return changes + restore_container.leave_old_host(session, plan, report)


def _set_up_inside(session: Session, name: str, report: Report) -> list[str]:
    """The restored container as state wants it now: admin keys, sshd, its host as DNS."""
    lxc = session.inventory().lxcs[name]
    try:
        return add_lxc(session, name, lxc.distro, lxc.release, lxc.host, lxc.vnet_ip, report)
    except InfrError as e:
        report(f"warning: restored and running, but setting it up inside failed: {e}")
        report(f"run it again with: infr lxcs add {name} {lxc.distro} {lxc.release} {lxc.host} --ip {lxc.vnet_ip}")
        return []
