"""The state directory is a git repository: every change is a commit, `infr history` reads them.

Commit messages are the command line; the author is the person running infr, so the
log is the audit trail (as in Railtrack). `sync` shares one state within a team.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from infr.errors import ConflictError, InfrError, StateError, ValidationError
from infr.state.files import write_atomic


@dataclass
class Entry:
    commit: str
    date: str
    author: str
    message: str


@cache
def _git_setting(name: str) -> str:
    # Asked once per process: each `git config` is a process of its own, and a change
    # runs three git commands.
    out = subprocess.run(["git", "config", "--get", name], capture_output=True, text=True)
    return out.stdout.strip()


def _identity() -> tuple[str, str]:
    """Name and email for commits: git's own config when set, else user@host."""
    user = getpass.getuser()
    name = os.environ.get("INFR_AUTHOR_NAME") or _git_setting("user.name") or user
    email = os.environ.get("INFR_AUTHOR_EMAIL") or _git_setting("user.email") or f"{user}@{socket.gethostname()}"
    return name, email


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    name, email = _identity()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise StateError(
            f"git {args[0]} failed in {root}: {(result.stderr or result.stdout).strip()}",
            "run the git command by hand in the state directory to see why",
        )
    return result


def init(root: Path) -> None:
    git(root, "init", "-q", "-b", "main")


# Locks git takes while committing. One left behind by a killed git makes every later
# 'git add' or 'git commit' fail, which infr would only find out after saving a change.
GIT_LOCKS = (".git/index.lock", ".git/HEAD.lock", ".git/refs/heads/main.lock")


def ready(root: Path, wait: float = 2.0) -> None:
    """Refuse a change, before anything is written, while git cannot commit in `root`.

    A git still finishing for an infr that was killed lets go within `wait` seconds; a
    lock older than that is from a git that is running by hand or that died.
    """
    if not (root / ".git").exists():
        raise StateError(
            f"{root} is not a git repository (.git is missing): the change could not be recorded",
            f"nothing was changed; restore .git from a backup or a clone, or start a new history: "
            f"git -C {root} init -b main && git -C {root} add -A && git -C {root} commit -m 'infr state'",
        )
    deadline = time.monotonic() + wait
    while held := [name for name in GIT_LOCKS if (root / name).exists()]:
        if time.monotonic() >= deadline:
            raise StateError(
                f"git in the state directory is locked ({root / held[0]} exists)",
                "a git command is running there, or was killed: if none is running, remove that file",
            )
        time.sleep(0.05)


def commit(root: Path, paths: list[str], message: str) -> None:
    """Commit exactly `paths` (added, changed or deleted) with `message`."""
    paths = _known_to_git_or_present(root, paths)
    if not paths:  # 'git add -A --' with no path adds the whole tree: commit nothing instead
        return
    git(root, "add", "-A", "--", *paths)
    if git(root, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return
    git(root, "commit", "-q", "--no-verify", "-m", message)


def _known_to_git_or_present(root: Path, paths: list[str]) -> list[str]:
    """`paths` less those git cannot add: neither on disk nor tracked. A change killed after
    noting its commit and before saving a new file leaves such a path in the note, and
    'git add' refuses the whole command for one ('pathspec ... did not match any files')."""
    missing = [p for p in paths if not os.path.lexists(root / p)]
    if not missing:
        return paths
    tracked = set(git(root, "ls-files", "-z", "--", *missing).stdout.split("\0"))
    return [p for p in paths if p not in missing or p in tracked]


# The commit a change is about to make, written before its files are saved and removed
# once committed: an infr killed in between leaves its change saved but not in git, and
# the next change commits it first, under the interrupted command's own line. Inside .git,
# so it is never part of the state and needs no .gitignore entry.
PENDING = ".git/infr-pending-commit.json"
INTERRUPTED = "\n\nCommitted by the next infr command: this one was interrupted before it could commit."


def begin(root: Path, paths: list[str], message: str) -> None:
    """Record the commit that `commit(root, paths, message)` will make (ready() was called)."""
    try:
        write_atomic(root / PENDING, json.dumps({"paths": paths, "message": message}).encode())
    except OSError as exc:
        raise StateError(
            f"could not write {root / PENDING}: {exc.strerror}",
            "nothing was changed; make room on that disk and run the command again",
        ) from None


def end(root: Path) -> None:
    """The change recorded by `begin` is committed."""
    (root / PENDING).unlink(missing_ok=True)


def finish_interrupted(root: Path) -> None:
    """Commit the change of an infr that was killed after saving it, before committing it.

    Call with the state lock held and the journal rolled forward (a load does that).
    """
    try:
        pending = json.loads((root / PENDING).read_bytes())
    except FileNotFoundError:
        return
    except ValueError:  # written atomically, so only a hand or a damaged disk garbles it: nothing to go by
        end(root)
        return
    ready(root)
    commit(root, [str(p) for p in pending["paths"]], str(pending["message"]) + INTERRUPTED)
    end(root)


def log(root: Path, limit: int | None = None) -> list[Entry]:
    args = ["log", "--format=%h%x1f%aI%x1f%an <%ae>%x1f%s"]
    if limit:
        args.append(f"-n{limit}")
    result = git(root, *args, check=False)
    if result.returncode != 0:
        return []
    return [Entry(*line.split("\x1f", 3)) for line in result.stdout.splitlines()]


def sync(root: Path, check: Callable[[], object] | None = None) -> str:
    """Pull (rebase) then push; a conflict is undone and reported, never merged silently.

    `check` validates what the pull produced (changes to different files merge cleanly
    in git yet can clash, e.g. one host port forwarded twice); when it raises, the pull
    is undone and nothing is pushed.
    """
    if not git(root, "remote", check=False).stdout.strip():
        raise StateError(
            "the state directory has no git remote",
            f"add one with: git -C {root} remote add origin URL",
        )
    upstream = git(root, "rev-parse", "--abbrev-ref", "@{upstream}", check=False)
    before = git(root, "rev-parse", "HEAD").stdout.strip()
    # A new, empty remote has nothing to pull: the first sync only publishes.
    empty_remote = upstream.returncode != 0 and not git(root, "ls-remote", "--heads", "origin", "main").stdout.strip()
    pull = ["pull", "--rebase", "-q"] if upstream.returncode == 0 else ["pull", "--rebase", "-q", "origin", "main"]
    result = git(root, *pull, check=False) if not empty_remote else None
    if result is not None and result.returncode != 0:
        conflicts = git(root, "diff", "--name-only", "--diff-filter=U", check=False).stdout.split()
        git(root, "rebase", "--abort", check=False)
        if conflicts:
            raise ConflictError(
                f"your changes conflict with the remote's in {', '.join(conflicts)}",
                "nothing was changed; resolve by hand with git pull --rebase in the state directory",
            )
        raise StateError(f"git pull failed: {result.stderr.strip()}", "check the remote with git fetch")
    if check is not None:
        try:
            check()
        except InfrError as error:
            git(root, "reset", "-q", "--hard", before)
            hint = "nothing was changed; your changes and the remote's clash: resolve by hand with git pull --rebase"
            if isinstance(error, ValidationError):
                raise ValidationError(error.problems, hint) from None
            raise StateError(str(error), hint) from None
    push = ["push", "-q"] if upstream.returncode == 0 else ["push", "-q", "-u", "origin", "main"]
    pushed = git(root, *push, check=False)
    if pushed.returncode != 0:
        raise StateError(f"git push failed: {pushed.stderr.strip()}", "check access to the remote")
    return git(root, "rev-parse", "--short", "HEAD").stdout.strip()
