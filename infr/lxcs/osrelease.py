"""What an image is, from its os-release file (os-release(5)), against what was asked for.

Pure: the text is read from the unpacked image on the host by infr.lxcs.containers.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
# What os-release(5) allows in ID and VERSION_CODENAME (lowercase letters, digits, "._-"),
# and so what may be recorded as a distro or release: never a space or a new line.
_WORD = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def parse(text: str) -> dict[str, str]:
    """KEY=VALUE assignments, values unquoted as a shell would; other lines are skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if not sep or not _KEY.fullmatch(key):
            continue  # blank, comment or not an assignment
        try:
            words = shlex.split(raw, comments=False)
        except ValueError:
            continue  # an unclosed quote: no value
        if len(words) == 1:
            fields[key] = words[0]
        elif not words:
            fields[key] = ""
    return fields


@dataclass(frozen=True)
class ImageOs:
    distro: str
    release: str
    names: tuple[str, ...]  # every release name it answers to: codenames, the version and its prefixes

    def __str__(self) -> str:
        return f"{self.distro} {self.release}"


def image_os(text: str) -> ImageOs | None:
    """The image's distro (ID) and release (VERSION_CODENAME, else VERSION_ID), if both are usable words."""
    fields = parse(text)
    distro = fields.get("ID", "").lower()
    version = fields.get("VERSION_ID", "").lower()
    codenames = [fields.get(k, "").lower() for k in ("VERSION_CODENAME", "UBUNTU_CODENAME")]
    parts = version.split(".")
    versions = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]  # 3.19.1, 3.19, 3
    names = tuple(n for n in (*codenames, *versions) if _WORD.fullmatch(n))
    if not _WORD.fullmatch(distro) or not names:
        return None
    return ImageOs(distro, names[0], tuple(dict.fromkeys(names)))


def mismatch(text: str, distro: str, release: str) -> str | None:
    """Why an image with this os-release is not DISTRO RELEASE, or None if it is.

    RELEASE matches a codename (bookworm) or the version or a prefix of it (12; 3.19 of 3.19.1).
    """
    found = image_os(text)
    if found is None:
        return "the image's os-release names no distro and release"
    if found.distro != distro.lower() or release.lower() not in found.names:
        return f"the image is {found}, not {distro} {release}"
    return None
