"""The WireGuard mesh rendered from state: host and admin configs, routes, zones, status."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infr.core import mesh
from infr.core.meshops import new_key_pair
from infr.state.model import Host, Inventory, Lxc, Peer

KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="
KEY_C = "C" * 43 + "="
KEY_P = "P" * 43 + "="


def inventory() -> Inventory:
    inv = Inventory(config={"vnetNetwork": "10.8.0.0/16", "vnetPrefix": "vnet", "dnsDomain": "example.com"})
    inv.hosts = {
        "a": Host("a", "203.0.113.1", "10.8.1.1", wg_public_key=KEY_A),
        "b": Host("b", "203.0.113.2", "10.8.1.2", wg_public_key=KEY_B),
        # no key yet (being set up): not in anyone's config
        "c": Host("c", "203.0.113.3", "10.8.1.3"),
    }
    inv.lxcs = {
        "web": Lxc("web", "b", "debian", "bookworm", "10.8.1.20", zone="shop"),
        "db": Lxc("db", "b", "debian", "bookworm", "10.8.1.9", zone="shop"),
        "wiki": Lxc("wiki", "a", "debian", "bookworm", "10.8.1.30", zone="docs"),
        "free": Lxc("free", "a", "debian", "bookworm", "10.8.1.31"),
    }
    inv.peers = {"alice": Peer("alice", KEY_P, "10.8.1.100")}
    return inv


def test_host_config_lists_other_members_with_their_containers_and_the_admins() -> None:
    inv = inventory()
    lines = mesh.host_config(inv, inv.hosts["a"], 51820).splitlines()
    assert lines[1:3] == ["[Interface]", "ListenPort = 51820"]
    assert "PrivateKey" not in "\n".join(lines)
    peer_b = lines.index(f"PublicKey = {KEY_B}")
    assert lines[peer_b + 1 : peer_b + 4] == [
        "Endpoint = 203.0.113.2:51820",
        "AllowedIPs = 10.8.1.2/32, 10.8.1.9/32, 10.8.1.20/32",
        "PersistentKeepalive = 25",
    ]
    admin = lines.index(f"PublicKey = {KEY_P}")
    assert lines[admin + 1] == "AllowedIPs = 10.8.1.100/32"
    assert not any(line.startswith("Endpoint") for line in lines[admin:])
    assert KEY_A not in lines and lines.count("[Peer]") == 2  # not itself, not keyless c


def test_routes_cover_everything_behind_other_hosts_and_admins_only() -> None:
    inv = inventory()
    assert mesh.routed_addresses(inv, inv.hosts["a"]) == ["10.8.1.2", "10.8.1.9", "10.8.1.20", "10.8.1.100"]
    script = mesh.up_script(inv, inv.hosts["a"])
    assert 'wanted="10.8.1.2 10.8.1.9 10.8.1.20 10.8.1.100"' in script.splitlines()
    assert '    ip route replace "$address/32" dev "$dev" src 10.8.1.1' in script.splitlines()
    assert "sysctl -q -w net.ipv4.conf.infrbr0.proxy_arp=1" in script
    assert 'wg syncconf "$dev" /etc/wireguard/infrwg0.conf' in script


def test_script_is_valid_sh(tmp_path: Path) -> None:
    inv = inventory()
    script = tmp_path / "up"
    script.write_text(mesh.up_script(inv, inv.hosts["b"]))
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


def test_unit_runs_the_script_once_at_boot() -> None:
    lines = mesh.unit().splitlines()
    assert "Type=oneshot" in lines and "RemainAfterExit=yes" in lines
    assert "ExecStart=/usr/local/sbin/infr-mesh-up" in lines and "WantedBy=multi-user.target" in lines


def test_host_files_keep_the_config_private_and_check_the_rules() -> None:
    inv = inventory()
    specs = {s.path: s for s in mesh.host_files(inv, inv.hosts["a"], 51820)}
    assert specs[mesh.CONF_PATH].mode == 0o600
    assert specs[mesh.UP_SCRIPT].mode == 0o755
    assert specs[mesh.ZONES_PATH].precheck == ("nft", "-c", "-f", "{}")


def test_admin_config_reaches_every_host_and_its_containers() -> None:
    inv = inventory()
    lines = mesh.admin_config(inv, inv.peers["alice"], "secret-key", 51999).splitlines()
    assert lines[1:4] == ["[Interface]", "PrivateKey = secret-key", "Address = 10.8.1.100/32"]
    assert "AllowedIPs = 10.8.1.1/32, 10.8.1.30/32, 10.8.1.31/32" in lines
    assert "Endpoint = 203.0.113.2:51999" in lines
    assert lines.count("PersistentKeepalive = 25") == 2


def test_zones_ruleset_isolates_zones_in_both_families() -> None:
    text = mesh.zones_ruleset(inventory())
    lines = [line.strip() for line in text.splitlines()]
    containers = "set containers { type ipv4_addr; elements = { 10.8.1.9, 10.8.1.20, 10.8.1.30, 10.8.1.31 }; }"
    assert lines.count(containers) == 2
    assert "set zone1 { type ipv4_addr; elements = { 10.8.1.9, 10.8.1.20 }; }" in lines  # shop, after docs
    assert "ip saddr @zone1 ip daddr @zone1 accept" in lines
    assert lines.count("ip saddr @zoned ip daddr @containers drop") == 2
    assert "table bridge infr_zones {" in lines and "table inet infr_zones {" in lines


def test_no_zones_no_rules() -> None:
    inv = inventory()
    for lxc in inv.lxcs.values():
        lxc.zone = ""
    assert "drop" not in mesh.zones_ruleset(inv)


@pytest.mark.parametrize("zoned", [True, False])
def test_zones_ruleset_passes_nft_check(tmp_path: Path, zoned: bool) -> None:
    if not shutil.which("nft"):
        pytest.skip("nft is not installed (.ci/mesh-packages.txt)")
    inv = inventory()
    if not zoned:
        inv.lxcs = {}
    rules = tmp_path / "zones.nft"
    rules.write_text(mesh.zones_ruleset(inv))
    checked = subprocess.run(["nft", "-c", "-f", str(rules)], capture_output=True, text=True)
    if "Operation not permitted" in checked.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert checked.returncode == 0, checked.stderr


def test_hosts_block_names_hosts_containers_and_admins_in_address_order() -> None:
    block = mesh.hosts_block(inventory(), {"vnetPrefix": "vnet", "dnsDomain": "example.com"}).splitlines()
    assert block[0] == mesh.HOSTS_BEGIN and block[-1] == mesh.HOSTS_END
    assert block[1] == "10.8.1.1\ta.vnet.example.com a"
    assert block[4] == "10.8.1.9\tdb.vnet.example.com db"
    assert block[-2] == "10.8.1.100\talice.vnet.example.com alice"


def test_parse_dump_names_peers_and_flags_stale_and_never() -> None:
    dump = "\n".join(
        [
            "infrwg0\tPRIVATE\tPUBLIC\t51820\toff",
            f"infrwg0\t{KEY_B}\t(none)\t203.0.113.2:51820\t10.8.1.2/32,10.8.1.20/32\t1000\t5000\t6000\t25",
            f"infrwg0\t{KEY_P}\t(none)\t(none)\t10.8.1.100/32\t0\t0\t0\toff",
            f"infrwg0\t{KEY_C}\t(none)\t198.51.100.7:4000\t10.8.9.9/32\t500\t1\t2\toff",
        ]
    )
    rows = mesh.parse_dump(dump, inventory(), "a", now=1030)
    assert [r["peer"] for r in rows] == ["b", "alice", f"unknown {KEY_C[:8]}"]
    assert rows[0] == {
        "host": "a",
        "peer": "b",
        "vnet_ip": "10.8.1.2",
        "endpoint": "203.0.113.2:51820",
        "handshake_age": 30,
        "handshake": "30s ago",
        "stale": False,
        "rx_bytes": 5000,
        "tx_bytes": 6000,
    }
    assert (rows[1]["handshake"], rows[1]["stale"], rows[1]["endpoint"]) == ("never (stale)", True, "")
    assert (rows[2]["handshake"], rows[2]["vnet_ip"]) == ("8m ago (stale)", "10.8.9.9")
    assert "PRIVATE" not in str(rows)


def test_public_key_check() -> None:
    assert mesh.public_key_problem(KEY_A) is None
    assert mesh.public_key_problem("not a key") is not None
    assert mesh.public_key_problem("AAAA") is not None


def test_local_key_pair_matches_wg() -> None:
    private, public = new_key_pair()
    assert mesh.public_key_problem(public) is None
    if shutil.which("wg"):
        derived = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True)
        assert derived.stdout.strip() == public


def test_peers_add_update_keeps_address_and_remove(state_dir: Path) -> None:
    from tests.conftest import run_cli

    added = run_cli(state_dir, "vnet", "peers", "add", "bob-laptop", "--public-key", KEY_P, "--ip", "10.8.3.3")
    assert added.exit_code == 0, added.output
    moved = run_cli(state_dir, "vnet", "peers", "add", "bob-laptop", "--public-key", KEY_C)
    assert "new key, same address 10.8.3.3" in moved.output
    listed = run_cli(state_dir, "vnet", "peers", "-o", "json")
    assert '"public_key": "' + KEY_C in listed.output.replace('":"', '": "')
    taken = run_cli(state_dir, "vnet", "peers", "add", "eve", "--public-key", KEY_C)
    assert "already peer bob-laptop's" in str(taken.exception)
    assert run_cli(state_dir, "vnet", "peers", "remove", "bob-laptop").exit_code == 0
    assert "bob-laptop" not in run_cli(state_dir, "vnet", "peers", "list").output


def test_join_writes_a_private_config_outside_git(state_dir: Path) -> None:
    from tests.conftest import run_cli, seed_host

    seed_host(state_dir, "a", "203.0.113.1", wg_public_key=KEY_A)
    joined = run_cli(state_dir, "vnet", "join", "me", "--ip", "10.8.2.2")
    assert joined.exit_code == 0, joined.output
    config = state_dir / "wireguard" / "me" / "infrwg0.conf"
    assert config.stat().st_mode & 0o777 == 0o600
    lines = config.read_text().splitlines()
    assert "Address = 10.8.2.2/32" in lines and f"PublicKey = {KEY_A}" in lines
    tracked = subprocess.run(["git", "-C", str(state_dir), "status", "--porcelain", "--ignored"], capture_output=True)
    assert b"!! wireguard/" in tracked.stdout  # ignored, so never committed
    assert "10.8.2.2\tme.vnet.example.com me" in run_cli(state_dir, "vnet", "hosts").output


def test_lxc_zone_is_recorded(state_dir: Path) -> None:
    from tests.conftest import run_cli, seed_host, seed_lxc

    seed_host(state_dir, "a", "203.0.113.1")
    seed_lxc(state_dir, "web", "a")
    assert run_cli(state_dir, "lxc", "web", "zone", "shop").exit_code == 0
    assert '"zone": "shop"' in run_cli(state_dir, "lxc", "web", "-o", "json").output
    bad = run_cli(state_dir, "lxc", "web", "zone", "Bad_Zone")
    assert "zone 'Bad_Zone'" in str(bad.exception)
    assert "zone shop -> none" in run_cli(state_dir, "lxc", "web", "zone", "none").output
