"""The host base feature as data: a host's facts in, the steps of its plan out."""

from __future__ import annotations

from typing import Any, cast

from infr.engine import facts
from infr.engine.run import Context
from infr.hosts import desired
from infr.hosts.feature import FEATURE, desired_files
from infr.state.model import Host, Inventory, Key
from infr.state.session import Session
from tests.conftest import DEFAULT_SETTINGS
from tests.unit.fake_host import FakeHost, file_listing

BOB = Host("bob", "203.0.113.10", "10.8.1.1", status="ready")
KEYS = {"alice": Key("alice", "ssh-ed25519 AAAAalice alice@laptop")}
AUTHORIZED_KEYS = "/home/manager/.ssh/authorized_keys"
UNITS = ("systemctl", "show")


class StateOnly:
    """What the feature reads from a session: the inventory and the settings."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv

    def inventory(self) -> Inventory:
        return self.inv

    def settings(self) -> dict[str, Any]:
        return dict(DEFAULT_SETTINGS)


def inventory(keys: dict[str, Key] = KEYS) -> Inventory:
    return Inventory(dict(DEFAULT_SETTINGS), {"bob": BOB}, {}, dict(keys))


def as_state_says(inv: Inventory) -> dict[str, tuple[bytes, str]]:
    specs = desired_files(inv, BOB, dict(DEFAULT_SETTINGS))
    return {s.path: (s.content, f"{s.owner}:{s.group}:{s.mode:o}") for s in specs}


def host(files: dict[str, tuple[bytes, str]], *, ssh: str = "active", missing: tuple[str, ...] = ()) -> FakeHost:
    installed = "".join(f"{p} ii \n" for p in desired.HOST_PACKAGES if p not in missing).encode()
    unit = f"Id=ssh.service\nLoadState=loaded\nActiveState={ssh}\nUnitFileState=enabled\n".encode()
    return FakeHost(
        {("dpkg-query",): (0, installed), ("sh", "-c", facts._READ_FILES): file_listing(files), UNITS: (0, unit)}
    )


def plan(inv: Inventory, fake: FakeHost) -> list[str]:
    return [s.description for s in FEATURE.plan(Context(cast(Session, StateOnly(inv))), BOB, fake)]


def test_a_host_as_state_says_has_nothing_to_do_and_is_read_in_three_commands() -> None:
    inv = inventory()
    fake = host(as_state_says(inv))
    assert plan(inv, fake) == []
    assert [argv[0] for argv in fake.ran] == ["dpkg-query", "sh", "systemctl"]


def test_a_removed_admin_key_a_missing_package_and_a_stopped_sshd_are_each_a_step() -> None:
    inv = inventory()
    files = as_state_says(inv)
    files[AUTHORIZED_KEYS] = (b"", files[AUTHORIZED_KEYS][1])
    steps = plan(inv, host(files, ssh="inactive", missing=("haproxy",)))
    assert steps == ["install haproxy", f"rewrite {AUTHORIZED_KEYS}", "start ssh"]


def test_a_key_added_in_state_shows_as_a_diff_of_authorized_keys() -> None:
    before = inventory()
    after = inventory({**KEYS, "carol": Key("carol", "ssh-ed25519 AAAAcarol carol@desk")})
    (step,) = FEATURE.plan(Context(cast(Session, StateOnly(after))), BOB, host(as_state_says(before)))
    assert step.description == f"rewrite {AUTHORIZED_KEYS}"
    assert "+ssh-ed25519 AAAAcarol carol@desk\n" in step.diff
    assert FEATURE.touched(before, after) == {"bob"}


def test_a_missing_sudoers_file_is_created_and_a_wrong_mode_only_set() -> None:
    inv = inventory()
    files = as_state_says(inv)
    del files["/etc/sudoers.d/infr-manager"]
    files["/etc/hostname"] = (files["/etc/hostname"][0], "root:root:666")
    assert plan(inv, host(files)) == [
        "create /etc/sudoers.d/infr-manager",
        "set /etc/hostname to root:root:644 (is root:root:666)",
    ]


def test_touched_is_every_host_for_a_setting_and_none_for_an_unrelated_edit() -> None:
    before = inventory()
    renamed = Inventory({**before.config, "dnsDomain": "example.net"}, before.hosts, {}, before.keys)
    assert FEATURE.touched(before, renamed) == {"bob"}
    assert FEATURE.touched(before, inventory()) == set()
