"""The backups feature: each host's side of its backup pairs, planned against the host.

A TO host pulls with its own key pair, made on it so that the private half never
travels; its FROM hosts need the public half in their backup user's authorized_keys.
That public half is read from TO while planning FROM (a read-only connection to TO,
once per plan), not recorded in state: TO's file is the only truth there is (a TO
reinstalled or restored makes or brings back its own), and no state schema has to
grow for it. A key not made yet leaves FROM's line as it is; TO's step makes it, and
the engine's next round (it plans again after applying) puts it on FROM.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from infr.backups import pairs
from infr.backups.btrbk import BackupSettings
from infr.backups.desired import desired_source, desired_target
from infr.backups.plan import NAME, decide_source, decide_target, read_source, read_target
from infr.connector import SSHConnection
from infr.engine import facts, fleet
from infr.engine.plan import Runner, Step
from infr.engine.run import Context
from infr.errors import RemoteError
from infr.state.model import HOST_READY, Host, Inventory

KeyReader = Callable[[Context, Host], str]


def read_key(ctx: Context, to: Host) -> str:
    """TO's backup public key; "" when it has none yet or cannot be asked now (marked
    down, not ready, unreachable: TO's own plan says so, and FROM keeps TO's line as it is)."""
    if to.name in ctx.session.down_hosts or to.status != HOST_READY:
        return ""
    public = f"{pairs.settings_for(ctx.session).ssh_identity}.pub"
    try:
        with SSHConnection.connect(fleet.target(ctx.session, to)) as conn:
            return facts.read_text(conn, ["cat", "--", public]).strip()
    except RemoteError:
        return ""


class TargetKeys:
    """TO hosts' backup public keys, each read once per plan (per Context) however many
    FROM hosts, planned in parallel, ask. A key not found is asked again in the next
    round: applying may have made it."""

    def __init__(self, read: KeyReader) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._plan: Context | None = None
        self._found: dict[str, str] = {}
        self._reading: dict[str, threading.Lock] = {}

    def get(self, ctx: Context, to: Host) -> str:
        with self._lock:
            if self._plan is not ctx:
                self._plan, self._found, self._reading = ctx, {}, {}
            found, reading = self._found, self._reading.setdefault(to.name, threading.Lock())
        with reading:
            if to.name not in found and (key := self._read(ctx, to)):
                found[to.name] = key
            return found.get(to.name, "")


class Backups:
    name = NAME

    def __init__(self, read: KeyReader = read_key) -> None:
        self.keys = TargetKeys(read)

    def manages(self, inv: Inventory, host: Host) -> bool:
        return any(host.name in b.pair for b in inv.backups)

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        inv, settings = ctx.inv, pairs.settings_for(ctx.session)
        steps = []
        target = desired_target(inv, host.name, settings)
        if target is not None:
            steps += decide_target(target, read_target(runner, target))
        source = desired_source(inv, host.name, settings)
        if source is not None:
            found = {to: self.keys.get(ctx, inv.hosts[to]) for to in source.tos.active}
            keys = {to: key for to, key in found.items() if key}
            steps += decide_source(source, read_source(runner, source, keys))
        return steps

    def touched(self, before: Inventory, after: Inventory) -> set[str]:
        return touched(before, after)


def touched(before: Inventory, after: Inventory) -> set[str]:
    """Both hosts of a pair added, stopped, restarted or removed; the TO hosts of a FROM
    host whose address, port, host key or set of LXCs changed; every TO when the mail
    settings did. (smtpPassword kept among the secrets, not in config, is not seen here.)"""
    pairs_before = {b.pair: b.status for b in before.backups}
    pairs_after = {b.pair: b.status for b in after.backups}
    if not pairs_before and not pairs_after:
        return set()
    found = {h for pair in pairs_before.keys() | pairs_after.keys()
             if pairs_before.get(pair) != pairs_after.get(pair) for h in pair}
    if BackupSettings.from_config(before.config) != BackupSettings.from_config(after.config):
        found |= {to for _, to in pairs_after}
    froms = {f for f, _ in pairs_after}
    changed = {f for f in froms if _pulled(before.hosts.get(f)) != _pulled(after.hosts.get(f))}
    changed |= _lxc_hosts_changed(before, after) & froms
    return found | {to for f, to in pairs_after if f in changed}


def _pulled(host: Host | None) -> tuple[str, int, str] | None:
    """What TO's btrbk.conf and known_hosts hold of a FROM host."""
    return None if host is None else (host.public_ip, host.ssh_port, host.host_key)


def _lxc_hosts_changed(before: Inventory, after: Inventory) -> set[str]:
    """Hosts that gained or lost an LXC (each is a subvolume TO pulls)."""
    def placed(inv: Inventory) -> Iterable[tuple[str, str]]:
        return ((name, lxc.host) for name, lxc in inv.lxcs.items())

    return {host for _, host in set(placed(before)) ^ set(placed(after))}


FEATURE = Backups()
