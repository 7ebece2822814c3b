"""`infr hosts add --adopt` and friends on real Debian 12 VMs: the manager account, locked-down
sshd, names, software, the containers' bridge, HAProxy, pinned host keys, keys pushed to hosts,
and runs that are cut off half-way and then repaired."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from pathlib import Path

import paramiko
import pytest

from infr.lab import Lab, LabHost
from infr.state.session import Session
from tests.conftest import make_key, seed_lxc
from tests.lab.conftest import Fleet, LabKey, infr

# Adopting installs a host's software: minutes under emulation, more than pytest's default.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(3600)]


def login(ip: str, user: str, key: Path | None = None, password: str | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        ip,
        username=user,
        key_filename=str(key) if key else None,
        password=password,
        look_for_keys=False,
        allow_agent=False,
        timeout=20,
        banner_timeout=20,
        auth_timeout=20,
    )
    return client


def run_as_manager(ip: str, key: Path, command: str, timeout: float = 120) -> tuple[int, str]:
    client = login(ip, "manager", key)
    try:
        _, stdout, _ = client.exec_command(command, timeout=timeout)
        stdout.channel.set_combine_stderr(True)
        out = stdout.read().decode()
        return stdout.channel.recv_exit_status(), out
    finally:
        client.close()


@pytest.fixture(scope="module")
def state(fleet: Fleet) -> Path:
    return fleet.state


@pytest.fixture(scope="module")
def adopted(fleet: Fleet) -> LabHost:
    """Bob, adopted by the fleet fixture on a fresh lab VM."""
    return fleet.bob


def test_adopt_records_a_ready_host_with_its_pinned_key(state: Path, adopted: LabHost) -> None:
    host = Session(state).inventory().hosts["bob"]
    assert host.status == "ready"
    assert host.public_ip == adopted.ip
    assert host.vnet_ip == "10.8.1.1"
    assert host.host_key.startswith(("ssh-ed25519 ", "ecdsa-sha2-", "ssh-rsa "))


def test_manager_has_the_admin_key_and_passwordless_sudo(adopted: LabHost, lab_key: LabKey) -> None:
    code, out = run_as_manager(adopted.ip, lab_key.private, "id -un; sudo -n id -un; hostname; findmnt -no FSTYPE /")
    assert code == 0, out
    assert out.split() == ["manager", "root", "bob", "btrfs"]


def test_root_and_password_logins_are_turned_off(adopted: LabHost, lab_key: LabKey, lab: Lab) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        login(adopted.ip, "root", key=lab_key.private)
    with pytest.raises(paramiko.AuthenticationException):
        login(adopted.ip, "root", password=lab.root_password)


def test_bridge_software_and_haproxy_are_in_place(adopted: LabHost, lab_key: LabKey) -> None:
    code, out = run_as_manager(
        adopted.ip,
        lab_key.private,
        "ip -4 -o addr show infrbr0; dpkg-query -W -f '${Package} ' lxc haproxy certbot btrbk wireguard-tools;"
        " systemctl is-active haproxy lxc-net",
    )
    assert code == 0, out
    assert "10.8.1.1/16" in out
    for package in ("lxc", "haproxy", "certbot", "btrbk", "wireguard-tools"):
        assert package in out
    assert out.split()[-2:] == ["active", "active"]
    request = urllib.request.Request(f"http://{adopted.ip}/", headers={"Host": "nobody.example.net"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=20)
    assert answer.value.code == 404
    assert b"nobody.example.net" in answer.value.read()


def test_adopting_again_changes_nothing(state: Path, adopted: LabHost, lab_key: LabKey) -> None:
    head = subprocess.run(["git", "-C", str(state), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    result = infr(state, lab_key.private, "hosts", "add", "--adopt", "--yes", "bob", adopted.ip)
    assert result.returncode == 0, result.stderr
    assert "nothing changed" in result.stdout
    again = infr(state, lab_key.private, "host", "bob", "reconfigure")
    assert again.returncode == 0, again.stderr
    assert "bob: nothing changed" in again.stdout
    assert subprocess.run(["git", "-C", str(state), "rev-parse", "HEAD"], capture_output=True, text=True).stdout == head


def test_keys_added_and_removed_reach_the_host(state: Path, adopted: LabHost, lab_key: LabKey, tmp_path: Path) -> None:
    second = make_key(tmp_path, comment="carol@laptop")
    added = infr(state, lab_key.private, "keys", "add", str(second))
    assert added.returncode == 0, added.stderr
    private = second.with_suffix("")
    assert run_as_manager(adopted.ip, private, "true")[0] == 0
    removed = infr(state, lab_key.private, "keys", "remove", "carol@laptop")
    assert removed.returncode == 0, removed.stderr
    with pytest.raises(paramiko.AuthenticationException):
        login(adopted.ip, "manager", key=private)


def test_a_changed_host_key_is_refused_until_repinned(state: Path, adopted: LabHost, lab_key: LabKey) -> None:
    host_file = state / "hosts" / "bob.toml"
    original = host_file.read_text()
    pinned = Session(state).inventory().hosts["bob"].host_key
    # A well-formed key (32 bytes: "Well, this is not the real key!!"), only not bob's: state
    # refuses a damaged one at load, before any host is asked.
    fake = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFdlbGwsIHRoaXMgaXMgbm90IHRoZSByZWFsIGtleSEh"
    host_file.write_text(original.replace(pinned, fake))
    try:
        refused = infr(state, lab_key.private, "host", "bob", "reconfigure")
        assert refused.returncode == 1
        assert "infr host bob reconfigure -k" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        repinned = infr(state, lab_key.private, "host", "bob", "reconfigure", "-k")
        assert repinned.returncode == 0, repinned.stderr
        assert Session(state).inventory().hosts["bob"].host_key == pinned
    finally:  # the fleet is shared: whatever failed here, the later tests get bob's real key
        if fake in host_file.read_text():
            host_file.write_text(original)


def test_remove_refuses_while_lxcs_use_the_host(state: Path, adopted: LabHost, lab_key: LabKey) -> None:
    seed_lxc(state, "fozzie", "bob")
    try:
        refused = infr(state, lab_key.private, "host", "bob", "remove")
        assert refused.returncode == 1
        assert "LXC fozzie" in refused.stderr
        assert "bob" in Session(state).inventory().hosts
    finally:  # the fleet is shared: take the made-up LXC back out of state
        with Session(state).change() as change:
            change.delete_lxc("fozzie")


def test_an_adopt_cut_off_half_way_is_repaired_by_the_next_run(fleet: Fleet, lab_key: LabKey) -> None:
    cutoff = fleet.cutoff
    assert cutoff.killed_status == -signal.SIGKILL, cutoff.killed_output
    assert cutoff.status_after_kill == "installing"
    assert cutoff.repair is not None
    assert cutoff.repair.returncode == 0, cutoff.repair.stderr + cutoff.repair.stdout
    code, out = run_as_manager(fleet.tom.ip, lab_key.private, "sudo -n systemctl is-active haproxy lxc-net")
    assert (code, out.split()) == (0, ["active", "active"])


def test_a_host_adopted_elsewhere_joins_another_state_with_the_same_admin_key(fleet: Fleet) -> None:
    tom = Session(fleet.state).inventory().hosts["tom"]
    assert (tom.status, tom.public_ip, tom.vnet_ip) == ("ready", fleet.tom.ip, "10.8.1.2")
