"""A Debian rootfs tarball for containers in the lab, where LXC's image server is out of reach.

`infr config set lxcImageSource PATH` points `infr lxcs add` at it. Built with debootstrap
from the lab's mirror once per recipe and kept in the lab cache (about 60 MB).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from infr.lab import proc
from infr.lab.image import locked
from infr.lab.mirror import configured_mirror

# What lab containers need: an init, sshd and sudo for manager, busybox for a small web
# server and openssl for a TLS one. minbase keeps the tarball small.
RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["systemd-sysv", "openssh-server", "sudo", "busybox", "iproute2", "openssl"],
    "version": 2,
}


def ensure_rootfs(cache: Path) -> Path:
    """The tarball for RECIPE from the configured mirror, built on first use."""
    recipe = {**RECIPE, "mirror": configured_mirror().url}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache / "lxc-rootfs"
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / f"{digest}.tar.gz"
    with locked(folder / f"{digest}.lock"):
        if not tarball.exists():
            _build(recipe, folder / f"{digest}.tmp", tarball)
    return tarball


def _build(recipe: dict, work: Path, tarball: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    log = work / "build.log"
    include = ",".join(recipe["include"])
    argv = ["debootstrap", f"--variant={recipe['variant']}", f"--include={include}", recipe["suite"], str(rootfs)]
    proc.run([*argv, recipe["mirror"]], log_file=log, timeout=1800)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        subprocess.run(["find", str(rootfs / leftover), "-type", "f", "-delete"], check=True)
    partial = tarball.with_suffix(".partial")
    proc.run(["tar", "-czf", str(partial), "--numeric-owner", "-C", str(rootfs), "."], log_file=log)
    partial.rename(tarball)
    shutil.rmtree(work)
