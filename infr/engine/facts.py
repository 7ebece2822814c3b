"""Facts: what a host holds now, read in one command per kind, never changing anything.

A plan reads a host through these (files, units, packages), so planning sixteen hosts
costs a few round trips each, in parallel, instead of two commands per file.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from infr.engine.plan import Runner
from infr.errors import RemoteError

# For each path: "-" when it is not a regular file, else "owner:group:mode BASE64" on one
# line (base64 keeps any bytes, newlines included, inside the line).
_READ_FILES = (
    'for p do if [ -f "$p" ]; then printf "%s " "$(stat -c %U:%G:%a -- "$p")";'
    ' base64 -w0 -- "$p" || exit 1; echo; else echo -; fi; done'
)


@dataclass(frozen=True)
class FileFact:
    content: bytes
    meta: str  # owner:group:mode, mode in octal as stat prints it


@dataclass(frozen=True)
class UnitFact:
    enabled: bool  # UnitFileState is enabled (or enabled-runtime, static, alias)
    active: bool  # ActiveState is active (or reloading / activating)
    known: bool = True  # systemd has such a unit at all


def read_files(runner: Runner, paths: Sequence[str]) -> dict[str, FileFact | None]:
    """Each path's bytes and owner:group:mode, or None when it is not there."""
    paths = list(dict.fromkeys(paths))
    if not paths:
        return {}
    result = runner.run(["sh", "-c", _READ_FILES, "-", *paths], check=False, secret_output=True)
    lines = result.text.split("\n")
    # One line per path, each ended by a newline: a short listing (a host cut off mid-way)
    # must not read as empty files.
    if result.exit_status != 0 or len(lines) != len(paths) + 1 or lines[-1]:
        raise RemoteError(f"could not read {len(paths)} files: {result.stderr.decode(errors='replace').strip()}")
    return {path: _file_fact(path, line) for path, line in zip(paths, lines[:-1], strict=True)}


def _file_fact(path: str, line: str) -> FileFact | None:
    if line == "-":
        return None
    meta, _, data = line.partition(" ")
    try:
        return FileFact(base64.b64decode(data, validate=True), meta)
    except binascii.Error:
        raise RemoteError(f"{path}: unreadable listing from the host") from None


_ENABLED = {"enabled", "enabled-runtime", "static", "alias", "indirect", "generated"}
_ACTIVE = {"active", "reloading", "activating"}


def read_units(runner: Runner, units: Sequence[str]) -> dict[str, UnitFact]:
    """Whether each systemd unit is enabled and active, from one `systemctl show`."""
    units = list(dict.fromkeys(units))
    if not units:
        return {}
    argv = ["systemctl", "show", "--property=Id,LoadState,UnitFileState,ActiveState", "--", *units]
    result = runner.run(argv, check=False)
    blocks = result.text.strip().split("\n\n")
    # `show` exits 0 for a unit systemd has never heard of (LoadState=not-found); a failure
    # means it could not answer at all, which must not read as "every unit stopped".
    if result.exit_status != 0 or len(blocks) != len(units):
        raise RemoteError(f"could not read {len(units)} units: {result.stderr.decode(errors='replace').strip()}")
    facts = {}
    for unit, block in zip(units, blocks, strict=True):
        values = dict(line.partition("=")[::2] for line in block.splitlines())
        facts[unit] = UnitFact(
            enabled=values.get("UnitFileState", "") in _ENABLED,
            active=values.get("ActiveState", "") in _ACTIVE,
            known=values.get("LoadState", "") == "loaded",
        )
    return facts


def read_packages(runner: Runner, packages: Sequence[str]) -> set[str]:
    """Which of the packages are installed."""
    if not packages:
        return set()
    query = runner.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\\n", "--", *packages], check=False)
    return {line.split()[0] for line in query.text.splitlines() if line.split()[1:2] == ["ii"]}


def read_text(runner: Runner, argv: Sequence[str]) -> str:
    """The output of a read-only command that may fail (an absent tool reads as '')."""
    result = runner.run(list(argv), check=False)
    return result.text if result.exit_status == 0 else ""
