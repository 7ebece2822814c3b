"""infr hosts [list] and infr host NAME [show]."""

from __future__ import annotations

from dataclasses import asdict

import click

from infr.cli.common import complete_hosts, pass_app, target_name
from infr.cli.main import App
from infr.cli.output import emit_object, emit_rows, format_option
from infr.errors import NotFoundError

LIST_COLUMNS = (("name", "NAME"), ("public_ip", "PUBLIC IP"), ("vnet_ip", "PRIVATE IP"), ("status", "STATUS"))
SHOW_FIELDS = (
    ("name", "Name"),
    ("public_ip", "Public IP"),
    ("vnet_ip", "Private IP"),
    ("status", "Status"),
    ("added", "Added"),
    ("host_key", "Host key"),
    ("lxcs", "LXCs"),
    ("backups", "Backups"),
)


@click.group(invoke_without_command=True)
@format_option
@click.pass_context
def hosts(ctx: click.Context, fmt: str | None) -> None:
    """List hosts, or add one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_, fmt=fmt)


@hosts.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """List hosts: NAME, PUBLIC IP, PRIVATE IP."""
    inventory = app.session.inventory()
    rows = [asdict(h) for h in sorted(inventory.hosts.values(), key=lambda h: h.name)]
    emit_rows(rows, LIST_COLUMNS, fmt, empty="no hosts yet: add one with 'infr hosts add NAME IP'")


@click.group(invoke_without_command=True)
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
    emit_object(record, SHOW_FIELDS, fmt)
