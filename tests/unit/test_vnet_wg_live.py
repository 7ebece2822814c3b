"""The vnet's live facts (live.READ) parsed from what real WireGuard prints, in a network namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infr.vnet import desired, feature, live, members
from infr.vnet.feature import Wanted, desired_peers
from tests.unit.test_plan_vnet import PORT, inventory

# Real WireGuard (the kernel's, else wireguard-go) in a throwaway network namespace, with
# a tmpfs on /run (wireguard-go's socket): what live.READ prints there, before and after
# a peer is deleted by hand.
WG_DRIVER = """set -eu
mount -t tmpfs tmpfs /run
if ! ip link add dev {interface} type wireguard 2>/dev/null; then
    wireguard-go -f {interface} >/dev/null 2>&1 &
    pid=$!
    trap 'kill $pid' EXIT
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        [ -S /run/wireguard/{interface}.sock ] && break
        sleep 0.1
    done
fi
wg set {interface} private-key {key} listen-port {port} \\
    peer {b} endpoint 203.0.113.2:{port} allowed-ips 10.8.1.2/32,10.8.1.20/32 persistent-keepalive 25 \\
    peer {p} allowed-ips 10.8.1.100/32
sh -c "$READ"
echo =====
wg set {interface} peer {b} remove
sh -c "$READ"
"""


def test_live_facts_parse_what_real_wireguard_prints(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if not shutil.which("wg") or not shutil.which("unshare"):
        pytest.skip("needs wg and unshare")
    private, public = members.new_key_pair()
    key_b, key_p = members.new_key_pair()[1], members.new_key_pair()[1]
    (tmp_path / "key").write_text(private + "\n")
    (tmp_path / "key").chmod(0o600)
    driver = WG_DRIVER.format(interface=desired.INTERFACE, key=tmp_path / "key", port=PORT, b=key_b, p=key_p)
    (tmp_path / "driver.sh").write_text(driver)
    read = live.READ.replace(desired.KEY_PATH, str(tmp_path / "key"))
    ran = subprocess.run(
        ["unshare", "--net", "--mount", "sh", str(tmp_path / "driver.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "READ": read},
    )
    if ran.returncode != 0 and "Protocol not supported" in ran.stderr:
        pytest.skip("no WireGuard here: neither the kernel's nor wireguard-go")
    assert ran.returncode == 0, ran.stderr
    assert private not in ran.stdout  # the private key stays on the host
    before, after = (live.parse(part.lstrip("\n")) for part in ran.stdout.split("====="))
    inv = inventory()
    inv.hosts["a"].wg_public_key = public
    inv.hosts["b"].wg_public_key = key_b
    inv.peers["alice"].public_key = key_p
    wanted = Wanted(public, PORT, desired_peers(inv, inv.hosts["a"], PORT))
    assert before.key == public and before.interface_key == public and before.up
    assert before.peers[key_b].allowed == ("10.8.1.2/32", "10.8.1.20/32")
    assert before.peers[key_b].endpoint == f"203.0.113.2:{PORT}"
    assert feature.live_drift(wanted, before) == []
    assert feature.live_drift(wanted, after) == ["1 missing, 0 extra"]
