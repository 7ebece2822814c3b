"""The containers feature: each LXC state puts on a host exists, runs, and is set up as infr left it.

Desired state is `desired.containers` (pure): the LXC config and the files `lxcs add` sets
up inside (resolv.conf, names, the manager account's admin keys and sudo, sshd's drop-in).
Facts: one `lxc-ls` listing of the host's containers and their states, their configs in one
read, and the files inside each running container in one read through lxc-attach. A stopped
container is started; its inside is planned in the next round, once it runs. A container
missing from its host is made by the code `infr lxcs add` runs (infr.lxcs.containers.make).

Containers state does not name are left alone, even those infr made: a clone of the state
that is behind (a teammate's new LXC not pulled yet) would otherwise destroy a container
it never knew of.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from infr.engine import facts
from infr.engine import steps as engine_steps
from infr.engine.container import Attached
from infr.engine.decide import file_steps
from infr.engine.facts import FileFact
from infr.engine.plan import Runner, Step
from infr.engine.run import Context
from infr.engine.steps import FileSpec
from infr.errors import RemoteError
from infr.lxcs import containers as lxcs_containers
from infr.lxcs.desired import Container, containers
from infr.state.model import LXC_READY, Host, Inventory, Lxc

NAME = "lxcs"
RUNNING, STOPPED = "RUNNING", "STOPPED"
# Settings the configs and the files inside are rendered from: a change touches every host with LXCs.
_SETTINGS = ("dnsDomain", "dnsPrefix", "vnetNetwork")
# NAME and STATE of every container under /var/lib/lxc, after a header line.
LIST = ("lxc-ls", "--fancy", "--fancy-format", "NAME,STATE")

Files = Mapping[str, FileFact | None]
# The step that makes a missing container (it needs the session: settings, the record).
Maker = Callable[[Lxc], engine_steps.Apply]


@dataclass(frozen=True)
class Facts:
    """What the host has: each container's state (as lxc-ls names it), the configs, and the
    files inside each running container."""

    states: Mapping[str, str]
    configs: Files
    inside: Mapping[str, Files]


def read_states(runner: Runner) -> dict[str, str]:
    """Container -> RUNNING, STOPPED, FROZEN..., for every container on the host."""
    states = {}
    for line in runner.run(list(LIST)).text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields != ["NAME", "STATE"]:
            states[fields[0]] = fields[1]
    return states


def read_facts(runner: Runner, wanted: list[Container]) -> Facts:
    states = read_states(runner)
    present = [c for c in wanted if c.lxc.name in states]
    configs = facts.read_files(runner, [c.config.path for c in present])
    inside = {c.lxc.name: _read_inside(runner, c) for c in present if states[c.lxc.name] == RUNNING}
    return Facts(states, configs, inside)


def _read_inside(runner: Runner, container: Container) -> dict[str, FileFact | None]:
    name = container.lxc.name
    try:
        return facts.read_files(Attached(runner, name), [spec.path for spec in container.inside])
    except RemoteError as e:
        raise RemoteError(f"inside the container {name}: {e.message}", e.hint) from None


def decide(host: str, wanted: list[Container], found: Facts, maker: Maker) -> list[Step]:
    """The steps from the host's containers to the wanted ones (pure, but for `maker`'s step)."""
    steps = []
    for container in wanted:
        lxc = container.lxc
        state = found.states.get(lxc.name)
        if state is None:
            what = f"create the container {lxc.name} ({lxc.distro} {lxc.release})"
            steps.append(Step(NAME, host, what, run=maker(lxc)))
            continue
        steps += _config_steps(host, container, found.configs, running=state == RUNNING)
        if state == STOPPED and not lxc.stopped:
            steps.append(Step(NAME, host, f"start the container {lxc.name}", run=_starter(lxc.name)))
        elif state == RUNNING and lxc.stopped:
            what = f"stop the container {lxc.name} (stopped with 'infr lxc {lxc.name} stop')"
            steps.append(Step(NAME, host, what, run=_stopper(lxc.name)))
            continue  # nothing to do inside a container about to stop
        # Another state (FROZEN, STARTING...) is someone's doing in progress: left as it is.
        steps += _inside_steps(host, container, found.inside.get(lxc.name))
    return steps


def _config_steps(host: str, container: Container, configs: Files, running: bool) -> list[Step]:
    """The config's step; LXC reads it at start, so a new one restarts a running container."""
    spec, name = container.config, container.lxc.name
    have = configs.get(spec.path)
    steps = file_steps(NAME, host, [spec], configs)
    if not running or (have is not None and have.content == spec.content):
        return steps
    run = _rewrite_and_restart(spec, name)
    return [replace(s, description=f"{s.description} and restart the running container {name}", run=run) for s in steps]


def _inside_steps(host: str, container: Container, inside: Files | None) -> list[Step]:
    """A step for each file inside that differs; none when the container does not run."""
    if inside is None:
        return []
    name = container.lxc.name
    return [
        replace(step, description=f"{step.description} in {name}", run=_writer_inside(name, spec))
        for spec in container.inside
        for step in file_steps(NAME, host, [spec], inside)
    ]


def _starter(name: str) -> engine_steps.Apply:
    return lambda runner: lxcs_containers.start(runner, name)


def _stopper(name: str) -> engine_steps.Apply:
    return lambda runner: [f"stopped {name}"] if lxcs_containers.stop(runner, name) else []


def _rewrite_and_restart(spec: FileSpec, name: str) -> engine_steps.Apply:
    def run(runner: engine_steps.Runner) -> list[str]:
        changes = engine_steps.ensure_file(runner, spec)
        if changes:
            changes += lxcs_containers.restart_if_running(runner, name)
        return changes

    return run


def _writer_inside(name: str, spec: FileSpec) -> engine_steps.Apply:
    return lambda runner: [f"{name}: {line}" for line in engine_steps.ensure_file(Attached(runner, name), spec)]


def _maker(ctx: Context) -> Maker:
    def maker(lxc: Lxc) -> engine_steps.Apply:
        # Recorded and ready already: an image that is not what state says is refused
        # (nothing left on the host), never recorded, and the record is kept.
        refusal = lxcs_containers.Refusal(record_image_os=False, cursor=None)
        return lambda runner: lxcs_containers.make(runner, ctx.session, lxc, ctx.report, refusal)

    return maker


def _shape(lxc: Lxc) -> tuple[str, ...]:
    """What a container's desired state depends on, of its record."""
    return (lxc.host, lxc.distro, lxc.release, lxc.vnet_ip, lxc.status)


def _host_shape(host: Host) -> tuple[str, ...]:
    return (host.vnet_ip, host.status)


class Lxcs:
    name = NAME

    def manages(self, inv: Inventory, host: Host) -> bool:
        return any(lxc.host == host.name and lxc.status == LXC_READY for lxc in inv.lxcs.values())

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        wanted = containers(ctx.inv, host, ctx.session.settings())
        return decide(host.name, wanted, read_facts(runner, wanted), _maker(ctx))

    def touched(self, before: Inventory, after: Inventory) -> set[str]:
        with_lxcs = {lxc.host for lxc in after.lxcs.values()}
        if before.keys != after.keys or any(before.config.get(k) != after.config.get(k) for k in _SETTINGS):
            return with_lxcs
        hosts = set()
        for name in before.lxcs.keys() | after.lxcs.keys():
            old, new = before.lxcs.get(name), after.lxcs.get(name)
            if old is None or new is None or _shape(old) != _shape(new):
                hosts |= {lxc.host for lxc in (old, new) if lxc is not None}
        # The host's vnet address is its containers' gateway and resolver; only a ready
        # host is planned at all.
        for name in with_lxcs - hosts:
            old_host, new_host = before.hosts.get(name), after.hosts.get(name)
            if old_host is None or new_host is None or _host_shape(old_host) != _host_shape(new_host):
                hosts.add(name)
        return hosts


FEATURE = Lxcs()
