"""Facts (infr/engine/facts.py) read through a real sshd and sudo, as a plan reads a host: the
batched file listing survives the remote shell's quoting whatever the names and bytes, and
dpkg-query's real output parses."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infr.connector import SSHConnection, Target
from infr.engine import facts
from infr.engine.facts import FileFact
from tests.integration.sshd import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    KeyPair,
    Sshd,
    SystemUser,
    client_key_fixture,
    infrtest_user_fixture,
    sshd_factory_fixture,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def manager_conn(
    sshd_factory: Callable[..., Sshd], client_key: KeyPair, infrtest_user: SystemUser
) -> Iterator[SSHConnection]:
    """A login as an unprivileged user whose commands run through sudo, as infr's manager."""
    server = sshd_factory()
    target = Target("h1", server.host, server.port, user=infrtest_user.name, key_file=client_key.private)
    with SSHConnection.connect(target) as conn:
        yield conn


@pytest.fixture
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory only root can read (the login user reads it only through sudo)."""
    root = tmp_path_factory.mktemp("facts")
    root.chmod(0o700)
    yield root
    shutil.rmtree(root)


def test_files_read_through_sudo_with_awkward_names_and_bytes(manager_conn: SSHConnection, files: Path) -> None:
    written = {
        files / "haproxy.cfg": (b"global\n\n    maxconn 100\n", 0o644),
        files / "it's a \"name\" with $(id) and `id`": (b"quoted\n", 0o600),
        files / "line one\nline two": (b"a name with a newline\n", 0o644),
        files / "blob": (bytes(range(256)), 0o640),
        files / "empty": (b"", 0o444),
    }
    for path, (data, mode) in written.items():
        path.write_bytes(data)
        os.chown(path, 0, 0)
        path.chmod(mode)
    asked = [*map(str, written), str(files / "missing"), str(files)]
    found = facts.read_files(manager_conn, asked)
    assert found == {
        **{str(path): FileFact(data, f"root:root:{mode:o}") for path, (data, mode) in written.items()},
        str(files / "missing"): None,
        str(files): None,
    }


def test_packages_from_real_dpkg_query(manager_conn: SSHConnection) -> None:
    if shutil.which("dpkg-query") is None:
        pytest.fail("dpkg-query is missing: this tier runs on Debian")
    assert facts.read_packages(manager_conn, ["bash", "coreutils", "no-such-package-infr"]) == {"bash", "coreutils"}
