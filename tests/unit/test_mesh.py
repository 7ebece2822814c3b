"""The WireGuard mesh rendered from state: host and admin configs, routes, zones, status."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infr.state.model import Host, Inventory, Lxc, Peer
from infr.vnet import desired, status
from infr.vnet.join import public_key_of
from infr.vnet.members import new_key_pair

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
    lines = desired.host_config(inv, inv.hosts["a"], 51820).splitlines()
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
    assert desired.routed_addresses(inv, inv.hosts["a"]) == ["10.8.1.2", "10.8.1.9", "10.8.1.20", "10.8.1.100"]
    script = desired.up_script(inv, inv.hosts["a"])
    assert 'wanted="10.8.1.2 10.8.1.9 10.8.1.20 10.8.1.100"' in script.splitlines()
    assert '    ip route replace "$address/32" dev "$dev" src 10.8.1.1' in script.splitlines()
    assert "sysctl -q -w net.ipv4.conf.infrbr0.proxy_arp=1 net.ipv4.neigh.infrbr0.proxy_delay=0" in script
    assert 'wg syncconf "$dev" "$full"' in script


def test_script_is_valid_sh(tmp_path: Path) -> None:
    inv = inventory()
    script = tmp_path / "up"
    script.write_text(desired.up_script(inv, inv.hosts["b"]))
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


def test_script_forwards_and_loads_the_zones_last() -> None:
    inv = inventory()
    lines = desired.up_script(inv, inv.hosts["a"]).splitlines()
    assert "sysctl -q -w net.ipv4.ip_forward=1" in lines
    assert lines[-1] == "nft -f /etc/infr/zones.nft"
    # syncconf makes the interface exactly the file: the key joins a private copy first
    assert lines.index(
        'sed "/^\\[Interface\\]/a PrivateKey = $(cat /etc/wireguard/infrwg0.key)" /etc/wireguard/infrwg0.conf >"$full"'
    ) < lines.index('wg syncconf "$dev" "$full"')


def test_script_of_a_lone_host_routes_nothing_but_admins() -> None:
    inv = inventory()
    inv.hosts = {"a": inv.hosts["a"]}
    inv.peers = {}
    assert 'wanted=""' in desired.up_script(inv, inv.hosts["a"]).splitlines()


def test_unit_runs_the_script_once_at_boot_and_again_with_lxc_net() -> None:
    lines = desired.unit().splitlines()
    assert "Type=oneshot" in lines and "RemainAfterExit=yes" in lines
    assert "ExecStart=/usr/local/sbin/infr-mesh-up" in lines
    # enabled: at boot; PartOf + WantedBy lxc-net: again when lxc-net makes the bridge anew
    assert "WantedBy=multi-user.target lxc-net.service" in lines and "PartOf=lxc-net.service" in lines
    assert "ExecStop" not in desired.unit()  # stopping the unit leaves the tunnels up


def test_host_files_keep_the_config_private_and_check_the_rules() -> None:
    inv = inventory()
    specs = {s.path: s for s in desired.host_files(inv, inv.hosts["a"], 51820)}
    assert specs[desired.CONF_PATH].mode == 0o600
    assert specs[desired.UP_SCRIPT].mode == 0o755
    assert specs[desired.ZONES_PATH].precheck == ("nft", "-c", "-f", "{}")


def test_admin_config_reaches_every_host_and_its_containers() -> None:
    inv = inventory()
    lines = desired.admin_config(inv, inv.peers["alice"], "secret-key", 51999).splitlines()
    assert lines[1:4] == ["[Interface]", "PrivateKey = secret-key", "Address = 10.8.1.100/32"]
    assert "AllowedIPs = 10.8.1.1/32, 10.8.1.30/32, 10.8.1.31/32" in lines
    assert "Endpoint = 203.0.113.1:51999" in lines and "Endpoint = 203.0.113.2:51999" in lines
    # keepalives to every host's public address: a laptop behind NAT needs no open port
    assert lines.count("PersistentKeepalive = 25") == lines.count("[Peer]") == 2
    assert not any(line.startswith("ListenPort") for line in lines)


def test_configs_end_in_one_newline_and_take_a_peer_per_block() -> None:
    inv = inventory()
    for text in (desired.host_config(inv, inv.hosts["b"], 1), desired.admin_config(inv, inv.peers["alice"], "k", 1)):
        assert text.endswith("\n") and not text.endswith("\n\n")
        assert text.count("\n\n[Peer]") == 0 and text.count("\n\n# ") == text.count("[Peer]")


def test_host_config_is_wg_format_not_wg_quick() -> None:
    """`wg syncconf` reads wg's own format: the parts wg-quick adds (Address) are not in it."""
    inv = inventory()
    text = desired.host_config(inv, inv.hosts["a"], 51820)
    assert "Address" not in text and "PrivateKey" not in text
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections == ["[Interface]", "[Peer]", "[Peer]"]
    keys = {line.split(" = ")[0] for line in text.splitlines() if " = " in line}
    assert keys <= {"ListenPort", "PublicKey", "Endpoint", "AllowedIPs", "PersistentKeepalive"}


def test_zones_ruleset_isolates_zones_in_both_families() -> None:
    text = desired.zones_ruleset(inventory())
    lines = [line.strip() for line in text.splitlines()]
    containers = "set containers { type ipv4_addr; elements = { 10.8.1.9, 10.8.1.20, 10.8.1.30, 10.8.1.31 }; }"
    assert lines.count(containers) == 2
    assert lines.count("set zoned { type ipv4_addr; elements = { 10.8.1.9, 10.8.1.20, 10.8.1.30 }; }") == 2
    assert "set zone1 { type ipv4_addr; elements = { 10.8.1.9, 10.8.1.20 }; }" in lines  # shop, after docs
    assert lines[lines.index("set zone1 { type ipv4_addr; elements = { 10.8.1.9, 10.8.1.20 }; }") - 1] == "# zone shop"
    assert "ip saddr @zone1 ip daddr @zone1 accept" in lines
    assert lines.count("ip saddr @zoned ip daddr @containers counter drop") == 2
    assert lines.count("ip saddr @containers ip daddr @zoned counter drop") == 2
    assert "table bridge infr_zones {" in lines and "table inet infr_zones {" in lines


def test_zones_ruleset_replaces_its_tables_whole() -> None:
    lines = desired.zones_ruleset(inventory()).splitlines()
    for family in ("inet", "bridge"):
        at = lines.index(f"table {family} infr_zones")
        assert lines[at + 1 : at + 3] == [f"delete table {family} infr_zones", f"table {family} infr_zones {{"]
    assert not [line for line in lines if line.startswith("flush ruleset")]  # lxc-net's NAT stays


def test_no_zones_no_rules() -> None:
    inv = inventory()
    for lxc in inv.lxcs.values():
        lxc.zone = ""
    text = desired.zones_ruleset(inv)
    assert "drop" not in text and "accept\n" not in text.replace("policy accept;", "")


@pytest.mark.parametrize("zoned", [True, False])
def test_zones_ruleset_passes_nft_check(tmp_path: Path, zoned: bool) -> None:
    if not shutil.which("nft"):
        pytest.skip("nft is not installed (.ci/mesh-packages.txt)")
    inv = inventory()
    if not zoned:
        inv.lxcs = {}
    rules = tmp_path / "zones.nft"
    rules.write_text(desired.zones_ruleset(inv))
    checked = subprocess.run(["nft", "-c", "-f", str(rules)], capture_output=True, text=True)
    if "Operation not permitted" in checked.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert checked.returncode == 0, checked.stderr


def test_hosts_block_names_hosts_containers_and_admins_in_address_order() -> None:
    settings = {"dnsPrefix": "infr", "vnetPrefix": "vnet", "dnsDomain": "example.com"}
    block = desired.hosts_block(inventory(), settings).splitlines()
    assert block[0] == desired.HOSTS_BEGIN and block[-1] == desired.HOSTS_END
    assert block[1] == "10.8.1.1\ta.vnet.example.com a"
    assert block[4] == "10.8.1.9\tdb.vnet.example.com db"
    assert block[-2] == "10.8.1.100\talice.vnet.example.com alice"
    assert len(block) == 2 + 3 + 4 + 1  # every host (keyless c too), LXC and admin


def test_hosts_block_uses_the_names_infr_dns_makes() -> None:
    from infr.dns.wanted import HOST_VNET, LXC_VNET, wanted_records

    settings = {"dnsPrefix": "infr", "vnetPrefix": "vnet", "dnsDomain": "example.com"}
    inv = inventory()
    block = desired.hosts_block(inv, settings)
    for record in wanted_records(inv, settings):
        if record.purpose in (HOST_VNET, LXC_VNET):
            assert f"{record.value}\t{record.fqdn} " in block


def test_parse_dump_names_peers_and_flags_stale_and_never() -> None:
    dump = "\n".join(
        [
            "infrwg0\tPRIVATE\tPUBLIC\t51820\toff",
            f"infrwg0\t{KEY_B}\t(none)\t203.0.113.2:51820\t10.8.1.2/32,10.8.1.20/32\t1000\t5000\t6000\t25",
            f"infrwg0\t{KEY_P}\t(none)\t(none)\t10.8.1.100/32\t0\t0\t0\toff",
            f"infrwg0\t{KEY_C}\t(none)\t198.51.100.7:4000\t10.8.9.9/32\t500\t1\t2\toff",
        ]
    )
    rows = status.parse_dump(dump, inventory(), "a", now=1030)
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
    assert desired.public_key_problem(KEY_A) is None
    assert desired.public_key_problem("not a key") is not None
    assert desired.public_key_problem("AAAA") is not None


def test_local_key_pair_matches_wg() -> None:
    private, public = new_key_pair()
    assert desired.public_key_problem(public) is None and public_key_of(private) == public
    if shutil.which("wg"):
        derived = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True)
        assert derived.stdout.strip() == public
