"""The WireGuard mesh on the adopted lab fleet (kernel WireGuard on both VMs): containers on
different hosts reach each other by vnet address and name, an admin peer (wireguard-go in a
network namespace on this machine, joined to the lab bridge) reaches them until it is
removed, a rebooted host comes back into the mesh by itself, zones block what they should,
and `infr vnet status` shows fresh handshakes and growing byte counts."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infr.lab import Lab
from infr.lab.lab import lab_id
from infr.state.session import Session
from infr.vnet.join import join_config_path
from tests.conftest import DEFAULT_SETTINGS
from tests.lab.conftest import Fleet, LabKey, infr, wait_for_manager
from tests.lab.test_adopt import run_as_manager

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]
VNET = f"{DEFAULT_SETTINGS['vnetPrefix']}.{DEFAULT_SETTINGS['dnsDomain']}"


def ok(fleet: Fleet, key: LabKey, *args: str, timeout: float = 1200) -> str:
    result = infr(fleet.state, key.private, *args, timeout=timeout)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def inside(fleet: Fleet, key: LabKey, host: str, lxc: str, command: str) -> tuple[int, str]:
    ip = fleet.bob.ip if host == "bob" else fleet.tom.ip
    return run_as_manager(ip, key.private, f"sudo lxc-attach -n {lxc} -- sh -c '{command}'")


def reaches(fleet: Fleet, key: LabKey, host: str, lxc: str, address: str) -> bool:
    # minbase containers have no iputils: busybox's ping
    return inside(fleet, key, host, lxc, f"busybox ping -c 2 -W 2 {address} >/dev/null")[0] == 0


@dataclass(frozen=True)
class Boxes:
    """Containers for the mesh tests: c1 on bob, c2 on tom; their vnet addresses."""

    c1: str
    c2: str


@pytest.fixture(scope="module")
def boxes(fleet: Fleet, lab_key: LabKey) -> Boxes:
    ok(fleet, lab_key, "lxcs", "add", "c1", "debian", "bookworm", "bob")
    ok(fleet, lab_key, "lxcs", "add", "c2", "debian", "bookworm", "tom")
    lxcs = Session(fleet.state).inventory().lxcs
    return Boxes(lxcs["c1"].vnet_ip, lxcs["c2"].vnet_ip)


def test_adopted_hosts_are_in_the_mesh_and_survive_as_a_unit(fleet: Fleet, lab_key: LabKey) -> None:
    hosts = Session(fleet.state).inventory().hosts
    assert hosts["bob"].wg_public_key and hosts["tom"].wg_public_key
    code, out = run_as_manager(
        fleet.bob.ip,
        lab_key.private,
        "systemctl is-enabled infr-mesh; systemctl is-active infr-mesh; sudo wg show infrwg0 peers",
    )
    assert code == 0, out
    assert out.split()[:2] == ["enabled", "active"]
    assert hosts["tom"].wg_public_key in out


def test_containers_on_different_hosts_reach_each_other_by_address_and_name(
    fleet: Fleet, lab_key: LabKey, boxes: Boxes
) -> None:
    assert reaches(fleet, lab_key, "bob", "c1", boxes.c2)
    assert reaches(fleet, lab_key, "tom", "c2", boxes.c1)
    block = ok(fleet, lab_key, "vnet", "hosts")
    assert f"{boxes.c2}\tc2.{VNET} c2\n" in block
    by_name = f"cat >> /etc/hosts <<EOF\n{block}EOF\nbusybox ping -c 2 -W 2 c2.{VNET}"
    code, out = inside(fleet, lab_key, "bob", "c1", by_name)
    assert code == 0, out


def _status(fleet: Fleet, key: LabKey) -> dict[tuple[str, str], dict]:
    rows = json.loads(ok(fleet, key, "vnet", "status", "-o", "json", timeout=120))
    return {(row["host"], row["peer"]): row for row in rows}


def test_status_shows_fresh_handshakes_and_growing_bytes(fleet: Fleet, lab_key: LabKey, boxes: Boxes) -> None:
    before = _status(fleet, lab_key)
    pair = before[("bob", "tom")]
    assert not pair["stale"], pair
    assert inside(fleet, lab_key, "bob", "c1", f"busybox ping -c 20 -s 1000 {boxes.c2} >/dev/null")[0] == 0
    after = _status(fleet, lab_key)[("bob", "tom")]
    assert after["tx_bytes"] >= pair["tx_bytes"] + 20 * 1000
    assert after["rx_bytes"] >= pair["rx_bytes"] + 20 * 1000
    assert after["handshake_age"] is not None and after["handshake_age"] < 180


def _fetch_ms(fleet: Fleet, key: LabKey, url: str, size: int) -> float:
    """Milliseconds c1 takes to download all `size` bytes of `url` (timed inside c1: SSH not counted)."""
    timed = f"s=$(date +%s%N); n=$(busybox wget -q -O - {url} | wc -c); echo $n $(( ($(date +%s%N) - s) / 1000000 ))"
    code, out = inside(fleet, key, "bob", "c1", timed)
    assert code == 0, out
    got, ms = out.split()[-2:]
    assert int(got) == size, f"{url}: {got} of {size} bytes"
    return float(ms)


def test_throughput_between_containers_over_the_mesh_against_the_public_path(
    fleet: Fleet, lab_key: LabKey, boxes: Boxes
) -> None:
    """Not a pass/fail target: under emulation this measures the emulator; quote it as a ratio."""
    size_mb = 24
    serve = (
        f"mkdir -p /srv/bench && head -c {size_mb}M /dev/zero > /srv/bench/blob"
        " && (busybox httpd -p 8080 -h /srv/bench 2>/dev/null || true)"
    )
    assert inside(fleet, lab_key, "tom", "c2", serve)[0] == 0
    ok(fleet, lab_key, "lxc", "c2", "add-tcp-forward", "2480", "8080")
    try:
        size = size_mb * 2**20
        mesh = [_fetch_ms(fleet, lab_key, f"http://{boxes.c2}:8080/blob", size) for _ in range(2)]
        public = [_fetch_ms(fleet, lab_key, f"http://{fleet.tom.ip}:2480/blob", size) for _ in range(2)]
    finally:
        ok(fleet, lab_key, "lxc", "c2", "remove-tcp-forward", "2480")
    over_mesh, over_public = size_mb / (min(mesh) / 1000), size_mb / (min(public) / 1000)
    print(
        f"c1 (bob) -> c2 (tom), {size_mb} MiB, best of 2: over the mesh {over_mesh:.1f} MiB/s,"
        f" over the public path (NAT + HAProxy tcp forward) {over_public:.1f} MiB/s,"
        f" ratio {over_mesh / over_public:.2f} (emulated CPUs: WireGuard's crypto is what is measured)"
    )


@dataclass
class AdminPeer:
    """A laptop stand-in: a network namespace on this machine, on the lab bridge, running wireguard-go."""

    namespace: str
    config: Path

    def ping(self, address: str, count: int = 2) -> bool:
        argv = ["ip", "netns", "exec", self.namespace, "ping", "-c", str(count), "-W", "2", address]
        return subprocess.run(argv, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def admin(fleet: Fleet, lab_key: LabKey, lab: Lab, boxes: Boxes) -> Iterator[AdminPeer]:
    if shutil.which("wireguard-go") is None:
        pytest.fail("wireguard-go is missing: .ci/mesh-packages.txt installs it (this kernel has no WireGuard)")
    ok(fleet, lab_key, "vnet", "join", "alice")
    conf = join_config_path(fleet.state, "alice")
    namespace, outside = f"infrmesh{lab_id()}", f"infrmv{lab_id()}"
    bridge = lab.config.bridge
    network = lab.config.network
    address = f"{network[200]}/{network.prefixlen}"
    commands = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace],
        ["ip", "link", "set", outside, "master", bridge, "up"],
        ["ip", "netns", "exec", namespace, "ip", "addr", "add", address, "dev", "eth0"],
        ["ip", "netns", "exec", namespace, "ip", "link", "set", "eth0", "up"],
        ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"],
    ]
    try:
        for argv in commands:
            subprocess.run(argv, check=True, capture_output=True)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "WG_QUICK_USERSPACE_IMPLEMENTATION": "wireguard-go",
               "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}  # fmt: skip
        up = subprocess.run(["ip", "netns", "exec", namespace, "wg-quick", "up", str(conf)],
                            capture_output=True, text=True, env=env)  # fmt: skip
        assert up.returncode == 0, up.stderr
        yield AdminPeer(namespace, conf)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["ip", "netns", "exec", namespace, "wg-quick", "down", str(conf)], capture_output=True)
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def test_an_admin_peer_reaches_hosts_and_containers_on_both(
    fleet: Fleet, lab_key: LabKey, boxes: Boxes, admin: AdminPeer
) -> None:
    hosts = Session(fleet.state).inventory().hosts
    for address in (hosts["bob"].vnet_ip, hosts["tom"].vnet_ip, boxes.c1, boxes.c2):
        assert admin.ping(address, count=3), f"admin peer cannot reach {address}"


def test_zones_block_other_zones_and_nothing_else(fleet: Fleet, lab_key: LabKey, boxes: Boxes) -> None:
    hosts = Session(fleet.state).inventory().hosts
    ok(fleet, lab_key, "lxc", "c1", "zone", "shop")
    ok(fleet, lab_key, "lxc", "c2", "zone", "shop")
    assert reaches(fleet, lab_key, "bob", "c1", boxes.c2), "same zone across hosts must pass"
    ok(fleet, lab_key, "lxc", "c2", "zone", "docs")
    assert not reaches(fleet, lab_key, "bob", "c1", boxes.c2), "another zone must be blocked"
    assert not reaches(fleet, lab_key, "tom", "c2", boxes.c1), "blocked both ways"
    assert reaches(fleet, lab_key, "bob", "c1", hosts["tom"].vnet_ip), "zoned containers still reach hosts"
    assert reaches(fleet, lab_key, "tom", "c2", hosts["bob"].vnet_ip)
    ok(fleet, lab_key, "lxc", "c2", "zone", "shop")
    assert reaches(fleet, lab_key, "bob", "c1", boxes.c2)


def test_a_removed_peer_loses_access_within_a_minute(
    fleet: Fleet, lab_key: LabKey, boxes: Boxes, admin: AdminPeer
) -> None:
    assert admin.ping(boxes.c2)
    ok(fleet, lab_key, "vnet", "peers", "remove", "alice")
    deadline = time.monotonic() + 60
    while admin.ping(boxes.c2, count=1):
        assert time.monotonic() < deadline, "the removed peer still reaches c2 after a minute"
    assert not admin.ping(boxes.c1)


def test_a_rebooted_host_comes_back_into_the_mesh_by_itself(
    fleet: Fleet, lab_key: LabKey, boxes: Boxes
) -> None:
    run_as_manager(fleet.tom.ip, lab_key.private, "sudo systemctl reboot")
    time.sleep(10)
    wait_for_manager(fleet.tom, lab_key)
    deadline = time.monotonic() + 180
    while not reaches(fleet, lab_key, "bob", "c1", boxes.c2):
        assert time.monotonic() < deadline, "c1 cannot reach c2 three minutes after tom rebooted"
        time.sleep(5)
    assert not _status(fleet, lab_key)[("bob", "tom")]["stale"]


def test_removing_containers_takes_them_out_of_the_mesh(fleet: Fleet, lab_key: LabKey, boxes: Boxes) -> None:
    ok(fleet, lab_key, "lxc", "c2", "remove", "--yes")
    code, out = run_as_manager(fleet.bob.ip, lab_key.private, "ip route show dev infrwg0")
    assert code == 0 and boxes.c2 not in out, out
    ok(fleet, lab_key, "lxc", "c1", "remove", "--yes")
