"""The vnet feature planning a real host over SSH: this machine, through sshd on 127.0.0.1.

The plan only reads (the key's public half, the live interface, files, the unit), so it
runs against this machine as it is; it must find no mesh here and change nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from infr.connector import SSHConnection, Target
from infr.engine.run import Context
from infr.state.model import HOST_READY, Host, Inventory
from infr.state.session import Session
from infr.vnet import desired
from infr.vnet.feature import FEATURE
from tests.integration.sshd import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    KeyPair,
    Sshd,
    client_key_fixture,
    sshd_factory_fixture,
)

pytestmark = pytest.mark.integration

FILES = (desired.ZONES_PATH, desired.CONF_PATH, desired.UP_SCRIPT, desired.UNIT_PATH)


class StateOnly:
    """What the feature reads from a session: the inventory and the settings."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv

    def inventory(self) -> Inventory:
        return self.inv

    def settings(self) -> dict[str, object]:
        return {"vnetListenPort": 51820}


def test_plan_of_a_host_without_the_mesh_over_real_ssh(sshd_factory: Callable[..., Sshd], client_key: KeyPair) -> None:
    if any(Path(p).exists() for p in (desired.KEY_PATH, *FILES)):
        pytest.skip("this machine holds an infr mesh")
    if shutil.which("wg") is None:
        pytest.skip("wireguard-tools is not installed")
    server = sshd_factory()
    inv = Inventory(config={})
    inv.hosts = {
        "a": Host("a", "127.0.0.1", "10.8.1.1", HOST_READY),
        "b": Host("b", "203.0.113.2", "10.8.1.2", HOST_READY, wg_public_key="B" * 43 + "="),
    }
    target = Target("a", server.host, server.port, user="root", key_file=client_key.private)
    with SSHConnection.connect(target) as conn:
        steps = FEATURE.plan(Context(cast(Session, StateOnly(inv))), inv.hosts["a"], conn)
    described = [s.description for s in steps]
    assert described == ["generate the WireGuard key on a", *(f"create {p}" for p in FILES), "start the vnet on a"]
    assert "PublicKey = " + "B" * 43 + "=" in steps[2].diff  # the config's diff names b
    assert not any(Path(p).exists() for p in (desired.KEY_PATH, *FILES))  # planning wrote nothing
