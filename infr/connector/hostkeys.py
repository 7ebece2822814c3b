"""Host keys and login keys: reading a server's key, fingerprints, known_hosts, key files."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
from pathlib import Path

import paramiko


def server_host_key(ip: str, port: int) -> str:
    """The key the SSH server presents ("<type> <base64>"), without logging in; "" if none."""
    try:
        with socket.create_connection((ip, port), timeout=10.0) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.start_client(timeout=10.0)
                key = transport.get_remote_server_key()
                return f"{key.get_name()} {key.get_base64()}"
            finally:
                transport.close()
    except (OSError, paramiko.SSHException, EOFError):
        return ""


def fingerprint(key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key given as "<type> <base64>"."""
    blob = base64.b64decode(key.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    return f"SHA256:{digest.rstrip('=')}"


def default_key_files(home: Path | None = None) -> list[Path]:
    """The admin's default private keys that exist, in OpenSSH's order of preference."""
    ssh_dir = (home or Path.home()) / ".ssh"
    return [p for p in (ssh_dir / "id_ed25519", ssh_dir / "id_rsa") if p.is_file()]


def _parse_key(key: str) -> paramiko.PKey:
    try:
        key_type, data = key.split()[:2]
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))
    except (ValueError, paramiko.SSHException) as e:
        raise ValueError(f"unreadable host key {key!r}: {e}") from e


def _key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def _repin_hint(name: str) -> str:
    return f"if the host was reinstalled, re-pin its key with: infr host {name} reconfigure -k"


def _known_hosts(home: Path | None = None) -> paramiko.HostKeys:
    known = paramiko.HostKeys()
    path = (home or Path.home()) / ".ssh" / "known_hosts"
    with contextlib.suppress(FileNotFoundError):
        known.load(str(path))
    return known


def _as_known(host: str, port: int) -> str:
    # paramiko (like OpenSSH) looks keys up under "[host]:port" for non-standard ports.
    return host if port == 22 else f"[{host}]:{port}"
