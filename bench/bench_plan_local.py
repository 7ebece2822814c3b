#!/usr/bin/env python3
"""The local half of `infr plan` on 1,000 hosts and 10,000 LXCs (issue 13): what needs no host.

    .venv/bin/python bench/bench_plan_local.py             # about a minute
    .venv/bin/python bench/bench_plan_local.py --reps 3    # quicker, noisier
    .venv/bin/python bench/bench_plan_local.py --before /work/main/.venv/bin/infr  # and another infr

Prints figures, not a test (see bench/README.md). On a state generated as bench_cli.py
makes it (1,000 hosts, 10 LXCs each), it times, in this process:

* the desired state of every host, per feature of infr/reconcile.py that has a pure
  `desired` function listed in DESIRED below (the host base feature: its files);
* `reconcile.touched(before, after)` for a one-LXC edit, and for a settings edit that
  touches every host;

against a baseline of one pass over the inventory that groups the LXCs by host (the
least any per-host computation does); and, as child processes against `python -c pass`:

* `infr lxcs -o json` cold after an outside change (one LXC file rewritten, as a pull
  or an editor would: the cache no longer matches, so all 11,000 files are read and
  validated again), with no cache at all, and warm.

Targets: every host's desired state and touched() under 1 s; the cold `lxcs -o json`
under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_cli import Row, Run, Series, make_state, print_table, run, timed_row  # noqa: E402

from infr import reconcile  # noqa: E402
from infr.hosts import feature as host_feature  # noqa: E402
from infr.lxcs import desired as lxcs_desired  # noqa: E402
from infr.routing.deploy import desired_config  # noqa: E402
from infr.routing.haproxy import HaproxySettings  # noqa: E402
from infr.state.model import Host, Inventory  # noqa: E402
from infr.state.session import Session  # noqa: E402
from infr.vnet import desired as vnet_desired  # noqa: E402


# Feature name -> its pure desired state of one host; features registered without one
# here are named as not measured.
def _haproxy_config(inv: Inventory, host: Host, settings: Any) -> str:
    names = HaproxySettings(str(settings["dnsDomain"]), str(settings["dnsPrefix"]), str(settings["vnetPrefix"]))
    return desired_config(inv, host, names)


DESIRED: dict[str, Callable[[Inventory, Host, Any], object]] = {
    host_feature.NAME: host_feature.desired_files,
    "lxcs": lxcs_desired.containers,
    "routing": _haproxy_config,
    "vnet": lambda inv, host, settings: vnet_desired.host_files(inv, host, 51820),
}


def timed(fn: Callable[[], object], reps: int) -> Series:
    """In-process wall and CPU time of `fn`, `reps` times (Run's fields, no child)."""
    series = Series()
    for _ in range(reps):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        series.runs.append(Run(time.perf_counter() - wall, time.process_time() - cpu, 0.0, b"", b""))
    return series


def group_by_host(inv: Inventory) -> dict[str, list[str]]:
    """The baseline: one pass over the hosts and LXCs."""
    groups: dict[str, list[str]] = {name: [] for name in inv.hosts}
    for lxc in inv.lxcs.values():
        groups[lxc.host].append(lxc.name)
    return groups


def desired_everywhere(inv: Inventory, settings: Any, desired: Callable[[Inventory, Host, Any], object]) -> int:
    return sum(1 for host in inv.hosts.values() if desired(inv, host, settings) is not None)


def one_lxc_edited(inv: Inventory, name: str) -> Inventory:
    lxc = inv.lxcs[name]
    edited = replace(lxc, http="NONE" if lxc.http == "FORWARD" else "FORWARD")
    return replace(inv, lxcs={**inv.lxcs, name: edited})


def in_process_rows(root: Path, reps: int) -> list[Row]:
    session = Session(root)
    inv, settings = session.inventory(), session.settings()
    base = timed(lambda: group_by_host(inv), reps)
    rows = [
        Row("[in this process: one pass over the inventory is the baseline]"),
        timed_row("group LXCs by host (baseline)", base, base, "", None),
    ]
    for feature in reconcile.FEATURES:
        desired = DESIRED.get(feature.name)
        if desired is None:
            rows.append(Row(f"desired state, feature {feature.name}: not measured (no entry in DESIRED)"))
            continue
        series = timed(lambda d=desired: desired_everywhere(inv, settings, d), reps)  # type: ignore[misc]
        label = f"desired state of {len(inv.hosts)} hosts, feature {feature.name}"
        rows.append(timed_row(label, series, base, "< 1 s", series.median < 1.0, digits=1))
    after = one_lxc_edited(inv, "c5000")
    assert reconcile.touched(inv, after) is not None
    series = timed(lambda: reconcile.touched(inv, after), reps)
    rows.append(timed_row("reconcile.touched, one LXC edited", series, base, "< 1 s", series.median < 1.0, digits=1))
    everywhere = replace(inv, config={**inv.config, "dnsPrefix": "other"})
    touched = reconcile.touched(inv, everywhere)
    assert all(len(hosts) == len(inv.hosts) for hosts in touched.values()), touched
    series = timed(lambda: reconcile.touched(inv, everywhere), reps)
    rows.append(timed_row("reconcile.touched, dnsPrefix edited", series, base, "< 1 s", series.median < 1.0, digits=1))
    return rows


def child_rows(root: Path, reps: int, infrs: dict[str, str], env: dict[str, str], expected: int) -> list[Row]:
    """`infr lxcs -o json` of each infr (label -> path), in rounds; each cold run after its own outside change."""
    edited = root / "lxcs" / "c5000.toml"
    original = edited.read_bytes()
    modes = (b'http = "FORWARD"', b'http = "NONE"')
    swapped = original.replace(*modes) if modes[0] in original else original.replace(*reversed(modes))
    assert swapped != original
    versions = iter([original, swapped] * reps * len(infrs))
    base = Series()
    kinds = ("cold after an outside change", "no cache at all", "warm")
    series = {(label, kind): Series() for label in infrs for kind in kinds}
    for _ in range(reps):
        base.runs.append(run([sys.executable, "-c", "pass"], env=env))
        for label, infr in infrs.items():
            lxcs_json = [infr, "lxcs", "-o", "json"]
            run(lxcs_json, env=env)  # the cache, as any earlier command left it
            edited.write_bytes(next(versions))  # from outside infr: its cache no longer matches
            series[label, kinds[0]].runs.append(run(lxcs_json, env=env))
            series[label, kinds[2]].runs.append(run(lxcs_json, env=env))
            shutil.rmtree(root / ".cache", ignore_errors=True)
            series[label, kinds[1]].runs.append(run(lxcs_json, env=env))
    for label in infrs:
        assert len(json.loads(series[label, kinds[0]].runs[-1].stdout)) == expected, "infr lxcs missed LXCs"
    rows = [
        Row("[child processes: python -c pass is the baseline]"),
        timed_row("python -c pass (baseline)", base, base, "", None),
    ]
    for (label, kind), found in series.items():
        target, ok = ("< 1 s", found.median < 1.0) if kind != "warm" else ("", None)
        rows.append(timed_row(f"infr lxcs -o json, {kind}{label}", found, base, target, ok, 1))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions of each timing (median reported)")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--lxcs-per-host", type=int, default=10)
    parser.add_argument("--infr", default=str(Path(sys.executable).parent / "infr"), help="the infr to measure")
    parser.add_argument("--before", default=None, help="another infr (e.g. main's) to measure alongside")
    parser.add_argument("--keep", action="store_true", help="keep the generated state directory")
    args = parser.parse_args()
    if not Path(args.infr).exists():
        sys.exit(f"bench: no infr at {args.infr}; run with the venv's python or pass --infr")
    workdir = Path(tempfile.mkdtemp(prefix="infr-bench-plan-"))
    dropped = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPROFILEIMPORTTIME", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFR_") and k not in dropped}
    env.update({"INFR_AUTHOR_NAME": "bench", "INFR_AUTHOR_EMAIL": "bench@example.com", "HOME": str(workdir)})
    os.environ.update({"INFR_AUTHOR_NAME": "bench", "INFR_AUTHOR_EMAIL": "bench@example.com"})
    try:
        root = workdir / "state"
        total = args.hosts * args.lxcs_per_host
        print(f"generating {args.hosts} hosts and {total} LXCs ...", flush=True)
        make_state(root, args.hosts, args.lxcs_per_host)
        rows = in_process_rows(root, args.reps)
        infrs = {"": args.infr} if args.before is None else {" (this)": args.infr, " (--before)": args.before}
        rows += child_rows(root, args.reps, infrs, {**env, "INFR_DIR": str(root)}, total)
        machine = f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}"
        print(f"\n{machine}, medians of {args.reps}\n")
        print_table(rows)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
