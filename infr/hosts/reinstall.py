"""`infr hosts add NAME IP`: reinstall a running Debian box through iPXE, then adopt it.

The boot medium is built here on the admin machine (infr.hosts.boot.medium) and reaches
the box only inside the SSH connection, preseed included. After the reboot nothing
can be asked of the box: infr watches its SSH port, by phase, until the installed
system answers as manager with a new host key, then continues exactly like `--adopt`.
docs/how-hosts-are-installed.md says why each step is done the way it is.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from infr.connector import SSHConnection
from infr.connector.hostkeys import server_host_key
from infr.engine import fleet
from infr.errors import InfrError, RemoteError, UsageError, ValidationError
from infr.hosts import adopt
from infr.hosts.boot import medium as bm
from infr.hosts.boot import preseed as hosts_preseed
from infr.hosts.boot import probe
from infr.state.model import Host
from infr.state.session import Session

# Reports a phase, the seconds since the command started, and what happened.
PhaseReport = Callable[[bm.Phase, float, str], None]

DEFAULT_TIMEOUT = 45 * 60.0
POLL_INTERVAL = 5.0
# The upload of grub-di's installer (50 MB) over a slow link takes minutes, not seconds.
UPLOAD_TIMEOUT = 900.0


@dataclass(frozen=True)
class ReinstallOptions:
    root_password: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    # Empty: the mirror's own netboot images (they match its kernel-module udebs).
    installer_url: str = ""
    installer_dir: Path = hosts_preseed.PACKAGE_INSTALLER_DIR
    # The HTTP proxy d-i uses to reach the mirror (none: direct).
    mirror_proxy: str = ""
    # Keep the box's current address, for providers without DHCP.
    static: bool = False
    nameservers: tuple[str, ...] = ()


class _Clock:
    """Elapsed seconds and the current phase, shared by the steps that report them."""

    def __init__(self, report: PhaseReport) -> None:
        self.started = time.monotonic()
        self.phase = bm.Phase.BUILDING
        self._report = report

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str, phase: bm.Phase | None = None) -> None:
        self.phase = phase or self.phase
        self._report(self.phase, self.elapsed(), message)


def check(session: Session, name: str, ip: str, opts: ReinstallOptions) -> None:
    """Every problem in the name, address, options and state that can be found before anything
    is recorded or the box is touched (the disk and firmware wait for the box's answer)."""
    adopt.check_add(session, name, ip)
    network = hosts_preseed.Network(nameservers=opts.nameservers)
    settings = _preseed_settings(session, name, probe.BoxFacts(disk="", firmware="bios", grub=None), network, opts)
    problems = [*hosts_preseed.input_problems(settings), *hosts_preseed.installer_problems(_installer(session, opts))]
    if problems:
        raise ValidationError(problems, "nothing was changed")


def install(session: Session, name: str, ip: str, opts: ReinstallOptions, report: PhaseReport) -> Callable[[str], None]:
    """Reinstall the box at `ip` as host `name`, up to its first boot, under the state lock
    the caller holds; returns the report for the adopt steps that follow (infr.followups)."""
    clock = _Clock(report)
    check(session, name, ip, opts)
    host = adopt.record_host(session, name, ip)
    with SSHConnection.connect(fleet.target(session, host, user="root", password=opts.root_password)) as root:
        host = adopt.pin_host_key(session, host, root, clock.say)
        with tempfile.TemporaryDirectory(prefix="infr-medium-") as tmp:
            medium = _build(root, session, host, opts, Path(tmp), clock)
            _deliver(root, medium, clock)
    _wait_for_installed(session, host, opts.timeout, clock)
    return lambda line: clock.say(line, bm.Phase.FIRST_BOOT)


# ---------------------------------------------------------------------------
# Before the reboot


def _build(
    root: SSHConnection, session: Session, host: Host, opts: ReinstallOptions, out: Path, clock: _Clock
) -> bm.BootMedium:
    clock.say("probing the box", bm.Phase.BUILDING)
    facts = probe.parse_box_probe(root.run(probe.find_boot_disk_argv()).text)
    network = _network(root, opts) if opts.static else hosts_preseed.Network(nameservers=opts.nameservers)
    settings = _preseed_settings(session, host.name, facts, network, opts)
    installer = _installer(session, opts)
    medium = bm.build_boot_medium(settings, facts, out, installer=installer)
    clock.say(f"{medium.method} medium for {facts.disk} ({facts.firmware}), installer from {installer.url}")
    return medium


def _preseed_settings(
    session: Session, name: str, facts: probe.BoxFacts, network: hosts_preseed.Network, opts: ReinstallOptions
) -> hosts_preseed.PreseedSettings:
    settings = session.settings()
    inv = session.inventory()
    return hosts_preseed.PreseedSettings(
        hostname=name,
        # The same FQDN `configure` later writes to /etc/hosts (infr.hosts.desired.fqdn).
        domain=f"{settings['dnsPrefix']}.{settings['dnsDomain']}",
        admin_keys=tuple(key.key for key in sorted(inv.keys.values(), key=lambda k: k.name)),
        disk=facts.disk,
        firmware=facts.firmware,
        network=network,
        release=str(settings["debianRelease"]),
        mirror=str(settings["debianMirror"]),
        mirror_proxy=opts.mirror_proxy,
    )


def _installer(session: Session, opts: ReinstallOptions) -> hosts_preseed.InstallerSource:
    if opts.installer_url:
        return hosts_preseed.InstallerSource(opts.installer_url, opts.installer_dir)
    settings = session.settings()
    return hosts_preseed.installer_from_mirror(
        str(settings["debianMirror"]), str(settings["debianRelease"]), opts.installer_dir
    )


# Run as root: the address, gateway and nameservers the box uses now.
_NETWORK_PROBE = r"""
set -- $(ip -4 -o route show default)
echo "gateway=$3"
dev=$5
ip -4 -o addr show dev "$dev" scope global | awk '{ print "address=" $4 }'
awk '$1 == "nameserver" { print "nameserver=" $2 }' /etc/resolv.conf
"""


def _network(root: SSHConnection, opts: ReinstallOptions) -> hosts_preseed.Network:
    return parse_network_probe(root.run(["sh", "-c", _NETWORK_PROBE]).text, opts.nameservers)


def parse_network_probe(output: str, nameservers: tuple[str, ...] = ()) -> hosts_preseed.Network:
    """The box's static network; `nameservers` (from the user) replace the box's own."""
    values: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and value.strip():
            values.setdefault(key.strip(), []).append(value.strip())
    addresses, gateways = values.get("address", []), values.get("gateway", [])
    if not addresses or not gateways:
        raise InfrError(
            "cannot read the box's static network (no default route or address)",
            hint="leave out --static to let the installer use DHCP",
        )
    found = nameservers or tuple(values.get("nameserver", []))
    if not found:
        raise UsageError("the box has no nameserver in /etc/resolv.conf", "give one with --nameserver IP")
    return hosts_preseed.Network(address=addresses[0], gateway=gateways[0], nameservers=found)


def _deliver(root: SSHConnection, medium: bm.BootMedium, clock: _Clock) -> None:
    for upload in medium.uploads:
        clock.say(f"{upload.remote} ({upload.local.stat().st_size // 1024} KB)", bm.Phase.UPLOADING)
        root.run(bm.upload_argv(upload), input=upload.local.read_bytes(), timeout=UPLOAD_TIMEOUT)
    root.run(medium.prepare_argv)
    clock.say("rebooting into the installer", bm.Phase.REBOOTING)
    root.run(medium.reboot_argv)


# ---------------------------------------------------------------------------
# After the reboot: only the SSH port tells what the box is doing


def _wait_for_installed(session: Session, host: Host, timeout: float, clock: _Clock) -> None:
    """Wait for SSH to go away, then for manager to log in with a new host key; pin it."""
    deadline = time.monotonic() + timeout
    seen = "SSH of the old system still answers"
    while time.monotonic() < deadline:
        answers = _ssh_answers(host.public_ip, host.ssh_port)
        if clock.phase is bm.Phase.REBOOTING and not answers:
            seen = f"SSH went away at {clock.elapsed():.0f} s; nothing answered since"
            clock.say("SSH went away: the installer is running", bm.Phase.INSTALLER)
        elif clock.phase is bm.Phase.INSTALLER and answers:
            seen = _try_installed(session, host, clock) or seen
            if clock.phase is bm.Phase.FIRST_BOOT:
                return
        time.sleep(POLL_INTERVAL)
    raise InfrError(
        f"{host.name}: gave up after {timeout / 60:g} min in phase '{clock.phase}': {seen}",
        hint="the box may still be installing: watch it on the provider's console, where d-i shows on ttyS0",
    )


def _try_installed(session: Session, host: Host, clock: _Clock) -> str:
    """Empty once the new system is pinned, else what was seen. Refuses the old system."""
    key = server_host_key(host.public_ip, host.ssh_port)
    if not key:
        return f"SSH answers at {clock.elapsed():.0f} s, but the key exchange failed"
    if key == host.host_key:
        raise InfrError(
            f"{host.name}: the old system came back (same host key) in phase '{clock.phase}'",
            hint="the installer did not start: check the box's GRUB on the provider's console",
        )
    try:
        # The key just read is pinned for the login, so nothing else can slip in between.
        with SSHConnection.connect(fleet.target(session, replace(host, host_key=key))) as conn:
            clock.say("the installed system answers as manager", bm.Phase.FIRST_BOOT)
            adopt.pin_host_key(session, replace(host, host_key=""), conn, clock.say)
            return ""
    except RemoteError as err:
        return f"SSH answers at {clock.elapsed():.0f} s with a new host key, but not as manager: {err}"


def _ssh_answers(ip: str, port: int) -> bool:
    """True if an SSH server sends its banner: cheaper than a login while d-i runs."""
    try:
        with socket.create_connection((ip, port), timeout=3.0) as sock:
            sock.settimeout(3.0)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False
