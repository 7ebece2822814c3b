"""infr lab up | status | down: real Debian 12 hosts as local VMs, to try infr without a VPS."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from infr.cli.app import App
from infr.cli.common import pass_app
from infr.cli.output import emit_rows, format_option
from infr.errors import UsageError

if TYPE_CHECKING:
    from infr.lab import Lab


def _lab(app: App, ssh_key: Path | None = None) -> Lab:
    from infr.cli.cmd_init import default_public_key
    from infr.lab import Lab

    key_path = ssh_key or default_public_key()
    keys = _public_keys(key_path) if key_path is not None else ""
    if (app.state_dir / "infr.toml").exists():
        keys += "".join(f"{k.key}\n" for k in app.session.inventory().keys.values())
    return Lab(app.state_dir / "lab", keys)


def _public_keys(path: Path) -> str:
    """The OpenSSH public keys in `path`, refused with the file named unless every line is one."""
    from infr.state import validate

    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text file of SSH public keys", "pass --ssh-key FILE.pub") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and (problem := validate.ssh_public_key(line)):
            raise UsageError(f"{path}, line {number}: {problem}", "pass --ssh-key FILE.pub")
    return text


@click.group()
def lab() -> None:
    """Local lab hosts: Debian 12 VMs on a private bridge (198.51.100.0/24), like fresh VPSes."""


@lab.command()
@click.option("--hosts", "count", type=click.IntRange(1, 8), default=2, show_default=True, help="How many VMs.")
@click.option(
    "--ssh-key",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Public key allowed to log in as root (default: your ~/.ssh key and infr's admin keys).",
)
@pass_app
def up(app: App, count: int, ssh_key: Path | None) -> None:
    """Start COUNT lab VMs and wait until each answers SSH."""
    lab_ = _lab(app, ssh_key)
    if not lab_.admin_pubkey:
        raise UsageError("no SSH public key to let into the lab VMs", "pass --ssh-key FILE.pub")
    hosts = lab_.up(count, progress=lambda message: click.echo(f"lab: {message}", err=True))
    for host in hosts:
        click.echo(f"{host.name}  {host.ip}  (root password in {app.state_dir / 'lab' / 'root_password'})")


@lab.command()
@format_option
@pass_app
def status(app: App, fmt: str | None) -> None:
    """Each lab VM: address, qemu pid, running, SSH answering, serial log."""
    rows = [asdict(h) | {"serial_log": str(h.serial_log)} for h in _lab(app).status()]
    columns = (("name", "NAME"), ("ip", "IP"), ("pid", "PID"), ("running", "RUNNING"), ("ssh_ok", "SSH"))
    emit_rows(rows, columns, fmt, empty="the lab is down: start it with 'infr lab up'")


@lab.command()
@pass_app
def down(app: App) -> None:
    """Stop every lab VM and remove its bridge, taps and disks."""
    _lab(app).down(progress=lambda message: click.echo(f"lab: {message}", err=True))
    click.echo("lab is down")


@lab.command()
@click.option("--use", is_flag=True, help="Also set lxcImageSource to it, so 'infr lxcs add' uses it.")
@pass_app
def rootfs(app: App, use: bool) -> None:
    """Build (once) a Debian rootfs tarball for containers, where LXC's image server is out of reach."""
    from infr.lab.image import default_cache_dir
    from infr.lab.rootfs import ensure_rootfs

    click.echo("lab: building the container rootfs with debootstrap (once; a few minutes)", err=True)
    tarball = ensure_rootfs(default_cache_dir())
    if use:
        from infr.cli.common import changing
        from infr.state.config import set_value

        with changing(app) as change:
            set_value(change, app.state_dir, "lxcImageSource", str(tarball))
    click.echo(str(tarball))
