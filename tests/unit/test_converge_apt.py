"""apt-get update waits out another apt holding the package lists (a cut-off run's leftover)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from infr.connector.target import Result
from infr.engine.steps import apt_update
from infr.errors import RemoteError

LOCKED = b"E: Could not get lock /var/lib/apt/lists/lock. It is held by process 380 (apt-get)\n"


class Host:
    """Answers apt-get update with the given results, in order."""

    def __init__(self, *results: Result) -> None:
        self.results = list(results)
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], **_: object) -> Result:
        self.calls.append(list(argv))
        return self.results.pop(0)


def test_it_retries_while_the_lists_are_locked() -> None:
    host = Host(Result(100, b"", LOCKED), Result(100, b"", LOCKED), Result(0, b"Reading package lists...", b""))
    apt_update(host, pause=0)
    assert len(host.calls) == 3
    assert host.calls[0][-3:] == ["apt-get", "update", "-q"]


def test_other_failures_are_not_retried() -> None:
    host = Host(Result(100, b"", b"E: The repository 'x' does not have a Release file.\n"))
    with pytest.raises(RemoteError, match="does not have a Release file"):
        apt_update(host, pause=0)
    assert len(host.calls) == 1


def test_it_gives_up_after_the_wait() -> None:
    host = Host(*[Result(100, b"", LOCKED)] * 3)
    with pytest.raises(RemoteError, match="Could not get lock"):
        apt_update(host, wait=0, pause=0)
