"""Backups: btrbk pulls read-only btrfs snapshots from each FROM host onto its TO host.

Pure: no I/O but reading the packaged templates. Jinja2 is imported only when something
is rendered.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infr.engine.templating import fill, render
from infr.errors import ValidationError
from infr.oplog import register_secret
from infr.state import validate
from infr.state.model import BACKUP_ACTIVE, Backup, Host, Lxc

HOST_SUBVOL = "host"


SNAPSHOT_DIR = "var/lib/btrbk/snapshots"  # on FROM, relative to its root subvolume


LXC_DIR = "var/lib/lxc"


FILTER_SCRIPT = "/usr/local/sbin/infr-backup-filter"


NOTIFY_SCRIPT = "/usr/local/sbin/infr-backup-notify"


SMTP_PORTS = {"starttls": 587, "tls": 465, "off": 25}


BTRBK_FILTER = "/usr/share/btrbk/scripts/ssh_filter_btrbk.sh"


SERVICE = "infr-backup.service"


@dataclass(frozen=True)
class BackupSettings:
    """Where things live. The defaults are production; tests point paths at loop mounts."""

    admin_email: str = ""
    ssh_user: str = "infr-backup"
    # btrbk runs commands on FROM as `sudo -n btrfs ...` (backend btrfs-progs-sudo);
    # False only for a root ssh_user.
    use_sudo: bool = True
    source_root: str = "/"  # FROM's root subvolume; LXCs and snapshots live inside it
    backup_dir: str = "/var/lib/backups/backups"
    btrbk_dir: str = "/etc/btrbk"
    lockfile: str = "/run/lock/btrbk.lock"
    filter_script: str = FILTER_SCRIPT
    msmtprc: str = "/etc/infr/backup-msmtprc"
    smtp_password_file: str = "/etc/infr/backup-smtp-password"  # mode 0600
    smtp_relay: str = ""  # HOST[:PORT]; empty: the host's own mail or sendmail, if any
    smtp_tls: str = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> BackupSettings:
        register_secret(config.get("smtpPassword"))
        return cls(
            admin_email=config.get("adminEmail", ""),
            smtp_relay=config.get("smtpRelay", ""),
            smtp_tls=config.get("smtpTls", "starttls"),
            smtp_user=config.get("smtpUser", ""),
            smtp_password=config.get("smtpPassword", ""),
        )

    @property
    def smtp_host(self) -> str:
        return self.smtp_relay.rpartition(":")[0] if ":" in self.smtp_relay else self.smtp_relay

    @property
    def smtp_port(self) -> int:
        port = self.smtp_relay.rpartition(":")[2] if ":" in self.smtp_relay else ""
        return int(port) if port else SMTP_PORTS[self.smtp_tls]

    @property
    def btrbk_conf(self) -> str:
        return f"{self.btrbk_dir}/btrbk.conf"

    @property
    def ssh_identity(self) -> str:
        return f"{self.btrbk_dir}/ssh/id_ed25519"

    @property
    def known_hosts(self) -> str:
        return f"{self.btrbk_dir}/ssh/known_hosts"


@dataclass(frozen=True)
class Source:
    """One FROM host as TO's btrbk.conf pulls it."""

    name: str
    url: str
    snapshot_dir: str  # relative to the volume (FROM's root)
    target: str
    subvolumes: tuple[tuple[str, str], ...]  # (path relative to the volume, snapshot_name)


@dataclass(frozen=True)
class Command:
    """`argv` to run on `host` (a host name from the inventory)."""

    host: str
    argv: tuple[str, ...]


def lxc_subvol(lxc_name: str) -> str:
    """btrbk snapshot_name of a container: every rootfs is called `rootfs`, so name it."""
    return f"lxc-{lxc_name}"


def backup_dir(from_host: str, settings: BackupSettings) -> str:
    """TO's directory for FROM's backups (Infr's layout; `backup stop` archives it)."""
    return f"{settings.backup_dir}/{from_host}"


def snapshot_dir(to_host: str, settings: BackupSettings) -> str:
    """FROM's directory of the snapshots TO takes: one per TO, so two TOs never prune
    each other's incremental parents, and the filter can confine TO's deletes to it."""
    return posixpath.join(settings.source_root, SNAPSHOT_DIR, to_host)


def lxc_rootfs(lxc_name: str, root: str = "/") -> str:
    return posixpath.join(root, LXC_DIR, lxc_name, "rootfs")


def setup_commands(from_host: str, to_host: str, settings: BackupSettings) -> list[Command]:
    """Directories btrbk expects and never creates, for `backup start`."""
    return [
        Command(from_host, ("mkdir", "-p", snapshot_dir(to_host, settings))),
        Command(to_host, ("mkdir", "-p", backup_dir(from_host, settings))),
    ]


def render_btrbk_conf(
    to_host: Host,
    pairs: Sequence[tuple[Backup, Host]],
    lxcs_by_host: Mapping[str, Sequence[Lxc]],
    settings: BackupSettings,
) -> str:
    """TO's /etc/btrbk/btrbk.conf: one volume per active pair (Backup, its FROM Host).

    Archived pairs are left out: `backup stop` moved their backups aside.
    """
    active = [(b, h) for b, h in pairs if b.status == BACKUP_ACTIVE]
    _check(_pair_problems(to_host, active, lxcs_by_host))
    sources = [_source(to_host, host, lxcs_by_host.get(host.name, ()), settings) for _, host in active]
    return _render("btrbk.conf.j2", to_host=to_host, sources=sorted(sources, key=lambda s: s.name), s=settings)


def render_units(to_host: Host, pair_hosts: Sequence[Host], settings: BackupSettings) -> dict[str, str]:
    """Every file TO needs besides btrbk.conf, by install path: timer, services, the
    failure mailer, and the ssh client config that pins each FROM host's key."""
    _check(_names_problems([to_host.name]) + _mail_problems(settings))
    context = {"to_host": to_host, "s": settings, "service": SERVICE, "notify": NOTIFY_SCRIPT}
    files = {
        f"/etc/systemd/system/{SERVICE}": "infr-backup.service.j2",
        "/etc/systemd/system/infr-backup.timer": "infr-backup.timer.j2",
        "/etc/systemd/system/infr-backup-failed.service": "infr-backup-failed.service.j2",
        NOTIFY_SCRIPT: "infr-backup-notify.sh.j2",
        "/etc/ssh/ssh_config.d/infr-backup.conf": "ssh_config.j2",
    }
    rendered = {path: _render(template, **context) for path, template in files.items()}
    rendered[settings.known_hosts] = render_known_hosts(pair_hosts)
    if settings.smtp_relay:
        rendered[settings.msmtprc] = _render("msmtprc.j2", to_host=to_host, s=settings)
    if settings.smtp_relay and settings.smtp_user:
        # msmtp takes a quoted argument as it stands, with no escapes: a password holding a
        # double quote could not be written into msmtprc, so msmtp reads it from this file.
        rendered[settings.smtp_password_file] = settings.smtp_password
    return rendered


def render_known_hosts(hosts: Iterable[Host]) -> str:
    """Pinned keys of the FROM hosts; a host whose key is not yet known is left out, so
    btrbk's ssh refuses it rather than trusting whatever answers."""
    by_name = sorted(hosts, key=lambda h: h.name)
    lines = [fill("{host} {host_key}\n", host=_ssh_host(h), host_key=h.host_key) for h in by_name if h.host_key]
    return "".join(lines)


def render_source_files(settings: BackupSettings) -> dict[str, str]:
    """What every FROM host needs once, by install path: the ssh filter and sudoers."""
    files = {settings.filter_script: "infr-backup-filter.sh.j2"}
    if settings.use_sudo:
        files[f"/etc/sudoers.d/{settings.ssh_user}"] = "sudoers.j2"
    return {path: _render(template, s=settings, btrbk_filter=BTRBK_FILTER) for path, template in files.items()}


def render_authorized_key(to_host: str, public_key: str, settings: BackupSettings) -> str:
    """The line for FROM's ~infr-backup/.ssh/authorized_keys that lets TO pull, and no more."""
    _check(_names_problems([to_host]) + [validate.ssh_public_key(public_key)])
    key = " ".join(public_key.split()[:2])
    return _render(
        "authorized_keys.j2", s=settings, key=key, to_host=to_host, snapshot_dir=snapshot_dir(to_host, settings)
    )


def _source(to_host: Host, host: Host, lxcs: Sequence[Lxc], settings: BackupSettings) -> Source:
    containers = sorted(lxc.name for lxc in lxcs)
    return Source(
        name=host.name,
        url=f"ssh://{_url_host(host)}{settings.source_root}",
        snapshot_dir=posixpath.join(SNAPSHOT_DIR, to_host.name),
        target=backup_dir(host.name, settings),
        subvolumes=((".", HOST_SUBVOL), *((lxc_rootfs(n, ""), lxc_subvol(n)) for n in containers)),
    )


def _url_host(host: Host) -> str:
    return host.vnet_ip if host.ssh_port == 22 else f"{host.vnet_ip}:{host.ssh_port}"


def _ssh_host(host: Host) -> str:
    return host.vnet_ip if host.ssh_port == 22 else f"[{host.vnet_ip}]:{host.ssh_port}"


def _pair_problems(
    to_host: Host, pairs: Sequence[tuple[Backup, Host]], lxcs_by_host: Mapping[str, Sequence[Lxc]]
) -> list[str | None]:
    problems = _names_problems([to_host.name])
    for backup, host in pairs:
        if backup.to_host != to_host.name or backup.from_host != host.name:
            problems.append(f"backup {backup.from_host} -> {backup.to_host} is not {host.name} -> {to_host.name}")
        problems += _names_problems([host.name, *(lxc.name for lxc in lxcs_by_host.get(host.name, ()))])
        problems.append(validate.ipv4(host.vnet_ip, f"vnet address of {host.name}"))
    return problems


def _names_problems(names: Iterable[str]) -> list[str | None]:
    # Names land in paths, config files and shell lines: DNS labels only.
    return [validate.dns_label(name) for name in names]


def _mail_problems(settings: BackupSettings) -> list[str | None]:
    problems = [validate.email(settings.admin_email, "adminEmail")] if settings.admin_email else []
    if settings.smtp_relay and not settings.admin_email:
        problems.append("smtpRelay is set but adminEmail is empty: nobody to mail")
    if any("\n" in v or "\r" in v for v in (settings.smtp_relay, settings.smtp_user, settings.smtp_password)):
        problems.append("smtpRelay, smtpUser and smtpPassword must be one line each")
    if '"' in settings.smtp_user:
        problems.append("smtpUser cannot hold a double quote (msmtp could not read it)")
    if settings.smtp_user and settings.smtp_tls == "off":
        problems.append("smtpTls off would send smtpPassword in clear: set smtpTls to starttls or tls")
    return problems


def _check(problems: Sequence[str | None]) -> None:
    found = [p for p in problems if p]
    if found:
        raise ValidationError(found, "fix the inventory, then apply again")


def _render(template: str, **context: Any) -> str:
    return render(f"backup/{template}", **context)
