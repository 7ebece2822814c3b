"""The Debian mirror this machine's apt uses: the lab builds from it and its VMs reach only it."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from infr.errors import LabError

DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ONE_LINE_SOURCES = Path("/etc/apt/sources.list")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""

    @property
    def host(self) -> str:
        return urlsplit(self.uri).hostname or ""


@dataclass(frozen=True)
class Mirror:
    """The mirror URL (for debootstrap) and every apt source served by the same host."""

    url: str
    sources: tuple[AptSource, ...]

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def deb822(self) -> str:
        """The sources as a `debian.sources` file for the lab image."""
        stanzas = []
        for src in self.sources:
            lines = [
                "Types: deb",
                f"URIs: {src.uri}",
                f"Suites: {' '.join(src.suites)}",
                f"Components: {' '.join(src.components)}",
            ]
            if src.signed_by:
                lines.append(f"Signed-By: {src.signed_by}")
            stanzas.append("\n".join(lines) + "\n")
        return "\n".join(stanzas)


def parse_deb822(text: str) -> list[AptSource]:
    sources = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or not fields.get("uris"):
            continue
        for uri in fields["uris"].split():
            sources.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                     tuple(fields.get("components", "main").split()),
                                     fields.get("signed-by", "")))
    return sources


def parse_one_line(text: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "deb" and not words[1].startswith("["):
            sources.append(AptSource(words[1], (words[2],), tuple(words[3:]) or ("main",)))
    return sources


def from_sources(sources: list[AptSource]) -> Mirror:
    """The first plain-HTTP source is the mirror; others on the same host come along."""
    main = next((s for s in sources if urlsplit(s.uri).scheme == "http"), None)
    if main is None:
        raise LabError("no http:// Debian mirror in apt's sources",
                       f"the lab proxies plain HTTP to the mirror; check {DEB822_SOURCES}")
    same_host = tuple(s for s in sources if s.host == main.host and s.uri.startswith("http://"))
    return Mirror(main.uri, same_host)


def configured_mirror(deb822: Path = DEB822_SOURCES, one_line: Path = ONE_LINE_SOURCES) -> Mirror:
    """The mirror apt is configured with on this machine."""
    sources: list[AptSource] = []
    if deb822.exists():
        sources = parse_deb822(deb822.read_text())
    if not sources and one_line.exists():
        sources = parse_one_line(one_line.read_text())
    return from_sources(sources)


def resolve_ipv4(host: str) -> str:
    try:
        infos = socket.getaddrinfo(host, 80, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise LabError(f"cannot resolve the Debian mirror {host}: {exc}",
                       "the lab's VMs reach the mirror through a forwarder to its address") from exc
    return str(infos[0][4][0])
