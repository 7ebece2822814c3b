"""infr lxcs [list] | add, and infr lxc NAME [show] | routing changes | remove | start | stop | restart | ssh.

Every routing change is applied to the LXC's host at once (HAProxy re-deployed);
`infr lxc --no-apply NAME ...` only records it, to batch several changes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import click

from infr.cli import dry_run
from infr.cli.app import App
from infr.cli.cmd_backups import lxc_backups, lxc_restore
from infr.cli.common import DefaultGroup, NamedGroup, changing, complete_hosts, complete_lxcs, pass_app, target_name
from infr.cli.output import emit_object, emit_rows, format_option
from infr.state.schema import to_dict

if TYPE_CHECKING:
    from infr.state.session import Session

LIST_COLUMNS = (
    ("name", "NAME"),
    ("host", "HOST"),
    ("public_ip", "PUBLIC IP"),
    ("vnet_ip", "PRIVATE IP"),
    ("status", "STATUS"),
)
SHOW_FIELDS = (
    ("name", "Name"),
    ("host", "Host"),
    ("distro_release", "Distro"),
    ("vnet_ip", "Private IP"),
    ("status", "Status"),
    ("http", "HTTP"),
    ("https", "HTTPS"),
    ("aliases", "Aliases"),
    ("http_port", "LXC Http Port"),
    ("https_port", "LXC Https Port"),
    ("tcp_forwards_text", "TCP Forwards"),
    ("zone", "Zone"),
)


@click.group(cls=DefaultGroup)
def lxcs() -> None:
    """List LXCs, or add one."""


@lxcs.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """List LXCs: NAME, HOST, PUBLIC IP (the host's), PRIVATE IP, STATUS (creating or ready)."""
    inventory = app.session.inventory()
    rows = []
    for lxc in sorted(inventory.lxcs.values(), key=lambda c: c.name):
        row = to_dict(lxc)
        row["public_ip"] = inventory.hosts[lxc.host].public_ip
        rows.append(row)
    emit_rows(rows, LIST_COLUMNS, fmt, empty="no LXCs yet: add one with 'infr lxcs add NAME DISTRO RELEASE HOST'")


@lxcs.command()
@click.argument("name")
@click.argument("distro")
@click.argument("release")
@click.argument("host", shell_complete=complete_hosts)
@click.option("--ip", default=None, help="The LXC's vnet address (default: the next free one).")
@click.option(
    "--record-image-os",
    is_flag=True,
    help="If the lxcImageSource tarball is not DISTRO RELEASE, record what its os-release says instead of refusing.",
)
@dry_run.option
@pass_app
def add(
    app: App, name: str, distro: str, release: str, host: str, ip: str | None, record_image_os: bool, dry: bool
) -> None:
    """Create the container NAME (e.g. debian bookworm) on HOST, with sshd and manager inside."""
    from infr import followups
    from infr.cli.cmd_dns import fix_after_change

    if dry:
        _dry_add(app, name, distro, release, host, ip, record_image_os)
        return
    changes = followups.add_lxc(app.session, name, distro, release, host, ip, _reporter(name), record_image_os)
    click.echo(f"{name}: {'ready' if changes else 'already set up; nothing changed'}")
    fix_after_change(app)


def _dry_add(app: App, name: str, distro: str, release: str, host: str, ip: str | None, any_os: bool) -> None:
    from infr.lxcs import containers
    from infr.state.model import LXC_READY

    saved = dry_run.begin(app).saved_inventory().lxcs.get(name)
    made = saved is not None and saved.status == LXC_READY
    would = [
        f"would check the container {name} on {host}: running, with sshd and manager inside"
        if made
        else f"would create the container {name} ({distro} {release}) on {host}, start it, "
        "and set up sshd and manager inside"
    ]
    if not made:
        would.append(f"would mark {name} ready")

    def record(session: Session) -> None:
        containers.record_lxc(session, name, distro, release, host, ip, any_os=any_os)

    dry_run.show(app, record=record, would=would, hosts=[host], dns=True)


@click.group(cls=NamedGroup, invoke_without_command=True)
@click.argument("name", shell_complete=complete_lxcs)
@click.option("--no-apply", is_flag=True, help="Record changes only; apply later with 'infr host HOST reconfigure'.")
@format_option
@click.pass_context
def lxc(ctx: click.Context, name: str, no_apply: bool, fmt: str | None) -> None:
    """Show or change the LXC NAME."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(show, fmt=fmt)


@lxc.command()
@format_option
@pass_app
def show(app: App, fmt: str | None) -> None:
    """How traffic reaches the LXC (Infr's layout)."""
    from infr.engine.fleet import get_lxc

    item = get_lxc(app.session.inventory(), target_name())
    record: dict[str, Any] = to_dict(item)
    if fmt not in ("json", "yaml"):  # the table and csv columns
        record["distro_release"] = f"{item.distro} {item.release}"
        record["tcp_forwards_text"] = [f"{f.host_port} -> {f.lxc_port}" for f in item.tcp_forwards]
    emit_object(record, SHOW_FIELDS, fmt)


def _reporter(name: str) -> Callable[[str], None]:
    return lambda message: click.echo(f"{name}: {message}")


def _change(app: App, dry: bool, edit: Callable[..., None], *args: Any) -> None:
    """Record the change, then put state live on the LXC's host unless --no-apply
    (--dry-run: show both, do neither).

    State is applied even when the change was already recorded: a change saved while
    the host could not be reached is applied by running the same command again.
    """
    from infr.engine.fleet import get_lxc

    name = target_name()
    if dry:
        home = get_lxc(app.session.inventory(), name).host
        dry_run.show(app, lambda change: edit(change, name, *args), hosts=[home], features=["routing"])
        return
    with changing(app) as change:
        edit(change, name, *args)
    hosts = change.touched_hosts | {get_lxc(app.session.inventory(), name).host}
    if _no_apply():
        for host in sorted(hosts):
            click.echo(f"not applied (--no-apply); apply with: infr apply {host}")
        return
    from infr.errors import RemoteError
    from infr.routing import deploy

    try:
        with app.session.locked():
            deploy.apply_routing(app.session, hosts, click.echo)
    except RemoteError as exc:
        host = ", ".join(sorted(hosts))
        raise RemoteError(
            f"saved, not applied to {host}: {exc.message}",
            f"run `{_this_command(name)}` again (or `infr host {host} reconfigure`) once it is reachable",
        ) from None


def _this_command(name: str) -> str:
    """The routing command being run, as the user can type it again."""
    import shlex

    ctx = click.get_current_context()
    words = [str(value) for key, value in ctx.params.items() if key != "dry"]  # it was not a dry run
    return shlex.join(["infr", "lxc", name, ctx.info_name or ctx.command.name or "", *words])


def _no_apply() -> bool:
    ctx: click.Context | None = click.get_current_context()
    while ctx is not None and ctx.command is not lxc:
        ctx = ctx.parent
    return bool(ctx and ctx.params.get("no_apply"))


@lxc.command(name="add-alias")
@click.argument("fqdn")
@dry_run.option
@pass_app
def add_alias(app: App, fqdn: str, dry: bool) -> None:
    """Route another domain name (e.g. www.example.org) to this LXC."""
    from infr.routing.edits import add_alias as edit

    _change(app, dry, edit, fqdn)


@lxc.command(name="remove-alias")
@click.argument("fqdn")
@dry_run.option
@pass_app
def remove_alias(app: App, fqdn: str, dry: bool) -> None:
    """Stop routing FQDN to this LXC."""
    from infr.routing.edits import remove_alias as edit

    _change(app, dry, edit, fqdn)


@lxc.command()
@click.argument("mode", type=click.Choice(("NONE", "FORWARD", "REDIRECT-HTTPS"), case_sensitive=False))
@dry_run.option
@pass_app
def http(app: App, mode: str, dry: bool) -> None:
    """HTTP on port 80: NONE, FORWARD (by Host header) or REDIRECT-HTTPS."""
    from infr.routing.edits import set_http

    _change(app, dry, set_http, mode)


@lxc.command()
@click.argument("mode", type=click.Choice(("NONE", "FORWARD", "TERMINATE"), case_sensitive=False))
@dry_run.option
@pass_app
def https(app: App, mode: str, dry: bool) -> None:
    """HTTPS on port 443: NONE, FORWARD (by SNI, TLS untouched) or TERMINATE (Let's Encrypt)."""
    from infr.routing.edits import set_https

    _change(app, dry, set_https, mode)


@lxc.command(name="http-port")
@click.argument("port", type=int)
@dry_run.option
@pass_app
def http_port(app: App, port: int, dry: bool) -> None:
    """The LXC's port that HTTP goes to (default 80)."""
    from infr.routing.edits import set_port

    _change(app, dry, set_port, "http", port)


@lxc.command(name="https-port")
@click.argument("port", type=int)
@dry_run.option
@pass_app
def https_port(app: App, port: int, dry: bool) -> None:
    """The LXC's port that forwarded HTTPS goes to (default 443)."""
    from infr.routing.edits import set_port

    _change(app, dry, set_port, "https", port)


@lxc.command(name="add-tcp-forward")
@click.argument("host_port", type=int)
@click.argument("lxc_port", type=int)
@dry_run.option
@pass_app
def add_tcp_forward(app: App, host_port: int, lxc_port: int, dry: bool) -> None:
    """Forward TCP HOST_PORT on the host to LXC_PORT on this LXC."""
    from infr.routing.edits import add_tcp_forward as edit

    _change(app, dry, edit, host_port, lxc_port)


lxc.add_command(add_tcp_forward, name="tcp-forward")  # the Infr README's spelling
lxc.add_command(lxc_backups)
lxc.add_command(lxc_restore)


@lxc.command(name="remove-tcp-forward")
@click.argument("host_port", type=int)
@dry_run.option
@pass_app
def remove_tcp_forward(app: App, host_port: int, dry: bool) -> None:
    """Stop forwarding HOST_PORT."""
    from infr.routing.edits import remove_tcp_forward as edit

    _change(app, dry, edit, host_port)


@lxc.command()
@click.argument("zone")
@dry_run.option
@pass_app
def zone(app: App, zone: str, dry: bool) -> None:
    """Put the LXC in ZONE: it reaches only its zone, hosts and admins ('none' to leave)."""
    from infr.vnet.peers import set_zone

    if dry:  # the zone's rules are on every host of the mesh
        every = app.session.inventory().hosts
        dry_run.show(app, lambda change: set_zone(change, target_name(), zone), hosts=every, features=["vnet"])
        return
    with changing(app) as change:
        set_zone(change, target_name(), zone)
    if _no_apply():
        click.echo("not applied (--no-apply); apply with: infr apply")
        return
    from infr.errors import RemoteError
    from infr.vnet import members

    failed = members.deploy(app.session, click.echo)  # each failure is reported as it happens
    if failed:
        raise RemoteError(
            f"saved, not applied to {', '.join(sorted(failed))}",
            f"run `{_this_command(target_name())}` again (or `infr vnet apply`) once it is reachable",
        )


@lxc.command()
@click.option("-y", "--yes", "assume_yes", is_flag=True, help="Do not ask to type the name.")
@dry_run.option
@pass_app
def remove(app: App, assume_yes: bool, dry: bool) -> None:
    """Destroy the container and forget it (its address and routes go too)."""
    from infr import followups
    from infr.cli.cmd_dns import fix_after_change
    from infr.engine.fleet import get_lxc
    from infr.lxcs import containers

    lxc = get_lxc(app.session.inventory(), target_name())
    name = lxc.name
    if dry:
        would = [f"would destroy the container {name} on {lxc.host}, and everything in it"]
        edit = partial(containers.record_removal, lxc=lxc)
        dry_run.show(app, edit, would=would, hosts=[lxc.host], dns=True)
        return
    if not assume_yes and click.prompt(f"This destroys {name} and everything in it. Type its name to go on") != name:
        raise click.Abort()
    for line in followups.remove_lxc(app.session, name, _reporter(name)):
        click.echo(line)
    fix_after_change(app)


def _power(app: App, action: str) -> None:
    from infr.lxcs import containers

    name = target_name()
    click.echo(f"{name}: {containers.power(app.session, name, action)}")


@lxc.command()
@pass_app
def start(app: App) -> None:
    """Start the container."""
    _power(app, "start")


@lxc.command()
@pass_app
def stop(app: App) -> None:
    """Stop the container (it starts again when its host boots)."""
    _power(app, "stop")


@lxc.command()
@pass_app
def restart(app: App) -> None:
    """Stop and start the container."""
    _power(app, "restart")


@lxc.command()
@click.argument("command", nargs=-1)
@pass_app
def ssh(app: App, command: tuple[str, ...]) -> None:
    """Open a shell in the container as manager, through its host (or run COMMAND there)."""
    import os

    from infr.lxcs import containers

    argv = containers.ssh_argv(app.session, target_name(), list(command))
    os.execvp(argv[0], argv)
