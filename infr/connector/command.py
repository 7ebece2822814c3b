"""Remote commands as argument lists, and the one place where they become shell text.

Every builder here is pure and returns an argv (`list[str]`). Nothing is joined or
quoted until `quote`, which the connector calls right before sending the command, so
a host name, alias or path can never reach the remote shell unquoted. The remote
login shell is assumed to be POSIX (sh, dash, bash): Debian's default for root and
the `manager` user infr creates.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence

Argv = list[str]

# Debian policy: lowercase alphanumerics and + - . ; optionally :arch and =version.
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TMP_SUFFIX = ".infr-tmp"


def quote(argv: Sequence[str]) -> str:
    """The shell text that runs `argv` exactly, every argument quoted."""
    if not argv:
        raise ValueError("empty command")
    if any("\0" in arg for arg in argv):
        # A shell argument cannot hold NUL; refusing beats silently truncating.
        raise ValueError(f"NUL byte in command argument: {argv!r}")
    return shlex.join(argv)


def quote_chain(cmds: Sequence[Sequence[str]]) -> str:
    """Shell text that runs `cmds` in order, stopping at the first that fails."""
    return " && ".join(quote(argv) for argv in cmds)


def sudo(argv: Sequence[str]) -> Argv:
    """`argv` run as root; -n fails at once instead of waiting for a password prompt."""
    return ["sudo", "-n", "--", *argv]


def env(variables: Mapping[str, str], argv: Sequence[str]) -> Argv:
    """`argv` with extra environment variables, via env(1) so it composes with sudo."""
    for name in variables:
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name: {name!r}")
    return ["env", *(f"{k}={v}" for k, v in variables.items()), *argv]


def _absolute(path: str) -> str:
    if not posixpath.isabs(path):
        raise ValueError(f"remote path must be absolute: {path!r}")
    return path


def _mode(mode: int) -> str:
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid file mode: {mode:#o}")
    return f"{mode:04o}"


def mkdir(path: str, *, mode: int | None = None) -> Argv:
    """Create `path` and its parents; no error if it exists."""
    opts = ["-m", _mode(mode)] if mode is not None else []
    return ["mkdir", "-p", *opts, "--", _absolute(path)]


def chown(path: str, owner: str, group: str) -> Argv:
    return ["chown", f"{owner}:{group}", "--", _absolute(path)]


def chmod(path: str, mode: int) -> Argv:
    return ["chmod", _mode(mode), "--", _absolute(path)]


def rm(path: str) -> Argv:
    """Remove one file; no error if it is already gone."""
    return ["rm", "-f", "--", _absolute(path)]


def cat(path: str) -> Argv:
    return ["cat", "--", _absolute(path)]


def systemctl(action: str, *units: str) -> Argv:
    """e.g. systemctl("restart", "haproxy.service")."""
    return ["systemctl", action, "--", *units]


def apt_install(packages: Iterable[str]) -> Argv:
    """Install packages without prompts, keeping config files the admin changed."""
    names = list(packages)
    bad = [p for p in names if not _PACKAGE.match(p)]
    if bad or not names:
        raise ValueError(f"invalid package names: {bad or names!r}")
    confdef, confold = "Dpkg::Options::=--force-confdef", "Dpkg::Options::=--force-confold"
    # Wait for a dpkg lock held by an earlier run that was cut off, instead of failing.
    wait = "DPkg::Lock::Timeout=600"
    # Only what is asked for: Recommends double the packages, and the time to install them.
    lean = "--no-install-recommends"
    apt = ["apt-get", "install", "-y", "-q", lean, "-o", confdef, "-o", confold, "-o", wait, "--", *names]
    return env({"DEBIAN_FRONTEND": "noninteractive"}, apt)


def tmp_path_for(path: str) -> str:
    """The temp file next to `path` that an upload goes through.

    Same directory, so the final `mv` is an atomic rename on one filesystem. The
    name is fixed, not random, so an upload cut off half-way leaves one stale file
    that the next upload of the same path overwrites, instead of piling up.
    """
    head, tail = posixpath.split(_absolute(path))
    if not tail:
        raise ValueError(f"not a file path: {path!r}")
    return posixpath.join(head, f".{tail}{TMP_SUFFIX}")


def write_file_cmds(path: str, owner: str, group: str, mode: int, tmp: str) -> list[Argv]:
    """Commands that atomically replace `path` with the bytes given on the 2nd one's stdin.

    The temp file gets its final owner and mode *before* any data is written, so a
    secret is never readable by anyone else, not even for a moment. dd's fsync makes
    the data durable before the rename publishes it; syncing the directory makes the
    rename itself durable.
    """
    path, tmp = _absolute(path), _absolute(tmp)
    return [
        ["install", "-m", _mode(mode), "-o", owner, "-g", group, "--", "/dev/null", tmp],
        ["dd", f"of={tmp}", "bs=1M", "conv=fsync", "status=none"],
        ["mv", "-f", "-T", "--", tmp, path],
        ["sync", "--", posixpath.dirname(path)],
    ]
