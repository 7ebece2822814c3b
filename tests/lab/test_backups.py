"""`infr backup start` on the lab fleet (issue 7).

The lab's VMs all boot copies of one disk image, so bob's and tom's root filesystems share
their subvolume UUIDs. btrbk tells filesystems apart by those UUIDs: on such a pair it
takes tom's received backups for bob's own subvolumes, and every run after the first full
one fails ("creating subvolume ... failed: File exists", found by this suite). infr now
refuses such a pair before it records or changes anything; this module proves that on
real clones. The backup cycle itself (full and incremental sends, cut transfers,
retention, restores of containers and files, the least-privilege filter) is proven on two
real btrfs filesystems with real sshd and btrbk in tests/integration/test_btrbk_local.py
and tests/integration/test_restore_local.py.
"""

from __future__ import annotations

import subprocess

import pytest

from infr.core.session import Session
from tests.lab.conftest import Fleet, LabKey, infr
from tests.lab.test_adopt import run_as_manager

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]


def test_hosts_cloned_from_one_image_are_refused_with_one_line_and_nothing_changes(
    fleet: Fleet, lab_key: LabKey
) -> None:
    head = subprocess.run(["git", "-C", str(fleet.state), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    result = infr(fleet.state, lab_key.private, "backup", "start", "bob", "tom")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "cloned from one image" in errors[0], result.stderr
    assert "infr hosts add NAME IP" in errors[0]
    assert Session(fleet.state).inventory().backups == []
    assert subprocess.run(
        ["git", "-C", str(fleet.state), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout == head
    for host in (fleet.bob, fleet.tom):  # neither the pull on tom nor the key's home on bob
        probe = "test -e /etc/systemd/system/infr-backup.timer || test -e /etc/sudoers.d/infr-backup || echo untouched"
        code, out = run_as_manager(host.ip, lab_key.private, probe)
        assert (code, out.strip()) == (0, "untouched"), out


def test_backups_list_and_status_say_there_are_none(fleet: Fleet, lab_key: LabKey) -> None:
    listed = infr(fleet.state, lab_key.private, "backups")
    # The "nothing here" lines go to stderr, so a script reading stdout sees no rows.
    assert (listed.returncode, listed.stdout) == (0, ""), listed.stdout + listed.stderr
    assert "no backups yet" in listed.stderr
    status = infr(fleet.state, lab_key.private, "backup", "status")
    assert (status.returncode, status.stdout) == (0, ""), status.stdout + status.stderr
    assert "no active backups" in status.stderr
