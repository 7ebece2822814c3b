"""`infr hosts add NAME IP` (no --adopt) reinstalls a lab VM through Debian's stock iPXE.

The VM stands in for a fresh VPS. It reboots into the installer, which reads our
preseed from its initrd and gets as far as this machine's mirror allows: the mirror
lacks about half of the installer's udebs, so d-i stops at "Download installer
components" (see docs/how-hosts-are-installed.md), and infr gives up after --timeout.

This leaves the VM in the installer, so conftest.py runs this module after every
other lab module, just before the lab is stopped.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from infr.hosts.boot import preseed as hosts_preseed
from infr.lab import Lab, LabHost
from infr.lab.lab import lab_id
from infr.lab.mirror import configured_mirror
from tests.conftest import DEFAULT_SETTINGS
from tests.lab.conftest import LabKey, connect

# The reinstall alone waits --timeout minutes for the installed system, plus d-i's grace.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]
INFR = str(Path(sys.executable).with_name("infr"))
TIMEOUT_MIN = 5
# After infr gives up, d-i may still be on its way to the mirror when other VMs share the CPUs.
DI_GRACE = 300.0
# d-i's dialogs on the serial console: "[!!] Title" (or [!], [.], [?] by priority), then
# the box's top border in line-drawing characters ("tqqq").
DIALOG_RE = re.compile(r"\[(?:!!|!|\.|\?)\] ([^\[\]]+?) tq")
# d-i draws its screens with cursor moves and charset switches between the words.
ESCAPE_RE = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|[()][0-9A-Za-z]|[=>])")


@dataclass(frozen=True)
class Reinstall:
    host: LabHost
    result: subprocess.CompletedProcess[str]
    console: str  # the VM's serial console from the reinstall on, as plain text
    http_log: str  # the installer server's request log


@pytest.fixture(scope="module")
def installer_server(
    lab: Lab, lab_hosts: list[LabHost], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The local netboot package's linux and initrd.gz over HTTP on the lab bridge.

    The mirror here has no netboot images; the VMs reach the bridge address.
    """
    address = f"{lab.config.bridge_address.ip}:{18080 + lab_id()}"
    log = tmp_path_factory.mktemp("installer-http") / "requests.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", address.split(":")[1], "--bind", address.split(":")[0],
             "--directory", str(hosts_preseed.PACKAGE_INSTALLER_DIR)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        time.sleep(1.0)
        assert server.poll() is None, log.read_text()
        yield f"http://{address}", log
    finally:
        server.terminate()
        server.wait(timeout=10)


def fresh_vps(host: LabHost, key: LabKey) -> None:
    """Give root its key login back if an earlier lab test adopted this VM (as a VPS has it)."""
    try:
        connect(host.ip, key=key.private).close()
        return
    except paramiko.AuthenticationException:
        pass
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(host.ip, username="manager", key_filename=str(key.private), look_for_keys=False, allow_agent=False)
    try:
        _, out, _ = client.exec_command(
            "sudo -n rm -f /etc/ssh/sshd_config.d/00-infr.conf && sudo -n systemctl reload ssh"
        )
        assert out.channel.recv_exit_status() == 0
    finally:
        client.close()


@pytest.fixture(scope="module")
def reinstall(
    tmp_path_factory: pytest.TempPathFactory,
    lab: Lab,
    lab_key: LabKey,
    lab_hosts: list[LabHost],
    installer_server: tuple[str, Path],
) -> Reinstall:
    from infr.state.config import init_state

    host = lab_hosts[-1]
    fresh_vps(host, lab_key)
    state = tmp_path_factory.mktemp("reinstall") / "state"
    init_state(state, {**DEFAULT_SETTINGS, "debianMirror": configured_mirror().url}, lab_key.public, "admin")
    bridge = str(lab.config.bridge_address.ip)
    url, http_log = installer_server
    start = host.serial_log.stat().st_size
    argv = [INFR, "-w", str(state), "-i", str(lab_key.private), "hosts", "add", "--yes",
            "--timeout", str(TIMEOUT_MIN), "--installer-url", url,
            "--mirror-proxy", f"http://{bridge}:{lab.config.proxy_port}/",
            "--static", "--nameserver", bridge, "tom", host.ip]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_MIN * 60 + 300)
    print(result.stdout + result.stderr)  # the phases and timings, for whoever reads the run
    console = _console_until(host.serial_log, start, "Download installer components", DI_GRACE)
    return Reinstall(host, result, console, http_log.read_text())


def _console_until(log: Path, start: int, marker: str, timeout: float) -> str:
    """The serial console from `start` on, once it shows `marker` (or `timeout` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as console:
            console.seek(start)
            text = " ".join(ESCAPE_RE.sub(" ", console.read().decode(errors="replace")).split())
        if marker in text or time.monotonic() > deadline:
            return text
        time.sleep(5.0)


def test_infr_gives_up_in_the_installer_phase_with_one_line(reinstall: Reinstall) -> None:
    result = reinstall.result
    assert result.returncode == 1, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"infr: error: tom: gave up after {TIMEOUT_MIN} min in phase 'installer running': "
                                "SSH went away at "), errors[0]  # fmt: skip
    phases = re.findall(r"^tom: \[ *\d+ s\] ([a-z ]+):", result.stdout, re.M)
    assert list(dict.fromkeys(phases)) == ["building", "uploading", "rebooting", "installer running"], result.stdout


def test_the_vm_rebooted_into_the_installer(reinstall: Reinstall) -> None:
    # The installer kernel's command line comes from our GRUB entry and iPXE script.
    assert re.search(r"Command line: .*auto=true priority=critical .*---", reinstall.console), reinstall.console[-3000:]
    assert "Checking the Debian archive mirror" in reinstall.console


def test_the_installer_read_our_preseed_and_asked_nothing(reinstall: Reinstall) -> None:
    """The only dialog d-i showed is the mirror failure: no language, network or mirror question."""
    dialogs = set(DIALOG_RE.findall(reinstall.console))
    assert dialogs == {"Download installer components"}, dialogs


def test_it_stopped_where_this_mirror_lacks_udebs(reinstall: Reinstall) -> None:
    console = reinstall.console
    assert "Downloading Release files" in console or "Checking the Debian archive mirror" in console
    assert "Retrieving apt-mirror-setup" in console
    assert "[!!] Download installer components" in console
    assert "The installer failed to download a file from the mirror" in console


def test_the_preseed_never_went_over_http(reinstall: Reinstall) -> None:
    requests = re.findall(r'"GET (\S+) HTTP', reinstall.http_log)
    assert sorted(set(requests)) == ["/initrd.gz", "/linux"], reinstall.http_log
    # Nor did d-i get told to fetch one: its command line has no preseed/url.
    command_line = re.search(r"Command line: (auto=true[^\[]*---)", reinstall.console)
    assert command_line is not None
    assert command_line.group(1) == "auto=true priority=critical console=tty0 console=ttyS0,115200n8 ---"
