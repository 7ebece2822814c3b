"""infr hosts [list] and infr host NAME [show]."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from infr.cli import dry_run
from infr.cli.app import App
from infr.cli.cmd_backups import host_backups, host_restore_files
from infr.cli.common import DefaultGroup, NamedGroup, complete_hosts, pass_app, target_name
from infr.cli.output import emit_object, emit_rows, format_option
from infr.errors import NotFoundError

if TYPE_CHECKING:
    from infr.hosts.reinstall import ReinstallOptions
    from infr.state.session import Session

LIST_COLUMNS = (("name", "NAME"), ("public_ip", "PUBLIC IP"), ("vnet_ip", "PRIVATE IP"), ("status", "STATUS"))
SHOW_FIELDS = (
    ("name", "Name"),
    ("public_ip", "Public IP"),
    ("vnet_ip", "Private IP"),
    ("status", "Status"),
    ("added", "Added"),
    ("host_key_fingerprint", "Host key"),
    ("lxcs", "LXCs"),
    ("backups", "Backups"),
)


@click.group(cls=DefaultGroup)
def hosts() -> None:
    """List hosts, or add one."""


@hosts.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """List hosts: NAME, PUBLIC IP, PRIVATE IP."""
    inventory = app.session.inventory()
    rows = [asdict(h) for h in sorted(inventory.hosts.values(), key=lambda h: h.name)]
    emit_rows(rows, LIST_COLUMNS, fmt, empty="no hosts yet: add one with 'infr hosts add NAME IP'")


@click.group(cls=NamedGroup, invoke_without_command=True)
@click.argument("name", shell_complete=complete_hosts)
@format_option
@click.pass_context
def host(ctx: click.Context, name: str, fmt: str | None) -> None:
    """Show or act on the host NAME."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(show, fmt=fmt)


@host.command()
@format_option
@pass_app
def show(app: App, fmt: str | None) -> None:
    """Everything infr knows about the host."""
    inventory = app.session.inventory()
    name = target_name()
    if name not in inventory.hosts:
        hint = f"{name} is an LXC: use 'infr lxc {name}'" if name in inventory.lxcs else "list them with 'infr hosts'"
        raise NotFoundError(f"no host named {name!r}", hint)
    record = asdict(inventory.hosts[name])
    record["lxcs"] = sorted(c.name for c in inventory.lxcs_on(name))
    record["backups"] = [f"{b.from_host} -> {b.to_host} ({b.status})" for b in inventory.backups_of(name)]
    record["host_key_fingerprint"] = _fingerprint_text(record["host_key"])
    emit_object(record, SHOW_FIELDS, fmt)


def _fingerprint_text(host_key: str) -> str | None:
    """"ssh-ed25519 SHA256:...", as ssh shows a host key when it asks whether to trust it."""
    from infr.hosts.keys import fingerprint

    if not host_key:
        return None
    try:
        return f"{host_key.split()[0]} {fingerprint(host_key)}"
    except (ValueError, IndexError):  # not a key line (a hand edit): show what is there
        return host_key


def _reporter(name: str) -> Callable[[str], None]:
    return lambda message: click.echo(f"{name}: {message}")


# What `-p` given alone stands for: ask. An argument can hold no NUL, so no password is this.
_ASK = "\0ask"


@hosts.command()
@click.argument("name")
@click.argument("ip")
@click.option("--adopt", is_flag=True, help="Take over this Debian 12 server as it is, without reinstalling it.")
@click.option(
    "-p",
    "--password",
    "root_password",
    is_flag=False,
    flag_value=_ASK,
    default=None,
    envvar="INFR_ROOT_PASSWORD",
    show_envvar=True,
    help="The server's root password, if your key is not authorised for root. Alone (after NAME IP, "
    "or before another option) it is asked for without echo; a value given here is masked in "
    "history and the log, but stays in your shell's history.",
)
@click.option("--password-stdin", is_flag=True, help="Read the root password from the first line of stdin.")
@click.option("-y", "--yes", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--timeout",
    "timeout_min",
    type=click.FloatRange(min=1),
    default=45,
    show_default=True,
    help="Minutes to wait for the reinstalled server to answer SSH.",
)
@click.option(
    "--installer-url",
    default="",
    metavar="URL",
    help="http:// directory with the installer's linux and initrd.gz [default: debianMirror's netboot images].",
)
@click.option(
    "--mirror-proxy", default="", metavar="URL", help="HTTP proxy the installer reaches debianMirror through."
)
@click.option("--static", is_flag=True, help="Keep the server's current address (for providers without DHCP).")
@click.option(
    "--nameserver", "nameservers", multiple=True, metavar="IP", help="Nameserver for the installer (repeatable)."
)
@dry_run.option
@pass_app
def add(
    app: App,
    name: str,
    ip: str,
    adopt: bool,
    root_password: str | None,
    password_stdin: bool,
    assume_yes: bool,
    dry: bool,
    **reinstall: Any,
) -> None:
    """Add the server at IP as host NAME: reinstall it as Debian on btrfs, or --adopt it as it is.

    Everything is checked before anything is asked, recorded or done to the server.
    """
    from infr import followups
    from infr.cli.cmd_dns import fix_after_change
    from infr.hosts import adopt as hosts_adopt

    if root_password is not None and password_stdin:
        raise click.UsageError("give the root password one way: -p or --password-stdin")
    if dry:
        _dry_add(app, name, ip, adopt, **reinstall)
        return
    if adopt:
        hosts_adopt.check_add(app.session, name, ip)
        password = _root_password(root_password, password_stdin)
        if not assume_yes:
            click.confirm(
                f"infr will take over {ip} as {name}: root and password logins will be turned off. Go on?", abort=True
            )
        changes = followups.adopt_host(app.session, name, ip, password, _reporter(name))
        click.echo(f"{name}: {'ready' if changes else 'already set up; nothing changed'}")
    else:
        _reinstall(app, name, ip, root_password, password_stdin, assume_yes, **reinstall)
        click.echo(f"{name}: ready")
    fix_after_change(app)


def _dry_add(app: App, name: str, ip: str, adopt: bool, **reinstall: Any) -> None:
    """Everything `hosts add` checks, what it would record, and what it would do to the server."""
    from infr.hosts import adopt as hosts_adopt

    if adopt:
        hosts_adopt.check_add(app.session, name, ip)
        would = [f"would log in to {ip} (as manager, else as root) and set up manager with the admin keys"]
    else:
        _check_reinstall(app, name, ip, **reinstall)
        would = [
            f"would ERASE the server at {ip} and install Debian on btrfs on it",
            f"would wait for it to boot, then log in as manager and set up {name}",
        ]
    would += [
        f"would set up {name}: packages, sshd, its names, the network, the mesh, HAProxy",
        f"would turn off root and password logins on {name}, and record it ready",
    ]

    def record(session: Session) -> None:
        hosts_adopt.record_host(session, name, ip)

    dry_run.show(app, record=record, would=would, dns=True)


def _root_password(given: str | None, from_stdin: bool) -> str | None:
    """The root password from -p VALUE, -p (asked without echo), stdin or $INFR_ROOT_PASSWORD;
    registered with the operation log, which masks it wherever it would appear."""
    from infr import oplog

    if from_stdin:
        given = sys.stdin.readline().rstrip("\r\n")
        if not given:
            raise click.UsageError("--password-stdin: the first line of stdin is empty")
    elif given == _ASK:
        given = click.prompt("Root password", hide_input=True)
    else:
        source = click.get_current_context().get_parameter_source("root_password")
        if given is not None and source is ParameterSource.COMMANDLINE:
            click.echo(
                "infr: warning: a password on the command line stays in your shell's history; "
                "-p alone asks for it, or use --password-stdin or INFR_ROOT_PASSWORD",
                err=True,
            )
    oplog.register_secret(given)
    return given


def _check_reinstall(
    app: App,
    name: str,
    ip: str,
    *,
    timeout_min: float,
    installer_url: str,
    mirror_proxy: str,
    static: bool,
    nameservers: tuple[str, ...],
) -> ReinstallOptions:
    """The reinstall's options, every problem in them found before anything is asked or done."""
    from infr.hosts import reinstall

    opts = reinstall.ReinstallOptions(
        None,
        timeout_min * 60,
        installer_url,
        mirror_proxy=mirror_proxy,
        static=static,
        nameservers=nameservers,
    )
    reinstall.check(app.session, name, ip, opts)
    return opts


def _reinstall(
    app: App,
    name: str,
    ip: str,
    root_password: str | None,
    password_stdin: bool,
    assume_yes: bool,
    **options: Any,
) -> None:
    from infr import followups

    opts = _check_reinstall(app, name, ip, **options)
    opts = replace(opts, root_password=_root_password(root_password, password_stdin))
    if not assume_yes:
        typed = click.prompt(
            f"infr will ERASE the server at {ip} and install Debian on it as {name}. Type YES to go on"
        )
        if typed != "YES":
            raise click.Abort()

    def report(phase: str, elapsed: float, message: str) -> None:
        click.echo(f"{name}: [{elapsed:4.0f} s] {phase}: {message}")

    followups.reinstall_host(app.session, name, ip, opts, report)


@host.command()
@click.option("-n", "--network", is_flag=True, help="Also rewrite the network (drops containers off it briefly).")
@click.option("-s", "--software", is_flag=True, help="Also (re)install the software.")
@click.option("-k", "--rekey", is_flag=True, help="Re-read and pin the host's SSH key (after a reinstall).")
@click.option("-R", "--no-haproxy", is_flag=True, help="Skip HAProxy and certificates.")
@click.option("-y", "--yes", "assume_yes", is_flag=True, help="Do not ask for confirmation.")
@dry_run.long_option
@pass_app
def reconfigure(
    app: App, network: bool, software: bool, rekey: bool, no_haproxy: bool, assume_yes: bool, dry: bool
) -> None:
    """Make the host match state again: keys, sshd, names, HAProxy (and network, software)."""
    from infr import followups
    from infr.engine.fleet import get_host
    from infr.hosts import adopt as hosts_adopt

    name = get_host(app.session.inventory(), target_name()).name
    if dry:
        would = [f"would read {name}'s SSH host key again and pin it"] if rekey else []
        dry_run.show(app, would=would, hosts=[name])
        return
    if network and not assume_yes:
        click.confirm(f"Rewriting {name}'s network drops its containers off the network briefly. Go on?", abort=True)
    steps = hosts_adopt.Steps(network=network, software=software, haproxy=not no_haproxy)
    changes = followups.reconfigure_host(app.session, name, steps, rekey, _reporter(name))
    click.echo(f"{name}: {len(changes)} change(s)" if changes else f"{name}: nothing changed")


@host.command()
@click.option("--force", is_flag=True, help="Also forget the host's LXCs and backups.")
@dry_run.option
@pass_app
def remove(app: App, force: bool, dry: bool) -> None:
    """Forget the host (nothing on the machine is touched)."""
    from infr import followups
    from infr.cli.cmd_dns import fix_after_change
    from infr.hosts import adopt as hosts_adopt


    if dry:  # the mesh members drop it
        name = target_name()
        every = app.session.inventory().hosts
        edit = partial(hosts_adopt.record_removal, name=name, force=force)
        dry_run.show(app, edit, hosts=every, features=["vnet"], dns=True)
        return
    for note in followups.remove_host(app.session, target_name(), force):
        click.echo(note)
    fix_after_change(app)


@host.command()
@click.argument("command", nargs=-1)
@pass_app
def ssh(app: App, command: tuple[str, ...]) -> None:
    """Open a shell on the host as manager (or run COMMAND there)."""
    from infr.hosts import ssh as hosts_ssh

    hosts_ssh.exec_ssh(app.session, target_name(), list(command))


host.add_command(host_backups)
host.add_command(host_restore_files)
