#!/usr/bin/env python3
"""`infr plan` over 1, 4 and 16 hosts that are real sshds, each in a network namespace (issue 13).

    sudo .venv/bin/python bench/bench_plan_fleet.py            # about a minute
    sudo .venv/bin/python bench/bench_plan_fleet.py --reps 3   # quicker, noisier

Prints figures, not a test (see bench/README.md). Needs root (namespaces, veth pairs,
sshd) and openssh-server. Each host is a network namespace joined to this one by a veth
pair (198.18.213.0/24, a /30 each), running an sshd of tests/integration/sshd.py on its
own address, port 22. The state has those hosts ready, their host keys pinned, and the
plan engine's features as infr/reconcile.py registers them.

The sshds are not Debian VMs, so each plan lists many steps; that is expected: what is
measured is logging in, reading the facts and planning. To read as on a real host, the
sshd runs in a mount namespace of its own where:

* `manager`, the user infr logs in as, exists (uid 0, so `sudo -n` lets it through as
  it lets a real manager through by its sudoers entry);
* `systemctl` answers `systemctl show` as a booted host with those units loaded,
  enabled and active would (there is no systemd in a namespace to ask);

`dpkg-query`, `stat`, `base64` and the files read are this machine's own.

Measured as a user runs it: `infr -i KEY plan h1 ... hN -o json`, a child process, in
rounds that alternate N, against the same command with those hosts marked down (`-D`:
everything but the connections). Target: 16 hosts in at most 2x the time of one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_cli import Row, Series, print_table, run, timed_row  # noqa: E402

from tests.integration.sshd import SSHD, KeyPair, Sshd, make_keypair, start_sshd  # noqa: E402

SUBNET = "198.18.213"  # host i: .4i+1 on this side of its veth pair, .4i+2 in its namespace
COUNTS = (1, 4, 16)

# `systemctl show --property=... -- UNIT...` as a booted host answers for loaded,
# enabled, running units: one block per unit, blank lines between.
SYSTEMCTL = """#!/bin/sh
for arg do
    case $arg in show|-*) continue ;; esac
    printf 'Id=%s.service\\nLoadState=loaded\\nUnitFileState=enabled\\nActiveState=active\\n\\n' "$arg"
done
"""


@dataclass
class Namespace:
    name: str
    address: str
    sshd: Sshd | None = None


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def fake_files(directory: Path) -> dict[str, Path]:
    """What the sshds' mount namespaces see instead of this machine's: target -> file."""
    directory.mkdir()
    files = {
        "/etc/passwd": Path("/etc/passwd").read_text() + "manager:x:0:0:infr bench:/root:/bin/sh\n",
        # '*': no password, but not locked (with UsePAM no, sshd refuses locked accounts)
        "/etc/shadow": Path("/etc/shadow").read_text() + "manager:*:19000:0:99999:7:::\n",
        "/usr/bin/systemctl": SYSTEMCTL,
    }
    out = {}
    for target, text in files.items():
        path = directory / Path(target).name
        path.write_text(text)
        path.chmod(0o755 if target.endswith("systemctl") else 0o640 if "shadow" in target else 0o644)
        out[target] = path
    return out


def wrapper(namespace: str, fakes: dict[str, Path]) -> list[str]:
    """Run sshd in `namespace`, in a mount namespace of its own with `fakes` bound in;
    every step execs the next, so the PID start_sshd holds is sshd's."""
    binds = " && ".join(f"mount --bind {shlex.quote(str(f))} {shlex.quote(t)}" for t, f in fakes.items())
    script = f'{binds} && exec "$@"'
    return ["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation", "private"] + [
        "sh",
        "-c",
        script,
        "sshd-in-namespace",
    ]


@contextmanager
def namespaces(count: int, client: KeyPair, fakes: dict[str, Path]) -> Iterator[list[Namespace]]:
    """`count` namespaces, each with an sshd accepting `client`; all removed afterwards."""
    tag = os.getpid() % 10000
    made: list[Namespace] = []
    try:
        for i in range(count):
            ns = Namespace(f"infr-bench-{tag}-{i}", f"{SUBNET}.{4 * i + 2}")
            outer, inner = f"ib{tag}o{i}", f"ib{tag}i{i}"
            sh("ip", "netns", "add", ns.name)
            made.append(ns)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", inner, "netns", ns.name)
            sh("ip", "addr", "add", f"{SUBNET}.{4 * i + 1}/30", "dev", outer)
            sh("ip", "link", "set", outer, "up")
            for argv in (["addr", "add", f"{ns.address}/30", "dev", inner], ["link", "set", inner, "up"]):
                sh("ip", "-n", ns.name, *argv)
            sh("ip", "-n", ns.name, "link", "set", "lo", "up")
            ns.sshd = start_sshd([client.public], listen=ns.address, port=22, wrap=wrapper(ns.name, fakes))
        yield made
    finally:
        for ns in made:
            if ns.sshd is not None:
                ns.sshd.stop()
            # Deleting the namespace deletes the veth end in it, and with it the pair.
            subprocess.run(["ip", "netns", "del", ns.name], check=False, capture_output=True)


def make_state(root: Path, client: KeyPair, hosts: list[Namespace]) -> list[str]:
    """A state whose hosts are the namespaces' sshds, ready, host keys pinned."""
    from infr.state import history, schema
    from infr.state.config import init_state
    from infr.state.files import dump_toml
    from infr.state.model import Host

    settings = {
        "vnetNetwork": "10.8.0.0/16",
        "vnetPoolStart": "10.8.1.0",
        "dnsDomain": "example.com",
        "dnsPrefix": "infr",
        "vnetPrefix": "vnet",
        "adminEmail": "admin@example.com",
    }
    init_state(root, settings, client.public, "bench")
    names = []
    for i, ns in enumerate(hosts, start=1):
        assert ns.sshd is not None
        name = f"h{i}"
        added = "2024-01-01T00:00:00+00:00"
        host = Host(name, ns.address, f"10.8.1.{i}", status="ready", added=added, host_key=ns.sshd.host_key)
        (root / "hosts" / f"{name}.toml").write_bytes(dump_toml(schema.to_dict(host)))
        names.append(name)
    (root / "ipam.toml").write_bytes(dump_toml({"last": f"10.8.1.{len(hosts)}"}))
    history.commit(root, ["hosts", "ipam.toml"], f"bench: {len(hosts)} hosts in namespaces")
    return names


def check_plan(output: bytes, hosts: list[str]) -> int:
    """The steps of a plan that reached every host, or exit naming what went wrong."""
    plan = json.loads(output)
    planned = {h["host"]: h for h in plan["hosts"]}
    missing = [h for h in hosts if h not in planned]
    problems = [f"{h}: {p['error'] or p['skipped']}" for h, p in planned.items() if p["error"] or p["skipped"]]
    if missing or problems:
        sys.exit(f"bench: the plan did not read every host: missing {missing}\n" + "\n".join(problems))
    return int(plan["changes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="rounds (median reported)")
    parser.add_argument("--infr", default=str(Path(sys.executable).parent / "infr"), help="the infr to measure")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, veth pairs, sshd): run it with sudo")
    if not Path(SSHD).exists():
        sys.exit(f"bench: {SSHD} missing: install openssh-server")
    workdir = Path(tempfile.mkdtemp(prefix="infr-bench-fleet-"))
    dropped = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPROFILEIMPORTTIME", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFR_") and k not in dropped}
    env.update({"INFR_AUTHOR_NAME": "bench", "INFR_AUTHOR_EMAIL": "bench@example.com", "HOME": str(workdir)})
    os.environ.update({"INFR_AUTHOR_NAME": "bench", "INFR_AUTHOR_EMAIL": "bench@example.com"})
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        client = make_keypair(workdir / "id_ed25519")
        fakes = fake_files(workdir / "fake")
        print(f"starting {max(COUNTS)} sshds in network namespaces ...", flush=True)
        hosts = stack.enter_context(namespaces(max(COUNTS), client, fakes))
        root = workdir / "state"
        names = make_state(root, client, hosts)
        env["INFR_DIR"] = str(root)
        infr = [args.infr, "-i", str(client.private)]

        def plan(count: int, down: bool) -> list[str]:
            chosen = names[:count]
            marked = ["-D", ",".join(chosen)] if down else []
            return [*infr, *marked, "plan", *chosen, "-o", "json"]

        first = run(plan(max(COUNTS), False), env=env, check=False)
        steps = check_plan(first.stdout, names)
        print(f"a plan of {len(names)} hosts: {steps} steps; {args.reps} rounds ...", flush=True)
        real = {n: Series() for n in COUNTS}
        local = {n: Series() for n in COUNTS}
        for _ in range(args.reps):
            for n in COUNTS:
                local[n].runs.append(run(plan(n, True), env=env, check=False))
                result = run(plan(n, False), env=env, check=False)
                check_plan(result.stdout, names[:n])
                real[n].runs.append(result)
        rows = [Row("[infr plan, N hosts marked down with -D: everything but the connections]")]
        rows += [timed_row(f"N = {n}, hosts down", local[n], local[1], "", None) for n in COUNTS]
        rows.append(Row("[infr plan over N sshds, against N = 1]"))
        for n in COUNTS:
            ok = real[n].median <= 2 * real[1].median if n == 16 else None
            rows.append(timed_row(f"N = {n}", real[n], real[1], "<= 2x" if n == 16 else "", ok))
        rows.append(Row("[the connections alone: N sshds minus N hosts down, against N = 1]"))
        remote = {n: real[n].median - local[n].median for n in COUNTS}
        for n in COUNTS:
            rows.append(Row(f"N = {n}, connections", f"{remote[n] * 1000:.0f} ms", f"{remote[n] / remote[1]:.2f}"))
        machine = f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}"
        print(f"\n{machine}, medians of {args.reps}\n")
        print_table(rows)


if __name__ == "__main__":
    main()
