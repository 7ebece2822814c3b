"""Pure parts of the lab: image recipe hash, qemu command line, accelerator choice, seed, mirror."""

from __future__ import annotations

import dataclasses
import fcntl
import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest

from infr.errors import LabError
from infr.lab import LabConfig, network, vm
from infr.lab.image import ImageRecipe, _prune, read_recipe
from infr.lab.lab import LAB_SUBNETS
from infr.lab.mirror import from_sources, parse_deb822, parse_one_line

SOURCES = """Types: deb
# a comment
URIs: http://mirror.example.test/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.test/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://other.example.test/debian
Suites: bookworm
Components: main
"""


def recipe(**changes: object) -> ImageRecipe:
    base = ImageRecipe(mirror_url="http://mirror.example.test/debian", sources="x")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_equal_recipes_hash_equal() -> None:
    assert recipe().digest() == recipe().digest()
    assert len(recipe().digest()) == 16


@pytest.mark.parametrize(
    "changes",
    [
        {"mirror_url": "http://elsewhere.example.test/debian"},
        {"sources": "y"},
        {"include": ("linux-image-amd64",)},
        {"predownload": ("lxc",)},
        {"disk_size": "16G"},
        {"version": 999},
    ],
)
def test_recipe_hash_changes_with_the_recipe(changes: dict[str, object]) -> None:
    assert recipe(**changes).digest() != recipe().digest()


def test_recipe_hash_changes_with_a_file_of_the_image() -> None:
    files = tuple((p, c + "# changed\n" if p.endswith("seed") else c, m) for p, c, m in recipe().files)
    assert recipe(files=files).digest() != recipe().digest()


def test_recipe_survives_its_json_file(tmp_path: Path) -> None:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(dataclasses.asdict(recipe())))
    assert read_recipe(path) == recipe()


def test_prune_keeps_the_current_and_the_newest_other_image(tmp_path: Path) -> None:
    for age, name in enumerate(["current", "newer", "older", "oldest", "failed.tmp",
                                "building.tmp"]):
        (tmp_path / name).mkdir()
        (tmp_path / name / "base.qcow2").write_text("")
        os.utime(tmp_path / name / "base.qcow2", (1e9 - age, 1e9 - age))
    with (tmp_path / "building.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a build of that recipe is running
        _prune(tmp_path, keep=tmp_path / "current")
    left = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock")
    assert left == ["building.tmp", "current", "newer"]


def spec(tmp_path: Path) -> vm.VmSpec:
    return vm.VmSpec(
        name="lab1",
        directory=tmp_path,
        disk=tmp_path / "disk.raw",
        tap="infrlab-tap1",
        mac="52:54:00:1a:b0:01",
        memory_mb=1280,
        cpus=1,
    )


def test_qemu_argv(tmp_path: Path) -> None:
    argv = vm.qemu_argv(spec(tmp_path), vm.TCG)
    line = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert argv[argv.index("-m") + 1] == "1280" and argv[argv.index("-smp") + 1] == "1"
    assert f"-pidfile {tmp_path / 'qemu.pid'}" in line and "-daemonize" in argv
    assert f"file={tmp_path / 'disk.raw'},format=raw" in line
    assert "tap,id=net0,ifname=infrlab-tap1,script=no,downscript=no" in argv
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:1a:b0:01,addr=0x3" in argv
    assert f"file,id=serial0,path={tmp_path / 'console.log'}" in argv
    assert f"unix:{tmp_path / 'monitor.sock'},server=on,wait=off" in argv
    assert f"name=opt/infr/seed,file={tmp_path / 'seed'}" in argv
    # A guest reboot must reset the VM, not end qemu; the disk boots via BIOS and GRUB.
    assert "-no-reboot" not in argv and "-kernel" not in argv


def test_qemu_argv_with_kvm(tmp_path: Path) -> None:
    argv = vm.qemu_argv(spec(tmp_path), vm.KVM)
    assert argv[argv.index("-accel") + 1] == "kvm" and "host" in argv


@pytest.mark.parametrize(
    ("override", "kvm_works", "expected"),
    [
        (None, True, vm.KVM),
        (None, False, vm.TCG),
        ("tcg", True, vm.TCG),
        ("kvm", False, vm.KVM),
    ],
)
def test_accelerator_choice(override: str | None, kvm_works: bool, expected: list[str]) -> None:
    assert vm.choose_accel(override, kvm_works) == expected


def test_unknown_accelerator_is_refused() -> None:
    with pytest.raises(LabError, match="unknown accelerator"):
        vm.choose_accel("hvf", True)


def test_kvm_probe_says_no_without_access_to_dev_kvm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vm.os, "access", lambda *_: False)
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not booted")
    assert vm.kvm_works(kernel) is False


def test_kvm_is_not_trusted_before_there_is_a_kernel_to_prove_it(tmp_path: Path) -> None:
    # A boot sector ran under KVM on a host where every real kernel then hung: only a
    # kernel that boots proves KVM, so without one (the first image build) it is TCG.
    assert vm.kvm_works(None) is False
    assert vm.kvm_works(tmp_path / "missing") is False


def test_a_kernel_that_hangs_is_not_a_kernel_that_boots(tmp_path: Path) -> None:
    # A file that is no kernel: qemu hangs on it or refuses it; the probe says no, not crash.
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\0" * 4096)
    assert vm.kernel_boots(vm.TCG, kernel, timeout=3) is False


def test_seed_survives_shell_quoting(tmp_path: Path) -> None:
    odd = "$6$s'a\"l`t`\\$h"
    keys = {t: (f"-----BEGIN {t}-----\nline 1\nline 2\n-----END-----\n", f"ssh-{t} AAAA") for t in vm.HOST_KEY_TYPES}
    seed = tmp_path / "seed"
    seed.write_text(
        vm.seed_text(
            hostname="lab1",
            address="198.51.100.11/24",
            gateway="198.51.100.1",
            apt_proxy="http://198.51.100.1:3142/",
            authorized_key="ssh-ed25519 AAAA admin@lab\n",
            root_password_hash=odd,
            host_keys=keys,
        )
    )
    out = subprocess.run(
        [
            "sh",
            "-c",
            '. "$1"; printf "%s|%s|%s|%s" "$SEED_ROOT_PASSWORD_HASH" '
            '"$SEED_AUTHORIZED_KEY" "$SEED_IFNAME" "$SEED_HOSTKEY_rsa"',
            "sh",
            str(seed),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == (f"{odd}|ssh-ed25519 AAAA admin@lab|ens3|-----BEGIN rsa-----\nline 1\nline 2\n-----END-----")


def test_host_keys_and_password_hash_are_made_here(tmp_path: Path) -> None:
    keys = vm.make_host_keys(tmp_path, "root@lab1")
    assert set(keys) == set(vm.HOST_KEY_TYPES)
    assert keys["ed25519"][1].startswith("ssh-ed25519 ") and "root@lab1" in keys["ed25519"][1]
    assert "PRIVATE KEY" in keys["rsa"][0]
    hashed = vm.hash_password("correct horse")
    assert hashed.startswith("$6$") and "correct horse" not in hashed


def test_mirror_from_deb822_keeps_the_same_host_only() -> None:
    mirror = from_sources(parse_deb822(SOURCES))
    assert mirror.url == "http://mirror.example.test/debian"
    assert mirror.host == "mirror.example.test" and mirror.port == 80
    assert [s.uri for s in mirror.sources] == [
        "http://mirror.example.test/debian",
        "http://mirror.example.test/debian-security",
    ]
    text = mirror.deb822()
    assert "Suites: bookworm bookworm-updates" in text and "other.example.test" not in text
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text


def test_mirror_from_one_line_sources() -> None:
    sources = parse_one_line(
        "deb http://mirror.example.test/debian bookworm main # x\n"
        "deb-src http://mirror.example.test/debian bookworm main\n"
    )
    assert from_sources(sources).url == "http://mirror.example.test/debian"


def test_https_only_mirror_is_refused() -> None:
    with pytest.raises(LabError, match="no http://"):
        from_sources(parse_one_line("deb https://mirror.example.test/debian bookworm main\n"))


def test_lab_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFR_LAB_ID", raising=False)
    config = LabConfig()
    assert str(config.bridge_address) == "198.51.100.1/24"
    assert [str(config.host_address(i).ip) for i in range(2)] == ["198.51.100.11", "198.51.100.12"]


def test_lab_subnets_keep_clear_of_each_other_and_the_uplink() -> None:
    subnets = [ipaddress.IPv4Network(s) for s in LAB_SUBNETS]
    uplink_and_mirror = ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv4Network(
        "203.0.113.0/24")
    for i, subnet in enumerate(subnets):
        assert not any(subnet.overlaps(other) for other in subnets[i + 1:])
        assert not any(subnet.overlaps(net) for net in uplink_and_mirror)


def test_overlapping_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "192.0.2.0/24", "dev": "eth0"},
        {"dst": "198.51.100.0/24", "dev": "infrlab-br"},
        {"dst": "198.51.100.1", "dev": "infrlab-br", "type": "local"},
    ]
    monkeypatch.setattr(network.proc, "run", lambda *_a, **_k: json.dumps(routes))
    assert network.overlapping_routes(ipaddress.IPv4Network("198.51.100.0/24"), "infrlab-br") == []
    assert network.overlapping_routes(ipaddress.IPv4Network("192.0.2.0/24"), "infrlab-br") == ["192.0.2.0/24 dev eth0"]
