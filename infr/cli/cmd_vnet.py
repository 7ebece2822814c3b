"""infr vnet: the private WireGuard network. join NAME | peers [list] | peers add | peers remove |
status | hosts | apply.

Every change to the peers is committed to state, then applied to every ready host
(`wg syncconf`: live tunnels stay up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from infr.cli import dry_run
from infr.cli.app import App
from infr.cli.common import DefaultGroup, changing, pass_app
from infr.cli.output import emit_rows, format_option

if TYPE_CHECKING:
    from infr.state.change import Change

PEER_COLUMNS = (("name", "NAME"), ("vnet_ip", "PRIVATE IP"), ("public_key", "PUBLIC KEY"), ("added", "ADDED"))
STATUS_COLUMNS = (
    ("host", "HOST"),
    ("peer", "PEER"),
    ("vnet_ip", "PRIVATE IP"),
    ("endpoint", "ENDPOINT"),
    ("handshake", "HANDSHAKE"),
    ("rx_bytes", "BYTES IN"),
    ("tx_bytes", "BYTES OUT"),
)


@click.group()
def vnet() -> None:
    """The private network: hosts, their LXCs and admins' machines over WireGuard."""


def apply(app: App) -> None:
    """Put the mesh on every ready host; a host that could not be reached is an error."""
    from infr.errors import RemoteError
    from infr.vnet import members

    failed = members.deploy(app.session, click.echo)
    if failed:
        raise RemoteError(
            f"the change is saved but did not reach {', '.join(sorted(failed))}",
            "run 'infr vnet apply' once the host is reachable",
        )


@vnet.command(name="apply")
@dry_run.option
@pass_app
def apply_(app: App, dry: bool) -> None:
    """Make every host's mesh match state (after adding or removing LXCs, for instance)."""
    if dry:
        _dry(app)
        return
    apply(app)


def _dry(app: App, edit: Callable[[Change], object] | None = None) -> None:
    """The mesh is on every host."""
    dry_run.show(app, edit, hosts=app.session.inventory().hosts, features=["vnet"])


@vnet.command()
@click.argument("name")
@click.option("--ip", default=None, help="The vnet address to ask for (default: the next free one).")
@pass_app
def join(app: App, name: str, ip: str | None) -> None:
    """Make this machine the peer NAME: a key pair made here, and a wg-quick config for it.

    Again on the same machine: same key, config rewritten. On another: new key, same address.
    """
    from infr.vnet import join as vnet_join

    path, notes = vnet_join.join(app.session, name, ip)
    for note in notes:
        click.echo(note)
    click.echo(f"{name}: config written to {path} (private: it holds this machine's key)")
    apply(app)
    click.echo(f"bring it up with: sudo wg-quick up {path}")
    click.echo(f"when hosts or LXCs change, run 'infr vnet join {name}' here again: same key, config rewritten")


@vnet.group(cls=DefaultGroup)
def peers() -> None:
    """Admins' machines on the private network."""


@peers.command(name="list")
@format_option
@pass_app
def list_(app: App, fmt: str | None) -> None:
    """List the peers: NAME, PRIVATE IP, PUBLIC KEY."""
    rows = [asdict(p) for p in sorted(app.session.inventory().peers.values(), key=lambda p: p.name)]
    emit_rows(rows, PEER_COLUMNS, fmt, empty="no peers yet: 'infr vnet join NAME' or 'infr vnet peers add'")


@peers.command()
@click.argument("name")
@click.option("--public-key", required=True, help="The machine's WireGuard public key ('wg pubkey').")
@click.option("--ip", default=None, help="The vnet address to ask for (default: the next free one).")
@dry_run.option
@pass_app
def add(app: App, name: str, public_key: str, ip: str | None, dry: bool) -> None:
    """Add someone's machine from its public key; for an existing NAME, a new key, same address."""
    from infr.vnet import peers as vnet_peers

    if dry:
        _dry(app, lambda change: vnet_peers.add_peer(change, name, public_key.strip(), ip))
        return
    with changing(app) as change:
        vnet_peers.add_peer(change, name, public_key.strip(), ip)
    apply(app)


@peers.command()
@click.argument("name")
@dry_run.option
@pass_app
def remove(app: App, name: str, dry: bool) -> None:
    """Take the peer NAME off the network (every host drops it at once)."""
    from infr.vnet import peers as vnet_peers

    if dry:
        _dry(app, lambda change: vnet_peers.remove_peer(change, name))
        return
    with changing(app) as change:
        vnet_peers.remove_peer(change, name)
    apply(app)


@vnet.command()
@format_option
@pass_app
def status(app: App, fmt: str | None) -> None:
    """Every tunnel as each host sees it: last handshake (stale after 3 minutes), bytes in and out."""
    from infr.vnet import status as vnet_status

    rows, failed = vnet_status.status(app.session)
    emit_rows(rows, STATUS_COLUMNS, fmt, empty="no tunnels: is any host ready?")
    for host, error in sorted(failed.items()):
        click.echo(f"{host}: unreachable: {error}", err=True)
    if failed:
        raise click.exceptions.Exit(1)


@vnet.command()
@pass_app
def hosts(app: App) -> None:
    """Print an /etc/hosts block with every vnet name, for machines without infr's DNS."""
    from infr.vnet import desired

    click.echo(desired.hosts_block(app.session.inventory(), app.session.settings()), nl=False)
