"""`infr hosts add --adopt` and friends on real Debian 12 VMs: the manager account, locked-down
sshd, names, software, the containers' bridge, HAProxy, pinned host keys, keys pushed to hosts,
and runs that are cut off half-way and then repaired."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import paramiko
import pytest

from infr.core.session import Session
from infr.lab import Lab, LabHost
from tests.conftest import make_key, seed_lxc
from tests.lab.conftest import LabKey

# Adopting installs a host's software: minutes under emulation, more than pytest's default.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(3600)]
# A module fixture that fails runs again for every test; remember the failure instead.
_failures: dict[str, str] = {}
INFR = [str(Path(__import__("sys").executable).with_name("infr"))]


def infr(state: Path, key: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INFR, "-w", str(state), "-i", str(key), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


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


def run_as_manager(ip: str, key: Path, command: str) -> tuple[int, str]:
    client = login(ip, "manager", key)
    try:
        _, stdout, _ = client.exec_command(command, timeout=120)
        stdout.channel.set_combine_stderr(True)
        out = stdout.read().decode()
        return stdout.channel.recv_exit_status(), out
    finally:
        client.close()


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory, lab_key: LabKey) -> Path:
    from infr.core.config import init_state
    from tests.conftest import DEFAULT_SETTINGS

    root = tmp_path_factory.mktemp("adopt") / "state"
    init_state(root, dict(DEFAULT_SETTINGS), lab_key.public, "admin")
    return root


@pytest.fixture(scope="module")
def adopted(state: Path, lab_key: LabKey, lab_hosts: list[LabHost]) -> LabHost:
    if "adopt" in _failures:
        pytest.fail(_failures["adopt"])
    bob = lab_hosts[0]
    result = infr(state, lab_key.private, "hosts", "add", "--adopt", "--yes", "bob", bob.ip)
    if result.returncode != 0:
        _failures["adopt"] = f"adopting bob failed: {result.stderr}{result.stdout}"
        pytest.fail(_failures["adopt"])
    return bob


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
    fake = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFdlbGwsIHRoaXMgaXMgbm90IHRoZSByZWFsIGtleSE="
    host_file.write_text(original.replace(pinned, fake))
    refused = infr(state, lab_key.private, "host", "bob", "reconfigure")
    assert refused.returncode == 1
    assert "infr host bob reconfigure -k" in refused.stderr
    assert "Traceback" not in refused.stderr
    repinned = infr(state, lab_key.private, "host", "bob", "reconfigure", "-k")
    assert repinned.returncode == 0, repinned.stderr
    assert Session(state).inventory().hosts["bob"].host_key == pinned


def test_remove_refuses_while_lxcs_use_the_host(state: Path, adopted: LabHost, lab_key: LabKey) -> None:
    seed_lxc(state, "fozzie", "bob")
    refused = infr(state, lab_key.private, "host", "bob", "remove")
    assert refused.returncode == 1
    assert "LXC fozzie" in refused.stderr
    assert "bob" in Session(state).inventory().hosts


def test_an_adopt_cut_off_half_way_is_repaired_by_the_next_run(
    tmp_path: Path, lab_key: LabKey, lab_hosts: list[LabHost]
) -> None:
    from infr.core.config import init_state
    from tests.conftest import DEFAULT_SETTINGS

    tom = lab_hosts[1]
    state = tmp_path / "state"
    init_state(state, dict(DEFAULT_SETTINGS), lab_key.public, "admin")
    command = [*INFR, "-w", str(state), "-i", str(lab_key.private), "hosts", "add", "--adopt", "--yes", "tom", tom.ip]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert first.stdout is not None
    seen = []
    for line in first.stdout:  # wait until it is busy on the host, then cut it off
        seen.append(line)
        if "installing software" in line:
            time.sleep(5)
            first.send_signal(signal.SIGKILL)
            break
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, "".join(seen)
    assert Session(state).inventory().hosts["tom"].status == "installing"
    second = infr(state, lab_key.private, "hosts", "add", "--adopt", "--yes", "tom", tom.ip)
    assert second.returncode == 0, second.stderr + second.stdout
    assert Session(state).inventory().hosts["tom"].status == "ready"
    code, out = run_as_manager(tom.ip, lab_key.private, "sudo -n systemctl is-active haproxy lxc-net")
    assert (code, out.split()) == (0, ["active", "active"])
