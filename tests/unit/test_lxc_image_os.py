"""`lxcs add` with a tarball image: its os-release must say DISTRO RELEASE, or the add is
refused with nothing left behind (or, with --record-image-os, the image's own is recorded)."""

from __future__ import annotations

import string
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from infr.backups import pairs
from infr.engine import steps
from infr.errors import ConflictError
from infr.lxcs import containers, osrelease
from infr.state.store import Store
from infr.vnet import members
from tests.conftest import run_cli, seed_host, snapshot
from tests.unit.fake_host import FakeHost

# ---- the pure comparison --------------------------------------------------------------------

words = st.text(string.ascii_lowercase + string.digits + "._-", min_size=1, max_size=12).filter(
    lambda w: w[0].isalnum()
)
versions = st.lists(st.integers(0, 99).map(str), min_size=1, max_size=3).map(".".join)


def quoted(value: str) -> st.SearchStrategy[str]:
    return st.sampled_from([value, f'"{value}"', f"'{value}'"])


@st.composite
def os_releases(draw: st.DrawFn) -> tuple[str, str, str | None, str | None]:
    """(text, ID, VERSION_CODENAME, VERSION_ID) in the file's many spellings: quoting, order,
    comments, blank lines, other keys (values with spaces are quoted, as the format says)."""
    distro = draw(words)
    codename = draw(st.none() | words)
    version = draw(st.none() | versions)
    assume(codename or version)
    lines = [f"ID={draw(quoted(distro))}"]
    if codename:
        lines.append(f"VERSION_CODENAME={draw(quoted(codename))}")
    if version:
        lines.append(f"VERSION_ID={draw(quoted(version))}")
    lines += draw(
        st.lists(
            st.sampled_from(
                [
                    '# a comment: ID=wrong',
                    "",
                    '   PRETTY_NAME="Some Linux 7 (Lizard)"',
                    "HOME_URL='https://example.org/'",
                    'NAME="Other Linux"',
                    "ID_LIKE=debian",
                    "not an assignment",
                ]
            ),
            max_size=5,
        )
    )
    return "\n".join(draw(st.permutations(lines))) + "\n", distro, codename, version


@given(os_releases())
def test_an_image_is_what_its_codename_or_version_says(case: tuple[str, str, str | None, str | None]) -> None:
    text, distro, codename, version = case
    for release in filter(None, (codename, version)):
        assert osrelease.mismatch(text, distro, release) is None
        assert osrelease.mismatch(text, distro.upper(), release.upper()) is None
    if version:
        assert osrelease.mismatch(text, distro, version.split(".")[0]) is None
    found = osrelease.image_os(text)
    assert found is not None and (found.distro, found.release) == (distro, codename or version)


@given(os_releases(), words, words)
def test_any_other_distro_or_release_is_a_mismatch_naming_the_image(
    case: tuple[str, str, str | None, str | None], other_distro: str, other_release: str
) -> None:
    text, distro, codename, version = case
    release = codename or version or ""
    prefixes = {".".join(version.split(".")[:n]) for n in range(1, 4)} if version else set()
    assume(other_distro != distro and other_release not in {codename, *prefixes})
    image = f"{distro} {release}"
    assert osrelease.mismatch(text, other_distro, release) == f"the image is {image}, not {other_distro} {release}"
    assert osrelease.mismatch(text, distro, other_release) == f"the image is {image}, not {distro} {other_release}"


@given(st.text(max_size=200))
def test_any_text_gives_an_answer_and_never_records_a_line_break_or_space(text: str) -> None:
    found = osrelease.image_os(text)
    if found is None:
        assert osrelease.mismatch(text, "debian", "bookworm") == "the image's os-release names no distro and release"
    else:
        assert not any(c.isspace() for c in found.distro + found.release)


@pytest.mark.parametrize(
    "text",
    ["", "NAME=Debian\n", 'ID="debian\nVERSION_CODENAME=xenial"\n', "ID=debian\nVERSION_CODENAME=\n", "ID='x y'\n"],
)
def test_an_os_release_without_a_usable_distro_and_release_is_a_mismatch(text: str) -> None:
    assert osrelease.image_os(text) is None
    assert osrelease.mismatch(text, "debian", "bookworm") == "the image's os-release names no distro and release"


# ---- reading it from the unpacked image (the script runs here as it does on the host) -----------

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n'
UBUNTU = 'NAME="Ubuntu"\nVERSION_ID="16.04"\nVERSION_CODENAME=xenial\nID=ubuntu\n'


def read(rootfs: Path) -> str:
    argv = ["sh", "-c", containers._OS_RELEASE, "sh", str(rootfs)]
    return subprocess.run(argv, capture_output=True, text=True).stdout


def test_os_release_is_read_from_etc_through_its_relative_link(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "usr/lib/os-release").write_text(DEBIAN)
    (tmp_path / "etc/os-release").symlink_to("../usr/lib/os-release")
    assert read(tmp_path) == DEBIAN
    (tmp_path / "etc/os-release").unlink()
    (tmp_path / "etc/os-release").write_text(UBUNTU)  # etc/ wins, as os-release(5) says
    assert read(tmp_path) == UBUNTU


def test_a_link_out_of_the_image_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "host-os-release"
    outside.write_text(UBUNTU)
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/os-release").symlink_to(outside)
    assert read(rootfs) == ""
    (rootfs / "usr/lib").mkdir(parents=True)
    (rootfs / "usr/lib/os-release").write_text(DEBIAN)
    assert read(rootfs) == DEBIAN


# ---- lxcs add against a fake host ----------------------------------------------------------------


def image_host(os_release: str) -> FakeHost:
    """A host that unpacks anything and whose unpacked image has `os_release`."""
    return FakeHost({("sh", "-c", containers._OS_RELEASE): (0, os_release.encode()), ("test",): (1, b"")})


@pytest.fixture
def tarball_world(state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    seed_host(state_dir, "bob", "203.0.113.10", status="ready")
    image = tmp_path / "debian-12.tar"
    image.write_bytes(b"not really a tarball")
    assert run_cli(state_dir, "config", "set", "lxcImageSource", str(image)).exit_code == 0
    # After the rootfs: config, start and inside are not what these tests are about.
    monkeypatch.setattr(steps, "ensure_file", lambda conn, spec: [])
    monkeypatch.setattr(containers, "start", lambda conn, name: [])
    monkeypatch.setattr(containers, "_inside", lambda conn, session, lxc, host: [])
    monkeypatch.setattr(members, "after_lxc_change", lambda session, report: [])
    monkeypatch.setattr(pairs, "redeploy_targets", lambda session, hosts, report: [])
    return state_dir


def on(monkeypatch: pytest.MonkeyPatch, os_release: str) -> FakeHost:
    host = image_host(os_release)
    monkeypatch.setattr(containers.SSHConnection, "connect", lambda target: host)
    return host


def files(root: Path) -> Any:
    return snapshot(root)["files"]


def test_an_image_that_is_not_what_was_asked_is_refused_with_nothing_left(
    tarball_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = on(monkeypatch, DEBIAN)
    before = files(tarball_world)
    result = run_cli(tarball_world, "lxcs", "add", "gonzo", "ubuntu", "xenial", "bob")
    assert isinstance(result.exception, ConflictError), result.output
    assert str(result.exception) == (
        "the image is debian bookworm, not ubuntu xenial (lxcImageSource); gonzo was not created"
        " (set lxcImageSource to an image of ubuntu xenial, ask for debian bookworm,"
        " or record what it is: infr lxcs add ... --record-image-os)"
    )
    assert files(tarball_world) == before  # no record, and the address cursor is back
    unpacked = host.ran.index(next(a for a in host.ran if a[0] == "tar"))
    assert ("rm", "-rf", "--one-file-system", "--", "/var/lib/lxc/gonzo") in host.ran[unpacked:]
    assert not any(a[0] == "touch" for a in host.ran)  # never marked created
    assert "left 'creating'" not in result.stdout
    # The address it had is the next LXC's.
    host.answers[("sh", "-c", containers._OS_RELEASE)] = (0, UBUNTU.encode())
    assert run_cli(tarball_world, "lxcs", "add", "gonzo", "ubuntu", "xenial", "bob").exit_code == 0
    assert Store(tarball_world).load().lxcs["gonzo"].vnet_ip == "10.8.1.2"


def test_an_image_that_is_what_was_asked_is_made(tarball_world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = on(monkeypatch, DEBIAN)
    result = run_cli(tarball_world, "lxcs", "add", "gonzo", "debian", "12", "bob")
    assert result.exit_code == 0, (result.output, result.exception)
    gonzo = Store(tarball_world).load().lxcs["gonzo"]
    assert (gonzo.distro, gonzo.release, gonzo.status) == ("debian", "12", "ready")
    assert ("touch", "--", "/var/lib/lxc/gonzo/infr-created") in host.ran


def test_record_image_os_records_what_the_image_is(tarball_world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, DEBIAN)
    result = run_cli(tarball_world, "lxcs", "add", "gonzo", "ubuntu", "xenial", "bob", "--record-image-os")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "gonzo: LXC gonzo recorded as debian bookworm, what its image is (asked: ubuntu xenial)" in (
        result.stdout.splitlines()
    )
    gonzo = Store(tarball_world).load().lxcs["gonzo"]
    assert (gonzo.distro, gonzo.release, gonzo.status) == ("debian", "bookworm", "ready")
    # Its rerun, spelled as the first time, finishes or confirms it rather than clashing.
    again = run_cli(tarball_world, "lxcs", "add", "gonzo", "ubuntu", "xenial", "bob", "--record-image-os")
    assert again.exit_code == 0, (again.output, again.exception)


def test_an_image_with_no_os_release_is_refused(tarball_world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, "")
    before = files(tarball_world)
    result = run_cli(tarball_world, "lxcs", "add", "gonzo", "debian", "bookworm", "bob", "--record-image-os")
    assert isinstance(result.exception, ConflictError)
    assert str(result.exception).startswith("the image's os-release names no distro and release")
    assert files(tarball_world) == before
