"""Reaching a host: paramiko clients, jump hosts, and an error that says why a host could not be reached."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import paramiko

from infr.connector import sshconfig
from infr.connector.hostkeys import (
    _as_known,
    _key_line,
    _known_hosts,
    _parse_key,
    _repin_hint,
    default_key_files,
    fingerprint,
)
from infr.connector.target import KEEPALIVE_INTERVAL, Target
from infr.errors import HostKeyError, RemoteError, UsageError
from infr.oplog import register_secret


def _auth_args(target: Target, key_files: Sequence[Path]) -> dict[str, Any]:
    if target.password is not None:
        register_secret(target.password)
        return {"password": target.password, "allow_agent": False, "look_for_keys": False}
    if target.key_file is not None and not target.key_file.is_file():
        raise UsageError(
            f"key file {target.key_file} not found",
            "pass -i with a private key (it replaces a remembered one that is gone)",
        )
    keys = list(key_files) or default_key_files()
    return {
        "key_filename": [str(k) for k in keys] or None,
        "allow_agent": target.use_agent,
        "look_for_keys": False,
    }


def _new_client(target: Target) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    if target.pinned_key is None:
        # First contact: accept what the host offers; the caller pins it.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return client
    try:
        key = _parse_key(target.pinned_key)
    except ValueError as e:
        raise HostKeyError(f"{target.name}: pinned {e}", _repin_hint(target.name)) from None
    client.get_host_keys().add(_as_known(target.host, target.port), key.get_name(), key)
    # Belt and braces: should the lookup ever miss, refuse rather than accept.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _where(target: Target) -> str:
    return f"{target.name} ({target.user}@{target.host}:{target.port})"


def _skip_hint(name: str) -> str:
    return f"if {name} is down, skip it with: infr -D {name} ..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def why_unreachable(e: BaseException, port: int, timeout: float) -> tuple[str, str]:
    """What failed when connecting, in a few words, and what to check."""
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError) and e.errors:
        e = next(iter(e.errors.values()))  # one socket error per address tried
    code = getattr(e, "errno", None)
    if isinstance(e, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return "connection refused", f"is the host up, with sshd listening on port {port}?"
    if isinstance(e, TimeoutError) or code == errno.ETIMEDOUT:
        return f"no answer within {timeout:g}s", f"is the host up? a firewall may drop port {port}"
    if code == errno.EHOSTUNREACH:
        return "no route to host", "is the host up, and its address right?"
    if code == errno.ENETUNREACH:
        return "network unreachable", "is this machine online?"
    if isinstance(e, socket.gaierror):
        return f"the address does not resolve ({e.strerror})", "check the address"
    if isinstance(e, ConnectionResetError | EOFError):
        return "the connection was closed before login", "sshd refused it: a firewall, or too many connections?"
    if isinstance(e, paramiko.SSHException):
        said = _one_line(str(e))
        # What paramiko says when the server's banner or key exchange did not come in time.
        if not said or said.startswith(("No existing session", "Error reading SSH protocol banner")):
            what = f"no SSH handshake within {timeout:g}s"
        else:
            what = f"SSH handshake failed: {said}"
        return what, f"port {port} answers, but not as an SSH server, or the host is overloaded"
    return _one_line(str(e)) or type(e).__name__, "is the host up?"


def _connect_error(target: Target, e: BaseException, via: str = "") -> RemoteError:
    where = _where(target) + via
    if isinstance(e, paramiko.BadHostKeyException):
        return HostKeyError(
            f"host key of {where} changed: pinned {fingerprint(_key_line(e.expected_key))}, "
            f"offered {fingerprint(_key_line(e.key))}; refusing to connect",
            f"{_repin_hint(target.name)}; {_skip_hint(target.name)}",
        )
    if isinstance(e, paramiko.AuthenticationException):
        return RemoteError(
            f"login to {where} refused: {_one_line(str(e))}",
            f"pass -i KEY, add the key to ssh-agent, or set IdentityFile in ~/.ssh/config; {_skip_hint(target.name)}",
        )
    what, check = why_unreachable(e, target.port, target.timeout)
    sep = " " if check.endswith("?") else "; "
    return RemoteError(f"cannot reach {where}: {what}", f"{check}{sep}{_skip_hint(target.name)}")


def _cause(client: paramiko.SSHClient, e: BaseException) -> BaseException:
    """The transport thread's own error behind a vague "No existing session", if it kept one."""
    if type(e) is not paramiko.SSHException:
        return e
    transport = client.get_transport()
    saved = getattr(transport, "saved_exception", None)
    return saved if isinstance(saved, Exception) else e


def _jump_client(hop: sshconfig.Hop, target: Target) -> paramiko.SSHClient:
    """A client for a jump host that trusts only the keys ~/.ssh/known_hosts has for it."""
    known = _known_hosts()
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    server = _as_known(hop.host, hop.port)
    for name in dict.fromkeys([_as_known(hop.name, hop.port), server]):
        for key in (known.lookup(name) or {}).values():
            client.get_host_keys().add(server, key.get_name(), key)
    if not client.get_host_keys().lookup(server):
        raise HostKeyError(
            f"jump host {hop.label} (on the way to {target.name}) is not in ~/.ssh/known_hosts",
            f"ssh to it once with OpenSSH to check and record its key; {_skip_hint(target.name)}",
        )
    return client


def _connect_jumps(target: Target, jumps: Sequence[sshconfig.Hop]) -> tuple[list[paramiko.SSHClient], Any]:
    """Log in to each jump host through the one before; returns them and a channel to the target."""
    clients: list[paramiko.SSHClient] = []
    sock: Any = None
    try:
        for i, hop in enumerate(jumps):
            client = _jump_client(hop, target)
            clients.append(client)
            via = f" via jump host {hop.label} ({hop.user}@{hop.host}:{hop.port})"
            hop_target = replace(target, host=hop.host, port=hop.port, user=hop.user, key_file=None, password=None)
            try:
                client.connect(
                    hop.host,
                    port=hop.port,
                    username=hop.user,
                    sock=sock,
                    **_timeouts(target.timeout),
                    **_auth_args(hop_target, hop.key_files),
                )
                transport = client.get_transport()
                assert transport is not None, "connect() returned without a transport"
                transport.set_keepalive(KEEPALIVE_INTERVAL)
                nxt = jumps[i + 1] if i + 1 < len(jumps) else None
                dest = (nxt.host, nxt.port) if nxt else (target.host, target.port)
                sock = transport.open_channel("direct-tcpip", dest, ("127.0.0.1", 0), timeout=target.timeout)
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise _connect_error(target, _cause(client, e), via) from None
    except BaseException:
        for client in reversed(clients):
            client.close()
        raise
    return clients, sock


def _timeouts(timeout: float) -> dict[str, Any]:
    return {"timeout": timeout, "banner_timeout": timeout, "auth_timeout": timeout, "channel_timeout": timeout}
