"""Do the same work on many hosts at once, bounded, reporting progress as events.

The caller (the CLI) turns events into a display; nothing here prints. One host's
failure never stops the others: each host ends with its own `Outcome`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from infr.errors import InfrError
from infr.oplog import get_logger

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_MAX_WORKERS = 8

log = get_logger("parallel")


class EventKind(StrEnum):
    STARTED = "started"
    STEP = "step"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Event:
    """Progress of one host: started, a step message, then ok, failed or skipped."""

    host: str
    kind: EventKind
    message: str = ""


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """How one host ended: `status` is ok, failed or skipped."""

    status: EventKind
    value: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.status is EventKind.OK


Report = Callable[[str], None]


def run_parallel(
    items: Mapping[str, T],
    fn: Callable[[T, Report], R],
    *,
    max_workers: int = DEFAULT_MAX_WORKERS,
    skip: Collection[str] = (),
    on_event: Callable[[Event], None] | None = None,
) -> dict[str, Outcome[R]]:
    """Call `fn(item, report)` for every host name in `items`, at most `max_workers` at once.

    `report(message)` announces a step on that host. Hosts named in `skip` (marked
    down with -D) are not run and end as skipped. `on_event` is called from worker
    threads, but never concurrently, so it need not be thread-safe. Returns the
    outcomes in the order of `items`.
    """
    emit = _serialized(on_event)
    outcomes: dict[str, Outcome[R]] = {}
    for name in items:
        if name in skip:
            outcomes[name] = Outcome(EventKind.SKIPPED)
            emit(Event(name, EventKind.SKIPPED, "marked down"))
    todo = {name: item for name, item in items.items() if name not in skip}
    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="infr-host")
    try:
        futures = {name: pool.submit(_one, name, item, fn, emit) for name, item in todo.items()}
        outcomes.update((name, future.result()) for name, future in futures.items())
    finally:
        # On Ctrl-C, hosts not started yet must not start; running ones end by their timeouts.
        pool.shutdown(wait=True, cancel_futures=True)
    return {name: outcomes[name] for name in items}


def _serialized(on_event: Callable[[Event], None] | None) -> Callable[[Event], None]:
    lock = threading.Lock()

    def emit(event: Event) -> None:
        if on_event is not None:
            with lock:
                on_event(event)

    return emit


def _one(name: str, item: T, fn: Callable[[T, Report], R], emit: Callable[[Event], None]) -> Outcome[R]:
    emit(Event(name, EventKind.STARTED))
    try:
        value = fn(item, lambda message: emit(Event(name, EventKind.STEP, message)))
    except Exception as e:  # one host's failure, whatever it is, must not stop the others
        if isinstance(e, InfrError):
            message = str(e)
            log.warning("%s: failed: %s", name, message)
        else:
            message = f"internal error: {type(e).__name__}: {e}"
            log.exception("%s: %s", name, message)  # a bug: keep the traceback
        emit(Event(name, EventKind.FAILED, message))
        return Outcome(EventKind.FAILED, error=e)
    emit(Event(name, EventKind.OK))
    return Outcome(EventKind.OK, value=value)
