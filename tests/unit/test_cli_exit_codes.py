"""A command that ends with a non-zero status on purpose (not an error) keeps it to the shell."""

from __future__ import annotations

from pathlib import Path

from infr.state.model import HOST_READY, Backup
from infr.state.session import Session
from tests.conftest import run_infr, seed_host


def test_backup_status_exits_1_when_a_backup_host_is_down(state_dir: Path) -> None:
    seed_host(state_dir, "bob", "198.51.100.11", status=HOST_READY)
    seed_host(state_dir, "tom", "198.51.100.12", status=HOST_READY)
    with Session(state_dir, command_line="test: backup pair").change() as change:
        change.set_backups([Backup("bob", "tom", started="2026-11-22T00:00:00+00:00")])
    result = run_infr(state_dir, "-D", "tom", "backup", "status")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bob" in result.stdout and "tom" in result.stdout
    assert "Traceback" not in result.stderr
