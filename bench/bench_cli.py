#!/usr/bin/env python3
"""Benchmark the installed `infr` against `python -c pass`, in one run, on this machine.

Prints a table of medians with ratios against a baseline measured in the same run,
the targets of issue 2 item 7, and PASS/MISS. It is a benchmark, not a test: it
always exits 0 unless infr itself fails (see bench/README.md).

    .venv/bin/python bench/bench_cli.py            # about a minute
    .venv/bin/python bench/bench_cli.py --reps 5   # quicker, noisier

Run it with the venv's python: the baseline is that interpreter starting and doing
nothing, and `infr` is the console script next to it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

HEAVY = ("paramiko", "requests", "jinja2", "tomlkit", "tldextract")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkHr0v3eW1nMbYx3c5mHk7xQ1mQjD1d7yJb0d4bEGVh bench@infr"


# ---- running a child and measuring it ----------------------------------------------


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system: less disturbed than wall time by other jobs on the machine
    max_rss_mb: float
    stdout: bytes
    stderr: bytes


def run(argv: Sequence[str], env: dict[str, str] | None = None, check: bool = True) -> Run:
    """Run argv with stdout and stderr piped; wall time and this child's own peak RSS.

    os.wait4 gives the rusage of exactly this child (RUSAGE_CHILDREN would give the
    maximum over every child this benchmark ever waited for).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    chunks: dict[str, bytes] = {}

    def drain(name: str, stream: object) -> None:
        chunks[name] = stream.read()  # type: ignore[attr-defined]

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    cpu = usage.ru_utime + usage.ru_stime
    result = Run(elapsed, cpu, usage.ru_maxrss / 1024, chunks["out"], chunks["err"])
    if check and proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} exited {proc.returncode}:\n{result.stderr.decode(errors='replace')}")
    return result


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu_seconds for r in self.runs)

    @property
    def spread(self) -> str:
        times = sorted(r.seconds for r in self.runs)
        return f"{times[0] * 1000:.0f}-{times[-1] * 1000:.0f} ms"

    @property
    def peak_mb(self) -> float:
        return max(r.max_rss_mb for r in self.runs)


def rounds(commands: dict[str, Callable[[], Run]], reps: int) -> dict[str, Series]:
    """Run every command once per round, `reps` rounds, so drift hits all of them alike."""
    series = {name: Series() for name in commands}
    for _ in range(reps):
        for name, command in commands.items():
            series[name].runs.append(command())
    return series


# ---- state generation ----------------------------------------------------------------


def make_state(root: Path, hosts: int, lxcs_per_host: int) -> float:
    """A state directory with `hosts` hosts and `lxcs_per_host` LXCs on each, in one git commit.

    Written directly (infr has no offline `hosts add`, and 11,000 commands would take
    hours): init through infr itself, then the TOML files in infr's own format.
    """
    from infr.state import history, schema
    from infr.state.config import init_state
    from infr.state.files import dump_toml
    from infr.state.model import Host, Lxc, TcpForward

    start = time.perf_counter()
    settings = {
        "vnetNetwork": "10.8.0.0/16",
        "vnetPoolStart": "10.8.1.0",
        "dnsDomain": "example.com",
        "dnsPrefix": "infr",
        "vnetPrefix": "vnet",
        "adminEmail": "admin@example.com",
    }
    init_state(root, settings, KEY, "bench")

    def addresses() -> object:
        # As IPAM hands them out: from the pool start, skipping .0 and .255.
        address = int(ipaddress.IPv4Address("10.8.1.0"))
        while True:
            address += 1
            if address & 0xFF not in (0, 255):
                yield str(ipaddress.IPv4Address(address))

    pool = addresses()
    last = ""
    n = 0
    for h in range(1, hosts + 1):
        host_name = f"h{h}"
        last = next(pool)  # type: ignore[call-overload]
        # The benchmarking range (RFC 2544): state refuses loopback addresses for hosts, and
        # no command measured here reaches a host (-D and --no-apply keep the change local).
        public = ipaddress.IPv4Address("198.19.0.0") + h
        host = Host(host_name, str(public), last, status="ready", added="2024-01-01T00:00:00+00:00", ssh_port=22)
        (root / "hosts" / f"{host_name}.toml").write_bytes(dump_toml(schema.to_dict(host)))
        for i in range(lxcs_per_host):
            n += 1
            last = next(pool)  # type: ignore[call-overload]
            lxc = Lxc(
                f"c{n}",
                host_name,
                "debian",
                "12",
                last,
                added="2024-01-01T00:00:00+00:00",
                http="FORWARD" if n % 2 else "NONE",
                https="TERMINATE" if n % 3 else "FORWARD",
                aliases=[f"www.site{n}.example.org"] if n % 5 == 0 else [],
                tcp_forwards=[TcpForward(2200 + i, 22)] if n % 4 == 0 else [],
            )
            (root / "lxcs" / f"c{n}.toml").write_bytes(dump_toml(schema.to_dict(lxc)))
    (root / "ipam.toml").write_bytes(dump_toml({"last": last}))
    history.commit(root, ["hosts", "lxcs", "ipam.toml"], f"bench: {hosts} hosts, {hosts * lxcs_per_host} LXCs")
    return time.perf_counter() - start


def regular_install(workdir: Path, python: str) -> Path | None:
    """`infr` installed as `pip install .` would (not editable), in a scratch venv.

    An editable install adds a finder to every start of the venv's python (pathlib, re,
    urllib: ~15 ms on this machine), which inflates the baseline and flatters the ratios.
    The scratch venv gets infr's wheel and reads the dependencies from the dev venv's
    site-packages through a .pth (whose own .pth files, the editable finder among them,
    are not run). None, with the reason printed, when the wheel cannot be built.
    """
    repo = Path(__file__).resolve().parents[1]
    wheels, venv = workdir / "wheel", workdir / "regular"
    build = subprocess.run(
        [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(repo)], capture_output=True, text=True
    )
    if build.returncode != 0:
        print(f"bench: no regular-install figures: building the wheel failed: {build.stderr.strip()[-300:]}")
        return None
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    wheel = next(wheels.glob("infr-*.whl"))
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True)
    deps = subprocess.run(
        [python, "-c", "import click, os; print(os.path.dirname(os.path.dirname(click.__file__)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "_bench_deps.pth").write_text(deps + "\n")
    return venv / "bin"


def drop_cache(root: Path) -> None:
    shutil.rmtree(root / ".cache", ignore_errors=True)


# ---- imports -------------------------------------------------------------------------


def imported_modules(argv: Sequence[str], env: dict[str, str]) -> list[tuple[str, int]]:
    """(module, cumulative microseconds) for every module argv imports, via -X importtime."""
    result = run(argv, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    modules = []
    for line in result.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line[len("import time:") :].split("|")
            modules.append((name.strip(), int(cumulative)))
    return modules


# ---- report --------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    value: str = ""
    ratio: str = ""
    cpu: str = ""
    target: str = ""
    ok: bool | None = None  # None: informational, no target

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "MISS")


def timed_row(label: str, series: Series, base: Series, target: str, ok: bool | None, digits: int = 2) -> Row:
    """Wall-time median and its ratio to the baseline's; CPU (user+sys) median and ratio alongside."""
    return Row(
        label,
        ms(series.median),
        f"{series.median / base.median:.{digits}f}",
        f"{ms(series.cpu)} ({series.cpu / base.cpu:.{digits}f}x)",
        target,
        ok,
    )


def print_table(rows: list[Row]) -> None:
    head = ("figure", "median wall", "x baseline", "median cpu (x baseline)", "target", "result")
    cells = [head] + [
        (r.figure, r.value, r.ratio, r.cpu, r.target, "" if r.figure[0] == "[" else r.verdict) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for i, c in enumerate(cells):
        print(
            "  ".join(
                v.ljust(w) if j == 0 else v.rjust(w) for j, (v, w) in enumerate(zip(c, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=11, help="repetitions of each small timing (median reported)")
    parser.add_argument("--big-reps", type=int, default=5, help="repetitions on the 1,000-host state")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--lxcs-per-host", type=int, default=10)
    parser.add_argument("--infr", default=str(Path(sys.executable).parent / "infr"), help="the infr to measure")
    parser.add_argument(
        "--no-regular", action="store_true", help="skip the figures of a regular (non-editable) install"
    )
    parser.add_argument("--small-only", action="store_true", help="only the startup figures (3-host state)")
    parser.add_argument("--keep", action="store_true", help="keep the generated state directories")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    infr = args.infr
    if not Path(infr).exists():
        sys.exit(f"bench: no infr at {infr}; run with the venv's python or pass --infr")
    python = sys.executable
    workdir = Path(tempfile.mkdtemp(prefix="infr-bench-"))
    # The children run as a user's shell would run them: no INFR_* settings, and bytecode
    # cached (a session may export PYTHONDONTWRITEBYTECODE, which makes every run
    # compile infr from source: 20-40 ms more) and stdout buffered.
    dropped = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPROFILEIMPORTTIME", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFR_") and k not in dropped}
    env.update({"INFR_AUTHOR_NAME": "bench", "INFR_AUTHOR_EMAIL": "bench@example.com", "HOME": str(workdir)})
    os.environ.update({"INFR_AUTHOR_NAME": "bench", "INFR_AUTHOR_EMAIL": "bench@example.com"})
    rows: list[Row] = []
    figures: dict[str, object] = {"python": python, "infr": infr, "reps": args.reps, "big_reps": args.big_reps}

    try:
        print(f"python {sys.version.split()[0]} at {python}; infr at {infr}; {os.cpu_count()} CPUs", flush=True)

        # -- small state: startup ------------------------------------------------------
        small = workdir / "small"
        make_state(small, 3, 0)
        baseline = [python, "-c", "pass"]
        small_env = {**env, "INFR_DIR": str(small)}
        editable = any(Path(sys.prefix).glob("lib/python3*/site-packages/__editable__*infr*.pth"))
        venv_label = "editable install" if editable else "this venv"
        installs = [(venv_label, python, infr)]
        regular = regular_install(workdir, python) if editable and not args.no_regular else None
        if regular is not None:
            installs.append(("regular install", str(regular / "python"), str(regular / "infr")))
        for label, py, exe in installs:
            commands: dict[str, Callable[[], Run]] = {
                "baseline": partial(run, [py, "-c", "pass"], env=env),
                "click": partial(run, [py, "-c", "import click"], env=env),
                "help": partial(run, [exe, "--help"], env=small_env),
                "hosts": partial(run, [exe, "hosts"], env=small_env),
            }
            for command in commands.values():  # warm the page cache, bytecode and infr's cache
                command()
            hosts_out = commands["hosts"]().stdout.decode()
            assert hosts_out.count("\n") == 5 and "h3" in hosts_out, hosts_out
            print(
                f"small state, {label}: {args.reps} rounds of python -c pass / import click / --help / hosts",
                flush=True,
            )
            small_series = rounds(commands, args.reps)
            base_series = small_series["baseline"]
            base = base_series.median
            rows.append(Row(f"[{label}: {py}]"))
            rows.append(timed_row("python -c pass (baseline)", base_series, base_series, "", None))
            rows.append(timed_row("python -c 'import click' (floor)", small_series["click"], base_series, "", None))
            for name, text in (("help", "infr --help"), ("hosts", "infr hosts (3 hosts, piped)")):
                ratio = small_series[name].median / base
                rows.append(timed_row(text, small_series[name], base_series, "<= 3x", ratio <= 3))
            figures[f"small ({label})"] = {
                k: {"median_s": s.median, "cpu_s": s.cpu, "spread": s.spread} for k, s in small_series.items()
            }

        # Heavy imports on the fast paths.
        heavy_found: dict[str, list[str]] = {}
        for name, argv in (("help", [infr, "--help"]), ("hosts", [infr, "hosts"])):
            modules = imported_modules(argv, small_env)
            tops = {m.split(".")[0] for m, _ in modules}
            heavy_found[name] = sorted(t for t in HEAVY if t in tops)
            figures[f"imports_{name}"] = {"count": len(modules), "heavy": heavy_found[name]}
        for name, label in (("help", "infr --help"), ("hosts", "infr hosts")):
            found = heavy_found[name]
            rows.append(
                Row(f"{label}: imports of {'/'.join(HEAVY)}", ", ".join(found) or "none", target="none", ok=not found)
            )

        # -- big state -----------------------------------------------------------------
        if args.small_only:
            print()
            print_table(rows)
            return
        big = workdir / "big"
        total = args.hosts * args.lxcs_per_host
        print(f"big state: generating {args.hosts} hosts and {total} LXCs ...", flush=True)
        gen_seconds = make_state(big, args.hosts, args.lxcs_per_host)
        figures["generate_s"] = gen_seconds
        big_env = {**env, "INFR_DIR": str(big)}
        lxcs_json = [infr, "lxcs", "-o", "json"]
        modes = iter(["FORWARD", "NONE"] * 10_000)

        # The change is measured as a state change: recorded, committed, not applied to a
        # server (there is none). --no-apply where infr applies routing changes at once,
        # and -D marks the LXC's host down, so no command here ever opens a connection.
        no_apply = ["--no-apply"] if "--no-apply" in run([infr, "lxc", "--help"], env=big_env).stdout.decode() else []
        change_argv = [infr, "-D", "h500", "lxc", *no_apply, "c5000", "http"]
        figures["change_argv"] = " ".join(["infr", *change_argv[1:], "FORWARD|NONE"])

        def toggle() -> Run:
            return run([*change_argv, next(modes)], env=big_env)

        # The very first command after generation: infr's cache is rebuilt from 11,000 TOML files.
        first = run(lxcs_json, env=big_env)
        listed = json.loads(first.stdout)
        assert len(listed) == total and listed[0]["name"] == "c1", len(listed)
        print(f"big state: {args.big_reps} rounds, cold (cache removed) and warm ...", flush=True)
        cold_list, cold_change, warm_list, warm_change, big_base = Series(), Series(), Series(), Series(), Series()
        for _ in range(args.big_reps):
            big_base.runs.append(run(baseline, env=env))
            drop_cache(big)
            cold_list.runs.append(run(lxcs_json, env=big_env))
            warm_list.runs.append(run(lxcs_json, env=big_env))
            drop_cache(big)
            cold_change.runs.append(toggle())
            warm_change.runs.append(toggle())
        # Warm runs after a warm run (the common case: nothing else touched the state).
        for _ in range(args.big_reps):
            warm_list.runs.append(run(lxcs_json, env=big_env))
            warm_change.runs.append(toggle())
        shown = run([infr, "lxc", "c5000", "show", "-o", "json"], env=big_env)
        assert json.loads(shown.stdout)["http"] in ("FORWARD", "NONE")
        history_len = len(run(["git", "-C", str(big), "log", "--oneline"]).stdout.splitlines())
        assert history_len == 2 + 2 * args.big_reps + args.big_reps, history_len  # init, generate, changes

        big_b = big_base.median
        rows.append(timed_row("python -c pass (baseline, big-state rounds)", big_base, big_base, "", None, 1))
        for series, label, limit in (
            (warm_list, f"infr lxcs -o json ({total} LXCs, warm)", 1.0),
            (cold_list, f"infr lxcs -o json ({total} LXCs, cold)", 1.0),
            (warm_change, "infr lxc c5000 http FORWARD|NONE (warm)", 0.5),
            (cold_change, "infr lxc c5000 http FORWARD|NONE (cold)", 0.5),
        ):
            rows.append(timed_row(label, series, big_base, f"< {limit:g} s", series.median < limit, 1))
        peak = max(s.peak_mb for s in (cold_list, warm_list, cold_change, warm_change))
        for series, label in (
            (cold_list, "lxcs -o json, cold"),
            (warm_list, "lxcs -o json, warm"),
            (cold_change, "lxc http, cold"),
            (warm_change, "lxc http, warm"),
        ):
            rows.append(
                Row(f"peak RSS: {label}", f"{series.peak_mb:.0f} MB", target="< 200 MB", ok=series.peak_mb < 200)
            )
        figures["big"] = {
            "baseline_s": big_b,
            "first_run_s": first.seconds,
            "warm_list_s": warm_list.median,
            "cold_list_s": cold_list.median,
            "warm_change_s": warm_change.median,
            "cold_change_s": cold_change.median,
            "warm_list_cpu_s": warm_list.cpu,
            "cold_list_cpu_s": cold_list.cpu,
            "warm_change_cpu_s": warm_change.cpu,
            "cold_change_cpu_s": cold_change.cpu,
            "peak_rss_mb": peak,
            "json_bytes": len(first.stdout),
        }

        print()
        print_table(rows)
        print()
        print(
            f"medians of {args.reps} runs (small state) and {args.big_reps} cold / {2 * args.big_reps} warm (big) runs."
        )
        print(
            f"big state: generated in {gen_seconds:.1f} s; the first command after it (cache rebuild) took "
            f"{ms(first.seconds)}; `-o json` prints {len(first.stdout) / 1e6:.1f} MB."
        )
        print(f"the change measured: {figures['change_argv']} (state only: recorded and committed, not applied)")
        for name in ("help", "hosts"):
            print(f"infr {name}: {figures[f'imports_{name}']['count']} modules imported")  # type: ignore[index]
        if args.json:
            figures["rows"] = [vars(r) | {"verdict": r.verdict} for r in rows]
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        if args.keep:
            print(f"state directories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
