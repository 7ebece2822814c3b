"""The lab's VMs behave like freshly rented Debian 12 VPSes, and `down` leaves nothing behind.

Order matters: the last test stops the lab and checks what is left.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from infr.lab import Lab, LabHost, image, vm
from infr.lab.mirror import configured_mirror, resolve_ipv4
from infr.lab.proc import alive
from infr.lab.vm import ssh_banner
from tests.lab.conftest import LabKey, connect, ssh, wait_for_ssh

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]


def test_root_logs_in_with_the_admin_key(lab_hosts: list[LabHost], lab_key: LabKey) -> None:
    for host in lab_hosts:
        rc, out = ssh(host, lab_key, "id -u; hostname; ip -4 -o addr show scope global")
        assert rc == 0, out
        uid, hostname, addresses = out.splitlines()[:3]
        assert (uid, hostname) == ("0", host.name)
        assert f"inet {host.ip}/24" in addresses


def test_root_logs_in_with_the_password(lab_hosts: list[LabHost], lab: Lab) -> None:
    client = connect(lab_hosts[0].ip, password=lab.root_password)
    try:
        _, stdout, _ = client.exec_command("id -un")
        assert stdout.read().decode().strip() == "root"
    finally:
        client.close()


def test_root_is_btrfs_on_the_rootfs_subvolume(lab_hosts: list[LabHost], lab_key: LabKey) -> None:
    rc, out = ssh(lab_hosts[0], lab_key, "findmnt -n -o FSTYPE,FSROOT,SOURCE /")
    assert rc == 0, out
    fstype, fsroot, source = out.split()
    assert (fstype, fsroot) == ("btrfs", "/@rootfs")
    assert source.startswith("/dev/vda1")


def test_systemd_is_pid_1_and_the_system_is_running(lab_hosts: list[LabHost],
                                                     lab_key: LabKey) -> None:
    for host in lab_hosts:
        rc, out = ssh(host, lab_key, "cat /proc/1/comm; systemctl is-system-running --wait; "
                      "systemctl --failed --no-legend")
        assert out.splitlines()[:2] == ["systemd", "running"], out


def test_each_vm_has_its_own_identity(lab_hosts: list[LabHost], lab_key: LabKey) -> None:
    ids = {ssh(host, lab_key, "cat /etc/machine-id /etc/ssh/ssh_host_*_key.pub")[1]
           for host in lab_hosts}
    assert len(ids) == len(lab_hosts)
    # Their filesystems too: btrbk tells filesystems apart by the UUIDs of the top level
    # and of each subvolume (issue 7); the fsid stays, as GRUB finds the root by it.
    uuids = "btrfs subvolume show --rootid=5 / | grep -E '^\\s+UUID:'; btrfs subvolume show / | grep -E '^\\s+UUID:'"
    roots = [ssh(host, lab_key, uuids)[1].split() for host in lab_hosts]
    assert all(len(root) == 4 for root in roots), roots
    assert len({root[1] for root in roots} | {root[3] for root in roots}) == 2 * len(lab_hosts), roots


def test_each_vm_presents_the_host_key_the_lab_made(lab_hosts: list[LabHost],
                                                    lab_key: LabKey) -> None:
    for host in lab_hosts:
        client = connect(host.ip, key=lab_key.private)
        try:
            key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
        finally:
            client.close()
        assert host.host_key.split()[:2] == [key.get_name(), key.get_base64()]


def test_apt_reaches_the_mirror_through_the_forwarder(lab_hosts: list[LabHost],
                                                      lab_key: LabKey) -> None:
    rc, out = ssh(lab_hosts[-1], lab_key, "cd /tmp && apt-get download hello && ls hello_*.deb")
    assert rc == 0, out


def test_predownloaded_packages_install_without_the_network(lab_hosts: list[LabHost],
                                                            lab_key: LabKey) -> None:
    rc, out = ssh(lab_hosts[-1], lab_key,
                  "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-download "
                  "wireguard-tools && wg --version", timeout=300)
    assert rc == 0, out


def test_the_vms_reach_nothing_but_the_forwarder(lab_hosts: list[LabHost],
                                                 lab_key: LabKey) -> None:
    mirror_ip = resolve_ipv4(configured_mirror().host)
    probe = ("import socket,sys\n"
             "try:\n"
             f"    socket.create_connection(('{mirror_ip}', 80), timeout=3)\n"
             "except OSError as e:\n"
             "    sys.exit(f'blocked: {e}')\n")
    rc, out = ssh(lab_hosts[0], lab_key, f"python3 -c \"{probe}\"")
    assert rc == 1 and "blocked" in out, out
    other = lab_hosts[-1].ip
    rc, out = ssh(lab_hosts[0], lab_key, f"ping -c1 -W3 {other}")
    assert rc == 0, out


def test_the_accelerator_probe_tells_a_guest_that_ran() -> None:
    # The KVM check boots this sector; under TCG it must run, or KVM would never be chosen.
    assert vm.probe_boots(vm.TCG)
    assert not vm.probe_boots(["-accel", "tcg", "-machine", "no-such-machine"])


def test_the_kernel_probe_tells_a_kernel_that_booted(lab: Lab, lab_hosts: list[LabHost]) -> None:
    # KVM is chosen only when the image's kernel boots under it to its panic: under TCG
    # the same kernel must get there, or the probe could never say yes.
    kernel = lab.config.cache_dir / "images"
    kernels = sorted(kernel.glob(f"*/{image.PROBE_KERNEL}"))
    assert kernels, f"no {image.PROBE_KERNEL} kept beside any image in {kernel}"
    assert vm.kernel_boots(vm.TCG, kernels[-1], timeout=180)


def test_serial_log_has_the_kernel_boot(lab_hosts: list[LabHost]) -> None:
    for host in lab_hosts:
        text = host.serial_log.read_text(errors="replace")
        assert "Linux version" in text
        assert f"infr-lab-hostkey: {host.host_key}" in text


def test_status_reports_every_host(lab_hosts: list[LabHost], lab: Lab) -> None:
    status = lab.status()
    assert [(h.name, h.ip) for h in status] == [(h.name, h.ip) for h in lab_hosts]
    assert all(h.running and h.ssh_ok for h in status)


def test_a_reboot_comes_back(lab_hosts: list[LabHost], lab_key: LabKey, lab: Lab) -> None:
    host = lab_hosts[-1]
    _, boot_before = ssh(host, lab_key, "cat /proc/sys/kernel/random/boot_id")
    # Detached, so that the SSH session ends cleanly before the VM goes down.
    ssh(host, lab_key, "systemd-run --on-active=1 systemctl reboot")
    deadline = time.monotonic() + 120
    while ssh_banner(host.ip, timeout=2.0) and time.monotonic() < deadline:
        time.sleep(1.0)
    took = wait_for_ssh(host, lab_key)
    rc, boot_after = ssh(host, lab_key, "cat /proc/sys/kernel/random/boot_id")
    assert rc == 0 and boot_after != boot_before
    again = {h.name: h for h in lab.status()}[host.name]
    assert again.pid == host.pid and again.running, "qemu must survive the guest's reboot"
    print(f"{host.name} back after {took:.0f} s")


def test_down_leaves_nothing_behind(lab_hosts: list[LabHost], lab: Lab) -> None:
    state = json.loads((lab.lab_dir / "state.json").read_text())
    lab.down()
    pids = {h.name: h.pid for h in lab_hosts} | {"forwarder": state["forwarder_pid"]}
    for name, pid in pids.items():
        assert not alive(pid), f"{name} (pid {pid}) still runs"
    for link in [state["bridge"], *(h["tap"] for h in state["hosts"])]:
        assert not Path("/sys/class/net", link).exists(), f"{link} still exists"
    loops = json.loads(subprocess.run(["losetup", "--list", "--json"], capture_output=True,
                                      text=True, check=True).stdout or '{"loopdevices": []}')
    ours = [str(lab.lab_dir), str(lab.config.cache_dir)]
    assert not [d for d in loops["loopdevices"]
                if any((d.get("back-file") or "").startswith(p) for p in ours)]
    mounts = Path("/proc/self/mountinfo").read_text()
    assert not any(p in mounts for p in ours)
    assert lab.status() == []
