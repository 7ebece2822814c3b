"""`infr init`, unattended and interactive, through click's runner."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from infr.errors import StateError, UsageError, ValidationError
from infr.state.store import Store
from tests.conftest import make_key, run_cli, snapshot

FLAGS = [
    "--vnet-network",
    "10.9.0.0/16",
    "--vnet-pool-start",
    "10.9.2.0",
    "--dns-domain",
    "example.org",
    "--dns-prefix",
    "pub",
    "--vnet-prefix",
    "priv",
    "--admin-email",
    "me@example.org",
]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def test_unattended_init_with_every_flag(tmp_path: Path, admin_key: Path) -> None:
    root = tmp_path / "new"
    result = run_cli(root, "init", "--yes", *FLAGS, "--ssh-key", str(admin_key))
    assert result.exit_code == 0, (result.output, result.exception)
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(admin_key)], capture_output=True, text=True).stdout
    assert result.stdout.splitlines() == [  # issue 12 item 23: which key, and what each way to add a host does
        f"infr is set up in {root}.",
        f"Admin key alice@laptop added: ssh-ed25519 {fingerprint.split()[1]} (from {admin_key}).",
        "Next, add a host:",
        "  infr hosts add NAME IP          reinstalls the server: its disk is erased",
        "  infr hosts add --adopt NAME IP  takes over a Debian 12 server as it is, data kept",
    ]
    config = tomllib.loads((root / "config.toml").read_text())
    assert config == {
        "vnetNetwork": "10.9.0.0/16",
        "vnetPoolStart": "10.9.2.0",
        "dnsDomain": "example.org",
        "dnsPrefix": "pub",
        "vnetPrefix": "priv",
        "adminEmail": "me@example.org",
    }
    inv = Store(root).load()
    assert list(inv.keys) == ["alice@laptop"]
    assert inv.keys["alice@laptop"].key == " ".join(admin_key.read_text().split())
    assert git(root, "log", "--format=%s").splitlines() == ["infr init"]
    assert git(root, "status", "--porcelain") == ""
    assert "secrets.toml" in (root / ".gitignore").read_text().split()


def test_unattended_init_uses_the_defaults(tmp_path: Path, admin_key: Path) -> None:
    root = tmp_path / "new"
    result = run_cli(
        root, "init", "-y", "--dns-domain", "example.com", "--admin-email", "a@example.com", "--ssh-key", str(admin_key)
    )
    assert result.exit_code == 0, result.output
    config = Store(root).load().config
    assert (config["vnetNetwork"], config["vnetPoolStart"], config["dnsPrefix"], config["vnetPrefix"]) == (
        "10.8.0.0/16",
        "10.8.1.0",
        "infr",
        "vnet",
    )


def test_interactive_init_prompts_for_everything_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    key = make_key(home / ".ssh", comment="bob@desk")
    monkeypatch.setenv("HOME", str(home))
    root = tmp_path / "new"
    # vnetNetwork, vnetPoolStart (defaults), dnsDomain, dnsPrefix (default), vnetPrefix, adminEmail
    result = run_cli(root, "init", input="\n\nexample.com\n\nlan\nops@example.com\n")
    assert result.exit_code == 0, (result.output, result.exception)
    for prompt in ("vnetNetwork", "vnetPoolStart", "dnsDomain", "dnsPrefix", "vnetPrefix", "adminEmail"):
        assert prompt in result.output
    assert "[10.8.0.0/16]" in result.output  # defaults are offered
    inv = Store(root).load()
    assert inv.config["vnetPrefix"] == "lan" and inv.config["dnsPrefix"] == "infr"
    assert inv.config["adminEmail"] == "ops@example.com"
    assert list(inv.keys) == ["bob@desk"]  # ~/.ssh/id_ed25519.pub, named after its comment
    assert inv.keys["bob@desk"].key == key.read_text().strip()


def test_interactive_init_asks_for_a_key_file_when_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, admin_key: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    root = tmp_path / "new"
    result = run_cli(root, "init", input=f"\n\nexample.com\n\n\n{admin_key}\nops@example.com\n")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Initial SSH public key file" in result.output
    assert list(Store(root).load().keys) == ["alice@laptop"]


def test_init_refuses_to_overwrite_an_existing_setup(state_dir: Path, admin_key: Path) -> None:
    before = snapshot(state_dir)
    result = run_cli(state_dir, "init", "--yes", *FLAGS, "--ssh-key", str(admin_key))
    assert isinstance(result.exception, StateError)
    assert str(result.exception) == (
        f"infr is already set up in {state_dir} (change settings with 'infr config set', or use another -w DIR)"
    )
    assert snapshot(state_dir) == before
    interactive = run_cli(state_dir, "init", input="\n" * 10)
    assert isinstance(interactive.exception, StateError)
    assert "vnetNetwork" not in interactive.output  # refused before asking anything


def test_unattended_init_without_a_domain_names_the_flag(tmp_path: Path, admin_key: Path) -> None:
    root = tmp_path / "new"
    result = run_cli(root, "init", "--yes", "--admin-email", "a@example.com", "--ssh-key", str(admin_key))
    assert isinstance(result.exception, UsageError) and result.exception.exit_code == 2
    assert str(result.exception) == "dnsDomain has no default (give it with --dns-domain)"
    assert not root.exists()


def test_init_reports_every_bad_value_and_creates_nothing(tmp_path: Path, admin_key: Path) -> None:
    root = tmp_path / "new"
    bad = ["--dns-domain", "www.example.com", "--admin-email", "nobody", "--dns-prefix", "Pub", "--yes"]
    result = run_cli(root, "init", *bad, "--ssh-key", str(admin_key))
    assert isinstance(result.exception, ValidationError)
    assert result.exception.problems == [
        "dnsDomain 'www.example.com' is not a registrable domain: use example.com",
        "dnsPrefix 'Pub' must be lowercase",
        "adminEmail 'nobody' is not an email address",
    ]
    assert "nothing was created" in (result.exception.hint or "")
    assert not root.exists()


def test_init_checks_the_pool_start_is_inside_the_network(tmp_path: Path, admin_key: Path) -> None:
    root = tmp_path / "new"
    args = ["--vnet-pool-start", "10.9.1.0", "--dns-domain", "example.com", "--admin-email", "a@example.com"]
    result = run_cli(root, "init", "--yes", *args, "--ssh-key", str(admin_key))
    assert isinstance(result.exception, ValidationError)
    assert result.exception.problems == ["vnetPoolStart 10.9.1.0 is outside vnetNetwork 10.8.0.0/16"]
    assert not root.exists()


def test_init_refuses_a_missing_or_bad_key_file(tmp_path: Path, admin_key: Path) -> None:
    root = tmp_path / "new"
    args = ["--yes", "--dns-domain", "example.com", "--admin-email", "a@example.com"]
    missing = run_cli(root, "init", *args, "--ssh-key", str(tmp_path / "nope.pub"))
    assert isinstance(missing.exception, UsageError)
    assert str(missing.exception) == (
        f"SSH key file {tmp_path / 'nope.pub'} does not exist (give the .pub file with --ssh-key FILE)"
    )
    private = run_cli(root, "init", *args, "--ssh-key", str(admin_key.with_suffix("")))
    assert isinstance(private.exception, ValidationError)
    assert "not an OpenSSH public key" in str(private.exception)
    assert not root.exists()
