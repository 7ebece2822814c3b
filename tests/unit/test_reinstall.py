"""`infr hosts add NAME IP` without --adopt: the box's static network, the watch after the
reboot, and the typed confirmation. The real reinstall runs in tests/lab/test_reinstall.py."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from infr.errors import InfrError, UsageError
from infr.hosts import reinstall
from infr.hosts.boot.medium import Phase
from infr.hosts.boot.preseed import Network
from infr.state.session import Session
from tests.conftest import run_cli, seed_host

PROBE = "gateway=198.51.100.1\naddress=198.51.100.11/24\nnameserver=9.9.9.9\n"
# A well-formed ed25519 key (type, then 32 bytes), as state requires of a pinned key.
OLD_KEY = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + b"o" * 32).decode()


def test_the_static_network_is_the_boxs_own() -> None:
    assert reinstall.parse_network_probe(PROBE) == Network("198.51.100.11/24", "198.51.100.1", ("9.9.9.9",))


def test_given_nameservers_replace_the_boxs_own() -> None:
    assert reinstall.parse_network_probe(PROBE, ("10.0.0.53",)).nameservers == ("10.0.0.53",)


def test_a_box_without_nameserver_needs_one_given() -> None:
    with pytest.raises(UsageError, match="--nameserver"):
        reinstall.parse_network_probe("gateway=198.51.100.1\naddress=198.51.100.11/24\nnameserver=\n")


def test_a_box_without_default_route_cannot_keep_its_address() -> None:
    with pytest.raises(InfrError, match="static network"):
        reinstall.parse_network_probe("gateway=\naddress=198.51.100.11/24\n")


def watch(state_dir: Path, monkeypatch: pytest.MonkeyPatch, answers: bool, key: str) -> list[tuple[Phase, str]]:
    """Run the post-reboot watch against a box whose SSH port is faked; return what it reported."""
    host = seed_host(state_dir, "bob", "192.0.2.10", host_key=OLD_KEY)
    monkeypatch.setattr(reinstall, "POLL_INTERVAL", 0.01)
    # SSH is down for the first poll (the reboot), then answers as told.
    polls = iter([False])
    monkeypatch.setattr(reinstall, "_ssh_answers", lambda ip, port: next(polls, answers))
    monkeypatch.setattr(reinstall, "server_host_key", lambda ip, port: key)
    seen: list[tuple[Phase, str]] = []
    clock = reinstall._Clock(lambda phase, elapsed, message: seen.append((phase, message)))
    clock.phase = Phase.REBOOTING
    reinstall._wait_for_installed(Session(state_dir), host, 0.2, clock)
    return seen


def test_it_gives_up_naming_the_phase_and_what_it_saw(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InfrError) as error:
        watch(state_dir, monkeypatch, answers=False, key="")
    assert "min in phase 'installer running': SSH went away at 0 s; nothing answered since" in error.value.message
    assert error.value.message.startswith("bob: gave up after ")


def test_the_old_system_coming_back_stops_the_watch(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InfrError, match="old system came back"):
        watch(state_dir, monkeypatch, answers=True, key=OLD_KEY)


def test_anything_but_yes_aborts_before_the_box_is_touched(state_dir: Path) -> None:
    result = run_cli(state_dir, "hosts", "add", "bob", "192.0.2.10", input="yes\n")
    assert result.exit_code == 1
    assert "Type YES to go on" in result.output
    assert "Aborted" in result.output
    assert Session(state_dir).inventory().hosts == {}
