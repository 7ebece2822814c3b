"""The decisions most features share, pure: wanted files, packages and units against facts.

Each function takes what a host should hold and what it holds (from `facts`) and returns
the `Step`s between them; each step's `run` goes through `infr.engine.steps`, which checks a file
before it goes live and puts the old one back if its check fails.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from infr.engine import steps as engine_steps
from infr.engine.facts import FileFact, UnitFact
from infr.engine.plan import Runner, Step
from infr.engine.steps import FileSpec

MAX_DIFF_LINES = 200


@dataclass(frozen=True)
class UnitWant:
    """A systemd unit as it should be: enabled at boot and running, or neither."""

    name: str
    running: bool = True


def file_diff(path: str, old: bytes | None, new: bytes, *, secret: bool = False) -> str:
    """A unified diff of a file's text; a secret or binary file says only that it changes."""
    if secret:
        return f"(content of {path} not shown: it holds a secret)"
    try:
        old_lines = (old or b"").decode().splitlines(keepends=True)
        new_lines = new.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"(binary content of {path} changes)"
    lines = list(difflib.unified_diff(old_lines, new_lines, f"{path} (on the host)", f"{path} (from state)"))
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more lines\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def file_steps(
    feature: str, host: str, specs: Sequence[FileSpec], facts: Mapping[str, FileFact | None]
) -> list[Step]:
    """A step for each file whose content, owner or mode differs from its spec."""
    steps = []
    for spec in specs:
        have = facts.get(spec.path)
        meta = f"{spec.owner}:{spec.group}:{spec.mode:o}"
        if have is not None and have.content == spec.content and have.meta == meta:
            continue
        if have is None:
            what, diff = f"create {spec.path}", file_diff(spec.path, None, spec.content, secret=spec.secret)
        elif have.content == spec.content:
            what, diff = f"set {spec.path} to {meta} (is {have.meta})", ""
        else:
            what, diff = f"rewrite {spec.path}", file_diff(spec.path, have.content, spec.content, secret=spec.secret)
        steps.append(Step(feature, host, what, diff, _writer(spec)))
    return steps


def _writer(spec: FileSpec) -> engine_steps.Apply:
    return lambda runner: engine_steps.ensure_file(runner, spec)


def package_steps(feature: str, host: str, wanted: Sequence[str], installed: set[str]) -> list[Step]:
    missing = [p for p in wanted if p not in installed]
    if not missing:
        return []
    return [Step(feature, host, f"install {' '.join(missing)}", run=lambda r: engine_steps.ensure_packages(r, missing))]


def unit_steps(feature: str, host: str, wants: Sequence[UnitWant], facts: Mapping[str, UnitFact]) -> list[Step]:
    """Enable and start what should run (disable and stop what should not)."""
    steps = []
    for want in wants:
        have = facts.get(want.name, UnitFact(enabled=False, active=False, known=False))
        if want.running and not (have.enabled and have.active):
            verb = "start" if have.enabled else ("enable" if have.active else "enable and start")
            argv = ["systemctl", "enable", "--now", "--", want.name]
            steps.append(Step(feature, host, f"{verb} {want.name}", run=_runs(argv, f"{verb} {want.name}")))
        elif not want.running and (have.enabled or have.active):
            argv = ["systemctl", "disable", "--now", "--", want.name]
            steps.append(Step(feature, host, f"stop and disable {want.name}", run=_runs(argv, f"stopped {want.name}")))
    return steps


def _runs(argv: Sequence[str], done: str) -> engine_steps.Apply:
    def run(runner: Runner) -> list[str]:
        runner.run(list(argv))
        return [done]

    return run


def command_step(feature: str, host: str, description: str, argv: Sequence[str]) -> Step:
    """A step that runs one command (which must be safe to run again)."""
    return Step(feature, host, description, run=_runs(argv, description))
