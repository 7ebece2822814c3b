"""What the admin's ~/.ssh/config says about reaching a host: Port, User, IdentityFile, ProxyJump.

Blocks are matched against the host's address and then its infr name (`Host bob`);
as in OpenSSH, the first value found for an option wins. infr's state still decides
the address (HostName is only followed for jump hosts) and the pinned host key.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

import paramiko

from infr.errors import UsageError


@dataclass(frozen=True)
class Hop:
    """A jump host (ProxyJump) on the way to a host."""

    label: str  # as ProxyJump names it, e.g. "bastion" or "admin@198.51.100.7:2200"
    name: str  # the host part of the label: known_hosts may know the host by it
    host: str  # the address to connect to (its HostName)
    port: int
    user: str
    key_files: tuple[Path, ...]


@dataclass(frozen=True)
class Reach:
    """How to reach one host once ~/.ssh/config is applied."""

    port: int
    user: str
    key_files: tuple[Path, ...]  # -i (or the remembered key) first, then IdentityFile
    jumps: tuple[Hop, ...]


def config_path(home: Path | None = None) -> Path:
    return (home or Path.home()) / ".ssh" / "config"


def load(home: Path | None = None) -> paramiko.SSHConfig:
    """The admin's ~/.ssh/config (empty if there is none)."""
    path = config_path(home)
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except FileNotFoundError:
        return paramiko.SSHConfig()
    except (OSError, UnicodeDecodeError, paramiko.SSHException) as e:
        raise UsageError(f"{path} is unreadable: {e}", "fix it, or move it away") from None


def _lookup(config: paramiko.SSHConfig, *names: str) -> dict[str, object]:
    options: dict[str, object] = {}
    for name in names:
        try:
            found = config.lookup(name)
        except (paramiko.SSHException, ImportError, OSError) as e:  # e.g. `Match exec` without invoke
            raise UsageError(f"{config_path()}: cannot apply it to {name}: {e}", "simplify that block") from None
        for key, value in found.items():
            options.setdefault(key, value)
    return options


def _port(value: object, where: str) -> int:
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"{config_path()}: Port {text!r} for {where} is not a port number", "use 1-65535")
    return int(text)


def _key_files(options: dict[str, object]) -> list[Path]:
    # OpenSSH skips an IdentityFile that does not exist; so does infr.
    found = options.get("identityfile", [])
    return [Path(p) for p in found if Path(p).is_file()] if isinstance(found, list) else []


def resolve(
    config: paramiko.SSHConfig,
    name: str,
    address: str,
    *,
    port: int,
    user: str,
    key_file: Path | None,
    first_login: bool,
) -> Reach:
    """Apply ~/.ssh/config to host `name` at `address`.

    `port` 22 (the default) gives way to a Port line, any other port is infr's own.
    `user` gives way to a User line only on the `first_login` (infr then logs in as
    `manager`, the account it made).
    """
    options = _lookup(config, address, name)
    if port == 22 and "port" in options:
        port = _port(options["port"], name)
    if first_login and "user" in options:
        user = str(options["user"])
    explicit = [key_file] if key_file is not None else []
    keys = tuple(dict.fromkeys([*explicit, *_key_files(options)]))
    jumps = _jumps(config, str(options.get("proxyjump", "none")), key_file)
    return Reach(port, user, keys, jumps)


def _jumps(config: paramiko.SSHConfig, spec: str, key_file: Path | None) -> tuple[Hop, ...]:
    if spec.lower() == "none":
        return ()
    return tuple(_hop(config, part.strip(), key_file) for part in spec.split(",") if part.strip())


def _hop(config: paramiko.SSHConfig, label: str, key_file: Path | None) -> Hop:
    """One ProxyJump entry, [user@]host[:port], completed by its own Host block."""
    if label.startswith("ssh://"):
        raise UsageError(f"{config_path()}: ProxyJump {label!r}: ssh:// URIs are not supported", "write user@host:port")
    user, _, rest = label.rpartition("@")
    host, sep, port_text = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    options = _lookup(config, host)
    port = _port(port_text, label) if sep else _port(options.get("port", 22), label)
    user = user or str(options.get("user") or getpass.getuser())
    keys = _key_files(options) or ([key_file] if key_file is not None else [])
    return Hop(label, host, str(options.get("hostname", host)), port, user, tuple(keys))
