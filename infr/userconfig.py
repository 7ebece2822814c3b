"""Per-user settings that are not the team's: the SSH key this person logs in with.

They live in $XDG_CONFIG_HOME/infr/config.toml (~/.config/infr/config.toml), never in
the shared state: a key's path means something on one person's machine only.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import tomli_w

from infr.errors import StateError
from infr.state.files import write_atomic


def config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "infr" / "config.toml"


def _load(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise StateError(f"{path} is unreadable: {e}", "fix or delete it (it only remembers your SSH key)") from None


def remembered_identity() -> str | None:
    """The SSH private key remembered for this user, if any."""
    path = config_file()
    identity = _load(path).get("identity")
    if identity is None:
        return None
    if not isinstance(identity, str) or not identity or "\n" in identity:
        raise StateError(f"{path}: identity must be the path of a private key", "fix or delete the line")
    return identity


def remember_identity(key: Path) -> Path:
    """Remember `key` (made absolute) as this user's SSH identity; returns the file written."""
    path = config_file()
    settings = _load(path)
    settings["identity"] = str(key.expanduser().absolute())
    write_atomic(path, tomli_w.dumps(settings).encode(), 0o600)
    return path
