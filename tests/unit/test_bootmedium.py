"""The boot medium of `infr hosts add`: preseed, iPXE script, GRUB entry, images, remote steps.

Regenerate the golden files after an intended template change with
    INFR_REGEN_GOLDEN=1 pytest tests/unit/test_bootmedium.py

Tests that need Debian packages (listed in .ci/boot-packages.txt) fail, not skip,
when one is missing: `require()` names the package to install.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from infr.errors import InfrError, ValidationError
from infr.hosts.boot import grub as hosts_grub
from infr.hosts.boot import ipxe as hosts_ipxe
from infr.hosts.boot import medium as bm
from infr.hosts.boot import preseed as hosts_preseed
from infr.hosts.boot import probe as hosts_probe

GOLDEN = Path(__file__).parent / "golden" / "boot"
KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q alice@laptop"
KEY_B = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDfake+key/material== bob at work, 2024"

# package -> (how to tell it is installed, what to check)
_PACKAGES = {
    "xorriso": lambda: shutil.which("xorriso") is not None,
    "ipxe": lambda: hosts_ipxe.STOCK_IPXE_LKRN.is_file() and hosts_ipxe.STOCK_IPXE_ISO.is_file(),
    "cpio": lambda: shutil.which("cpio") is not None,
    "debconf": lambda: shutil.which("debconf-set-selections") is not None,
    "debian-installer-12-netboot-amd64": lambda: (hosts_preseed.PACKAGE_INSTALLER_DIR / "linux").is_file(),
    "grub-common": lambda: shutil.which("grub-editenv") is not None,
    "make": lambda: shutil.which("make") is not None,
}


def require(*packages: str) -> None:
    missing = [p for p in packages if not _PACKAGES[p]()]
    if missing:
        pytest.fail(
            f"missing Debian packages {missing}: apt-get install {' '.join(missing)} "
            "(CI installs .ci/boot-packages.txt)",
            pytrace=False,
        )


def settings(**overrides: object) -> hosts_preseed.PreseedSettings:
    base: dict[str, object] = {
        "hostname": "web1",
        "domain": "example.com",
        "admin_keys": (KEY_A,),
        "disk": "/dev/vda",
    }
    base.update(overrides)
    return hosts_preseed.PreseedSettings(**base)  # type: ignore[arg-type]


CASES = {
    "dhcp-bios": settings(),
    "static-uefi": settings(
        hostname="db2",
        domain="hosting.example.net",
        admin_keys=(KEY_A, KEY_B),
        disk="/dev/nvme0n1",
        firmware="uefi",
        network=hosts_preseed.Network("203.0.113.10/24", "203.0.113.1", ("198.51.100.53", "198.51.100.54")),
        mirror="https://mirror.example.org:8443/debian/",
        security_mirror="",
        swap_mb=2048,
        console=("ttyS0,115200n8",),
        extra_packages=("python3", "sudo"),
    ),
    "lab": settings(
        hostname="pqvm",
        domain="infr.example.test",
        network=hosts_preseed.Network(nameservers=("10.0.2.3",)),
        mirror_proxy="http://10.0.2.100:80/",
        security_mirror="",
    ),
}
INSTALLER = hosts_preseed.installer_from_mirror()
GRUB_FACTS = hosts_probe.GrubFacts("0b7c4f2e-5d2a-4c1e-9a57-3f0e2d1c9b8a", "/@rootfs/boot", ("part_msdos", "btrfs"))


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("INFR_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with INFR_REGEN_GOLDEN=1"
    assert text == path.read_text()


def preseed_values(text: str) -> dict[str, str]:
    """question -> value, joining backslash continuations like debconf-set-selections."""
    values = {}
    for line in text.replace("\\\n", "").splitlines():
        if line.strip() and not line.startswith("#"):
            _owner, question, _type, *value = line.split(None, 3)
            values[question] = value[0] if value else ""
    return values


# ---------------------------------------------------------------------------
# Preseed


@pytest.mark.parametrize("case", sorted(CASES))
def test_preseed_matches_golden(case: str) -> None:
    check_golden(f"preseed-{case}.cfg", hosts_preseed.render_preseed(CASES[case]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_preseed_passes_debconf_checkonly(case: str, tmp_path: Path) -> None:
    require("debconf")
    path = tmp_path / "preseed.cfg"
    path.write_text(hosts_preseed.render_preseed(CASES[case]))
    result = subprocess.run(["debconf-set-selections", "--checkonly", str(path)], capture_output=True, text=True)
    # An unknown type is only a warning with exit 0: demand silence too.
    assert (result.returncode, result.stderr) == (0, "")


def test_preseed_unattended_essentials() -> None:
    values = preseed_values(hosts_preseed.render_preseed(CASES["dhcp-bios"]))
    assert values["netcfg/hostname"] == "web1"
    assert values["netcfg/get_domain"] == "example.com"
    assert values["mirror/http/hostname"] == "deb.debian.org"
    assert values["mirror/http/directory"] == "/debian"
    assert values["mirror/suite"] == values["mirror/udeb/suite"] == "bookworm"
    assert values["partman-auto/disk"] == values["grub-installer/bootdev"] == "/dev/vda"
    assert "openssh-server" in values["pkgsel/include"].split()
    assert values["debian-installer/add-kernel-opts"] == "console=tty0 console=ttyS0,115200n8"
    assert values["passwd/username"] == "manager"
    assert values["passwd/user-password-crypted"] == "!"
    assert values["apt-setup/services-select"] == "security, updates"


def test_preseed_has_no_root_password() -> None:
    values = preseed_values(hosts_preseed.render_preseed(CASES["dhcp-bios"]))
    assert values["passwd/root-login"] == "false"
    assert not [q for q in values if q.startswith("passwd/root-password")]


def test_preseed_btrfs_root_and_swap_recipe() -> None:
    recipe = preseed_values(hosts_preseed.render_preseed(CASES["static-uefi"]))["partman-auto/expert_recipe"]
    parts = [p.strip() for p in recipe.split("::", 1)[1].split(" .") if p.strip()]
    assert "method{ efi }" in parts[0]
    assert "filesystem{ btrfs }" in parts[1] and "mountpoint{ / }" in parts[1]
    assert parts[2].startswith("2048 512 2048 linux-swap") and "method{ swap }" in parts[2]
    bios = preseed_values(hosts_preseed.render_preseed(CASES["dhcp-bios"]))
    assert "method{ efi }" not in bios["partman-auto/expert_recipe"]
    assert bios["partman-partitioning/choose_label"] == "msdos"


def test_preseed_static_network_and_https_mirror() -> None:
    values = preseed_values(hosts_preseed.render_preseed(CASES["static-uefi"]))
    assert values["netcfg/disable_autoconfig"] == "true"
    assert (values["netcfg/get_ipaddress"], values["netcfg/get_netmask"]) == ("203.0.113.10", "255.255.255.0")
    assert values["netcfg/get_gateway"] == "203.0.113.1"
    assert values["netcfg/get_nameservers"] == "198.51.100.53 198.51.100.54"
    assert values["mirror/protocol"] == "https"
    assert values["mirror/https/hostname"] == "mirror.example.org:8443"
    assert values["mirror/https/directory"] == "/debian"
    assert values["apt-setup/services-select"] == ""
    # Asked-for packages are not listed twice.
    assert values["pkgsel/include"] == "openssh-server sudo btrfs-progs python3"


def test_preseed_with_this_machines_mirror() -> None:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if not sources.exists():
        pytest.fail(f"{sources} is missing: these tests run on Debian 12", pytrace=False)
    mirror = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.M)
    assert mirror, f"no URIs: line in {sources}"
    values = preseed_values(hosts_preseed.render_preseed(settings(mirror=mirror.group(1))))
    host, _, directory = mirror.group(1).split("://", 1)[1].partition("/")
    assert values["mirror/http/hostname"] == host
    assert values["mirror/http/directory"] == "/" + directory.rstrip("/")


def run_late_command(command: str, tmp_path: Path, mounts: str) -> subprocess.CompletedProcess[bytes]:
    """The late_command against a fake /target and /proc/mounts, `in-target` a no-op."""
    (tmp_path / "mounts").write_text(mounts.replace("/target", str(tmp_path / "target")))
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "in-target").write_text("#!/bin/sh\nexit 0\n")
    (stubs / "in-target").chmod(0o755)
    script = command.replace("/target", str(tmp_path / "target")).replace("/proc/mounts", str(tmp_path / "mounts"))
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", script], env=env)


def test_late_command_installs_keys_and_sudo(tmp_path: Path) -> None:
    """Run the late_command for real against a fake /target: proves the quoting."""
    command = preseed_values(hosts_preseed.render_preseed(settings(admin_keys=(KEY_A, KEY_B))))["preseed/late_command"]
    target = tmp_path / "target"
    (target / "etc/sudoers.d").mkdir(parents=True)
    mounts = "/dev/vda1 /target btrfs rw,relatime,space_cache=v2,subvolid=256,subvol=/@rootfs 0 0\n"
    assert run_late_command(command, tmp_path, mounts).returncode == 0
    ssh = target / "home/manager/.ssh"
    assert (ssh / "authorized_keys").read_text() == f"{KEY_A}\n{KEY_B}\n"
    assert oct((ssh / "authorized_keys").stat().st_mode & 0o777) == "0o600"
    assert oct(ssh.stat().st_mode & 0o777) == "0o700"
    assert (target / "etc/sudoers.d/manager").read_text() == "manager ALL=(ALL) NOPASSWD:ALL\n"


def test_late_command_fails_without_rootfs_subvolume(tmp_path: Path) -> None:
    command = preseed_values(hosts_preseed.render_preseed(settings()))["preseed/late_command"]
    result = run_late_command(command, tmp_path, "/dev/vda1 /target btrfs rw,relatime,subvolid=5,subvol=/ 0 0\n")
    assert result.returncode != 0
    assert not (tmp_path / "target").exists()


def test_validation_reports_every_problem() -> None:
    with pytest.raises(ValidationError) as err:
        hosts_preseed.render_preseed(
            settings(
                hostname="Web_1",
                admin_keys=("ssh-ed25519 AAAA x'; rm -rf /",),
                disk="vda",
                network=hosts_preseed.Network("203.0.113.10/24", "198.51.100.1"),
                mirror="ftp://example.org/debian",
                swap_mb=0,
            )
        )
    text = str(err.value)
    for fragment in ("host name", "SSH public key", "disk", "gateway", "nameserver", "mirror", "swap"):
        assert fragment in text


@pytest.mark.parametrize(
    "overrides",
    [
        {"admin_keys": ()},
        {"admin_keys": (KEY_A + "\nd-i passwd/root-login boolean true",)},
        {"domain": "example..com"},
        {"network": hosts_preseed.Network(gateway="203.0.113.1")},
        {"network": hosts_preseed.Network("203.0.113.10", "203.0.113.1", ("1.1.1.1",))},
        {"console": ("ttyS0 quiet",)},
        {"extra_packages": ("vim; reboot",)},
        {"firmware": "coreboot"},
    ],
)
def test_validation_rejects(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        hosts_preseed.render_preseed(settings(**overrides))


# ---------------------------------------------------------------------------
# iPXE script


@pytest.mark.parametrize("case", sorted(CASES))
def test_ipxe_script_matches_golden(case: str) -> None:
    check_golden(f"boot-{case}.ipxe", hosts_ipxe.render_ipxe_script(CASES[case], INSTALLER))


def test_ipxe_script_embedded_matches_golden() -> None:
    check_golden("embed.ipxe", hosts_ipxe.render_ipxe_script(CASES["dhcp-bios"], INSTALLER, embedded_preseed=True))


def test_ipxe_script_fetches_only_kernel_and_initrd() -> None:
    script = hosts_ipxe.render_ipxe_script(CASES["lab"], hosts_preseed.InstallerSource("http://10.0.2.101:8088"))
    urls = re.findall(r"http://\S+", script)
    assert urls == ["http://10.0.2.101:8088/linux", "http://10.0.2.101:8088/initrd.gz"]
    assert "preseed" not in script


def test_ipxe_static_network_uses_first_nameserver() -> None:
    script = hosts_ipxe.render_ipxe_script(CASES["static-uefi"], INSTALLER)
    assert "set net0/ip 203.0.113.10\nset net0/netmask 255.255.255.0\nset net0/gateway 203.0.113.1\n" in script
    assert "set dns 198.51.100.53\nifopen net0\n" in script
    assert "dhcp" not in script


def test_ipxe_command_line_is_the_script_as_one_chain() -> None:
    script = hosts_ipxe.render_ipxe_script(CASES["dhcp-bios"], INSTALLER)
    line = hosts_ipxe.ipxe_command_line(script)
    assert line.startswith("dhcp && kernel http://deb.debian.org/debian/dists/bookworm/main/installer-amd64/")
    assert line.endswith("/initrd.gz && boot")
    assert "#" not in line and "\n" not in line
    assert line.split(" && ")[1].endswith("priority=critical console=tty0 console=ttyS0,115200n8 ---")


def test_ipxe_command_line_too_long() -> None:
    installer = hosts_preseed.InstallerSource("http://example.org/" + "x" * 2000)
    with pytest.raises(ValidationError, match="over 2047"):
        hosts_ipxe.ipxe_command_line(hosts_ipxe.render_ipxe_script(CASES["dhcp-bios"], installer))


def test_ipxe_refuses_https_installer() -> None:
    with pytest.raises(ValidationError, match="no HTTPS"):
        hosts_ipxe.render_ipxe_script(CASES["dhcp-bios"], hosts_preseed.InstallerSource("https://deb.debian.org/debian"))


def test_installer_from_mirror_and_release() -> None:
    source = hosts_preseed.installer_from_mirror("http://mirror.example.org/debian/", "trixie", Path("/srv/di"))
    assert source.url == (
        "http://mirror.example.org/debian/dists/trixie/main/installer-amd64/current/images/"
        "netboot/debian-installer/amd64"
    )
    assert source.local_dir == Path("/srv/di")


# ---------------------------------------------------------------------------
# Preseed cpio


def test_preseed_cpio_lists_and_extracts_with_cpio(tmp_path: Path) -> None:
    require("cpio")
    preseed = hosts_preseed.render_preseed(CASES["dhcp-bios"])
    archive = tmp_path / "preseed.cpio"
    archive.write_bytes(hosts_ipxe.preseed_cpio(preseed))
    listing = subprocess.run(["cpio", "-t", "--quiet"], stdin=archive.open("rb"), capture_output=True, check=True)
    assert listing.stdout.decode().split() == ["preseed.cfg"]
    subprocess.run(["cpio", "-id", "--quiet"], stdin=archive.open("rb"), cwd=tmp_path, check=True)
    assert (tmp_path / "preseed.cfg").read_text() == preseed


def test_preseed_cpio_is_newc_and_reproducible() -> None:
    blob = hosts_ipxe.preseed_cpio("d-i x/y string z\n")
    assert blob.startswith(b"070701") and len(blob) % 4 == 0
    assert blob == hosts_ipxe.preseed_cpio("d-i x/y string z\n")
    assert b"TRAILER!!!\0" in blob


# ---------------------------------------------------------------------------
# The box: probe, method, GRUB entry

PROBE_BTRFS = """disk=/dev/vda
firmware=bios
grub_uuid=0b7c4f2e-5d2a-4c1e-9a57-3f0e2d1c9b8a
grub_path=/@rootfs/boot
grub_partmap=msdos
grub_abstraction=
grub_fs=btrfs
"""
PROBE_LVM_UEFI = """disk=/dev/nvme0n1
firmware=uefi
grub_uuid=5e1c
grub_path=/
grub_partmap=gpt
grub_abstraction=lvm
grub_fs=ext2
"""


def test_parse_probe_btrfs_bios() -> None:
    facts = hosts_probe.parse_box_probe(PROBE_BTRFS)
    assert facts == hosts_probe.BoxFacts("/dev/vda", "bios", GRUB_FACTS)
    assert hosts_probe.choose_method(facts) is hosts_probe.BootMethod.GRUB_IPXE


def test_parse_probe_separate_boot_on_lvm_uefi() -> None:
    facts = hosts_probe.parse_box_probe(PROBE_LVM_UEFI)
    assert facts.grub == hosts_probe.GrubFacts("5e1c", "/", ("part_gpt", "lvm", "ext2"))
    assert hosts_probe.choose_method(facts) is hosts_probe.BootMethod.GRUB_DI


def test_parse_probe_without_grub() -> None:
    facts = hosts_probe.parse_box_probe("disk=/dev/sda\nfirmware=bios\n")
    assert facts.grub is None
    assert hosts_probe.choose_method(facts) is hosts_probe.BootMethod.DISK_IPXE
    with pytest.raises(InfrError, match="UEFI"):
        hosts_probe.choose_method(hosts_probe.parse_box_probe("disk=/dev/sda\nfirmware=uefi\ngrub_uuid=\n"))


def test_parse_probe_refuses_odd_grub_values() -> None:
    with pytest.raises(InfrError, match="unexpected GRUB probe values"):
        hosts_probe.parse_box_probe(PROBE_BTRFS.replace("grub_path=/@rootfs/boot", "grub_path=/boot; reboot"))


@pytest.mark.parametrize("disks", ["", "disk=/dev/vda\ndisk=/dev/vdb\n"])
def test_parse_probe_needs_exactly_one_disk(disks: str) -> None:
    with pytest.raises(InfrError, match="which disk"):
        hosts_probe.parse_box_probe(disks + "firmware=bios\n")


def test_probe_script_finds_the_disk_under_the_root_partition(tmp_path: Path) -> None:
    """The probe follows / back to its whole disk: stubbed findmnt and lsblk."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "findmnt").write_text("#!/bin/sh\necho /dev/sda2\n")
    (stubs / "lsblk").write_text(
        '#!/bin/sh\n[ "$3" = /dev/sda2 ] || exit 1\nprintf "/dev/sda2 part\\n/dev/sda disk\\n"\n'
    )
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    argv = hosts_probe.find_boot_disk_argv()
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    assert hosts_probe.parse_box_probe(result.stdout).disk == "/dev/sda"


@pytest.mark.parametrize("method", [hosts_probe.BootMethod.GRUB_IPXE, hosts_probe.BootMethod.GRUB_DI])
def test_grub_entry_matches_golden(method: hosts_probe.BootMethod) -> None:
    entry = hosts_grub.render_grub_entry(CASES["dhcp-bios"], GRUB_FACTS, method, INSTALLER)
    check_golden(f"grub-entry-{method}.cfg", entry)


def test_grub_ipxe_entry_passes_the_command_line_word_by_word() -> None:
    entry = hosts_grub.render_grub_entry(CASES["dhcp-bios"], GRUB_FACTS, hosts_probe.BootMethod.GRUB_IPXE, INSTALLER)
    linux16 = next(line for line in entry.splitlines() if "linux16" in line)
    # GRUB would wrap an argument holding a space in double quotes, which iPXE
    # cannot parse: every word is quoted alone.
    words = shlex.split(linux16)[2:]
    assert " ".join(words) == hosts_ipxe.ipxe_command_line(hosts_ipxe.render_ipxe_script(CASES["dhcp-bios"], INSTALLER))
    assert "initrd16 /@rootfs/boot/infr-install/preseed.cpio" in entry


# ---------------------------------------------------------------------------
# Building the medium


def facts(firmware: str = "bios", grub: bool = True) -> hosts_probe.BoxFacts:
    return hosts_probe.BoxFacts("/dev/vda", firmware, GRUB_FACTS if grub else None)  # type: ignore[arg-type]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_grub_ipxe_medium(tmp_path: Path) -> None:
    require("ipxe")
    medium = bm.build_boot_medium(CASES["dhcp-bios"], facts(), tmp_path, installer=INSTALLER)
    assert medium.method is hosts_probe.BootMethod.GRUB_IPXE
    assert [u.remote for u in medium.uploads] == [
        "/boot/infr-install/ipxe.lkrn",
        "/boot/infr-install/preseed.cpio",
        "/boot/infr-install/grub-entry.cfg",
    ]
    assert sha256(tmp_path / "ipxe.lkrn") == sha256(hosts_ipxe.STOCK_IPXE_LKRN)
    cpio = hosts_ipxe.preseed_cpio(hosts_preseed.render_preseed(CASES["dhcp-bios"]))
    assert (tmp_path / "preseed.cpio").read_bytes() == cpio
    assert (tmp_path / "grub-entry.cfg").read_text() == hosts_grub.render_grub_entry(
        CASES["dhcp-bios"], GRUB_FACTS, hosts_probe.BootMethod.GRUB_IPXE, INSTALLER
    )
    for upload in medium.uploads:
        assert sha256(upload.local) in medium.prepare_argv[2]
    assert medium.reboot_argv == ["systemd-run", "--on-active=2", "systemctl", "reboot"]


def test_build_grub_di_medium(tmp_path: Path) -> None:
    require("debian-installer-12-netboot-amd64")
    medium = bm.build_boot_medium(CASES["static-uefi"], facts("uefi"), tmp_path, installer=INSTALLER)
    assert medium.method is hosts_probe.BootMethod.GRUB_DI
    names = [u.local.name for u in medium.uploads]
    assert names == ["linux", "initrd.gz", "preseed.cpio", "grub-entry.cfg"]
    assert sha256(tmp_path / "linux") == sha256(hosts_preseed.PACKAGE_INSTALLER_DIR / "linux")
    assert (
        "initrd /@rootfs/boot/infr-install/initrd.gz /@rootfs/boot/infr-install/preseed.cpio"
        in (tmp_path / "grub-entry.cfg").read_text()
    )


def test_build_grub_di_names_the_missing_installer(tmp_path: Path) -> None:
    installer = hosts_preseed.InstallerSource(INSTALLER.url, tmp_path / "nowhere")
    with pytest.raises(InfrError) as err:
        bm.build_boot_medium(CASES["static-uefi"], facts("uefi"), tmp_path / "out", installer=installer)
    assert "nowhere/linux" in str(err.value) and "debian-installer-12-netboot-amd64" in str(err.value)


def xorriso_extract(image: Path, name: str, dest: Path) -> bytes:
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(image), "-extract", f"/{name}", str(dest)],
        capture_output=True,
        check=True,
    )
    return dest.read_bytes()


def test_build_disk_image_from_stock_ipxe_iso(tmp_path: Path) -> None:
    require("ipxe", "xorriso")
    lab = CASES["lab"]
    installer = hosts_preseed.InstallerSource("http://10.0.2.101:8088")
    medium = bm.build_boot_medium(lab, facts(grub=False), tmp_path / "out", installer=installer)
    image = tmp_path / "out/infr-boot.img"
    assert medium.method is hosts_probe.BootMethod.DISK_IPXE
    assert medium.uploads == (hosts_grub.Upload(image, bm.REMOTE_IMAGE),)
    listing = subprocess.run(
        ["xorriso", "-indev", str(image), "-find", "/", "-type", "f"], capture_output=True, text=True, check=True
    ).stdout
    assert sorted(re.findall(r"'/([^']+)'", listing)) == [
        "ipxe.krn",
        "isolinux.bin",
        "isolinux.cfg",
        "ldlinux.c32",
        "preseed.cpio",
    ]
    cpio = xorriso_extract(image, "preseed.cpio", tmp_path / "preseed.cpio")
    assert cpio == hosts_ipxe.preseed_cpio(hosts_preseed.render_preseed(lab))
    isolinux_cfg = xorriso_extract(image, "isolinux.cfg", tmp_path / "isolinux.cfg").decode()
    command_line = hosts_ipxe.ipxe_command_line(hosts_ipxe.render_ipxe_script(lab, installer))
    assert f" APPEND {command_line}\n" in isolinux_cfg and " INITRD preseed.cpio\n" in isolinux_cfg
    assert xorriso_extract(image, "ipxe.krn", tmp_path / "ipxe.krn") == hosts_ipxe.STOCK_IPXE_LKRN.read_bytes()
    # A hybrid image: BIOS boots it from a disk through the ISO's own MBR code.
    assert image.read_bytes()[:432] == hosts_ipxe.STOCK_IPXE_ISO.read_bytes()[:432]
    assert image.read_bytes()[510:512] == b"\x55\xaa"
    assert medium.reboot_argv == bm.write_image_argv("/dev/vda")


def test_build_disk_image_with_custom_ipxe(tmp_path: Path) -> None:
    """The EMBED plumbing, with a stand-in iPXE source whose Makefile concatenates EMBED."""
    require("make")
    source = tmp_path / "ipxe-src"
    (source / "src").mkdir(parents=True)
    (source / "src/Makefile").write_text(
        "comma := ,\n.PHONY: bin/ipxe.usb\nbin/ipxe.usb:\n"
        "\tmkdir -p bin\n\techo '$(NO_WERROR) $(EXTRA_CFLAGS)' > $@\n"
        "\tfor f in $(subst $(comma), ,$(EMBED)); do basename $$f; cat $$f; done >> $@\n"
    )
    medium = bm.build_boot_medium(
        CASES["dhcp-bios"], facts(grub=False), tmp_path / "out", installer=INSTALLER, ipxe_source=source
    )
    built = medium.uploads[0].local.read_text()
    script = hosts_ipxe.render_ipxe_script(CASES["dhcp-bios"], INSTALLER, embedded_preseed=True)
    preseed = hosts_preseed.render_preseed(CASES["dhcp-bios"])
    assert built == f"1 -fcommon\nembed.ipxe\n{script}preseed.cfg\n{preseed}"


def test_disk_image_refuses_uefi_and_grub_methods_need_grub(tmp_path: Path) -> None:
    with pytest.raises(InfrError, match="BIOS only"):
        bm.build_boot_medium(
            CASES["dhcp-bios"],
            facts("uefi", grub=False),
            tmp_path,
            installer=INSTALLER,
            method=hosts_probe.BootMethod.DISK_IPXE,
        )
    with pytest.raises(InfrError, match="needs GRUB"):
        bm.build_boot_medium(
            CASES["dhcp-bios"],
            facts(grub=False),
            tmp_path,
            installer=INSTALLER,
            method=hosts_probe.BootMethod.GRUB_IPXE,
        )


def test_build_ipxe_script_without_source_says_so() -> None:
    result = subprocess.run([str(hosts_ipxe.BUILD_IPXE_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "no iPXE source given" in result.stderr and "prebuilt" in result.stderr


def test_build_ipxe_script_rejects_a_directory_that_is_not_ipxe(tmp_path: Path) -> None:
    with pytest.raises(InfrError, match="not an iPXE source checkout"):
        hosts_ipxe.build_custom_ipxe(tmp_path, tmp_path / "a", tmp_path / "b", tmp_path / "c")


# ---------------------------------------------------------------------------
# Remote steps, run locally where that is safe


def test_upload_argv_writes_stdin(tmp_path: Path) -> None:
    remote = tmp_path / "boot dir/infr-install/preseed.cpio"
    argv = bm.upload_argv(hosts_grub.Upload(Path("unused"), str(remote)))
    subprocess.run(argv, input=b"payload", check=True)
    assert remote.read_bytes() == b"payload"
    assert oct(remote.stat().st_mode & 0o777) == "0o600"


def test_verify_uploads_argv(tmp_path: Path) -> None:
    local, remote = tmp_path / "a", tmp_path / "b"
    local.write_bytes(b"image")
    remote.write_bytes(b"image")
    argv = hosts_grub.verify_uploads_argv((hosts_grub.Upload(local, str(remote)),))
    assert subprocess.run(argv).returncode == 0
    remote.write_bytes(b"imag")
    assert subprocess.run(argv, capture_output=True).returncode != 0


def test_install_grub_entry_is_idempotent_and_keeps_custom_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require("grub-common")
    remote_dir, grub_dir = tmp_path / "infr-install", tmp_path / "grub"
    remote_dir.mkdir()
    grub_dir.mkdir()
    monkeypatch.setattr(hosts_grub, "REMOTE_DIR", str(remote_dir))
    monkeypatch.setattr(hosts_grub, "GRUB_CUSTOM_CFG", str(grub_dir / "custom.cfg"))
    monkeypatch.setattr(hosts_grub, "GRUB_ENV", str(grub_dir / "grubenv"))
    (grub_dir / "custom.cfg").write_text("menuentry 'mine' { true }\n")
    entry = hosts_grub.render_grub_entry(CASES["dhcp-bios"], GRUB_FACTS, hosts_probe.BootMethod.GRUB_IPXE, INSTALLER)
    (remote_dir / "grub-entry.cfg").write_text(entry)
    uploads = (hosts_grub.Upload(remote_dir / "grub-entry.cfg", str(remote_dir / "grub-entry.cfg")),)
    for _ in range(2):
        subprocess.run(hosts_grub.install_grub_entry_argv(uploads), check=True)
    assert (grub_dir / "custom.cfg").read_text() == "menuentry 'mine' { true }\n" + entry
    env = subprocess.run(["grub-editenv", str(grub_dir / "grubenv"), "list"], capture_output=True, text=True)
    assert env.stdout == "next_entry=infr-install\n"


def test_write_image_argv_order_of_operations() -> None:
    argv = bm.write_image_argv("/dev/nvme0n1")
    script = argv[2]
    assert argv[:2] == ["sh", "-c"]
    subprocess.run(["sh", "-n", "-c", script], check=True)
    steps = ["grep -qx", "echo u > /proc/sysrq-trigger", "grep -q '^ro'", "dd if=", "echo b > /proc/sysrq-trigger"]
    positions = [script.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "disk=/dev/nvme0n1\n" in script and "oflag=direct" in script
    # The reboot is detached so the SSH command returns; nothing writes after dd.
    assert script.rstrip().endswith("</dev/null &")
    assert "\nsync" not in script.split("dd if=")[1]
    with pytest.raises(ValidationError):
        bm.write_image_argv("/dev/vda; reboot")


def test_probe_script_is_valid_sh() -> None:
    subprocess.run(["sh", "-n", "-c", hosts_probe.find_boot_disk_argv()[2]], check=True)


def test_phases_in_order() -> None:
    assert [p.value for p in bm.Phase] == [
        "building",
        "uploading",
        "rebooting",
        "installer running",
        "first boot",
    ]
