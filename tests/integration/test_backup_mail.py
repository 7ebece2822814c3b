"""The failure mailer for real: infr's rendered notify script and msmtp account, with the real
msmtp, send through a real SMTP server (aiosmtpd) that requires STARTTLS and a login."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infr.backups.btrbk import NOTIFY_SCRIPT, BackupSettings, render_units
from infr.errors import ValidationError
from infr.state.model import Host
from tests.integration.dnsservers import free_port
from tests.integration.haproxy_fixture import make_cert
from tests.integration.smtp_server import Inbox, smtp_server

pytestmark = pytest.mark.integration
PASSWORD = 'p a"ss\\w'  # a blank, a quote and a backslash: msmtp's quoting must carry them
TO = Host("beta", "203.0.113.2", "10.8.0.2")


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    if not shutil.which("msmtp"):
        pytest.skip("msmtp not installed (.ci/backup-packages.txt)")
    tls = make_cert(tmp_path, "127.0.0.1")
    with smtp_server("127.0.0.1", free_port(), login=("ops", PASSWORD), tls=tls) as served:
        yield served


def run_notify(tmp_path: Path, inbox: Inbox, password: str) -> subprocess.CompletedProcess[str]:
    inbox_cert = tmp_path / "127.0.0.1.crt"
    settings = BackupSettings(
        admin_email="ops@example.com",
        smtp_relay=f"{inbox.host}:{inbox.port}",
        smtp_tls="starttls",
        smtp_user="ops",
        smtp_password=password,
        msmtprc=str(tmp_path / "msmtprc"),
        smtp_password_file=str(tmp_path / "password"),
    )
    files = render_units(TO, [], settings)
    rc = tmp_path / "msmtprc"
    # The one edit: trust the test server's own certificate instead of the system's CAs.
    rc.write_text(files[settings.msmtprc].replace("tls_trust_file system", f"tls_trust_file {inbox_cert}"))
    (tmp_path / "password").write_text(files[settings.smtp_password_file])
    script = tmp_path / "notify"
    script.write_text(files[NOTIFY_SCRIPT])
    return subprocess.run(["sh", str(script), "infr-backup.service"], capture_output=True, text=True, timeout=60)


def test_a_failed_run_is_mailed_through_the_relay_with_its_login(tmp_path: Path, inbox: Inbox) -> None:
    result = run_notify(tmp_path, inbox, PASSWORD)
    [mail] = inbox.wait(1)
    assert (mail.sender, mail.recipients, mail.login) == ("ops@example.com", ["ops@example.com"], "ops"), result.stderr
    assert mail.message["Subject"] == f"infr backup on {socket.gethostname()} failed"
    assert mail.message["From"] == "ops@example.com"


def test_a_refused_login_sends_nothing_and_says_so(tmp_path: Path, inbox: Inbox) -> None:
    result = run_notify(tmp_path, inbox, "wrong")
    assert "authentication failed" in result.stderr, result.stderr
    assert inbox.wait(1, timeout=2) == []


def test_a_password_in_clear_is_refused_before_anything_is_rendered() -> None:
    settings = BackupSettings(admin_email="ops@example.com", smtp_relay="10.8.0.9", smtp_tls="off", smtp_user="ops")
    with pytest.raises(ValidationError, match="in clear"):
        render_units(TO, [], settings)
