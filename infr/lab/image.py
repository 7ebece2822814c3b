"""The lab's disk image: Debian 12 on btrfs `@rootfs` with GRUB, built once with debootstrap.

The image is cached under a hash of its recipe, so a later `lab up` reuses it. Nothing in it
is per-VM or per-admin: hostname, address, root key and password reach each VM at its first
boot through qemu's fw_cfg (see `infr-lab-seed` below), so one image serves every lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infr.errors import LabError
from infr.lab import proc
from infr.lab.mirror import Mirror
from infr.oplog import get_logger

log = get_logger("lab")

# Bump when the build steps change in a way that the recipe's fields do not show.
RECIPE_VERSION = 3
SUITE = "bookworm"
PART_OFFSET = 1024 * 1024  # the one partition starts at 1 MiB, as the Debian installer does
FINALIZE_OK = "INFR-LAB-FINALIZE-OK"
FINALIZE_TIMEOUT = 900.0

INCLUDE = (
    "linux-image-amd64", "grub-pc", "initramfs-tools", "openssh-server", "btrfs-progs",
    "ifupdown", "dbus", "python3", "sudo", "ca-certificates", "zstd",
)
# What infr installs on a host later: downloaded into apt's cache at build time so that
# `apt-get install` in a VM reads local files instead of fetching through the forwarder.
PREDOWNLOAD = (
    "lxc", "lxc-templates", "debootstrap", "haproxy", "certbot", "btrbk", "wireguard-tools",
    "nftables", "btrfs-progs", "bridge-utils", "rsync", "curl", "socat", "dnsmasq-base", "openssl",
)

SEED_SCRIPT = r"""#!/bin/sh
# Applies, once, the per-VM seed that `infr lab` hands to qemu as fw_cfg "opt/infr/seed":
# hostname, static address, apt proxy, root's key and password, fresh SSH host keys.
set -eu
done_flag=/var/lib/infr-lab-seed/done
[ -e "$done_flag" ] && exit 0
modprobe qemu_fw_cfg 2>/dev/null || true
seed=/sys/firmware/qemu_fw_cfg/by_name/opt/infr/seed/raw
[ -r "$seed" ] || { echo "infr-lab-seed: no seed, nothing to do"; exit 0; }
. "$seed"

echo "$SEED_HOSTNAME" > /etc/hostname
hostname "$SEED_HOSTNAME"
sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$SEED_HOSTNAME/" /etc/hosts

cat > /etc/network/interfaces <<EOF
# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface
allow-hotplug $SEED_IFNAME
iface $SEED_IFNAME inet static
	address $SEED_ADDRESS
	gateway $SEED_GATEWAY
EOF

printf 'Acquire::http::Proxy "%s";\n' "$SEED_APT_PROXY" > /etc/apt/apt.conf.d/01proxy

install -d -m 700 /root/.ssh
printf '%s\n' "$SEED_AUTHORIZED_KEY" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
# Hashed on the lab's host, like the host keys below: both are slow under emulation.
usermod -p "$SEED_ROOT_PASSWORD_HASH" root

# The image carries no host keys; each VM gets its own, which the lab knows in advance.
for type in ed25519 ecdsa rsa; do
    eval "key=\$SEED_HOSTKEY_$type; pub=\$SEED_HOSTKEY_${type}_PUB"
    printf '%s\n' "$key" > "/etc/ssh/ssh_host_${type}_key"
    chmod 600 "/etc/ssh/ssh_host_${type}_key"
    printf '%s\n' "$pub" > "/etc/ssh/ssh_host_${type}_key.pub"
done
echo "infr-lab-hostkey: $SEED_HOSTKEY_ed25519_PUB" > /dev/console

mkdir -p "${done_flag%/*}"
touch "$done_flag"
"""

SEED_UNIT = """[Unit]
Description=Apply the infr lab seed (hostname, address, root access)
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target networking.service ssh.service
Wants=network-pre.target
ConditionPathExists=!/var/lib/infr-lab-seed/done

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/infr-lab-seed

[Install]
WantedBy=multi-user.target
"""

# Runs as PID 1 (kernel option init=) in the build's one boot: grub-install needs the
# disk as the VM sees it, /dev/vda, which a loop device on the build host cannot fake.
FINALIZE_SCRIPT = f"""#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
if grub-install /dev/vda && update-grub; then
    echo "grub-pc grub-pc/install_devices multiselect /dev/vda" | debconf-set-selections
    echo {FINALIZE_OK}
fi
sync
mount -o remount,ro /
echo o > /proc/sysrq-trigger
"""

GRUB_DEFAULTS = """GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"
GRUB_TERMINAL="serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
"""

HOSTS = "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# The VMs have no DNS server to ask; apt goes through the proxy, which resolves for them.
RESOLV_CONF = "# infr lab: no DNS server is reachable from here\n"


@dataclass(frozen=True)
class ImageRecipe:
    """Everything that decides the image's content; its hash names the cached image."""

    mirror_url: str
    sources: str
    suite: str = SUITE
    include: tuple[str, ...] = INCLUDE
    predownload: tuple[str, ...] = PREDOWNLOAD
    disk_size: str = "8G"
    files: tuple[tuple[str, str, int], ...] = field(default_factory=lambda: (
        ("/usr/local/sbin/infr-lab-seed", SEED_SCRIPT, 0o755),
        ("/etc/systemd/system/infr-lab-seed.service", SEED_UNIT, 0o644),
        ("/usr/local/sbin/infr-lab-finalize", FINALIZE_SCRIPT, 0o755),
        ("/etc/ssh/sshd_config.d/infr-lab.conf", "PermitRootLogin yes\n", 0o644),
        ("/etc/default/grub", GRUB_DEFAULTS, 0o644),
        ("/etc/hostname", "debian\n", 0o644),
        ("/etc/hosts", HOSTS, 0o644),
        ("/etc/network/interfaces", "auto lo\niface lo inet loopback\n", 0o644),
        # GRUB reads the initrd through BIOS calls, about 1 s per MB under TCG: only the
        # modules that find the root filesystem make it 7 MB instead of 30 MB.
        ("/etc/initramfs-tools/conf.d/infr-lab.conf", "MODULES=list\n", 0o644),
        ("/etc/initramfs-tools/modules", "virtio_pci\nvirtio_blk\nbtrfs\n", 0o644),
    ))
    version: int = RECIPE_VERSION

    def digest(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def recipe_for(mirror: Mirror) -> ImageRecipe:
    return ImageRecipe(mirror_url=mirror.url, sources=mirror.deb822())


def default_cache_dir() -> Path:
    env = os.environ.get("INFR_LAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "infr" / "lab"


# The image's kernel, kept beside it: lab.up boots it alone to learn whether KVM works.
PROBE_KERNEL = "vmlinuz"
AccelChooser = Callable[[Path], list[str]]


def ensure_image(recipe: ImageRecipe, cache: Path, choose_accel: AccelChooser,
                 progress: Callable[[str], None]) -> Path:
    """The cached base image for `recipe`, built first if missing (one builder at a time).

    `choose_accel(kernel)` gives the qemu accelerator, tried on the image's own kernel.
    """
    images = cache / "images"
    images.mkdir(parents=True, exist_ok=True)
    final = images / recipe.digest()
    with locked(images / f"{recipe.digest()}.lock"):
        if (final / "base.qcow2").exists():
            progress(f"image {recipe.digest()} cached")
        else:
            progress(f"building image {recipe.digest()} (first time, some minutes); "
                     f"log: {images / (recipe.digest() + '.tmp') / 'build.log'}")
            started = time.monotonic()
            _build(recipe, final, cache / "debs", choose_accel, progress)
            progress(f"image built in {time.monotonic() - started:.0f} s")
    _prune(images, keep=final)
    return final / "base.qcow2"


def _prune(images: Path, keep: Path) -> None:
    """Delete cached images of older recipes but the newest one (2 GB each), and failed builds.

    The newest other one stays for an older infr; running VMs have copies of their own.
    """
    others = sorted((d for d in images.iterdir() if d.is_dir() and d != keep
                     and d.suffix != ".tmp" and (d / "base.qcow2").exists()),
                    key=lambda d: (d / "base.qcow2").stat().st_mtime, reverse=True)
    failed = [d for d in images.glob("*.tmp") if d.with_suffix("") != keep]
    for old in others[1:] + failed:
        lock = images / f"{old.name.removesuffix('.tmp')}.lock"
        with locked(lock, wait=False) as got:
            if got:  # else a build of that recipe runs right now
                log.debug("pruning cached image %s", old)
                cleanup_stale(old)
                shutil.rmtree(old, ignore_errors=True)
        if got:
            lock.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `path`; without `wait`, yield False if another holds it."""
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def _build(recipe: ImageRecipe, final: Path, debs: Path, choose_accel: AccelChooser,
           progress: Callable[[str], None]) -> None:
    work = final.with_suffix(".tmp")
    cleanup_stale(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    debs.mkdir(parents=True, exist_ok=True)
    (work / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2) + "\n")
    raw = work / "disk.raw"
    proc.run(["truncate", "-s", recipe.disk_size, str(raw)])
    proc.run(["sfdisk", "-q", str(raw)], input_text="label: dos\nstart=2048, type=83, bootable\n")
    progress("debootstrap and configuration (about 3 minutes)")
    _run_phase("populate", work, debs)
    accel = choose_accel(work / PROBE_KERNEL)
    progress(f"first boot of the image, to install GRUB (accelerator: {accel[1].split(',')[0]})")
    _finalize_boot(work, accel)
    _run_phase("scrub", work, debs)
    proc.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")],
             log_file=work / "build.log")
    for name in ("disk.raw", "initrd.img"):
        (work / name).unlink()
    (work / "mnt").rmdir()
    (work / "base.qcow2").chmod(0o444)  # a cached image must never change under its hash
    work.rename(final)


def _run_phase(phase: str, work: Path, debs: Path) -> None:
    _run_in_own_mounts([phase, str(work), str(debs)], work)


def make_vm_disk(base: Path, disk: Path) -> None:
    """Write a VM's own disk from the image: its boot sectors, and a new filesystem holding
    the image's files (see build.fresh_filesystem for why a copy of the image is not enough).

    About 20 s and a sparse 1.6 GB per VM on a 2-core machine.
    """
    source = disk.with_name("image.raw")
    try:
        proc.run(["qemu-img", "convert", "-O", "raw", str(base), str(source)], timeout=600)
        with source.open("rb") as image, disk.open("wb") as out:
            out.write(image.read(PART_OFFSET))  # partition table, and GRUB's core in the gap
            out.truncate(source.stat().st_size)
        fsid = (base.parent / "uuid").read_text().strip()
        _run_in_own_mounts(["fresh-fs", str(source), str(disk), fsid], disk.parent)
    finally:
        source.unlink(missing_ok=True)


def _run_in_own_mounts(build_args: list[str], directory: Path) -> None:
    """Run a phase of build.py that mounts a disk file, in a mount namespace of its own.

    Mounts made in the shared namespace get copied into any namespace another process
    creates meanwhile; such a copy keeps the filesystem alive after our umount, its last
    writes never reach the disk file, and the loop device stays attached. A private
    namespace also drops every mount by itself if the build is killed.
    """
    proc.run(["unshare", "--mount", "--propagation", "private", "--",
              sys.executable, "-m", "infr.lab.build", *build_args], timeout=3600)
    leftovers = _loops_backed_by(directory)
    if leftovers:
        raise LabError(f"loop devices {', '.join(leftovers)} still hold {directory} after "
                       f"the {build_args[0]} phase", "another process holds its mount; see losetup -l")


def read_recipe(path: Path) -> ImageRecipe:
    data = json.loads(path.read_text())
    data["include"] = tuple(data["include"])
    data["predownload"] = tuple(data["predownload"])
    data["files"] = tuple(tuple(item) for item in data["files"])
    return ImageRecipe(**data)


def _finalize_boot(work: Path, accel: list[str]) -> None:
    console = work / "finalize-console.log"
    uuid = (work / "uuid").read_text().strip()
    append = (f"root=UUID={uuid} rootflags=subvol=@rootfs rw console=ttyS0,115200n8 "
              "init=/usr/local/sbin/infr-lab-finalize panic=1")
    proc.run(["qemu-system-x86_64", *accel, "-m", "1024", "-nodefaults", "-display", "none",
              "-no-reboot", "-kernel", str(work / "vmlinuz"), "-initrd",
              str(work / "initrd.img"), "-append", append,
              "-drive", f"file={work / 'disk.raw'},format=raw,if=virtio,cache=unsafe",
              "-serial", f"file:{console}"], timeout=FINALIZE_TIMEOUT)
    if FINALIZE_OK not in console.read_text(errors="replace"):
        raise LabError("installing GRUB in the lab image failed", f"see {console}")


def _loops_backed_by(work: Path) -> list[str]:
    listing = json.loads(proc.run(["losetup", "--list", "--json"]) or '{"loopdevices": []}')
    prefix = str(work.resolve()) + "/"
    return [dev["name"] for dev in listing.get("loopdevices", [])
            if (dev.get("back-file") or "").startswith(prefix)]


def cleanup_stale(work: Path) -> None:
    """Undo mounts and loop devices left by a build that was killed mid-way."""
    if not work.exists():
        return
    for dev in _loops_backed_by(work):
        proc.run(["losetup", "-d", dev])
