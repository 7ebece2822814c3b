"""The vnet feature: each ready host's WireGuard key, mesh files, unit and live peers.

Desired state is `infr.vnet.desired`'s (pure, from state): the config (no private key: that stays
on the host), the up script, the unit and the zones ruleset. Facts are those files,
the unit, and what WireGuard runs now (`live`): the live peers are compared too, so a
peer removed by hand with `wg set` shows although the config file is right. Applying
reuses infr.vnet.members: the key is made on the host and its public half recorded in state (the
engine then plans again, and every other member gets the new peer); files are checked
before they go live (`nft -c` for the zones); the unit's up script runs `wg syncconf`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infr.engine import facts
from infr.engine.decide import file_steps
from infr.engine.facts import FileFact, UnitFact
from infr.engine.plan import Runner, Step
from infr.engine.run import Context
from infr.engine.steps import Apply, FileSpec
from infr.state.model import Host, Inventory
from infr.state.session import Session
from infr.vnet import desired, live, members
from infr.vnet.live import Live

NAME = "vnet"


@dataclass(frozen=True)
class WantedPeer:
    endpoint_host: str  # the address part of its endpoint; "" for admins (they come to the hosts)
    allowed: frozenset[str]


@dataclass(frozen=True)
class Wanted:
    """What the host's WireGuard should be, besides its files."""

    key: str  # state's public key for the host ("" when state has none)
    port: int
    peers: Mapping[str, WantedPeer]  # public key -> peer


def desired_peers(inv: Inventory, host: Host, port: int) -> dict[str, WantedPeer]:
    """The peers the host's config lists: the other members, then the admins' machines."""
    wanted = {
        p["public_key"]: WantedPeer(p["endpoint"].rpartition(":")[0], frozenset(p["allowed"]))
        for p in desired.host_peers(inv, host, port)
    }
    wanted.update({a.public_key: WantedPeer("", frozenset({f"{a.vnet_ip}/32"})) for a in inv.peers.values()})
    return wanted


def _same(want: WantedPeer, have: desired.DumpPeer) -> bool:
    # Only the address of an endpoint: behind NAT the port a peer comes from is not its
    # own, and WireGuard follows a peer that roams (that is not drift).
    endpoint_ok = not want.endpoint_host or have.endpoint.rpartition(":")[0] == want.endpoint_host
    return endpoint_ok and set(have.allowed) == want.allowed


def live_drift(wanted: Wanted, found: Live) -> list[str]:
    """How the live interface differs from the config, for a person: [] when it does not."""
    missing = sum(key not in found.peers for key in wanted.peers)
    extra = sum(key not in wanted.peers for key in found.peers)
    stale = sum(key in found.peers and not _same(want, found.peers[key]) for key, want in wanted.peers.items())
    parts = [f"{missing} missing, {extra} extra"] if missing or extra else []
    parts += [f"{stale} out of date"] if stale else []
    parts += [f"listening on {found.port}, not {wanted.port}"] if found.port != wanted.port else []
    parts += ["the interface runs another key"] if found.interface_key != found.key else []
    return parts


def key_step(host: str, wanted_key: str, found: Live, learn: Apply) -> list[Step]:
    """Make the host's key pair there when it has none; record its public half when state's differs."""
    if found.key == live.NO_KEY:
        return [Step(NAME, host, f"generate the WireGuard key on {host}", run=learn)]
    if found.key == wanted_key:
        return []
    if found.key == live.UNREADABLE:
        why = "its key file could not be read"
    elif wanted_key:
        why = "state has another: was the host reinstalled?"
    else:
        why = "state has none"
    return [Step(NAME, host, f"record the WireGuard public key of {host} ({why})", run=learn)]


def unit_step(host: str, unit: UnitFact, found: Live, changed: bool, drift: Sequence[str]) -> list[Step]:
    """One step that (re)runs the unit, when files or the key changed, it is down, or peers drifted."""
    if not unit.active:
        what = f"start the vnet on {host}"
    elif changed:
        what = f"restart the vnet on {host}"
    elif not found.up:
        what = f"restart the vnet on {host} ({desired.INTERFACE} is gone)"
    elif drift:
        what = f"reload the live peers on {host} ({', '.join(drift)})"
    elif not unit.enabled:
        return [Step(NAME, host, f"enable the vnet on {host} at boot", run=_unit_runner(reload=False, restart=False))]
    else:
        return []
    return [Step(NAME, host, what, run=_unit_runner(reload=changed, restart=True))]


def _unit_runner(*, reload: bool, restart: bool) -> Apply:
    return lambda runner: members.run_unit(runner, reload=reload, restart=restart)


def decide(
    host: str,
    specs: Sequence[FileSpec],
    files: Mapping[str, FileFact | None],
    unit: UnitFact,
    found: Live,
    wanted: Wanted,
    learn: Apply,
) -> list[Step]:
    """Facts in, steps out (pure): the key, then the files, then (re)running the unit."""
    steps = key_step(host, wanted.key, found, learn)
    steps += file_steps(NAME, host, specs, files)
    return steps + unit_step(host, unit, found, bool(steps), live_drift(wanted, found))


def _learner(session: Session, name: str) -> Apply:
    def learn(runner: Runner) -> list[str]:
        key = members.host_public_key(runner)  # made there first when the host has none
        members.record_key(session, name, key)
        return [f"WireGuard public key {key}"]

    return learn


def _shared(inv: Inventory) -> tuple[dict[str, Any], ...]:
    """What every host's mesh files depend on alike (all members share one peer list)."""
    members = {h.name: (h.wg_public_key, h.vnet_ip, h.public_ip) for h in inv.hosts.values() if h.wg_public_key}
    lxcs = {c.name: (c.host, c.vnet_ip, c.zone) for c in inv.lxcs.values()}
    peers = {p.name: (p.public_key, p.vnet_ip) for p in inv.peers.values()}
    settings = {k: v for k, v in inv.config.items() if k.startswith("vnet")}
    return members, lxcs, peers, settings


def _own(host: Host) -> tuple[str, ...]:
    return host.vnet_ip, host.wg_public_key, host.status


class Vnet:
    name = NAME

    def manages(self, inv: Inventory, host: Host) -> bool:
        return True  # every ready host is in the mesh

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        inv = ctx.inv
        port = int(ctx.session.settings()["vnetListenPort"])
        specs = desired.host_files(inv, host, port)
        files = facts.read_files(runner, [s.path for s in specs])
        unit = facts.read_units(runner, [desired.UNIT_NAME])[desired.UNIT_NAME]
        wanted = Wanted(host.wg_public_key, port, desired_peers(inv, host, port))
        return decide(host.name, specs, files, unit, live.read(runner), wanted, _learner(ctx.session, host.name))

    def touched(self, before: Inventory, after: Inventory) -> set[str]:
        if _shared(before) != _shared(after):
            return set(after.hosts)
        return {n for n, h in after.hosts.items() if n not in before.hosts or _own(before.hosts[n]) != _own(h)}


FEATURE = Vnet()
