"""Backup files rendered for the TO and FROM hosts, and restore-point parsing (restores: test_restore.py).

Regenerate the golden files after an intended template change with
    INFR_REGEN_GOLDEN=1 pytest tests/unit/test_backup_render.py
and review the diff like code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infr.backups.btrbk import (
    BTRBK_FILTER,
    BackupSettings,
    Command,
    render_authorized_key,
    render_btrbk_conf,
    render_known_hosts,
    render_source_files,
    render_units,
    setup_commands,
)
from infr.backups.points import (
    RestorePoint,
    list_restore_points_argv,
    newest_by_subvol,
    parse_backup_name,
    parse_restore_points,
    pick_restore_point,
)
from infr.errors import ValidationError
from infr.state.model import BACKUP_ARCHIVED, Backup, Host, Lxc
from infr.state.settings import SETTINGS as SETTINGS_SCHEMA

GOLDEN = Path(__file__).parent / "golden" / "backup"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
TO = Host("beta", "203.0.113.2", "10.8.0.2")
ALPHA = Host("alpha", "203.0.113.1", "10.8.0.1", host_key=KEY)
GAMMA = Host("gamma", "203.0.113.3", "10.8.0.3", host_key=KEY, ssh_port=2222)
DELTA = Host("delta", "203.0.113.4", "10.8.0.4")  # no pinned key yet
PAIRS = [
    (Backup("alpha", "beta"), ALPHA),
    (Backup("gamma", "beta"), GAMMA),
    (Backup("delta", "beta", status=BACKUP_ARCHIVED), DELTA),
]
LXCS = {"alpha": [Lxc("web", "alpha", "debian", "12", "10.8.1.2"), Lxc("db", "alpha", "debian", "12", "10.8.1.3")]}
SETTINGS = BackupSettings(admin_email="ops@example.com")
RELAY = BackupSettings(
    admin_email="ops@example.com", smtp_relay="smtp.example.com", smtp_user="ops", smtp_password='p a"ss\\w'
)
ROOT = BackupSettings(ssh_user="root", use_sudo=False)


def rendered_cases() -> dict[str, str]:
    files = {"btrbk.conf": render_btrbk_conf(TO, PAIRS, LXCS, SETTINGS)}
    files |= {Path(p).name: text for p, text in render_units(TO, [ALPHA, GAMMA, DELTA], SETTINGS).items()}
    files |= {Path(p).name: text for p, text in render_source_files(SETTINGS).items()}
    files["authorized_keys"] = render_authorized_key("beta", KEY + " root@beta", SETTINGS)
    files |= {f"root-{Path(p).name}": text for p, text in render_source_files(ROOT).items()}
    relayed = render_units(TO, [ALPHA], RELAY)
    files["relay-infr-backup-notify"] = relayed["/usr/local/sbin/infr-backup-notify"]
    files["backup-msmtprc"] = relayed[RELAY.msmtprc]
    return files


CASES = rendered_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_golden_file(name: str) -> None:
    path = GOLDEN / name
    if os.environ.get("INFR_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CASES[name])
    assert CASES[name] == path.read_text()


def test_settings_from_the_inventory_config() -> None:
    assert BackupSettings.from_config({"adminEmail": "ops@example.com", "dnsDomain": "x"}) == SETTINGS
    assert BackupSettings.from_config({}).admin_email == ""
    config = {"adminEmail": "ops@example.com", "smtpRelay": "smtp.example.com", "smtpTls": "starttls"}
    assert BackupSettings.from_config({**config, "smtpUser": "ops", "smtpPassword": 'p a"ss\\w'}) == RELAY


@pytest.mark.parametrize(
    ("relay", "tls", "port"),
    [("smtp.example.com", "starttls", 587), ("smtp.example.com", "tls", 465), ("10.8.0.9", "off", 25),
     ("smtp.example.com:2525", "tls", 2525)],
)  # fmt: skip
def test_relay_port_follows_tls_unless_given(relay: str, tls: str, port: int) -> None:
    settings = BackupSettings(admin_email="ops@example.com", smtp_relay=relay, smtp_tls=tls)
    assert (settings.smtp_host, settings.smtp_port) == (relay.split(":")[0], port)
    assert f"port {port}\n" in render_units(TO, [ALPHA], settings)[settings.msmtprc]


def test_relay_without_admin_email_or_with_a_newline_is_refused() -> None:
    with pytest.raises(ValidationError, match="nobody to mail"):
        render_units(TO, [ALPHA], BackupSettings(smtp_relay="smtp.example.com"))
    with pytest.raises(ValidationError, match="double quote"):
        render_units(TO, [ALPHA], BackupSettings(admin_email="ops@example.com", smtp_relay="x", smtp_user='o"ps'))
    with pytest.raises(ValidationError, match="one line each"):
        render_units(TO, [ALPHA], BackupSettings(admin_email="ops@example.com", smtp_relay="x", smtp_password="a\nb"))


def test_install_paths() -> None:
    assert set(render_units(TO, [ALPHA], SETTINGS)) == {
        "/etc/systemd/system/infr-backup.service",
        "/etc/systemd/system/infr-backup.timer",
        "/etc/systemd/system/infr-backup-failed.service",
        "/usr/local/sbin/infr-backup-notify",
        "/etc/ssh/ssh_config.d/infr-backup.conf",
        "/etc/btrbk/ssh/known_hosts",
    }
    relayed = set(render_units(TO, [ALPHA], RELAY)) - set(render_units(TO, [ALPHA], SETTINGS))
    assert relayed == {RELAY.msmtprc, RELAY.smtp_password_file}
    assert render_units(TO, [ALPHA], RELAY)[RELAY.smtp_password_file] == 'p a"ss\\w'  # as typed, no quoting
    assert set(render_source_files(SETTINGS)) == {"/usr/local/sbin/infr-backup-filter", "/etc/sudoers.d/infr-backup"}
    assert set(render_source_files(ROOT)) == {"/usr/local/sbin/infr-backup-filter"}


def test_archived_pair_is_not_pulled() -> None:
    assert "delta" not in CASES["btrbk.conf"]


def test_each_container_has_its_own_snapshot_name() -> None:
    conf = CASES["btrbk.conf"]
    assert "subvolume var/lib/lxc/db/rootfs\n    snapshot_name       lxc-db" in conf
    assert "subvolume var/lib/lxc/web/rootfs\n    snapshot_name       lxc-web" in conf
    assert "volume ssh://10.8.0.3:2222/" in conf


def test_known_hosts_pin_only_known_keys() -> None:
    assert render_known_hosts([GAMMA, ALPHA, DELTA]) == f"10.8.0.1 {KEY}\n[10.8.0.3]:2222 {KEY}\n"


@pytest.mark.parametrize(
    ("pairs", "lxcs", "problem"),
    [
        ([(Backup("alpha", "gamma"), ALPHA)], {}, "is not alpha -> beta"),
        ([(Backup("alpha", "beta"), ALPHA)], {"alpha": [Lxc("Web;x", "alpha", "d", "1", "10.8.1.2")]}, "Web;x"),
        ([(Backup("alpha", "beta"), Host("alpha", "1.2.3.4", "10.8.0.1/24"))], {}, "not an IPv4 address"),
    ],
)
def test_bad_inventory_is_refused(pairs: list[tuple[Backup, Host]], lxcs: dict[str, list[Lxc]], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace(";", ".")):
        render_btrbk_conf(TO, pairs, lxcs, SETTINGS)


def test_bad_email_and_key_are_refused() -> None:
    with pytest.raises(ValidationError, match="adminEmail"):
        render_units(TO, [], BackupSettings(admin_email="not an address"))
    with pytest.raises(ValidationError, match="public key"):
        render_authorized_key("beta", "ssh-ed25519 garbage", SETTINGS)


def test_admin_email_reaches_the_shell_as_data() -> None:
    odd = BackupSettings(admin_email="o'$(id)@example.com")  # valid: any non-space before @
    script = render_units(TO, [], odd)["/usr/local/sbin/infr-backup-notify"]
    assert "to='o'\"'\"'$(id)@example.com'" in script


# --- the rendered files, checked by the tools that will read them --------------------


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} not installed (.ci/backup-packages.txt)")
    return path


def test_btrbk_parses_the_config(tmp_path: Path) -> None:
    btrbk = need("btrbk")
    conf = tmp_path / "btrbk.conf"
    conf.write_text(CASES["btrbk.conf"])
    result = subprocess.run([btrbk, "-c", str(conf), "config", "print"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "ssh://10.8.0.3:2222/" in result.stdout


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    need("btrbk")  # verify checks that ExecStart binaries exist
    names = ["infr-backup.service", "infr-backup.timer", "infr-backup-failed.service"]
    for name in names:
        (tmp_path / name).write_text(CASES[name])
    result = subprocess.run([analyze, "verify", *names], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and "infr-backup" not in result.stderr, result.stderr


def test_timer_every_five_minutes_and_persistent() -> None:
    timer = CASES["infr-backup.timer"]
    assert "OnCalendar=*:0/5\n" in timer and "Persistent=true\n" in timer
    assert "OnFailure=infr-backup-failed.service\n" in CASES["infr-backup.service"]


def test_sudoers_is_valid(tmp_path: Path) -> None:
    visudo = need("visudo")
    path = tmp_path / "infr-backup"
    path.write_text(CASES["infr-backup"])
    path.chmod(0o440)
    result = subprocess.run([visudo, "-c", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "name", ["infr-backup-filter", "root-infr-backup-filter", "infr-backup-notify", "relay-infr-backup-notify"]
)
def test_scripts_are_valid_sh(name: str) -> None:
    subprocess.run(["sh", "-n"], input=CASES[name], text=True, check=True)


@pytest.mark.parametrize(
    "command",
    [
        "btrfs subvolume delete '/var/lib/lxc/web/rootfs'",  # not a snapshot of ours
        "btrfs subvolume delete '/var/lib/btrbk/snapshots/gamma/host.20261122T2045'",  # another TO's
        "btrfs subvolume delete '/var/lib/btrbk/snapshots/beta/../../lxc/web/rootfs'",
        "btrfs send '/var/lib/lxc/web/rootfs'",  # sends come from snapshots only
        "btrfs receive '/var/lib/btrbk/snapshots/beta'",
        "rm -rf /",
        "btrfs subvolume snapshot -r '/' '/x'; rm -rf /",
        "",
    ],
)
def test_filter_refuses(tmp_path: Path, command: str) -> None:
    """Refusals only: an accepted command would run (the integration test runs those)."""
    if not Path(BTRBK_FILTER).exists():
        pytest.skip("btrbk not installed (.ci/backup-packages.txt)")
    script = tmp_path / "filter"
    script.write_text(CASES["infr-backup-filter"])
    env = {"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": command}
    result = subprocess.run(
        ["sh", str(script), "/var/lib/btrbk/snapshots/beta"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 255, result.stderr
    assert "ssh command rejected" in result.stderr


# --- the failure mailer ---------------------------------------------------------------


def fake_tools(bin_dir: Path, log: Path, tools: list[str]) -> dict[str, str]:
    """`tools` that record their arguments and stdin in `log`; PATH holds nothing else."""
    bin_dir.mkdir()
    for tool in ["journalctl", "hostname", *tools]:
        fake = bin_dir / tool
        body = "echo 'btrbk: ERROR: source unreachable'" if tool == "journalctl" else ""
        body = "echo beta" if tool == "hostname" else body
        record = f'echo "{tool} $*" >> {log}; cat >> {log}' if tool not in ("journalctl", "hostname") else ""
        fake.write_text(f"#!/bin/sh\n{body}\n{record}\n")
        fake.chmod(0o755)
    for tool in ["sh", "printf", "cat"]:
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool) or "")
    return {"PATH": str(bin_dir)}


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (["mail", "sendmail", "logger"], "mail -s infr backup on beta failed ops@example.com"),
        (["sendmail", "logger"], "sendmail -t\nTo: ops@example.com\nSubject: infr backup on beta failed"),
        (["logger"], "logger -p daemon.err -t infr-backup infr backup on beta failed; mail to ops@example.com not"),
    ],
)
def test_failure_notice_goes_by_mail_else_to_the_log(tmp_path: Path, tools: list[str], expected: str) -> None:
    notify(tmp_path, "infr-backup-notify", tools, expected)


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (["msmtp", "mail", "logger"], "msmtp -C /etc/infr/backup-msmtprc -t\nFrom: ops@example.com\nTo: ops@"),
        (["mail", "logger"], "logger -p daemon.err -t infr-backup infr backup on beta failed; mail to ops@"),
    ],
)  # fmt: skip
def test_with_a_relay_the_notice_goes_through_msmtp_only(tmp_path: Path, tools: list[str], expected: str) -> None:
    assert "mail -s" not in notify(tmp_path, "relay-infr-backup-notify", tools, expected)


def notify(tmp_path: Path, script_name: str, tools: list[str], expected: str) -> str:
    """Run the notify script with fake `tools`; what they were given, which must hold `expected`."""
    script = tmp_path / "notify"
    script.write_text(CASES[script_name])
    log = tmp_path / "log"
    env = fake_tools(tmp_path / "bin", log, tools)
    subprocess.run([shutil.which("sh") or "sh", str(script), "infr-backup.service"], env=env, check=True)
    assert expected in log.read_text()
    if "logger" not in expected:
        assert "source unreachable" in log.read_text()
    return log.read_text()


# --- restore points ---------------------------------------------------------------------

SUBVOLUME_LIST = """\
ID 258 gen 17 top level 5 received_uuid dd0b3fb4-f79a-b847-aa9f-bf0f587a1e31 path backups/alpha/host.20261122T2045
ID 259 gen 20 top level 5 received_uuid cee74338-5be3-e34e-a700-c8be4b79b60c path backups/alpha/lxc-web.20261122T2045
ID 260 gen 24 top level 5 received_uuid f4ce6969-e1e9-ae46-853a-967d0b3dca71 path backups/alpha/host.20261122T2045_1
ID 262 gen 31 top level 5 received_uuid - path backups/alpha/host.20261122T2050
ID 263 gen 33 top level 5 received_uuid 31a622b6-36ba-1840-bee4-ae19a7700553 path backups/alpha/lxc-web.20261122T2050
ID 264 gen 33 top level 5 received_uuid 31a622b6-36ba-1840-bee4-ae19a7700554 path backups/alpha/notes
"""


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 11, 22, hour, minute, tzinfo=UTC)


def test_half_received_backups_are_not_restore_points() -> None:
    points = parse_restore_points(SUBVOLUME_LIST)
    assert [p.name for p in points] == [
        "host.20261122T2045",
        "lxc-web.20261122T2045",
        "host.20261122T2045_1",
        "lxc-web.20261122T2050",
    ]
    assert points[2] == RestorePoint(at(20, 45), 1, "host", "host.20261122T2045_1")


def test_directory_names_parse_too() -> None:
    points = parse_restore_points("lxc-web.20261122T2045\nhost.20261122T2045\n.lock\nhost.2026112T2045\n")
    assert [(p.subvol, p.at) for p in points] == [("host", at(20, 45)), ("lxc-web", at(20, 45))]


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("host.20261122T2045", ("host", at(20, 45), 0)),
        ("lxc-my.site.20261122T2045_12", ("lxc-my.site", at(20, 45), 12)),
        ("host.20261322T2045", None),  # month 13
        ("host.20261122", None),  # btrbk's short format is not ours
        ("host", None),
    ],
)
def test_parse_backup_name(name: str, parsed: tuple[str, datetime, int] | None) -> None:
    assert parse_backup_name(name) == parsed


def test_pick_restore_point() -> None:
    points = parse_restore_points(SUBVOLUME_LIST)
    assert pick_restore_point(points, "host") == points[2]
    assert pick_restore_point(points, "lxc-web", at(20, 49)) == points[1]
    assert pick_restore_point(points, "lxc-web", at(20, 44)) is None
    assert pick_restore_point(points, "lxc-db") is None
    assert newest_by_subvol(points) == {"host": points[2], "lxc-web": points[3]}


def test_listing_command() -> None:
    argv = list_restore_points_argv("alpha", SETTINGS)
    assert argv[:2] == ("sh", "-c") and argv[3:] == ("sh", "/var/lib/backups/backups/alpha")
    assert "findmnt" in argv[2] and "btrfs subvolume list -o -r -R" in argv[2]


def test_setup_commands() -> None:
    assert setup_commands("alpha", "beta", SETTINGS) == [
        Command("alpha", ("mkdir", "-p", "/var/lib/btrbk/snapshots/beta")),
        Command("beta", ("mkdir", "-p", "/var/lib/backups/backups/alpha")),
    ]


# --- mail settings ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "smtp.example.com", "smtp.example.com:2525", "10.8.0.9:25", "localhost"])
def test_smtp_relay_accepts(value: str) -> None:
    assert SETTINGS_SCHEMA["smtpRelay"].parse(value) == value


@pytest.mark.parametrize("value", ["smtp example.com", "smtp.example.com:0", "smtp.example.com:x", ":25", "a:b:c"])
def test_smtp_relay_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="is not HOST\\[:PORT\\]"):
        SETTINGS_SCHEMA["smtpRelay"].parse(value)


def test_smtp_password_is_a_secret_and_tls_a_choice() -> None:
    assert SETTINGS_SCHEMA["smtpPassword"].secret and SETTINGS_SCHEMA["smtpPassword"].env == "INFR_SMTP_PASSWORD"
    with pytest.raises(ValueError, match="must be one of starttls, tls, off"):
        SETTINGS_SCHEMA["smtpTls"].parse("ssl")
