"""Plans as data: what would change on each host, and how each change ended.

The shape every remote feature shares, generalised from `dns/plan.py` (octoDNS's Plan
and pyinfra's "print changes, then execute"): a feature compares what a host should be
(pure, from state) with what it is (facts, read-only) and returns `Step`s. A step is a
description a person can read, a diff where it is a file, and the function that carries
it out. Building a plan never writes anything, anywhere; only `Step.run` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from infr.engine.steps import Runner


def _nothing(runner: Runner) -> list[str]:
    return []


@dataclass(frozen=True)
class Step:
    """One change a feature would make on one host.

    `description` reads as an action ("write /etc/haproxy/haproxy.cfg", "start the
    container web"); `diff` is a unified diff for a file (never a secret's content);
    `run` carries the step out on the host's connection and returns what it changed.
    """

    feature: str
    host: str
    description: str
    diff: str = ""
    run: Callable[[Runner], list[str]] = field(default=_nothing, compare=False, repr=False)

    def as_json(self) -> dict[str, str]:
        return {"feature": self.feature, "host": self.host, "step": self.description, "diff": self.diff}


@dataclass(frozen=True)
class HostPlan:
    """Every step for one host, in the order they run; `error` says why it could not be planned."""

    host: str
    steps: tuple[Step, ...] = ()
    error: str = ""
    skipped: str = ""  # why the host was left out (marked down with -D, not ready yet)

    @property
    def features(self) -> list[str]:
        return list(dict.fromkeys(step.feature for step in self.steps))


@dataclass(frozen=True)
class FleetPlan:
    """The plan of every host asked about, plus zone-wide lines (DNS) that belong to no host."""

    hosts: tuple[HostPlan, ...] = ()
    zone_steps: tuple[Step, ...] = ()
    zone_error: str = ""

    @property
    def steps(self) -> list[Step]:
        return [step for plan in self.hosts for step in plan.steps] + list(self.zone_steps)

    @property
    def errors(self) -> list[str]:
        found = [f"{plan.host}: {plan.error}" for plan in self.hosts if plan.error]
        return found + ([f"dns: {self.zone_error}"] if self.zone_error else [])

    @property
    def changes_anything(self) -> bool:
        return bool(self.steps)

    def exit_code(self) -> int:
        """Terraform's -detailed-exitcode: 0 nothing differs, 2 something does, 1 on error."""
        if self.errors:
            return 1
        return 2 if self.changes_anything else 0

    def as_json(self) -> dict[str, object]:
        return {
            "hosts": [
                {
                    "host": plan.host,
                    "error": plan.error or None,
                    "skipped": plan.skipped or None,
                    "steps": [step.as_json() for step in plan.steps],
                }
                for plan in self.hosts
            ],
            "dns": {"error": self.zone_error or None, "steps": [step.as_json() for step in self.zone_steps]},
            "changes": len(self.steps),
        }


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outcome:
    """How one step ended (borgmatic's per-repository result, one per step here)."""

    host: str
    feature: str
    step: str
    status: Status
    error: str = ""
    changed: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "host": self.host,
            "feature": self.feature,
            "step": self.step,
            "status": str(self.status),
            "error": self.error or None,
        }


def exit_code(outcomes: Iterable[Outcome]) -> int:
    """1 when any step failed, else 0: one summary sets the exit code."""
    return 1 if any(o.status is Status.FAILED for o in outcomes) else 0
