#!/usr/bin/env python3
"""How fast dist/infr (./build.sh) starts, against the installed `infr`, in one run.

Prints medians of `infr --help` and `infr hosts` (3-host state, piped) for both, the
ratio (target: at most 1.5x, issue 2 item 8), and dist/infr's first run, when it
unpacks itself. It is a benchmark, not a test (see bench/README.md).

    ./build.sh && .venv/bin/python bench/bench_dist.py
    .venv/bin/python bench/bench_dist.py --compare   # also build and time pex and PyInstaller

dist/infr runs as on a machine without a virtualenv: by its shebang
(`/usr/bin/env python3.X`), with PATH=/usr/bin:/bin when that directory has the
interpreter (so not a pyenv shim), and a fresh SHIV_ROOT.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cli import Run, Series, make_state, ms, rounds, run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEX_VERSION = "2.105.2"
PYINSTALLER_VERSION = "6.22.3"


def shebang_python(executable: Path) -> str:
    """The interpreter named by a zipapp's '#!/usr/bin/env pythonX.Y' line."""
    first = executable.open("rb").readline().decode().strip()
    return first.split()[-1] if first.startswith("#!") else ""


def build_alternatives(workdir: Path, python: str) -> dict[str, Path]:
    """pex (zipapp and --venv --sh-boot) and PyInstaller --onefile builds of this checkout."""
    tools = workdir / "tools"
    subprocess.run([python, "-m", "venv", str(tools)], check=True)
    pip = [str(tools / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"pex=={PEX_VERSION}", f"pyinstaller=={PYINSTALLER_VERSION}", str(REPO)], check=True)
    shebang = f"/usr/bin/env python{sys.version_info.major}.{sys.version_info.minor}"
    out: dict[str, Path] = {}
    for name, extra in (("pex", []), ("pex --venv --sh-boot", ["--venv", "--sh-boot"])):
        target = workdir / name.replace(" ", "_")
        print(f"building {name} ...", flush=True)
        subprocess.run(
            [tools / "bin" / "pex", str(REPO), "-c", "infr", "-o", str(target), "--python-shebang", shebang, *extra],
            check=True,
            capture_output=True,
        )
        out[name] = target
    entry = workdir / "pyi_entry.py"
    entry.write_text("from infr.cli.main import main\nmain()\n")
    print("building PyInstaller --onefile ...", flush=True)
    subprocess.run(
        [tools / "bin" / "pyinstaller", "--onefile", "--name", "infr-pyi", "--distpath", str(workdir),
         "--workpath", str(workdir / "pyi-build"), "--specpath", str(workdir / "pyi-build"),
         "--collect-data", "infr", "--collect-submodules", "infr", "--log-level", "ERROR", str(entry)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    out["PyInstaller --onefile"] = workdir / "infr-pyi"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=REPO / "dist" / "infr", help="the built file (./build.sh)")
    parser.add_argument("--infr", default=str(Path(sys.executable).parent / "infr"), help="the installed infr")
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--compare", action="store_true", help="also build and time pex and PyInstaller")
    args = parser.parse_args()
    if not args.dist.exists():
        sys.exit(f"bench: no {args.dist}; run ./build.sh first")

    workdir = Path(tempfile.mkdtemp(prefix="infr-bench-dist-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INFR_", "SHIV_", "PEX_"))}
        for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPATH"):
            env.pop(k, None)
        env.update(INFR_AUTHOR_NAME="bench", INFR_AUTHOR_EMAIL="bench@example.com")
        os.environ.update(INFR_AUTHOR_NAME="bench", INFR_AUTHOR_EMAIL="bench@example.com")
        make_state(workdir / "state", 3, 0)
        interpreter = shebang_python(args.dist)
        dist_env = {
            **env,
            "INFR_DIR": str(workdir / "state"),
            "HOME": str(workdir / "home"),
            "SHIV_ROOT": str(workdir / "shiv"),
            "PEX_ROOT": str(workdir / "pex"),
        }
        if interpreter and Path("/usr/bin", interpreter).exists():
            dist_env["PATH"] = "/usr/bin:/bin"
        resolved = shutil.which(interpreter, path=dist_env.get("PATH")) or "?"
        installed_env = {**env, "INFR_DIR": str(workdir / "state")}

        candidates: dict[str, Path] = {"dist/infr (shiv)": args.dist}
        if args.compare:
            candidates.update(build_alternatives(workdir, sys.executable))

        first: dict[str, float] = {}
        for name, path in candidates.items():
            start = time.perf_counter()
            result = run([str(path), "hosts"], env=dist_env)
            first[name] = time.perf_counter() - start
            assert "h3" in result.stdout.decode(), result.stdout

        commands: dict[str, Callable[[], Run]] = {}
        for what in ("--help", "hosts"):
            commands[f"installed {what}"] = partial(run, [args.infr, what], env=installed_env)
            for name, path in candidates.items():
                commands[f"{name} {what}"] = partial(run, [str(path), what], env=dist_env)
        for command in commands.values():
            command()
        print(f"{args.reps} rounds ...", flush=True)
        series: dict[str, Series] = rounds(commands, args.reps)

        print()
        print(f"installed infr: {args.infr}")
        print(f"dist/infr: {args.dist} ({args.dist.stat().st_size / 1e6:.1f} MB), runs with {resolved}")
        head = ("", "infr --help", "ratio", "infr hosts", "ratio", "first run", "within 1.5x")
        table = [head]
        table.append(("installed infr", ms(series["installed --help"].median), "1.00",
                      ms(series["installed hosts"].median), "1.00", "", ""))  # fmt: skip
        for name in candidates:
            help_ratio = series[f"{name} --help"].median / series["installed --help"].median
            hosts_ratio = series[f"{name} hosts"].median / series["installed hosts"].median
            ok = "PASS" if max(help_ratio, hosts_ratio) <= 1.5 else "MISS"
            help_ms, hosts_ms = ms(series[f"{name} --help"].median), ms(series[f"{name} hosts"].median)
            table.append(
                (name, help_ms, f"{help_ratio:.2f}", hosts_ms, f"{hosts_ratio:.2f}", f"{first[name]:.2f} s", ok)
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for i, row in enumerate(table):
            print(
                "  ".join(
                    c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
            if i == 0:
                print("  ".join("-" * w for w in widths))
        print(f"\nmedians of {args.reps} runs after each file's first run (wall time; the first run unpacks).")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
