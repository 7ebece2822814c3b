"""The host base feature: what every ready host holds whatever else it runs.

Desired state is `infr.hosts.desired`'s (pure, from state); facts are the files, packages and the
ssh unit as the host has them; the plan is the difference, each file checked before it
goes live (`visudo -c` for sudoers, `sshd -t` for sshd's drop-in, with the old file back
if the check fails).
"""

from __future__ import annotations

from infr.engine import facts
from infr.engine.decide import UnitWant, file_steps, package_steps, unit_steps
from infr.engine.plan import Runner, Step
from infr.engine.run import Context
from infr.engine.steps import FileSpec
from infr.hosts import desired
from infr.state.model import Host, Inventory

NAME = "host"
# Settings the base files are rendered from: a change to one touches every host.
_SETTINGS = ("dnsDomain", "dnsPrefix", "vnetNetwork")


def desired_files(inv: Inventory, host: Host, settings: dict) -> list[FileSpec]:
    return [
        *desired.manager_files(inv),
        desired.sshd_file(),
        *desired.name_files(host.name, settings),
        *desired.network_files(host, settings),
    ]


class HostBase:
    name = NAME

    def manages(self, inv: Inventory, host: Host) -> bool:
        return True

    def plan(self, ctx: Context, host: Host, runner: Runner) -> list[Step]:
        specs = desired_files(ctx.inv, host, ctx.session.settings())
        installed = facts.read_packages(runner, desired.HOST_PACKAGES)
        steps = package_steps(NAME, host.name, desired.HOST_PACKAGES, installed)
        steps += file_steps(NAME, host.name, specs, facts.read_files(runner, [s.path for s in specs]))
        return steps + unit_steps(NAME, host.name, [UnitWant("ssh")], facts.read_units(runner, ["ssh"]))

    def touched(self, before: Inventory, after: Inventory) -> set[str]:
        if before.keys != after.keys or any(before.config.get(k) != after.config.get(k) for k in _SETTINGS):
            return set(after.hosts)
        return {name for name, host in after.hosts.items() if before.hosts.get(name) != host}


FEATURE = HostBase()
