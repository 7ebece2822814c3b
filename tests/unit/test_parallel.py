"""run_parallel: bounded, isolates failures, skips hosts marked down, serializes events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from infr.connector import Event, EventKind, run_parallel
from infr.errors import RemoteError

Report = Callable[[str], None]


def test_outcomes_in_input_order_with_values() -> None:
    items = {f"h{i}": i for i in range(5)}
    outcomes = run_parallel(items, lambda n, report: n * 10, max_workers=3)
    assert list(outcomes) == list(items)
    assert [o.value for o in outcomes.values()] == [0, 10, 20, 30, 40]
    assert all(o.ok and o.error is None for o in outcomes.values())


def test_concurrency_is_bounded_and_used() -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def work(_: int, report: Report) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    run_parallel({f"h{i}": i for i in range(8)}, work, max_workers=3)
    assert peak == 3


def test_one_failure_does_not_stop_the_others() -> None:
    def work(name: str, report: Report) -> str:
        if name == "bad":
            raise RemoteError("bad: `false` exited with status 1")
        if name == "bug":
            raise KeyError("oops")
        return name

    events: list[Event] = []
    names = ["a", "bad", "bug", "z"]
    outcomes = run_parallel({n: n for n in names}, work, on_event=events.append)
    assert [o.status for o in outcomes.values()] == [
        EventKind.OK,
        EventKind.FAILED,
        EventKind.FAILED,
        EventKind.OK,
    ]
    assert isinstance(outcomes["bad"].error, RemoteError)
    failed = {e.host: e.message for e in events if e.kind is EventKind.FAILED}
    assert failed == {
        "bad": "bad: `false` exited with status 1",
        "bug": "internal error: KeyError: 'oops'",
    }


def test_hosts_marked_down_are_skipped_and_never_touched() -> None:
    touched: list[str] = []
    events: list[Event] = []

    def work(name: str, report: Report) -> None:
        touched.append(name)

    outcomes = run_parallel({"h1": "h1", "h2": "h2", "h3": "h3"}, work, skip={"h2"}, on_event=events.append)
    assert sorted(touched) == ["h1", "h3"]
    assert outcomes["h2"].status is EventKind.SKIPPED and not outcomes["h2"].ok
    assert [e for e in events if e.host == "h2"] == [Event("h2", EventKind.SKIPPED, "marked down")]


def test_events_per_host_in_order_and_never_concurrent() -> None:
    inside = threading.Lock()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        assert inside.acquire(blocking=False), "on_event called concurrently"
        try:
            time.sleep(0.001)  # widen the window a race would need
            events.append(event)
        finally:
            inside.release()

    def work(name: str, report: Report) -> None:
        for step in ("one", "two"):
            report(step)

    run_parallel({f"h{i}": f"h{i}" for i in range(6)}, work, max_workers=6, on_event=on_event)
    for host in (f"h{i}" for i in range(6)):
        assert [(e.kind, e.message) for e in events if e.host == host] == [
            (EventKind.STARTED, ""),
            (EventKind.STEP, "one"),
            (EventKind.STEP, "two"),
            (EventKind.OK, ""),
        ]


def test_interrupt_stops_hosts_not_yet_started() -> None:
    started: list[int] = []

    def work(n: int, report: Report) -> None:
        started.append(n)
        if n == 0:
            raise KeyboardInterrupt  # stands in for Ctrl-C reaching the main thread
        time.sleep(0.05)

    with pytest.raises(KeyboardInterrupt):
        run_parallel({f"h{i}": i for i in range(20)}, work, max_workers=1)
    # The one worker may already have taken the next host before the cancel lands.
    assert started[0] == 0 and len(started) <= 2
