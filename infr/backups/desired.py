"""What each host of a backup pair should hold, from state alone (pure).

TO (the backup host) holds btrbk's config, the units, the FROM hosts' pinned keys and,
while it pulls anything, a running timer; FROM holds the backup user, the filter TO's
key is forced through, sudoers, and TO's line in the user's authorized_keys. Both the
plan (infr.backups.feature) and `infr backup start/stop` (infr.backups.pairs) write
these, so there is one description of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from infr.backups import btrbk
from infr.backups.btrbk import BackupSettings
from infr.engine.steps import FileSpec
from infr.state.model import BACKUP_ACTIVE, Host, Inventory, Lxc

TIMER = "infr-backup.timer"
DEBIAN_TIMER = "btrbk.timer"  # Debian's daily btrbk run: ours replaces it


def pull_view(host: Host) -> Host:
    # TO pulls over FROM's public address, not the mesh: ssh already encrypts and pins
    # FROM's key, a backup must not depend on the mesh being up (a broken host is when
    # it is needed), and a second layer of encryption halves the throughput on small VPSes.
    return replace(host, vnet_ip=host.public_ip)


# --- TO -------------------------------------------------------------------------------


def pulls(inv: Inventory, to_host: str) -> bool:
    """Whether TO pulls from any host (its timer runs only then)."""
    return any(b.to_host == to_host and b.status == BACKUP_ACTIVE for b in inv.backups)


def target_packages(settings: BackupSettings) -> list[str]:
    # msmtp, not msmtp-mta: that would remove an MTA the host may have.
    return ["btrbk", "btrfs-progs", *(["msmtp"] if settings.smtp_relay else [])]


def target_files(inv: Inventory, to_host: str, settings: BackupSettings) -> list[FileSpec]:
    """btrbk's config (active pairs only), the units and the pinned keys of TO's FROM hosts."""
    pairs = [(b, pull_view(inv.hosts[b.from_host])) for b in inv.backups if b.to_host == to_host]
    active_hosts = [h for b, h in pairs if b.status == BACKUP_ACTIVE]
    lxcs: dict[str, list[Lxc]] = {h.name: [] for _, h in pairs}
    for lxc in inv.lxcs.values():  # one pass, not one per FROM host: there may be thousands
        if lxc.host in lxcs:
            lxcs[lxc.host].append(lxc)
    to = inv.hosts[to_host]
    files = {settings.btrbk_conf: btrbk.render_btrbk_conf(to, pairs, lxcs, settings)}
    files.update(btrbk.render_units(to, active_hosts, settings))
    return [_target_spec(path, text, settings) for path, text in files.items()]


def _target_spec(path: str, text: str, settings: BackupSettings) -> FileSpec:
    if path == settings.smtp_password_file:
        return FileSpec(path, text.encode(), mode=0o600, secret=True)
    if path.startswith("/etc/systemd/"):
        return replace(_spec(path, text), on_change=(("systemctl", "daemon-reload"),))
    return _spec(path, text)


def unused_mail_files(settings: BackupSettings, specs: list[FileSpec]) -> list[str]:
    """The relay's account and password files, once smtpRelay or smtpUser is emptied."""
    return sorted({settings.msmtprc, settings.smtp_password_file} - {spec.path for spec in specs})


def timers(*, enabled: bool) -> tuple[tuple[str, bool], ...]:
    """(unit, wanted running) of TO's timers: ours while TO pulls anything, Debian's never."""
    return ((DEBIAN_TIMER, False), (TIMER, enabled))


def _spec(path: str, text: str) -> FileSpec:
    return FileSpec(path, text.encode(), mode=0o755 if text.startswith("#!") else 0o644)


# --- FROM -----------------------------------------------------------------------------


def home(settings: BackupSettings) -> str:
    return f"/var/lib/{settings.ssh_user}"


def source_files(settings: BackupSettings) -> list[FileSpec]:
    """The filter TO's key is forced through, and the sudoers it runs btrfs with."""
    return [_source_spec(path, text) for path, text in btrbk.render_source_files(settings).items()]


def _source_spec(path: str, text: str) -> FileSpec:
    if path.startswith("/etc/sudoers.d/"):
        return FileSpec(path, text.encode(), mode=0o440, precheck=("visudo", "-c", "-q", "-f", "{}"))
    return _spec(path, text)


def authorized_keys_path(settings: BackupSettings) -> str:
    return f"{home(settings)}/.ssh/authorized_keys"


def authorized_keys_spec(text: str, settings: BackupSettings) -> FileSpec:
    return FileSpec(authorized_keys_path(settings), text.encode(), settings.ssh_user, settings.ssh_user, 0o600)


def authorized_keys_text(current: str, to_host: str, line: str | None) -> str:
    """The backup user's authorized_keys with TO's line (comment infr-backup@TO) in place of
    the one there, the other TO hosts' lines kept; `line` None removes TO's."""
    mine = f"infr-backup@{to_host}"
    wanted = [line.strip()] if line else []
    lines: list[str] = []
    for kept in (k.strip() for k in current.splitlines() if k.strip()):
        if kept.split()[-1] != mine:
            lines.append(kept)
        else:  # TO's new line takes the place of its first old one
            lines += wanted
            wanted = []
    return "".join(f"{k}\n" for k in [*lines, *wanted])



# --- each host's side of its pairs --------------------------------------------------------


@dataclass(frozen=True)
class Partners:
    """The hosts at the other end of one host's pairs, by the pairs' status."""

    active: tuple[str, ...] = ()
    archived: tuple[str, ...] = ()

    @property
    def every(self) -> tuple[str, ...]:
        return (*self.active, *self.archived)


def _partners(pairs: list[tuple[str, str]]) -> Partners:
    ordered = sorted(pairs)
    active = tuple(other for other, status in ordered if status == BACKUP_ACTIVE)
    return Partners(active, tuple(other for other, status in ordered if status != BACKUP_ACTIVE))


@dataclass(frozen=True)
class TargetWant:
    """A TO host as state has it: what it installs and holds, and whom it pulls."""

    host: str
    settings: BackupSettings
    froms: Partners  # active: pulled (timer on); archived: their backups moved aside
    files: tuple[FileSpec, ...]
    packages: tuple[str, ...]
    unused: tuple[str, ...]  # mail files to remove where they are

    @property
    def pulls(self) -> bool:
        return bool(self.froms.active)


@dataclass(frozen=True)
class SourceWant:
    """A FROM host as state has it: whom it lets pull, and what that needs."""

    host: str
    settings: BackupSettings
    tos: Partners  # active: their key logs in; archived: their key and snapshots go
    files: tuple[FileSpec, ...]  # the filter and sudoers, while any TO pulls


def desired_target(inv: Inventory, host: str, settings: BackupSettings) -> TargetWant | None:
    """None when no pair pulls onto `host`."""
    froms = _partners([(b.from_host, b.status) for b in inv.backups if b.to_host == host])
    if not froms.every:
        return None
    files = target_files(inv, host, settings)
    unused = unused_mail_files(settings, files)
    return TargetWant(host, settings, froms, tuple(files), tuple(target_packages(settings)), tuple(unused))


def desired_source(inv: Inventory, host: str, settings: BackupSettings) -> SourceWant | None:
    """None when no pair pulls from `host`."""
    tos = _partners([(b.to_host, b.status) for b in inv.backups if b.from_host == host])
    if not tos.every:
        return None
    return SourceWant(host, settings, tos, tuple(source_files(settings)) if tos.active else ())
