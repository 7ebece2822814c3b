"""infr lxcs [list] and infr lxc NAME [show] | add-alias | http | https | ports | tcp forwards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import click

from infr.cli.common import NamedGroup, changing, complete_lxcs, pass_app, target_name
from infr.cli.main import App
from infr.cli.output import emit_object, emit_rows, format_option

LIST_COLUMNS = (("name", "NAME"), ("host", "HOST"), ("public_ip", "PUBLIC IP"), ("vnet_ip", "PRIVATE IP"))
SHOW_FIELDS = (
    ("name", "Name"),
    ("host", "Host"),
    ("distro_release", "Distro"),
    ("vnet_ip", "Private IP"),
    ("http", "HTTP"),
    ("https", "HTTPS"),
    ("aliases", "Aliases"),
    ("http_port", "LXC Http Port"),
    ("https_port", "LXC Https Port"),
    ("tcp_forwards_text", "TCP Forwards"),
    ("zone", "Zone"),
)


@click.group(invoke_without_command=True)
@format_option
@click.pass_context
def lxcs(ctx: click.Context, fmt: str | None) -> None:
    """List LXCs, or add one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_, fmt=fmt)


@lxcs.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """List LXCs: NAME, HOST, PUBLIC IP (the host's), PRIVATE IP."""
    inventory = app.session.inventory()
    rows = []
    for lxc in sorted(inventory.lxcs.values(), key=lambda c: c.name):
        row = asdict(lxc)
        row["public_ip"] = inventory.hosts[lxc.host].public_ip
        rows.append(row)
    emit_rows(rows, LIST_COLUMNS, fmt, empty="no LXCs yet: add one with 'infr lxcs add NAME DISTRO RELEASE HOST'")


@click.group(cls=NamedGroup, invoke_without_command=True)
@click.argument("name", shell_complete=complete_lxcs)
@format_option
@click.pass_context
def lxc(ctx: click.Context, name: str, fmt: str | None) -> None:
    """Show or change the LXC NAME."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(show, fmt=fmt)


@lxc.command()
@format_option
@pass_app
def show(app: App, fmt: str | None) -> None:
    """How traffic reaches the LXC (Infr's layout)."""
    from infr.core.lxcs import get_lxc

    item = get_lxc(app.session.inventory(), target_name())
    record: dict[str, Any] = asdict(item)
    if fmt not in ("json", "yaml"):  # the table and csv columns
        record["distro_release"] = f"{item.distro} {item.release}"
        record["tcp_forwards_text"] = [f"{f.host_port} -> {f.lxc_port}" for f in item.tcp_forwards]
    emit_object(record, SHOW_FIELDS, fmt)


def _change(app: App, edit: Callable[..., None], *args: Any) -> None:
    with changing(app) as change:
        edit(change, target_name(), *args)


@lxc.command(name="add-alias")
@click.argument("fqdn")
@pass_app
def add_alias(app: App, fqdn: str) -> None:
    """Route another domain name (e.g. www.example.org) to this LXC."""
    from infr.core.lxcs import add_alias as edit

    _change(app, edit, fqdn)


@lxc.command(name="remove-alias")
@click.argument("fqdn")
@pass_app
def remove_alias(app: App, fqdn: str) -> None:
    """Stop routing FQDN to this LXC."""
    from infr.core.lxcs import remove_alias as edit

    _change(app, edit, fqdn)


@lxc.command()
@click.argument("mode", type=click.Choice(("NONE", "FORWARD", "REDIRECT-HTTPS"), case_sensitive=False))
@pass_app
def http(app: App, mode: str) -> None:
    """HTTP on port 80: NONE, FORWARD (by Host header) or REDIRECT-HTTPS."""
    from infr.core.lxcs import set_http

    _change(app, set_http, mode)


@lxc.command()
@click.argument("mode", type=click.Choice(("NONE", "FORWARD", "TERMINATE"), case_sensitive=False))
@pass_app
def https(app: App, mode: str) -> None:
    """HTTPS on port 443: NONE, FORWARD (by SNI, TLS untouched) or TERMINATE (Let's Encrypt)."""
    from infr.core.lxcs import set_https

    _change(app, set_https, mode)


@lxc.command(name="http-port")
@click.argument("port", type=int)
@pass_app
def http_port(app: App, port: int) -> None:
    """The LXC's port that HTTP goes to (default 80)."""
    from infr.core.lxcs import set_port

    _change(app, set_port, "http", port)


@lxc.command(name="https-port")
@click.argument("port", type=int)
@pass_app
def https_port(app: App, port: int) -> None:
    """The LXC's port that forwarded HTTPS goes to (default 443)."""
    from infr.core.lxcs import set_port

    _change(app, set_port, "https", port)


@lxc.command(name="add-tcp-forward")
@click.argument("host_port", type=int)
@click.argument("lxc_port", type=int)
@pass_app
def add_tcp_forward(app: App, host_port: int, lxc_port: int) -> None:
    """Forward TCP HOST_PORT on the host to LXC_PORT on this LXC."""
    from infr.core.lxcs import add_tcp_forward as edit

    _change(app, edit, host_port, lxc_port)


lxc.add_command(add_tcp_forward, name="tcp-forward")  # the Infr README's spelling


@lxc.command(name="remove-tcp-forward")
@click.argument("host_port", type=int)
@pass_app
def remove_tcp_forward(app: App, host_port: int) -> None:
    """Stop forwarding HOST_PORT."""
    from infr.core.lxcs import remove_tcp_forward as edit

    _change(app, edit, host_port)
