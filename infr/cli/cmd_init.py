"""infr init."""

from __future__ import annotations

from pathlib import Path

import click

from infr.cli.app import App
from infr.cli.common import pass_app
from infr.errors import StateError, UsageError
from infr.state.settings import SETTINGS

PROMPTED = ("vnetNetwork", "vnetPoolStart", "dnsDomain", "dnsPrefix", "vnetPrefix")


def default_public_key() -> Path | None:
    for name in ("id_rsa.pub", "id_ed25519.pub"):
        candidate = Path.home() / ".ssh" / name
        if candidate.exists():
            return candidate
    return None


def _ask(key: str, given: str | None, assume_yes: bool) -> str:
    default = SETTINGS[key].default
    if given is not None:
        return given
    if assume_yes:
        if default is None:
            flag = "--" + "".join("-" + c.lower() if c.isupper() else c for c in key)
            raise UsageError(f"{key} has no default", f"give it with {flag}")
        return str(default)
    return str(click.prompt(f"{key} ({SETTINGS[key].help})", default=default))


@click.command()
@click.option("--vnet-network", help="Private network, CIDR (default 10.8.0.0/16).")
@click.option("--vnet-pool-start", help="First address handed out (default 10.8.1.0).")
@click.option("--dns-domain", help="Your domain, e.g. example.com.")
@click.option("--dns-prefix", help="Label for public names (default infr).")
@click.option("--vnet-prefix", help="Label for private names (default vnet).")
@click.option(
    "--ssh-key",
    type=click.Path(path_type=Path),
    help="Your SSH public key (default ~/.ssh/id_rsa.pub, then id_ed25519.pub).",
)
@click.option("--admin-email", help="Email for Let's Encrypt and backup failures.")
@click.option("-y", "--yes", "assume_yes", is_flag=True, help="Do not prompt; use flags and defaults.")
@pass_app
def init(
    app: App,
    vnet_network: str | None,
    vnet_pool_start: str | None,
    dns_domain: str | None,
    dns_prefix: str | None,
    vnet_prefix: str | None,
    ssh_key: Path | None,
    admin_email: str | None,
    assume_yes: bool,
) -> None:
    """Set up infr in the state directory (refuses to overwrite an existing setup)."""
    from infr.hosts.keys import key_name_for
    from infr.state.config import init_state
    from infr.state.store import Store

    if Store(app.state_dir).exists():
        raise StateError(
            f"infr is already set up in {app.state_dir}",
            "change settings with 'infr config set', or use another -w DIR",
        )
    given = dict(zip(PROMPTED, (vnet_network, vnet_pool_start, dns_domain, dns_prefix, vnet_prefix), strict=True))
    values = {key: _ask(key, given[key], assume_yes) for key in PROMPTED}
    key_path = ssh_key or default_public_key()
    if key_path is None and not assume_yes:
        key_path = Path(click.prompt("Initial SSH public key file"))
    if key_path is None:
        raise UsageError("no SSH public key found in ~/.ssh", "give one with --ssh-key FILE")
    if not key_path.is_file():
        raise UsageError(f"SSH key file {key_path} does not exist", "give the .pub file with --ssh-key FILE")
    values["adminEmail"] = _ask("adminEmail", admin_email, assume_yes)
    key_text = " ".join(key_path.read_text().split())
    key_name = key_name_for(key_text, key_path.name)
    init_state(app.state_dir, values, key_text, key_name)
    click.echo(f"infr is set up in {app.state_dir}.")
    click.echo(f"Admin key {key_name} added: {_fingerprint(key_text)} (from {key_path}).")
    click.echo("Next, add a host:")
    click.echo("  infr hosts add NAME IP          reinstalls the server: its disk is erased")
    click.echo("  infr hosts add --adopt NAME IP  takes over a Debian 12 server as it is, data kept")


def _fingerprint(key_text: str) -> str:
    from infr.hosts.keys import fingerprint

    return f"{key_text.split()[0]} {fingerprint(key_text)}"
