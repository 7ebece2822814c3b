"""The mesh's up script and zone rules on a real kernel, in throwaway network namespaces.

Host a is this test's own network namespace: the containers' bridge infrbr0 with its
LXCs, each in a namespace of its own. What lies beyond infrwg0 (host b, its LXCs, the
admin's laptop) is one more namespace, joined by a veth pair named infrwg0 that stands
in for the tunnel: this kernel may lack WireGuard, and what is tested here is the rest,
the routes, proxy ARP, forwarding and nftables that the up script sets up around it.
`wg` itself is a no-op stand-in on PATH. Everything runs under `unshare --mount --net`
with a tmpfs on /run, so nothing is left behind on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from infr.state.model import Host, Inventory, Lxc, Peer
from infr.vnet import desired

# ICMP echo over a raw socket (no ping on the machines that run this): exit 0 on a reply.
PROBE = textwrap.dedent(
    """
    import os, socket, struct, sys
    src, dst = sys.argv[1], sys.argv[2]
    def checksum(data):
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        total = (total >> 16) + (total & 0xFFFF)
        return ~(total + (total >> 16)) & 0xFFFF
    ident = os.getpid() & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"infr"
    packet = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.bind((src, 0))
    s.settimeout(0.8)
    s.sendto(packet, (dst, 0))
    try:
        while True:
            data, (sender, _) = s.recvfrom(2048)
            icmp = data[(data[0] & 0x0F) * 4 :]
            if sender == dst and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                sys.exit(0)
    except socket.timeout:
        sys.exit(1)
    """
)

# Host a's LXCs: name -> (address, zone).
LOCAL = {
    "wiki": ("10.8.1.30", "docs"),
    "wiki2": ("10.8.1.32", "docs"),
    "shop-a": ("10.8.1.33", "shop"),
    "free": ("10.8.1.31", ""),
    "free2": ("10.8.1.34", ""),
}
# Beyond infrwg0: host b, its LXCs db and web (zone shop), the admin alice.
REMOTE = ["10.8.1.2", "10.8.1.9", "10.8.1.20", "10.8.1.100"]
ADDR = {"a": "10.8.1.1", "b": "10.8.1.2", "db": "10.8.1.9", "web": "10.8.1.20", "alice": "10.8.1.100"}
ADDR |= {n: ip for n, (ip, _) in LOCAL.items()}
# (from, to, reached?) Each probe starts in the namespace `from` lives in.
EXPECTED = [
    # one host, bridged
    ("wiki", "wiki2", True),
    ("wiki", "shop-a", False),
    ("wiki", "free", False),
    ("free", "free2", True),
    ("free", "wiki", False),
    # across the mesh, routed
    ("shop-a", "web", True),
    ("wiki", "web", False),
    ("free", "db", False),
    ("web", "shop-a", True),
    ("web", "wiki", False),
    # hosts and the admin reach everyone and are reached by everyone
    ("wiki", "a", True),
    ("a", "wiki", True),
    ("wiki", "b", True),
    ("free", "b", True),
    ("wiki", "alice", True),
    ("alice", "wiki", True),
    ("alice", "free", True),
    ("alice", "shop-a", True),
    ("b", "free2", True),
]


def world() -> Inventory:
    inv = Inventory(config={})
    inv.hosts = {
        "a": Host("a", "203.0.113.1", "10.8.1.1", wg_public_key="A" * 43 + "="),
        "b": Host("b", "203.0.113.2", "10.8.1.2", wg_public_key="B" * 43 + "="),
    }
    inv.lxcs = {name: Lxc(name, "a", "debian", "bookworm", ip, zone=zone) for name, (ip, zone) in LOCAL.items()}
    inv.lxcs["web"] = Lxc("web", "b", "debian", "bookworm", "10.8.1.20", zone="shop")
    inv.lxcs["db"] = Lxc("db", "b", "debian", "bookworm", "10.8.1.9", zone="shop")
    inv.peers = {"alice": Peer("alice", "P" * 43 + "=", "10.8.1.100")}
    return inv


def render(inv: Inventory, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Host a's up script and zones file, with paths under tmp (the script reads the rules from there)."""
    monkeypatch.setattr(desired, "KEY_PATH", str(tmp / "infrwg0.key"))
    monkeypatch.setattr(desired, "CONF_PATH", str(tmp / "infrwg0.conf"))
    monkeypatch.setattr(desired, "ZONES_PATH", str(tmp / "zones.nft"))
    (tmp / "zones.nft").write_text(desired.zones_ruleset(inv))
    (tmp / "infrwg0.key").write_text("K" * 43 + "=\n")  # wg is stubbed: any key will do
    (tmp / "infrwg0.conf").write_text(desired.host_config(inv, inv.hosts["a"], 51820))
    script = tmp / "up"
    script.write_text(desired.up_script(inv, inv.hosts["a"]))
    script.chmod(0o755)
    return script, tmp / "zones.nft"


def driver(tmp: Path, script: Path, second_script: Path) -> str:
    lxcs = {n: ip for n, (ip, _) in LOCAL.items()}
    lines = [
        "set -eu",
        "mount -t tmpfs tmpfs /run",  # ip netns keeps its namespaces under /run/netns: ours vanish with us
        f"export PATH={tmp / 'bin'}:$PATH",
        "ip link set lo up",
        "ip link add infrbr0 type bridge",
        "ip address add 10.8.1.1/16 dev infrbr0",  # as lxc-net makes it: the whole vnet on the bridge
        "ip link set infrbr0 up",
        "ip netns add beyond",
        "ip link add infrwg0 type veth peer name eth0 netns beyond",
        # a veth answers ARP where a tunnel needs none: proxy it, as a tunnel would carry it
        "sysctl -q -w net.ipv4.conf.infrwg0.proxy_arp=1 net.ipv4.neigh.infrwg0.proxy_delay=0",
        "ip -n beyond link set lo up",
        "ip -n beyond link set eth0 up",
        *(f"ip -n beyond address add {ip}/32 dev eth0" for ip in REMOTE),
        "ip -n beyond route add default dev eth0",
    ]
    for name, ip in lxcs.items():
        lines += [
            f"ip netns add {name}",
            f"ip link add v-{name} type veth peer name eth0 netns {name}",
            f"ip link set v-{name} master infrbr0 up",
            f"ip -n {name} link set lo up",
            f"ip -n {name} address add {ip}/16 dev eth0",
            f"ip -n {name} link set eth0 up",
        ]
    lines += [f"{script}", f"{script}"]  # twice: running it again changes nothing
    where = {"a": "", "b": "beyond", "alice": "beyond", "web": "beyond", "db": "beyond", **{n: n for n in lxcs}}

    def probe(src: str, dst: str) -> str:
        run = f"ip netns exec {where[src]} " if where[src] else ""
        test = f"{run}{sys.executable} {tmp / 'probe.py'} {ADDR[src]} {ADDR[dst]}"
        return f'if {test}; then echo "{src} {dst} yes"; else echo "{src} {dst} no"; fi'

    lines += [probe(src, dst) for src, dst, _ in EXPECTED]
    lines += ["echo routes; ip -4 route show dev infrwg0"]
    lines += ["echo proxy_arp $(sysctl -n net.ipv4.conf.infrbr0.proxy_arp net.ipv4.neigh.infrbr0.proxy_delay)"]
    lines += ["echo forward $(sysctl -n net.ipv4.ip_forward)", "nft list tables | sed 's/^/tables /'"]
    # alice is removed from state: the next run drops her route, and she cannot get in
    lines += [f"{second_script}", "echo routes-after; ip -4 route show dev infrwg0", probe("alice", "wiki")]
    return "\n".join(lines) + "\n"


@pytest.fixture
def sandbox() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    for tool in ("unshare", "ip", "nft", "sysctl"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    bridge = ["unshare", "--mount", "--net", "ip", "link", "add", "x", "type", "bridge"]
    tried = subprocess.run(bridge, capture_output=True)
    if tried.returncode != 0:
        pytest.skip(f"no network namespaces here: {tried.stderr.decode().strip()}")


def test_zones_routes_and_proxy_arp_on_a_real_kernel(
    sandbox: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "wg").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "wg").chmod(0o755)
    (tmp_path / "probe.py").write_text(PROBE)
    inv = world()
    script, _ = render(inv, tmp_path, monkeypatch)
    later = tmp_path / "later"
    later.mkdir()
    del inv.peers["alice"]
    second, _ = render(inv, later, monkeypatch)
    (tmp_path / "driver.sh").write_text(driver(tmp_path, script, second))
    ran = subprocess.run(
        ["unshare", "--mount", "--net", "sh", str(tmp_path / "driver.sh")], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    out = ran.stdout.splitlines()
    probes = [line.split() for line in out[: out.index("routes")]]
    reached = {(s, d): r == "yes" for s, d, r in probes}
    wrong = [(s, d, want) for s, d, want in EXPECTED if reached.get((s, d)) != want]
    assert not wrong, json.dumps(wrong) + "\n" + ran.stdout + ran.stderr
    routes = out[out.index("routes") + 1 : out.index("routes") + 5]
    assert [r.split()[0] for r in routes] == REMOTE and all("src 10.8.1.1" in r for r in routes)
    assert "proxy_arp 1 0" in out and "forward 1" in out
    assert "tables table inet infr_zones" in out and "tables table bridge infr_zones" in out
    after = out[out.index("routes-after") + 1 :]
    assert [r.split()[0] for r in after[:-1]] == REMOTE[:3] and after[-1] == "alice wiki no"


def test_zone_rules_are_replaced_whole_or_not_at_all(sandbox: None, tmp_path: Path) -> None:
    inv = world()
    (tmp_path / "before.nft").write_text(desired.zones_ruleset(inv))
    inv.lxcs["web"].zone = ""
    inv.lxcs["wiki2"].zone = "shop"
    (tmp_path / "after.nft").write_text(desired.zones_ruleset(inv))
    (tmp_path / "broken.nft").write_text(desired.zones_ruleset(world()).replace("counter drop", "counter dorp", 1))
    show = "nft -j list set inet infr_zones zoned"
    script = [
        f"nft -f {tmp_path / 'before.nft'}",
        show,
        f"nft -c -f {tmp_path / 'after.nft'}",  # infr's check on the host, before it loads
        f"nft -f {tmp_path / 'after.nft'}",
        show,
        f"nft -c -f {tmp_path / 'broken.nft'} 2>/dev/null || echo '\"check refused\"'",
        f"nft -f {tmp_path / 'broken.nft'} 2>/dev/null || echo '\"load refused\"'",
        show,
        "nft -j list tables",
    ]
    ran = subprocess.run(["unshare", "--net", "sh", "-c", "\n".join(script)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    out = [json.loads(line) for line in ran.stdout.splitlines()]

    def zoned(listing: dict[str, Any]) -> list[str]:
        return next(item["set"].get("elem", []) for item in listing["nftables"] if "set" in item)

    assert zoned(out[0]) == ["10.8.1.9", "10.8.1.20", "10.8.1.30", "10.8.1.32", "10.8.1.33"]
    # web left its zone, wiki2 moved: web is gone from the set, not left over from the last load
    after = ["10.8.1.9", "10.8.1.30", "10.8.1.32", "10.8.1.33"]
    assert zoned(out[1]) == after
    assert out[2:4] == ["check refused", "load refused"]
    assert zoned(out[4]) == after  # a file that fails changes nothing
    tables = [(t["table"]["family"], t["table"]["name"]) for t in out[5]["nftables"] if "table" in t]
    assert tables == [("inet", "infr_zones"), ("bridge", "infr_zones")]
