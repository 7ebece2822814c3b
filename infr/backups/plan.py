"""Backups' plan for one host: facts read in one command per kind, then pure decisions.

A host is TO of some pairs, FROM of others, or both; each side is read and decided on
its own. Each step carries out what `infr backup start/stop` does for its part
(infr.backups.pairs), so a pair recorded while a host was down, a timer disabled by
hand or a key line deleted is put right by `infr apply`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from infr.backups import btrbk, desired, pairs
from infr.backups.desired import SourceWant, TargetWant
from infr.engine import facts
from infr.engine.decide import UnitWant, command_step, file_steps, package_steps, unit_steps
from infr.engine.facts import FileFact, UnitFact
from infr.engine.plan import Runner, Step
from infr.engine.steps import Apply
from infr.errors import RemoteError

NAME = "backups"

# For each path: "y" when something is there, "n" when not.
_PRESENT = 'for p do if [ -e "$p" ]; then echo y; else echo n; fi; done'


@dataclass(frozen=True)
class TargetFacts:
    packages: set[str]
    files: Mapping[str, FileFact | None]
    units: Mapping[str, UnitFact]
    present: frozenset[str]  # which of the key and the backup directories exist


@dataclass(frozen=True)
class SourceFacts:
    user: bool  # the backup user exists
    files: Mapping[str, FileFact | None]
    present: frozenset[str]  # which snapshot directories exist
    keys: Mapping[str, str]  # TO host -> its backup public key; a TO with none (yet) is absent


# --- facts ----------------------------------------------------------------------------


def read_present(runner: Runner, paths: Sequence[str]) -> frozenset[str]:
    """Which of the paths exist (files or directories), in one command."""
    if not paths:
        return frozenset()
    result = runner.run(["sh", "-c", _PRESENT, "-", *paths], check=False)
    answers = result.text.split()
    if result.exit_status != 0 or len(answers) != len(paths):
        raise RemoteError(f"could not look for {len(paths)} paths: {result.stderr.decode(errors='replace').strip()}")
    return frozenset(path for path, answer in zip(paths, answers, strict=True) if answer == "y")


def target_probes(want: TargetWant) -> list[str]:
    """TO's key and, for each FROM host, its live and its archived backup directory."""
    dirs = [d for f in want.froms.every for d in (_live(want, f), pairs.archive_dir(f, want.settings))]
    return [want.settings.ssh_identity, *dirs]


def read_target(runner: Runner, want: TargetWant) -> TargetFacts:
    return TargetFacts(
        packages=facts.read_packages(runner, want.packages),
        files=facts.read_files(runner, [*(spec.path for spec in want.files), *want.unused]),
        units=facts.read_units(runner, [unit for unit, _ in desired.timers(enabled=True)]),
        present=read_present(runner, target_probes(want)),
    )


def read_source(runner: Runner, want: SourceWant, keys: Mapping[str, str]) -> SourceFacts:
    """FROM's facts; `keys` are its TO hosts' public keys (read from them: they live there)."""
    user = facts.read_text(runner, ["id", "-u", "--", want.settings.ssh_user]).strip()
    paths = [*(spec.path for spec in want.files), desired.authorized_keys_path(want.settings)]
    snapshots = [btrbk.snapshot_dir(to, want.settings) for to in want.tos.every]
    return SourceFacts(bool(user), facts.read_files(runner, paths), read_present(runner, snapshots), keys)


# --- TO -------------------------------------------------------------------------------


def decide_target(want: TargetWant, have: TargetFacts) -> list[Step]:
    """Packages, key, backup directories, files, timers; archived pairs' backups moved aside."""
    host, settings = want.host, want.settings
    steps = package_steps(NAME, host, want.packages, have.packages)
    has_key = settings.ssh_identity in have.present
    if want.pulls and not has_key:
        steps.append(Step(NAME, host, f"create the backup key on {host}", run=_make_key(want)))
    steps += _backup_dirs(want, have.present)
    steps += file_steps(NAME, host, want.files, have.files)
    steps += [command_step(NAME, host, f"remove {path}", ["rm", "-f", "--", path]) for path in want.unused
              if have.files.get(path) is not None]
    # Without a key TO's timer would only fail (and mail the admin): it starts in the round
    # after the key is made, the round in which the FROM hosts take the key in.
    timers = [UnitWant(unit, run) for unit, run in desired.timers(enabled=want.pulls) if has_key or not run]
    steps += unit_steps(NAME, host, timers, have.units)
    for f in want.froms.archived:
        if _live(want, f) in have.present:
            archived = pairs.archive_dir(f, settings)
            what = f"archive the backups of {f} (move {_live(want, f)} to {archived})"
            steps.append(Step(NAME, host, what, run=_archive(want, f)))
    return steps


def _live(want: TargetWant, from_host: str) -> str:
    return btrbk.backup_dir(from_host, want.settings)


def _backup_dirs(want: TargetWant, present: frozenset[str]) -> list[Step]:
    """A directory for each pulled host's backups: its archive moved back, else a new one."""
    steps = []
    for f in want.froms.active:
        live = _live(want, f)
        if live in present:
            continue
        if pairs.archive_dir(f, want.settings) in present:
            what = f"move the archived backups of {f} back to {live}"
            steps.append(Step(NAME, want.host, what, run=_unarchive(want, f)))
        else:
            steps.append(command_step(NAME, want.host, f"create {live}", ["mkdir", "-p", "--", live]))
    return steps


def _make_key(want: TargetWant) -> Apply:
    def run(runner: Runner) -> list[str]:
        pairs.ensure_key_pair(runner, want.host, want.settings)
        return [f"made the backup key {want.settings.ssh_identity}"]

    return run


def _archive(want: TargetWant, from_host: str) -> Apply:
    return lambda runner: pairs.archive(runner, want.host, from_host, want.settings)


def _unarchive(want: TargetWant, from_host: str) -> Apply:
    return lambda runner: pairs.unarchive(runner, want.host, from_host, want.settings)


# --- FROM -----------------------------------------------------------------------------


def decide_source(want: SourceWant, have: SourceFacts) -> list[Step]:
    """The user, filter and sudoers; each TO's line in authorized_keys; snapshot directories."""
    host, settings = want.host, want.settings
    steps = []
    if want.tos.active and not have.user:
        user = settings.ssh_user
        steps.append(Step(NAME, host, f"create user {user}", run=lambda r: pairs.ensure_system_user(r, settings)))
    steps += file_steps(NAME, host, want.files, have.files)
    steps += _authorized_keys(want, have)
    for to in want.tos.active:
        snapshots = btrbk.snapshot_dir(to, settings)
        if snapshots not in have.present:
            steps.append(command_step(NAME, host, f"create {snapshots}", ["mkdir", "-p", "--", snapshots]))
    for to in want.tos.archived:
        snapshots = btrbk.snapshot_dir(to, settings)
        if snapshots in have.present:
            what = f"delete the snapshots {to} took, in {snapshots}"
            steps.append(Step(NAME, host, what, run=_delete_snapshots(want, to)))
    return steps


def authorized_keys(want: SourceWant, current: str, keys: Mapping[str, str]) -> str:
    """The backup user's authorized_keys: a line for each pulling TO whose key is known (a
    TO without one yet keeps its line as it is), none for an archived pair's TO."""
    text = current
    for to in want.tos.active:
        if to in keys:
            text = desired.authorized_keys_text(text, to, btrbk.render_authorized_key(to, keys[to], want.settings))
    for to in want.tos.archived:
        text = desired.authorized_keys_text(text, to, None)
    return text


def _authorized_keys(want: SourceWant, have: SourceFacts) -> list[Step]:
    settings = want.settings
    found = have.files.get(desired.authorized_keys_path(settings))
    text = authorized_keys(want, found.content.decode(errors="replace") if found else "", have.keys)
    if found is None and not text:
        return []
    spec = desired.authorized_keys_spec(text, settings)
    writes = file_steps(NAME, want.host, [spec], have.files)
    return [replace(step, run=lambda r: pairs.write_authorized_keys(r, text, settings)) for step in writes]


def _delete_snapshots(want: SourceWant, to_host: str) -> Apply:
    return lambda runner: pairs.delete_snapshots(runner, to_host, want.settings)
