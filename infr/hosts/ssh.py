"""`infr host NAME ssh`: hand the terminal to OpenSSH, trusting only the pinned host key."""

from __future__ import annotations

import os
from pathlib import Path

from infr.connector import sshconfig
from infr.connector.target import DEFAULT_CONNECT_TIMEOUT
from infr.engine.fleet import get_host
from infr.engine.templating import fill
from infr.errors import HostKeyError
from infr.state.files import write_atomic
from infr.state.session import Session


def ssh_argv(session: Session, name: str, command: list[str]) -> list[str]:
    """OpenSSH as manager, reaching the host as the connector does (~/.ssh/config applied)."""
    host = get_host(session.inventory(), name)
    if not host.host_key:
        raise HostKeyError(f"{name} has no pinned host key yet", f"pin it with: infr host {name} reconfigure -k")
    known_hosts = session.root / ".cache" / "known_hosts"
    alias = f"infr-{name}"
    write_atomic(known_hosts, fill("{alias} {host_key}\n", alias=alias, host_key=host.host_key).encode(), 0o600)
    key = Path(session.identity_file).expanduser() if session.identity_file else None
    reach = sshconfig.resolve(
        sshconfig.load(), name, host.public_ip, port=host.ssh_port, user="manager", key_file=key, first_login=False
    )
    argv = ["ssh", "-A", "-p", str(reach.port), "-o", f"ConnectTimeout={DEFAULT_CONNECT_TIMEOUT:g}"]
    argv += [
        "-o",
        f"HostKeyAlias={alias}",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
    ]
    for key_file in reach.key_files:
        argv += ["-i", str(key_file)]
    if reach.jumps:
        argv += ["-J", ",".join(hop.label for hop in reach.jumps)]
    return [*argv, f"manager@{host.public_ip}", *(["--", *command] if command else [])]


def exec_ssh(session: Session, name: str, command: list[str]) -> None:
    argv = ssh_argv(session, name, command)
    os.execvp(argv[0], argv)
