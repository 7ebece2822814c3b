"""Admin SSH keys: who may log in as `manager` on every host and LXC."""

from __future__ import annotations

import base64
import hashlib
import re

from infr.errors import ConflictError, NotFoundError, UsageError
from infr.state import validate
from infr.state.change import Change
from infr.state.model import Key


def key_name_for(text: str, file_name: str) -> str:
    """A key's name: its comment (user@laptop) when it has one, else the file name."""
    parts = text.split()
    candidate = parts[2] if len(parts) > 2 else re.sub(r"\.pub$", "", file_name)
    return re.sub(r"[^A-Za-z0-9._@-]", "-", candidate)[:64].strip("-.") or "key"


def fingerprint(public_key: str) -> str:
    """SHA256:... of an OpenSSH public key line, as `ssh-keygen -l` and ssh's prompts print it:
    the unpadded base64 of the SHA-256 of the key blob. Unlike a prefix of the blob (the same
    "AAAAC3NzaC1lZDI1NTE5" for every ed25519 key), it tells keys apart."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def add_key(change: Change, text: str, file_name: str, name: str | None = None) -> Key:
    lines = text.strip().splitlines()
    if len(lines) != 1:
        # Joined, a second key would pass as the first one's comment.
        raise UsageError(
            f"{file_name} is not an OpenSSH public key: it holds {len(lines)} lines, a key is one",
            "give the .pub file of one key, e.g. ~/.ssh/id_ed25519.pub",
        )
    text = " ".join(text.split())
    if problem := validate.ssh_public_key(text):
        raise UsageError(f"{file_name}: {problem}", "give the .pub file, e.g. ~/.ssh/id_ed25519.pub")
    name = name or key_name_for(text, file_name)
    if problem := validate.key_name(name):
        raise UsageError(problem, "choose another name with --name")
    blob = text.split()[1]
    for existing in change.inv.keys.values():
        if existing.key.split()[1] == blob and existing.name == name:
            # Added before: the command pushes the keys again, for the hosts that missed it.
            change.note(f"key {name} is already added")
            return existing
        if existing.key.split()[1] == blob:
            raise ConflictError(f"this key is already added as {existing.name!r}", "nothing to do")
    if name in change.inv.keys:
        raise ConflictError(f"a key named {name!r} already exists", "choose another name with --name")
    key = Key(name, text)
    change.put_key(key)
    change.note(f"key {name} added")
    return key


def remove_key(change: Change, name: str) -> None:
    if name not in change.inv.keys:
        known = ", ".join(sorted(change.inv.keys)) or "none"
        raise NotFoundError(f"no key named {name!r}", f"known keys: {known}")
    if len(change.inv.keys) == 1:
        raise UsageError("cannot remove the last admin key", "add another key first, or nobody could log in")
    change.delete_key(name)
    change.note(f"key {name} removed")
