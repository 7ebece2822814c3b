"""An LXC's status: "creating" from `lxcs add` recording it until the container is made,
"ready" after; a failed add stays visible, and its rerun or `lxc NAME remove` finishes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infr.backups import pairs
from infr.errors import RemoteError, ValidationError
from infr.lxcs import containers
from infr.routing import deploy
from infr.state.store import Store
from infr.vnet import members
from tests.conftest import run_cli, seed_host, seed_lxc
from tests.unit.fake_host import FakeHost


def statuses(root: Path) -> dict[str, str]:
    result = run_cli(root, "lxcs", "-o", "json")
    assert result.exit_code == 0, result.output
    return {row["name"]: row["status"] for row in json.loads(result.stdout)}


@pytest.fixture
def bob(state_dir: Path) -> Path:
    seed_host(state_dir, "bob", "203.0.113.10", status="ready")
    return state_dir


def test_lxcs_shows_a_status_column(bob: Path) -> None:
    seed_lxc(bob, "web", "bob")
    seed_lxc(bob, "half", "bob", status="creating")
    out = [line.split() for line in run_cli(bob, "lxcs").stdout.splitlines()]
    assert out[0] == ["NAME", "HOST", "PUBLIC", "IP", "PRIVATE", "IP", "STATUS"]
    assert [row[0] + " " + row[-1] for row in out[2:]] == ["half creating", "web ready"]
    assert statuses(bob) == {"half": "creating", "web": "ready"}
    assert "Status:         creating" in run_cli(bob, "lxc", "half").stdout.splitlines()


def test_a_file_from_before_the_status_field_is_a_ready_lxc(bob: Path) -> None:
    seed_lxc(bob, "web", "bob")
    path = bob / "lxcs" / "web.toml"
    path.write_text("".join(line for line in path.read_text().splitlines(True) if not line.startswith("status")))
    assert Store(bob).load().lxcs["web"].status == "ready"


def test_a_status_that_is_not_creating_or_ready_is_refused_at_load(bob: Path) -> None:
    seed_lxc(bob, "web", "bob")
    path = bob / "lxcs" / "web.toml"
    path.write_text(path.read_text().replace('status = "ready"', 'status = "running"'))
    with pytest.raises(ValidationError, match="lxcs/web.toml: status must be creating or ready"):
        Store(bob).load()


def _quiet_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mesh and backups after an add or remove: not what these tests are about."""
    monkeypatch.setattr(members, "after_lxc_change", lambda session, report: [])
    monkeypatch.setattr(pairs, "redeploy_targets", lambda session, hosts, report: [])


def test_a_failed_add_stays_creating_and_its_rerun_makes_it_ready(
    bob: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _quiet_neighbours(monkeypatch)

    def unreachable(target: Any) -> FakeHost:
        raise RemoteError("cannot connect to bob: connection refused")

    monkeypatch.setattr(containers.SSHConnection, "connect", unreachable)
    failed = run_cli(bob, "lxcs", "add", "gonzo", "debian", "bookworm", "bob")
    assert isinstance(failed.exception, RemoteError)
    assert "gonzo: left 'creating' in state: run the same command again to finish it" in failed.stdout
    assert statuses(bob) == {"gonzo": "creating"}

    monkeypatch.setattr(containers.SSHConnection, "connect", lambda target: FakeHost())
    monkeypatch.setattr(containers, "_make", lambda session, lxc, report, refusal: ["created container gonzo"])
    again = run_cli(bob, "lxcs", "add", "gonzo", "debian", "bookworm", "bob")
    assert again.exit_code == 0, (again.output, again.exception)
    assert statuses(bob) == {"gonzo": "ready"}
    assert "gonzo: LXC gonzo is ready" in again.stdout.splitlines()


def test_remove_cleans_up_what_a_failed_add_left(bob: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _quiet_neighbours(monkeypatch)
    seed_lxc(bob, "gonzo", "bob", status="creating")
    host = FakeHost({("lxc-info",): (1, b"")})  # LXC does not know it: no config was written yet
    monkeypatch.setattr(containers.SSHConnection, "connect", lambda target: host)
    monkeypatch.setattr(deploy, "deploy", lambda conn, session, host, report: [])
    result = run_cli(bob, "lxc", "gonzo", "remove", "--yes")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "gonzo: removed what the unfinished add of gonzo left" in result.stdout.splitlines()
    assert ("btrfs", "-q", "subvolume", "delete", "--", "/var/lib/lxc/gonzo/rootfs") in host.ran
    assert ("rm", "-rf", "--one-file-system", "--", "/var/lib/lxc/gonzo") in host.ran
    assert "gonzo" not in Store(bob).load().lxcs
