"""A routing change against a host that cannot be reached: saved, said so, and applied by the rerun.

The unreachable host is real: its SSH connection goes to a loopback port that is bound
but not listening, so the connector sees "connection refused" as it would from a dead VPS.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infr.connector import SSHConnection
from infr.errors import RemoteError
from infr.routing import deploy as routing_deploy
from infr.state.model import TcpForward
from infr.state.store import Store
from infr.vnet import members
from tests.conftest import run_cli, seed_host, seed_lxc, snapshot

# (command, the field it sets, its value after the change)
ROUTING = [
    (["http", "FORWARD"], "http", "FORWARD"),
    (["https", "TERMINATE"], "https", "TERMINATE"),
    (["http-port", "8080"], "http_port", 8080),
    (["https-port", "8443"], "https_port", 8443),
    (["add-alias", "www.example.org"], "aliases", ["old.example.org", "www.example.org"]),
    (["remove-alias", "old.example.org"], "aliases", []),
    (["add-tcp-forward", "2222", "22"], "tcp_forwards", [TcpForward(5432, 5432), TcpForward(2222, 22)]),
    (["remove-tcp-forward", "5432"], "tcp_forwards", []),
]


@pytest.fixture
def world(state_dir: Path) -> Path:
    seed_host(state_dir, "bob", "203.0.113.10", status="ready")
    seed_lxc(state_dir, "fozzie", "bob", aliases=["old.example.org"], tcp_forwards=[TcpForward(5432, 5432)])
    return state_dir


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every host is at a loopback port that refuses connections."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        port = closed.getsockname()[1]
        connect = SSHConnection.connect.__func__  # type: ignore[attr-defined]

        def refused(cls: type[SSHConnection], target: Any) -> SSHConnection:
            return connect(cls, dataclasses.replace(target, host="127.0.0.1", port=port, timeout=5))  # type: ignore[no-any-return]

        monkeypatch.setattr(SSHConnection, "connect", classmethod(refused))
        yield


class Reachable:
    """A host that answers: HAProxy deploys are counted, not run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.deployed: list[str] = []
        monkeypatch.setattr(SSHConnection, "connect", lambda target: self)
        monkeypatch.setattr(routing_deploy, "deploy", self.deploy)

    def __enter__(self) -> Reachable:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def deploy(self, conn: object, session: object, host: Any, report: object) -> list[str]:
        self.deployed.append(host.name)
        return ["haproxy backend fozzie changed"]


@pytest.mark.parametrize(("command", "field", "value"), ROUTING, ids=[" ".join(c) for c, _, _ in ROUTING])
def test_a_change_the_host_did_not_get_says_saved_and_the_rerun_applies_it(
    world: Path, unreachable: None, monkeypatch: pytest.MonkeyPatch, command: list[str], field: str, value: object
) -> None:
    result = run_cli(world, "lxc", "fozzie", *command)
    assert isinstance(result.exception, RemoteError), result.output
    text = str(result.exception)
    assert text.startswith("saved, not applied to bob: cannot reach bob"), text
    assert text.endswith(
        f"(run `infr lxc fozzie {' '.join(command)}` again (or `infr host bob reconfigure`) once it is reachable)"
    ), text
    assert "\n" not in text
    assert getattr(Store(world).load().lxcs["fozzie"], field) == value  # saved

    host = Reachable(monkeypatch)
    before = snapshot(world)
    again = run_cli(world, "lxc", "fozzie", *command)
    assert again.exit_code == 0, (again.output, again.exception)
    assert host.deployed == ["bob"]  # applied, though state says it is done already
    assert again.stdout.splitlines()[-1] == "bob: applied"
    assert snapshot(world) == before


def test_zone_change_the_hosts_did_not_get_says_saved_and_the_rerun_applies_it(
    world: Path, unreachable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_cli(world, "lxc", "fozzie", "zone", "shop")
    assert isinstance(result.exception, RemoteError), result.output
    assert str(result.exception) == (
        "saved, not applied to bob (run `infr lxc fozzie zone shop` again (or `infr vnet apply`) once it is reachable)"
    )
    assert Store(world).load().lxcs["fozzie"].zone == "shop"
    applied: list[str] = []
    monkeypatch.setattr(members, "deploy", lambda session, report: applied.append("mesh") or {})
    again = run_cli(world, "lxc", "fozzie", "zone", "shop")
    assert again.exit_code == 0 and applied == ["mesh"], again.output
    assert again.stdout.splitlines()[0] == "fozzie: already in zone shop"


def test_no_apply_names_the_host_even_when_nothing_changed(world: Path) -> None:
    result = run_cli(world, "lxc", "--no-apply", "fozzie", "http", "NONE")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "fozzie: http is already NONE",
        "not applied (--no-apply); apply with: infr apply bob",
    ]
