"""Bring a host to a described state, idempotently: read what is there, change only what differs.

Every function returns what it changed (an empty list when the host was already
right), so a second run says "nothing changed".
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from infr.connector import command
from infr.connector.target import Result
from infr.errors import RemoteError

Argv = tuple[str, ...]
# Installing a host's software takes minutes on a small VPS (and far longer under emulation).
INSTALL_TIMEOUT = 1800.0


class Runner(Protocol):
    """What reading facts, planning and applying need from a connection (an SSHConnection in practice)."""

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = True,
        input: bytes | None = None,
        timeout: float = ...,
        check: bool = True,
        secret_output: bool = False,
    ) -> Result: ...

    def put_file(
        self, path: str, data: bytes, *, owner: str, group: str, mode: int, timeout: float = ...
    ) -> None: ...


# Carries out one planned step on a host; returns what it changed.
Apply = Callable[["Runner"], list[str]]


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: bytes
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644
    # Run on a staged copy before it goes live; "{}" stands for the staged path.
    precheck: Argv = ()
    # Run once it is in place; if it fails the previous file comes back.
    postcheck: Argv = ()
    on_change: tuple[Argv, ...] = field(default=())
    # Holds a secret (a private key): a plan says the file changes, never shows its text.
    secret: bool = False


def _current(conn: Runner, path: str) -> tuple[bytes | None, str]:
    """The file's bytes and 'owner:group:mode', or (None, '') when it does not exist."""
    probe = conn.run(["stat", "-c", "%U:%G:%a", "--", path], check=False)
    if probe.exit_status != 0:
        return None, ""
    data = conn.run(command.cat(path), secret_output=True).stdout
    return data, probe.text.strip()


def ensure_file(conn: Runner, spec: FileSpec) -> list[str]:
    old, meta = _current(conn, spec.path)
    wanted_meta = f"{spec.owner}:{spec.group}:{spec.mode:o}"
    if old == spec.content and meta == wanted_meta:
        return []
    if old is None:
        conn.run(["mkdir", "-p", "--", posixpath.dirname(spec.path)])
    if spec.precheck:
        staged = spec.path + ".infr-new"  # a name with a dot: ignored by sudoers.d and sshd's *.conf
        conn.put_file(staged, spec.content, owner=spec.owner, group=spec.group, mode=spec.mode)
        checked = conn.run([a.replace("{}", staged) for a in spec.precheck], check=False)
        if checked.exit_status != 0:
            conn.run(["rm", "-f", "--", staged])
            raise RemoteError(f"{spec.path}: new version failed its check: {checked.stderr.decode().strip()}")
        conn.run(["mv", "-f", "-T", "--", staged, spec.path])
    else:
        conn.put_file(spec.path, spec.content, owner=spec.owner, group=spec.group, mode=spec.mode)
    if spec.postcheck:
        checked = conn.run(list(spec.postcheck), check=False)
        if checked.exit_status != 0:
            _restore(conn, spec, old, meta)
            raise RemoteError(
                f"{spec.path}: failed '{command.quote(spec.postcheck)}' and was put back: "
                f"{checked.stderr.decode().strip()}"
            )
    for argv in spec.on_change:
        conn.run(list(argv))
    return [f"wrote {spec.path}"]


def _restore(conn: Runner, spec: FileSpec, old: bytes | None, meta: str) -> None:
    if old is None:
        conn.run(["rm", "-f", "--", spec.path])
        return
    owner, group, mode = meta.split(":")
    conn.put_file(spec.path, old, owner=owner, group=group, mode=int(mode, 8))


def missing_packages(conn: Runner, packages: Sequence[str]) -> list[str]:
    query = conn.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\\n", "--", *packages], check=False)
    installed = {line.split()[0] for line in query.text.splitlines() if line.split()[1:2] == ["ii"]}
    return [p for p in packages if p not in installed]


def ensure_packages(conn: Runner, packages: Sequence[str]) -> list[str]:
    missing = missing_packages(conn, packages)
    if not missing:
        return []
    noninteractive = {"DEBIAN_FRONTEND": "noninteractive"}
    finish_dpkg = command.env(noninteractive, ["dpkg", "--configure", "-a"])
    apt_update(conn)
    if conn.run(command.apt_install(missing), check=False, timeout=INSTALL_TIMEOUT).exit_status != 0:
        # A run cut off during an install leaves dpkg half-configured (once its apt has
        # finished, which apt_install waited for): finish that, then try once more.
        conn.run(finish_dpkg, timeout=INSTALL_TIMEOUT)
        conn.run(command.apt_install(missing), timeout=INSTALL_TIMEOUT)
    # apt-get keeps every .deb it used; on a host they would ride along in every full
    # backup (300 MB on a fresh lab host) and fill small disks.
    conn.run(["apt-get", "clean"])
    return [f"installed {' '.join(missing)}"]


def apt_update(conn: Runner, wait: float = 600.0, pause: float = 3.0) -> None:
    """`apt-get update`, waiting while another apt holds the package lists.

    DPkg::Lock::Timeout covers dpkg's lock but not the lists lock, and an infr cut off
    during an update leaves that apt-get running on the host until it finishes.
    """
    argv = command.env({"DEBIAN_FRONTEND": "noninteractive"}, ["apt-get", "update", "-q"])
    deadline = time.monotonic() + wait
    while True:
        result = conn.run(argv, check=False, timeout=INSTALL_TIMEOUT)
        if result.exit_status == 0:
            return
        error = result.stderr.decode("utf-8", "replace").strip()
        if "Could not get lock" not in error or time.monotonic() > deadline:
            raise RemoteError(f"apt-get update failed: {error.splitlines()[-1] if error else 'no output'}")
        time.sleep(pause)


def ensure_user(conn: Runner, user: str, groups: Sequence[str]) -> list[str]:
    if conn.run(["id", "-u", "--", user], check=False).exit_status == 0:
        return []
    conn.run(["useradd", "--create-home", "--shell", "/bin/bash", "--groups", ",".join(groups), "--", user])
    return [f"created user {user}"]
