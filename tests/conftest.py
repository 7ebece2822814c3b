"""Fixtures and helpers shared by every test suite.

Fixtures
    admin_key     an ed25519 public key file (ssh-keygen), comment alice@laptop; the
                  private key beside it (make_key() makes more)
    state_dir     an initialized state directory (example.com, 10.8.0.0/16 from 10.8.1.0)
                  whose only admin key is admin_key
    state_template(name, seed)  a state seeded once per session, for clone_state()
    hypothesis    the "infr" profile (no deadline) is loaded for every suite
    (autouse)     git author env for the state's commits; INFR_DIR pointed at a path
                  that does not exist, so no test can touch ~/.infr by accident;
                  XDG_CONFIG_HOME a fresh directory (the identity -i remembers);
                  secret env variables cleared

Helpers (import them: ``from tests.conftest import seed_host, seed_lxc``; plain
``import conftest`` is ambiguous once a subdirectory has its own conftest.py, so this
file puts the repository root on sys.path to make ``tests.conftest`` importable)
    seed_host(root, name, public_ip)         a host written straight into state
    seed_lxc(root, name, host, ...)          an LXC written straight into state
    clone_state(source, dest)                a copy of a state directory (see state_template)
    snapshot(root)                           every reviewable file and the git HEAD,
                                             to prove that a command changed nothing
    run_cli(root, *args)                     `infr` through click's CliRunner, in this process
    run_infr(root, *args)                    the installed `infr` in a subprocess
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from infr.state.config import init_state
from infr.state.model import Host, Lxc
from infr.state.session import Session
from infr.state.settings import SETTINGS

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AUTHOR_NAME = "Test Admin"
AUTHOR_EMAIL = "admin@example.org"
INFR_BIN = Path(sys.executable).with_name("infr")

DEFAULT_SETTINGS = {
    "vnetNetwork": "10.8.0.0/16",
    "vnetPoolStart": "10.8.1.0",
    "dnsDomain": "example.com",
    "dnsPrefix": "infr",
    "vnetPrefix": "vnet",
    "adminEmail": "admin@example.com",
}
# No per-example deadline: the first call of a validator may import tldextract (0.3 s),
# and shared CI machines stall; a timing failure there is noise, not a bug.
settings.register_profile("infr", deadline=None)
settings.load_profile("infr")

# Files that change on every run and say nothing about the state.
VOLATILE = {"log", ".lock", ".lock.info", ".apply.lock"}


@pytest.fixture(autouse=True)
def _infr_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("INFR_AUTHOR_NAME", AUTHOR_NAME)
    monkeypatch.setenv("INFR_AUTHOR_EMAIL", AUTHOR_EMAIL)
    monkeypatch.setenv("INFR_DIR", str(tmp_path_factory.getbasetemp() / "no-such-infr-dir"))
    # The key a test's -i remembers stays in that test, never in the user's own ~/.config.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    for setting in SETTINGS.values():
        if setting.env:
            monkeypatch.delenv(setting.env, raising=False)


def make_key(directory: Path, name: str = "id_ed25519", comment: str = "alice@laptop") -> Path:
    """A new ed25519 key pair in `directory`; returns the public key file."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return private.with_name(name + ".pub")


@pytest.fixture(scope="session")
def _template_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One `infr init` per test session; each test gets a copy (init costs 0.1-0.4 s, a copy 10 ms)."""
    base = tmp_path_factory.mktemp("template")
    key = make_key(base / "keys")
    root = base / "state"
    with _author_env():
        init_state(root, dict(DEFAULT_SETTINGS), " ".join(key.read_text().split()), "alice@laptop")
    return key, root


@contextmanager
def _author_env() -> Iterator[None]:
    """The test author for commits made outside a test's own monkeypatched environment."""
    env = {"INFR_AUTHOR_NAME": AUTHOR_NAME, "INFR_AUTHOR_EMAIL": AUTHOR_EMAIL}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def state_template(
    tmp_path_factory: pytest.TempPathFactory, _template_state: tuple[Path, Path]
) -> Callable[[str, Callable[[Path], object]], Path]:
    """`state_template(name, seed)`: a state seeded once per session by `seed(root)`; copy it with clone_state().

    Seeding five machines costs 0.3-0.8 s; copying the result costs 10 ms.
    """
    built: dict[str, Path] = {}

    def template(name: str, seed: Callable[[Path], object]) -> Path:
        if name not in built:
            root = tmp_path_factory.mktemp(f"template-{name}") / "state"
            shutil.copytree(_template_state[1], root, symlinks=True)
            with _author_env():
                seed(root)
            built[name] = root
        return built[name]

    return template


def clone_state(source: Path, dest: Path) -> Path:
    """A copy of the state directory `source` (git history included) at `dest`."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


@pytest.fixture
def admin_key(tmp_path: Path, _template_state: tuple[Path, Path]) -> Path:
    """The admin key pair (alice@laptop) that `state_dir` was initialized with, copied into tmp_path/keys."""
    source = _template_state[0]
    (tmp_path / "keys").mkdir(exist_ok=True)
    for path in (source, source.with_suffix("")):
        shutil.copy2(path, tmp_path / "keys" / path.name)
    return tmp_path / "keys" / source.name


@pytest.fixture
def state_dir(tmp_path: Path, admin_key: Path, _template_state: tuple[Path, Path]) -> Path:
    """A state directory as `infr init --yes` with DEFAULT_SETTINGS and `admin_key` leaves it (one commit)."""
    root = tmp_path / "state"
    return clone_state(_template_state[1], root)


def seed_host(root: Path, name: str, public_ip: str, vnet_ip: str | None = None, **fields: Any) -> Host:
    """Write a host into state as `infr hosts add` will (one commit); the vnet address comes from IPAM."""
    with Session(root, command_line=f"test: seed host {name}").change() as change:
        host = Host(name=name, public_ip=public_ip, vnet_ip=change.allocate_address(vnet_ip), **fields)
        change.put_host(host)
    return host


def seed_lxc(
    root: Path,
    name: str,
    host: str,
    distro: str = "debian",
    release: str = "bookworm",
    vnet_ip: str | None = None,
    **fields: Any,
) -> Lxc:
    """Write an LXC on `host` into state (one commit); extra `fields` are Lxc fields (http=..., aliases=...)."""
    with Session(root, command_line=f"test: seed lxc {name}").change() as change:
        lxc = Lxc(name=name, host=host, distro=distro, release=release, vnet_ip=change.allocate_address(vnet_ip))
        for key, value in fields.items():
            setattr(lxc, key, value)
        change.put_lxc(lxc)
    return lxc


def snapshot(root: Path) -> dict[str, Any]:
    """Every file of the state (contents and mode) plus git HEAD and status: equal snapshots mean no change.

    The operation log, the lock files and the cache are left out: they change on every run.
    """
    files: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in (".git", ".cache") or rel in VOLATILE or not path.is_file():
            continue
        files[rel] = (path.read_bytes(), path.stat().st_mode & 0o777)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout

    return {"files": files, "head": git("rev-parse", "HEAD"), "status": git("status", "--porcelain")}


def run_infr(
    root: Path | None, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run the installed `infr` (with `-w root` when root is given) and capture its output as text."""
    argv = [str(INFR_BIN), *(["-w", str(root)] if root is not None else []), *args]
    return subprocess.run(
        argv,
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def run_cli(root: Path | None, *args: str, input: str | None = None) -> Any:
    """Invoke `infr` (with `-w root` when root is given) through click's CliRunner.

    An InfrError is not caught here (main() does that for the real program), so it is
    left in `result.exception`; click's own usage errors give exit code 2.
    """
    from click.testing import CliRunner

    from infr.cli.main import cli

    argv = [*(["-w", str(root)] if root is not None else []), *args]
    return CliRunner().invoke(cli, argv, input=input, prog_name="infr")
