"""`infr host NAME ssh`: hand the terminal to OpenSSH, trusting only the pinned host key."""

from __future__ import annotations

import os

from infr.core.hostops import get_host
from infr.core.session import Session
from infr.core.templating import fill
from infr.errors import HostKeyError
from infr.state.files import write_atomic


def ssh_argv(session: Session, name: str, command: list[str]) -> list[str]:
    host = get_host(session.inventory(), name)
    if not host.host_key:
        raise HostKeyError(f"{name} has no pinned host key yet", f"pin it with: infr host {name} reconfigure -k")
    known_hosts = session.root / ".cache" / "known_hosts"
    alias = f"infr-{name}"
    write_atomic(known_hosts, fill("{alias} {host_key}\n", alias=alias, host_key=host.host_key).encode(), 0o600)
    argv = ["ssh", "-A", "-p", str(host.ssh_port), "-o", f"HostKeyAlias={alias}"]
    argv += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    if session.identity_file:
        argv += ["-i", session.identity_file]
    return [*argv, f"manager@{host.public_ip}", *(["--", *command] if command else [])]


def exec_ssh(session: Session, name: str, command: list[str]) -> None:
    argv = ssh_argv(session, name, command)
    os.execvp(argv[0], argv)
