"""The lab: N Debian 12 VMs on a private bridge, each like a freshly rented VPS.

Runtime state (PIDs, taps, addresses) lives in `<lab_dir>/state.json`, so that `status` and
`down` work from a later process than the `up` that started everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infr.errors import LabError
from infr.lab import image, network, proc, vm
from infr.lab.mirror import configured_mirror, resolve_ipv4
from infr.oplog import get_logger, register_secret

log = get_logger("lab")

Progress = Callable[[str], None]
STATE_VERSION = 1
# Tools the lab runs on this machine, and the Debian packages that bring them.
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap", "mkfs.btrfs": "btrfs-progs", "socat": "socat",
    "ip": "iproute2", "sfdisk": "fdisk", "losetup": "mount", "unshare": "util-linux",
    "ssh-keygen": "openssh-client", "openssl": "openssl",
}


# Several labs can run side by side (one per developer session or CI job), each picked by
# INFR_LAB_ID with its own subnet, bridge, taps and forwarder port. Lab 0 is the default.
# Not 203.0.113.0/24: the Debian mirror may sit there (it does on the CI machines), and a
# lab bridge on it would route the mirror's address into the lab.
LAB_SUBNETS = ("198.51.100.0/24", "198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24")


def lab_id() -> int:
    value = os.environ.get("INFR_LAB_ID", "0")
    if not value.isdigit() or int(value) >= len(LAB_SUBNETS):
        raise LabError(f"INFR_LAB_ID {value!r} is not 0-{len(LAB_SUBNETS) - 1}", "unset it, or pick a free lab id")
    return int(value)


def _suffix() -> str:
    return str(lab_id()) if lab_id() else ""


@dataclass(frozen=True)
class LabConfig:
    subnet: str = field(default_factory=lambda: LAB_SUBNETS[lab_id()])
    first_host: int = 11  # hosts get .11, .12, ...; the bridge has .1
    bridge: str = field(default_factory=lambda: f"infrlab{_suffix()}-br")
    tap_prefix: str = field(default_factory=lambda: f"infrlab{_suffix()}-tap")
    proxy_port: int = field(default_factory=lambda: 3142 + lab_id())
    memory_mb: int = 1280
    cpus: int = 1
    boot_timeout: float = 600.0
    cache_dir: Path = field(default_factory=image.default_cache_dir)
    accel: str | None = field(default_factory=lambda: os.environ.get("INFR_LAB_ACCEL") or None)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge_address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.network[1]}/{self.network.prefixlen}")

    def host_address(self, index: int) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(
            f"{self.network[self.first_host + index]}/{self.network.prefixlen}")


@dataclass(frozen=True)
class LabHost:
    name: str
    ip: str
    pid: int | None
    running: bool
    ssh_ok: bool
    serial_log: Path
    host_key: str = ""  # the VM's ed25519 host key ("ssh-ed25519 AAAA... root@lab1")


class Lab:
    """Start, inspect and stop the lab's VMs. Needs root, Linux and qemu."""

    def __init__(self, lab_dir: Path, admin_pubkey: str = "",
                 config: LabConfig | None = None) -> None:
        self.lab_dir = lab_dir
        self.admin_pubkey = admin_pubkey.strip()
        self.config = config or LabConfig()
        self._state_path = lab_dir / "state.json"

    @property
    def root_password(self) -> str:
        """The VMs' root password; made once per lab directory and kept across up/down."""
        path = self.lab_dir / "root_password"
        if not path.exists():
            self.lab_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(18) + "\n")
        password = path.read_text().strip()
        register_secret(password)
        return password

    def up(self, count: int = 2, progress: Progress | None = None) -> list[LabHost]:
        """Start `count` VMs and wait until each answers SSH; return them."""
        say = progress or (lambda _msg: None)
        self._check_can_start(count)
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            state = self._load()
            if state is not None:
                return self._already_up(state, count)
            mirror = configured_mirror()
            mirror_ip = resolve_ipv4(mirror.host)
            if ipaddress.IPv4Address(mirror_ip) in self.config.network:
                raise LabError(
                    f"the Debian mirror {mirror_ip} lies inside the lab's subnet {self.config.subnet}",
                    "pick another lab with INFR_LAB_ID",
                )
            if ipaddress.ip_address(mirror_ip) in self.config.network:
                raise LabError(f"the lab subnet {self.config.subnet} holds the Debian mirror's "
                               f"address {mirror_ip}", "choose another lab subnet")
            base = image.ensure_image(image.recipe_for(mirror), self.config.cache_dir,
                                      self._choose_accel, say)
            accel = self._choose_accel(base.parent / image.PROBE_KERNEL)
            say(f"accelerator: {accel[1].split(',')[0]}")
            state = {"version": STATE_VERSION, "bridge": None, "forwarder_pid": None,
                     "hosts": []}
            try:
                self._start_network(state, mirror_ip, mirror.port, say)
                self._start_vms(state, count, base, accel, say)
                self._wait_for_ssh(state["hosts"], say)
            except BaseException:
                say("start failed; stopping what was started")
                self._teardown(state)
                raise
        return self.status()

    def _choose_accel(self, kernel: Path) -> list[str]:
        """KVM when asked for, or when `kernel` boots under it here; else TCG."""
        override = self.config.accel
        return vm.choose_accel(override, override is None and vm.kvm_works(kernel))

    def status(self) -> list[LabHost]:
        state = self._load()
        if state is None:
            return []
        hosts = []
        for host in state["hosts"]:
            pid = host.get("pid")
            running = proc.is_ours(pid, "qemu-system")
            hosts.append(LabHost(host["name"], host["ip"], pid, running,
                                 running and vm.ssh_banner(host["ip"], timeout=2.0),
                                 Path(host["dir"]) / "console.log", host.get("host_key", "")))
        return hosts

    def down(self, progress: Progress | None = None) -> None:
        """Stop every VM and the forwarder; remove taps, bridge and the VMs' disks."""
        say = progress or (lambda _msg: None)
        if not self.lab_dir.exists():
            return
        with self._locked():
            state = self._load()
            # No state, nothing of ours: every bridge, tap and PID is saved before it is
            # made, and a bridge of the same name may belong to another lab directory.
            if state is not None:
                self._teardown(state, say)

    # -- starting ---------------------------------------------------------------------------

    def _check_can_start(self, count: int) -> None:
        if not sys.platform.startswith("linux"):
            raise LabError("the lab needs Linux", "run it on a Linux machine with qemu")
        if os.geteuid() != 0:
            raise LabError("the lab needs root", "it creates a bridge, taps and loop devices; "
                           "run it as root")
        missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
        if missing:
            raise LabError(f"missing tools for the lab: {', '.join(missing)}",
                           f"apt-get install {' '.join(missing)}")
        room = self.config.network.num_addresses - self.config.first_host - 1
        if not 1 <= count <= room:
            raise LabError(f"cannot start {count} hosts", f"use 1 to {room}")
        if not self.admin_pubkey.startswith(("ssh-", "ecdsa-", "sk-")):
            raise LabError("no admin SSH public key for the lab's root logins",
                           "pass the admin's public key (e.g. ~/.ssh/id_ed25519.pub)")

    def _already_up(self, state: dict[str, Any], count: int) -> list[LabHost]:
        hosts = self.status()
        if len(hosts) == count and all(host.running for host in hosts):
            return hosts
        raise LabError(f"a lab with {len(state['hosts'])} hosts is already here "
                       f"({self.lab_dir})", "run `infr lab down` first")

    def _start_network(self, state: dict[str, Any], mirror_ip: str, mirror_port: int,
                       say: Progress) -> None:
        cfg = self.config
        clashes = network.overlapping_routes(cfg.network, cfg.bridge)
        if clashes:
            raise LabError(f"the lab subnet {cfg.subnet} overlaps routes of this machine: "
                           f"{', '.join(clashes)}", "choose another lab subnet")
        if network.link_exists(cfg.bridge):
            raise LabError(f"network interface {cfg.bridge} already exists",
                           "another lab runs here; stop it first")
        say(f"bridge {cfg.bridge} {cfg.bridge_address}")
        state["bridge"] = cfg.bridge
        self._save(state)
        network.create_bridge(cfg.bridge, cfg.bridge_address)
        listen = str(cfg.bridge_address.ip)
        state["forwarder_pid"] = network.start_forwarder(
            listen, cfg.proxy_port, mirror_ip, mirror_port, self.lab_dir / "forwarder.log")
        state["apt_proxy"] = f"http://{listen}:{cfg.proxy_port}/"
        self._save(state)

    def _start_vms(self, state: dict[str, Any], count: int, base: Path, accel: list[str],
                   say: Progress) -> None:
        cfg = self.config
        password_hash = vm.hash_password(self.root_password)
        for index in range(count):
            name = f"lab{index + 1}"
            address = cfg.host_address(index)
            spec = vm.VmSpec(name=name, directory=self.lab_dir / "hosts" / name,
                             disk=self.lab_dir / "hosts" / name / "disk.raw",
                             tap=f"{cfg.tap_prefix}{index + 1}", mac=f"52:54:00:1a:b0:{index + 1:02x}",
                             memory_mb=cfg.memory_mb, cpus=cfg.cpus)
            host: dict[str, Any] = {"name": name, "ip": str(address.ip), "tap": spec.tap,
                                    "dir": str(spec.directory), "pid": None,
                                    "started": time.time()}
            state["hosts"].append(host)
            self._save(state)
            shutil.rmtree(spec.directory, ignore_errors=True)
            spec.directory.mkdir(parents=True)
            image.make_vm_disk(base, spec.disk)
            host_keys = vm.make_host_keys(spec.directory / "host-keys", f"root@{name}")
            host["host_key"] = host_keys["ed25519"][1].strip()
            _write_private(spec.seed, vm.seed_text(
                hostname=name, address=str(address), gateway=str(cfg.bridge_address.ip),
                apt_proxy=state["apt_proxy"], authorized_key=self.admin_pubkey,
                root_password_hash=password_hash, host_keys=host_keys))
            network.create_tap(spec.tap, cfg.bridge)
            say(f"starting {name} ({address.ip})")
            host["pid"] = vm.start(spec, accel)
            host["started"] = time.time()
            self._save(state)

    def _wait_for_ssh(self, hosts: list[dict[str, Any]], say: Progress) -> None:
        pending = list(hosts)
        deadline = time.monotonic() + self.config.boot_timeout
        while pending:
            for host in list(pending):
                log_path = Path(host["dir"]) / "console.log"
                if not proc.alive(host["pid"]):
                    raise LabError(f"{host['name']} stopped while booting", f"see {log_path}")
                if vm.ssh_banner(host["ip"], timeout=2.0):
                    say(f"{host['name']} answers SSH after {time.time() - host['started']:.0f} s")
                    pending.remove(host)
            if pending and time.monotonic() > deadline:
                names = ", ".join(h["name"] for h in pending)
                raise LabError(f"{names} did not answer SSH within "
                               f"{self.config.boot_timeout:.0f} s",
                               f"see the console logs under {self.lab_dir / 'hosts'}")
            if pending:
                time.sleep(1.0)

    # -- stopping ---------------------------------------------------------------------------

    def _teardown(self, state: dict[str, Any], say: Progress | None = None) -> None:
        say = say or (lambda _msg: None)
        for host in state["hosts"]:
            pid = host.get("pid") or _read_pid(Path(host["dir"]) / "qemu.pid")
            if pid and proc.is_ours(pid, "qemu-system"):
                say(f"stopping {host['name']}")
                proc.stop(pid)
            network.delete_link(host["tap"])
        network.stop_forwarder(state.get("forwarder_pid"))
        if state.get("bridge"):
            network.delete_link(state["bridge"])
        for host in state["hosts"]:
            _remove_all_but_console_log(Path(host["dir"]))
        self._state_path.unlink(missing_ok=True)

    # -- state --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.lab_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _load(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read {self._state_path}: {exc}",
                           "stop leftover qemu processes by hand, then delete the file") from exc
        if state.get("version") != STATE_VERSION:
            raise LabError(f"{self._state_path} is from another infr version",
                           "stop that lab with the infr that started it")
        return state

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self._state_path)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _remove_all_but_console_log(directory: Path) -> None:
    """Drop a stopped VM's disk, seed and keys; keep its console log for a post-mortem."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name == "console.log":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None

