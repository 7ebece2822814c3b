"""One lab VM: its qemu command line, its seed, starting it, and waiting for its SSH."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from infr.errors import LabError
from infr.lab import proc
from infr.oplog import get_logger

log = get_logger("lab")

QEMU = "qemu-system-x86_64"
# The NIC sits in PCI slot 3, so systemd names it ens3 in the guest, as on many VPSes.
NIC_SLOT = 3
GUEST_IFNAME = f"ens{NIC_SLOT}"
TCG = ["-accel", "tcg,thread=multi"]
KVM = ["-accel", "kvm", "-cpu", "host"]


@dataclass(frozen=True)
class VmSpec:
    name: str
    directory: Path
    disk: Path
    tap: str
    mac: str
    memory_mb: int
    cpus: int

    @property
    def pidfile(self) -> Path:
        return self.directory / "qemu.pid"

    @property
    def serial_log(self) -> Path:
        return self.directory / "console.log"

    @property
    def monitor(self) -> Path:
        return self.directory / "monitor.sock"

    @property
    def seed(self) -> Path:
        return self.directory / "seed"


def qemu_argv(spec: VmSpec, accel: list[str]) -> list[str]:
    """The qemu command line of a lab VM: BIOS boots GRUB from the disk, as on a VPS.

    No -no-reboot: a reboot inside the VM resets it and it boots again from its disk.
    """
    return [
        QEMU, "-name", spec.name, *accel, "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
        "-nodefaults", "-display", "none", "-daemonize", "-pidfile", str(spec.pidfile),
        # cache=unsafe: guest flushes are ignored; dpkg's many fsyncs are slow under TCG,
        # and a lab disk needs to survive a guest reboot, not a crash of this machine.
        "-drive", f"file={spec.disk},format=raw,if=none,id=disk0,cache=unsafe",
        "-device", "virtio-blk-pci,drive=disk0",
        "-netdev", f"tap,id=net0,ifname={spec.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={spec.mac},addr={NIC_SLOT:#x}",
        "-device", "virtio-rng-pci",
        "-chardev", f"file,id=serial0,path={spec.serial_log}",
        "-serial", "chardev:serial0",
        "-monitor", f"unix:{spec.monitor},server=on,wait=off",
        "-fw_cfg", f"name=opt/infr/seed,file={spec.seed}",
    ]


HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")


def seed_text(*, hostname: str, address: str, gateway: str, apt_proxy: str,
              authorized_key: str, root_password_hash: str,
              host_keys: dict[str, tuple[str, str]]) -> str:
    """The per-VM seed, sourced by /usr/local/sbin/infr-lab-seed at first boot.

    `host_keys` maps a key type to its (private, public) SSH host key text.
    """
    values = {
        "SEED_HOSTNAME": hostname,
        "SEED_IFNAME": GUEST_IFNAME,
        "SEED_ADDRESS": address,
        "SEED_GATEWAY": gateway,
        "SEED_APT_PROXY": apt_proxy,
        "SEED_AUTHORIZED_KEY": authorized_key.strip(),
        "SEED_ROOT_PASSWORD_HASH": root_password_hash,
    }
    for key_type in HOST_KEY_TYPES:
        private, public = host_keys[key_type]
        values[f"SEED_HOSTKEY_{key_type}"] = private.strip()
        values[f"SEED_HOSTKEY_{key_type}_PUB"] = public.strip()
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def make_host_keys(directory: Path, comment: str) -> dict[str, tuple[str, str]]:
    """Fresh SSH host keys for a VM, made here: RSA takes seconds under emulation."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = {}
    for key_type in HOST_KEY_TYPES:
        path = directory / f"ssh_host_{key_type}_key"
        path.unlink(missing_ok=True)
        proc.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment,
                  "-f", str(path)])
        keys[key_type] = (path.read_text(), path.with_name(path.name + ".pub").read_text())
    return keys


def hash_password(password: str) -> str:
    """A crypt(3) SHA-512 hash of `password`, for /etc/shadow (the password goes by stdin)."""
    return proc.run(["openssl", "passwd", "-6", "-stdin"], input_text=password).strip()


def choose_accel(override: str | None, kvm_works: bool) -> list[str]:
    """KVM if it works here (or is asked for), else TCG; `override` is "kvm" or "tcg"."""
    if override == "tcg":
        return TCG
    if override == "kvm":
        return KVM
    if override:
        raise LabError(f"unknown accelerator {override!r}", "use kvm or tcg (INFR_LAB_ACCEL)")
    return KVM if kvm_works else TCG


# A boot sector that writes 0x31 to isa-debug-exit: qemu then exits with (0x31 << 1) | 1.
_PROBE_SECTOR = bytes([0xB0, 0x31, 0xE6, 0xF4, 0xF4]).ljust(510, b"\0") + b"\x55\xaa"
_PROBE_EXIT = (0x31 << 1) | 1


def kvm_works(kernel: Path | None, timeout: float = 20.0) -> bool:
    """True if a guest really runs under KVM here.

    /dev/kvm can exist and still fail: kvm-pvm stops with "KVM internal error" in real
    mode, and some hosts run real mode fine and then hang the kernel for good once it
    leaves real mode (seen here: Debian's kernel printed "Probing EDD ... ok" and nothing
    more, while a boot sector ran). So a one-sector guest is only the first, quick check;
    the proof is `kernel` booting until it panics for want of a root filesystem. Without
    a kernel to boot yet (the first image build), KVM is not trusted.
    """
    if kernel is None or not kernel.exists():
        return False
    return (os.access("/dev/kvm", os.R_OK | os.W_OK) and probe_boots(KVM, timeout)
            and kernel_boots(KVM, kernel, timeout))


def probe_boots(accel: list[str], timeout: float = 15.0) -> bool:
    """Boot a one-instruction boot sector through the BIOS with `accel`; True if it ran."""
    with tempfile.TemporaryDirectory(prefix="infr-accel-probe-") as tmp:
        sector = Path(tmp) / "probe.img"
        sector.write_bytes(_PROBE_SECTOR)
        argv = [QEMU, *accel, "-nodefaults", "-display", "none", "-m", "16",
                "-drive", f"file={sector},format=raw,if=ide",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            return False
    log.debug("accelerator probe %s: exit code %s", accel[1], done.returncode)
    return done.returncode == _PROBE_EXIT


# What a kernel booted with no root filesystem prints last, once it got through its whole
# start in protected and long mode.
KERNEL_PROBE_END = "Kernel panic"


def kernel_boots(accel: list[str], kernel: Path, timeout: float = 20.0) -> bool:
    """Boot `kernel` with no disk and no initrd under `accel`; True if it ran to its panic.

    Under KVM that takes about a second; a kernel hung by a broken KVM is cut at `timeout`.
    """
    argv = [QEMU, *accel, "-nodefaults", "-display", "none", "-m", "128", "-no-reboot",
            "-serial", "stdio", "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1 loglevel=4"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout)
    except (subprocess.TimeoutExpired, FileNotFoundError):
        log.debug("kernel probe %s: no panic within %s s", accel[1], timeout)
        return False
    return KERNEL_PROBE_END in done.stdout.decode(errors="replace")


def start(spec: VmSpec, accel: list[str]) -> int:
    """Start the VM in the background; return qemu's PID."""
    spec.serial_log.write_bytes(b"")
    proc.run(qemu_argv(spec, accel), timeout=60)
    try:
        return int(spec.pidfile.read_text().strip())
    except (OSError, ValueError) as exc:
        raise LabError(f"qemu for {spec.name} wrote no pidfile", f"see {spec.serial_log}") from exc


def ssh_banner(ip: str, port: int = 22, timeout: float = 3.0) -> bool:
    """True if an SSH server answers at ip:port with its version banner."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_ssh(name: str, ip: str, pid: int, serial_log: Path, timeout: float) -> float:
    """Wait until the VM's sshd answers; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not proc.alive(pid):
            raise LabError(f"{name} stopped while booting", f"see {serial_log}")
        if ssh_banner(ip, timeout=2.0):
            return time.monotonic() - started
        time.sleep(1.0)
    raise LabError(f"{name} ({ip}) did not answer SSH within {timeout:.0f} s",
                   f"see {serial_log}")
