"""`infr backup start/status/stop` on real Debian 12 VMs with btrfs roots (issue 7).

bob is backed up onto tom, both adopted by the shared `fleet` fixture. Backup runs are
started by hand (`systemctl start` of the service the timer would start) instead of
waiting for the five-minute timer. The tests run in file order: each builds on the backups
the previous one made.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from infr.core import backupops
from infr.core.backups import HOST_SUBVOL, RestorePoint, parse_restore_points
from infr.core.session import Session
from infr.lab import LabHost
from tests.lab.conftest import Fleet, LabKey, infr

pytestmark = [pytest.mark.lab, pytest.mark.timeout(3600)]
BACKUPS = "/var/lib/backups/backups/bob"
ARCHIVE = "/var/lib/backups/archive/bob"


def manager(host: LabHost, key: LabKey, command: str, timeout: float = 600) -> tuple[int, str]:
    """Run `command` as manager (adopted hosts take no root logins); stdout+stderr."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        host.ip,
        username="manager",
        key_filename=str(key.private),
        look_for_keys=False,
        allow_agent=False,
        timeout=20,
        banner_timeout=20,
        auth_timeout=20,
    )
    try:
        _, stdout, _ = client.exec_command(command, timeout=timeout)
        stdout.channel.set_combine_stderr(True)
        output = stdout.read().decode(errors="replace")
        return stdout.channel.recv_exit_status(), output
    finally:
        client.close()


def backup_run(tom: LabHost, key: LabKey) -> float:
    """One run of the backup service on tom, as the timer would start it; its seconds."""
    started = time.monotonic()
    code, out = manager(tom, key, "sudo -n systemctl start infr-backup.service", timeout=900)
    if code != 0:
        _, journal = manager(tom, key, "sudo -n journalctl -u infr-backup.service -n 40 --no-pager")
        pytest.fail(f"backup run failed: {out}\n{journal}")
    return time.monotonic() - started


def points(tom: LabHost, key: LabKey) -> list[RestorePoint]:
    code, out = manager(tom, key, f"sudo -n btrfs subvolume list -o -r -R {BACKUPS}")
    assert code == 0, out
    return [p for p in parse_restore_points(out) if p.subvol == HOST_SUBVOL]


@pytest.fixture(scope="module")
def state(fleet: Fleet) -> Path:
    return fleet.state


@pytest.fixture(scope="module")
def hosts(fleet: Fleet) -> tuple[LabHost, LabHost]:
    return fleet.bob, fleet.tom


@pytest.fixture(scope="module")
def started(state: Path, lab_key: LabKey) -> Path:
    result = infr(state, lab_key.private, "backup", "start", "bob", "tom")
    assert result.returncode == 0, result.stderr + result.stdout
    return state


def test_start_installs_the_pull_on_tom_and_the_filtered_user_on_bob(
    started: Path, lab_key: LabKey, hosts: tuple[LabHost, LabHost]
) -> None:
    bob, tom = hosts
    backup = Session(started).inventory().find_backup("bob", "tom")
    assert backup is not None and backup.status == "active"
    code, out = manager(
        tom,
        lab_key,
        "systemctl is-enabled infr-backup.timer btrbk.timer; sudo -n test -f /etc/btrbk/ssh/id_ed25519 && echo key",
    )
    assert out.split() == ["enabled", "disabled", "key"], out
    code, out = manager(
        bob,
        lab_key,
        "sudo -n cat /var/lib/infr-backup/.ssh/authorized_keys; "
        "sudo -n test -e /var/lib/infr-backup/.ssh/id_ed25519 || echo no-private-key",
    )
    assert 'command="/usr/local/sbin/infr-backup-filter /var/lib/btrbk/snapshots/tom",restrict' in out
    assert out.rstrip().endswith("no-private-key")


def test_start_again_changes_nothing(started: Path, lab_key: LabKey) -> None:
    head = subprocess.run(["git", "-C", str(started), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    again = infr(started, lab_key.private, "backup", "start", "bob", "tom")
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout, again.stdout
    assert (
        subprocess.run(["git", "-C", str(started), "rev-parse", "HEAD"], capture_output=True, text=True).stdout == head
    )


def test_a_run_receives_a_read_only_snapshot_of_bobs_root(
    started: Path, lab_key: LabKey, hosts: tuple[LabHost, LabHost]
) -> None:
    tom = hosts[1]
    seconds = backup_run(tom, lab_key)
    print(f"full backup run: {seconds:.0f}s")
    found = points(tom, lab_key)
    assert found, "no complete backup of bob's root on tom"
    code, out = manager(
        tom,
        lab_key,
        f"sudo -n btrfs property get -ts {BACKUPS}/{found[-1].name} ro; "
        f"sudo -n test -d {BACKUPS}/{found[-1].name}/etc/ssh && echo has-etc",
    )
    assert out.split() == ["ro=true", "has-etc"], out


def test_an_incremental_run_carries_a_new_file(started: Path, lab_key: LabKey, hosts: tuple[LabHost, LabHost]) -> None:
    bob, tom = hosts
    before = points(tom, lab_key)
    token = secrets.token_hex(16)
    assert manager(bob, lab_key, f"echo {token} | sudo -n tee /root/backup-probe >/dev/null")[0] == 0
    seconds = backup_run(tom, lab_key)
    print(f"incremental backup run: {seconds:.0f}s")
    after = points(tom, lab_key)
    assert len(after) > len(before) and after[-1] not in before
    code, out = manager(tom, lab_key, f"sudo -n cat {BACKUPS}/{after[-1].name}/root/backup-probe")
    assert (code, out.strip()) == (0, token)
    listed = backupops.restore_points(Session(started, identity_file=str(lab_key.private)), "bob")
    assert [p for _, p in listed if p.subvol == HOST_SUBVOL] == after


def test_status_is_green_after_a_run(started: Path, lab_key: LabKey) -> None:
    result = infr(started, lab_key.private, "backup", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout
    listed = infr(started, lab_key.private, "backups", "list", "--ages", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert '"age": "' in listed.stdout


def test_status_turns_red_when_the_timer_stops(started: Path, lab_key: LabKey, hosts: tuple[LabHost, LabHost]) -> None:
    tom = hosts[1]
    assert manager(tom, lab_key, "sudo -n systemctl stop infr-backup.timer")[0] == 0
    assert infr(started, lab_key.private, "config", "set", "backupMaxAgeMinutes", "1").returncode == 0
    deadline = time.monotonic() + 150  # stamps are whole minutes: stale within a minute of the run
    while (result := infr(started, lab_key.private, "backup", "status")).returncode == 0:
        assert time.monotonic() < deadline, result.stdout
        time.sleep(10)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stale" in result.stdout


def test_stop_archives_tom_s_backups_and_cleans_bob(
    started: Path, lab_key: LabKey, hosts: tuple[LabHost, LabHost]
) -> None:
    bob, tom = hosts
    kept = points(tom, lab_key)
    result = infr(started, lab_key.private, "backup", "stop", "bob", "tom")
    assert result.returncode == 0, result.stdout + result.stderr
    backup = Session(started).inventory().find_backup("bob", "tom")
    assert backup is not None and backup.status == "archived"
    code, out = manager(
        tom, lab_key, f"test -e {BACKUPS} || echo gone; sudo -n ls {ARCHIVE}; systemctl is-enabled infr-backup.timer"
    )
    assert out.split()[0] == "gone" and out.split()[-1] == "disabled", out
    assert {p.name for p in kept} <= set(out.split())
    code, out = manager(
        bob,
        lab_key,
        "test -e /var/lib/btrbk/snapshots/tom || echo gone; sudo -n cat /var/lib/infr-backup/.ssh/authorized_keys",
    )
    assert out.split() == ["gone"], out
    again = infr(started, lab_key.private, "backup", "stop", "bob", "tom")
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr
