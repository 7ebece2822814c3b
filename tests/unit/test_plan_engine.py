"""The plan engine itself (issue 13): facts parsed from what a host prints, the shared
decisions (files, units, packages) and FleetPlan's exit code. Planning and applying across
hosts: test_plan_engine_run.py; `infr plan` / `infr apply`: test_plan_engine_cli.py."""

from __future__ import annotations

import base64
import grp
import os
import pwd
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from infr.connector.target import Result
from infr.engine import decide, facts
from infr.engine import steps as engine_steps
from infr.engine.decide import UnitWant, command_step, file_diff, file_steps, package_steps, unit_steps
from infr.engine.facts import FileFact, UnitFact
from infr.engine.plan import FleetPlan, HostPlan, Step
from infr.engine.steps import FileSpec
from infr.errors import RemoteError


class Canned:
    """A runner that answers every command with one fixed result and records the commands."""

    def __init__(self, stdout: str | bytes = b"", exit_status: int = 0, stderr: bytes = b"") -> None:
        self.result = Result(exit_status, stdout.encode() if isinstance(stdout, str) else stdout, stderr)
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], **options: object) -> Result:
        self.calls.append(list(argv))
        return self.result

    def put_file(self, path: str, data: bytes, *, owner: str, group: str, mode: int) -> None:
        raise AssertionError("reading facts never writes a file")


class LocalShell(Canned):
    """Runs each command on this machine as it is (no sudo): the real shell of read_files."""

    def run(self, argv: Sequence[str], **options: object) -> Result:
        self.calls.append(list(argv))
        done = subprocess.run(list(argv), capture_output=True, check=False)
        return Result(done.returncode, done.stdout, done.stderr)


def _mine(mode: int) -> str:
    return f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}:{mode:o}"


# --- facts -----------------------------------------------------------------------------------


def test_read_files_reads_every_file_in_one_command_whatever_its_bytes(tmp_path: Path) -> None:
    text, binary, empty = tmp_path / "haproxy.cfg", tmp_path / "blob", tmp_path / "empty"
    text.write_bytes(b"global\n    maxconn 100\n\nfrontend web\n")
    binary.write_bytes(bytes(range(256)) * 2)  # NUL, newlines, invalid UTF-8
    empty.write_bytes(b"")
    for path, mode in ((text, 0o640), (binary, 0o600), (empty, 0o4755)):
        path.chmod(mode)
    missing, directory = tmp_path / "gone", tmp_path
    shell = LocalShell()
    found = facts.read_files(shell, [str(text), str(binary), str(missing), str(empty), str(directory), str(text)])
    assert len(shell.calls) == 1
    assert found == {
        str(text): FileFact(b"global\n    maxconn 100\n\nfrontend web\n", _mine(0o640)),
        str(binary): FileFact(bytes(range(256)) * 2, _mine(0o600)),
        str(missing): None,
        str(empty): FileFact(b"", _mine(0o4755)),
        str(directory): None,  # not a regular file: as good as missing
    }


def test_read_files_parses_the_listing_a_host_prints() -> None:
    encoded = base64.b64encode(b"a\nb\n").decode()
    listing = f"root:root:644 {encoded}\n-\nmanager:manager:600 \n"
    found = facts.read_files(Canned(listing), ["/etc/a", "/etc/missing", "/home/manager/.ssh/authorized_keys"])
    assert found == {
        "/etc/a": FileFact(b"a\nb\n", "root:root:644"),
        "/etc/missing": None,
        "/home/manager/.ssh/authorized_keys": FileFact(b"", "manager:manager:600"),
    }


@pytest.mark.parametrize(
    ("stdout", "exit_status"),
    [
        ("root:root:644 aGk=\n", 1),  # base64 failed on the host
        ("root:root:644 aGk=\n", 0),  # one line for two files
        ("root:root:644 not*base64\n-\n", 0),
    ],
)
def test_read_files_refuses_a_listing_it_cannot_trust(stdout: str, exit_status: int) -> None:
    with pytest.raises(RemoteError):
        facts.read_files(Canned(stdout, exit_status), ["/etc/a", "/etc/b"])


def test_reading_no_files_asks_the_host_nothing() -> None:
    shell = Canned()
    assert facts.read_files(shell, []) == {}
    assert facts.read_units(shell, []) == {}
    assert facts.read_packages(shell, []) == set()
    assert shell.calls == []


# As `systemctl show --property=Id,LoadState,UnitFileState,ActiveState -- ...` prints them:
# one block per unit in the order asked, properties in systemd's own order.
SHOW = """Id=ssh.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled

Id=infr-backup.timer
LoadState=loaded
ActiveState=inactive
UnitFileState=disabled

Id=nosuch.service
LoadState=not-found
ActiveState=inactive
UnitFileState=

Id=haproxy.service
LoadState=loaded
ActiveState=failed
UnitFileState=enabled

Id=systemd-journald.service
LoadState=loaded
ActiveState=active
UnitFileState=static
"""


def test_read_units_parses_one_block_per_unit_including_one_systemd_never_heard_of() -> None:
    shell = Canned(SHOW)
    units = ["ssh", "infr-backup.timer", "nosuch.service", "haproxy", "systemd-journald"]
    found = facts.read_units(shell, units)
    assert found == {
        "ssh": UnitFact(enabled=True, active=True),
        "infr-backup.timer": UnitFact(enabled=False, active=False),
        "nosuch.service": UnitFact(enabled=False, active=False, known=False),
        "haproxy": UnitFact(enabled=True, active=False),
        "systemd-journald": UnitFact(enabled=True, active=True),
    }
    assert shell.calls == [["systemctl", "show", "--property=Id,LoadState,UnitFileState,ActiveState", "--", *units]]


@pytest.mark.parametrize(("stdout", "exit_status"), [("", 1), (SHOW, 1), (SHOW.split("\n\n")[0], 0)])
def test_read_units_refuses_to_read_a_failed_systemctl_as_stopped_units(stdout: str, exit_status: int) -> None:
    with pytest.raises(RemoteError, match="could not read 2 units"):
        facts.read_units(Canned(stdout, exit_status, b"System has not been booted with systemd"), ["ssh", "haproxy"])


def test_read_packages_counts_only_installed_ones() -> None:
    # dpkg-query exits 1 when one name is unknown, and still lists the others.
    listing = "lxc ii \nhaproxy rc \nbtrbk un \ncertbot ii \n"
    shell = Canned(listing, 1, b"dpkg-query: no packages found matching wireguard-tools\n")
    assert facts.read_packages(shell, ["lxc", "haproxy", "btrbk", "certbot", "wireguard-tools"]) == {"lxc", "certbot"}
    assert shell.calls[0][-6:] == ["--", "lxc", "haproxy", "btrbk", "certbot", "wireguard-tools"]


def test_read_text_is_empty_when_the_command_fails() -> None:
    assert facts.read_text(Canned("peers\n"), ["wg", "show"]) == "peers\n"
    assert facts.read_text(Canned("partial", 1), ["wg", "show"]) == ""


# --- decisions ---------------------------------------------------------------------------------

CFG = "/etc/haproxy/haproxy.cfg"
KEYS = "/home/manager/.ssh/authorized_keys"


def _steps(specs: list[FileSpec], have: dict[str, FileFact | None]) -> list[tuple[str, str]]:
    return [(s.description, s.diff) for s in file_steps("routing", "bob", specs, have)]


def test_a_file_that_matches_needs_no_step() -> None:
    spec = FileSpec(CFG, b"global\n")
    assert _steps([spec], {CFG: FileFact(b"global\n", "root:root:644")}) == []


def test_a_missing_file_is_created_and_its_diff_adds_every_line() -> None:
    [(what, diff)] = _steps([FileSpec(CFG, b"global\n    maxconn 100\n")], {CFG: None})
    assert what == f"create {CFG}"
    assert diff.splitlines() == [
        f"--- {CFG} (on the host)",
        f"+++ {CFG} (from state)",
        "@@ -0,0 +1,2 @@",
        "+global",
        "+    maxconn 100",
    ]


def test_a_file_not_even_read_counts_as_missing() -> None:
    assert _steps([FileSpec(CFG, b"x\n")], {})[0][0] == f"create {CFG}"


def test_a_hand_edited_file_is_rewritten_with_a_diff_of_the_edit() -> None:
    have = FileFact(b"global\n# edited by hand\n", "root:root:644")
    [(what, diff)] = _steps([FileSpec(CFG, b"global\n")], {CFG: have})
    assert what == f"rewrite {CFG}"
    assert "-# edited by hand\n" in diff and " global\n" in diff


def test_only_a_changed_mode_or_owner_sets_them_without_a_diff() -> None:
    spec = FileSpec(KEYS, b"ssh-ed25519 AAAA admin\n", "manager", "manager", 0o600)
    assert _steps([spec], {KEYS: FileFact(spec.content, "manager:manager:644")}) == [
        (f"set {KEYS} to manager:manager:600 (is manager:manager:644)", "")
    ]
    assert _steps([spec], {KEYS: FileFact(spec.content, "root:root:600")})[0][0] == (
        f"set {KEYS} to manager:manager:600 (is root:root:600)"
    )


def test_a_secret_file_never_shows_its_content() -> None:
    path = "/etc/wireguard/infrwg0.key"
    spec = FileSpec(path, b"PRIVATE-KEY-NEW\n", mode=0o600, secret=True)
    for have in (None, FileFact(b"PRIVATE-KEY-OLD\n", "root:root:600")):
        [(what, diff)] = _steps([spec], {path: have})
        assert what in (f"create {path}", f"rewrite {path}")
        assert "PRIVATE-KEY" not in what + diff
        assert diff == f"(content of {path} not shown: it holds a secret)"


def test_binary_content_is_named_not_shown() -> None:
    assert file_diff("/x", b"\xff\xfe", b"text\n") == "(binary content of /x changes)"


def test_a_long_diff_is_cut_short() -> None:
    new = "".join(f"line {i}\n" for i in range(1000)).encode()
    lines = file_diff(CFG, None, new).splitlines()
    assert len(lines) == decide.MAX_DIFF_LINES + 1
    assert lines[-1] == f"... {1000 + 3 - decide.MAX_DIFF_LINES} more lines"


def test_a_file_step_writes_through_converge_with_its_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[FileSpec] = []

    def ensure_file(runner: object, spec: FileSpec) -> list[str]:
        written.append(spec)
        return [f"wrote {spec.path}"]

    monkeypatch.setattr(engine_steps, "ensure_file", ensure_file)
    spec = FileSpec("/etc/sudoers.d/infr-manager", b"manager ALL\n", mode=0o440, precheck=("visudo", "-c"))
    [step] = file_steps("host", "bob", [spec], {})
    assert step.run(Canned()) == ["wrote /etc/sudoers.d/infr-manager"]
    assert written == [spec]


ON, OFF = True, False


@pytest.mark.parametrize(
    ("running", "have", "expected"),
    [
        (ON, UnitFact(enabled=ON, active=ON), []),
        (ON, UnitFact(enabled=ON, active=OFF), ["start haproxy"]),  # stopped by hand
        (ON, UnitFact(enabled=OFF, active=ON), ["enable haproxy"]),  # disabled, still running
        (ON, UnitFact(enabled=OFF, active=OFF), ["enable and start haproxy"]),  # disable --now
        (ON, UnitFact(enabled=OFF, active=OFF, known=OFF), ["enable and start haproxy"]),
        (ON, None, ["enable and start haproxy"]),  # not read at all
        (OFF, UnitFact(enabled=ON, active=ON), ["stop and disable haproxy"]),
        (OFF, UnitFact(enabled=OFF, active=ON), ["stop and disable haproxy"]),
        (OFF, UnitFact(enabled=ON, active=OFF), ["stop and disable haproxy"]),
        (OFF, UnitFact(enabled=OFF, active=OFF), []),
        (OFF, UnitFact(enabled=OFF, active=OFF, known=OFF), []),
    ],
)
def test_unit_steps(running: bool, have: UnitFact | None, expected: list[str]) -> None:
    found = {} if have is None else {"haproxy": have}
    steps = unit_steps("routing", "bob", [UnitWant("haproxy", running=running)], found)
    assert [s.description for s in steps] == expected
    assert all((s.feature, s.host, s.diff) == ("routing", "bob", "") for s in steps)


def test_unit_steps_run_systemctl_with_now() -> None:
    wants = [UnitWant("infr-backup.timer"), UnitWant("btrbk.timer", running=False)]
    have = {"infr-backup.timer": UnitFact(False, False), "btrbk.timer": UnitFact(True, False)}
    shell = Canned()
    assert [s.run(shell) for s in unit_steps("backups", "tom", wants, have)] == [
        ["enable and start infr-backup.timer"],
        ["stopped btrbk.timer"],
    ]
    assert shell.calls == [
        ["systemctl", "enable", "--now", "--", "infr-backup.timer"],
        ["systemctl", "disable", "--now", "--", "btrbk.timer"],
    ]


def test_package_steps_install_only_what_is_missing_in_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: list[list[str]] = []

    def ensure_packages(runner: object, names: list[str]) -> list[str]:
        installed.append(names)
        return [f"installed {' '.join(names)}"]

    monkeypatch.setattr(engine_steps, "ensure_packages", ensure_packages)
    assert package_steps("host", "bob", ["lxc", "haproxy"], {"lxc", "haproxy", "vim"}) == []
    [step] = package_steps("host", "bob", ["lxc", "haproxy", "btrbk"], {"lxc"})
    assert step.description == "install haproxy btrbk"
    assert step.run(Canned()) == ["installed haproxy btrbk"]
    assert installed == [["haproxy", "btrbk"]]


def test_command_step_runs_its_command() -> None:
    shell = Canned()
    step = command_step("lxcs", "bob", "start the container web", ["lxc-start", "-n", "web"])
    assert step.run(shell) == ["start the container web"]
    assert shell.calls == [["lxc-start", "-n", "web"]]


# --- the fleet's plan and its exit code ---------------------------------------------------------


def _step(host: str = "bob", feature: str = "routing") -> Step:
    return Step(feature, host, f"rewrite {CFG}")


@pytest.mark.parametrize(
    ("plan", "code"),
    [
        (FleetPlan(), 0),
        (FleetPlan((HostPlan("bob"), HostPlan("tom", skipped="marked down (-D)"))), 0),
        (FleetPlan((HostPlan("bob", (_step(),)),)), 2),
        (FleetPlan(zone_steps=(Step("dns", "", "create A web"),)), 2),
        (FleetPlan((HostPlan("bob", (_step(),)), HostPlan("tom", error="connection refused"))), 1),
        (FleetPlan((HostPlan("bob"),), zone_error="provider said 401"), 1),
    ],
)
def test_exit_code_is_0_when_nothing_differs_2_when_something_does_1_on_error(plan: FleetPlan, code: int) -> None:
    assert plan.exit_code() == code


def test_fleet_plan_as_json_names_every_host_step_and_error() -> None:
    plan = FleetPlan(
        (HostPlan("bob", (_step(),)), HostPlan("dead", error="timed out"), HostPlan("tom", skipped="marked down (-D)")),
        (Step("dns", "", "create A web"),),
    )
    assert plan.as_json() == {
        "hosts": [
            {"host": "bob", "error": None, "skipped": None,
             "steps": [{"feature": "routing", "host": "bob", "step": f"rewrite {CFG}", "diff": ""}]},
            {"host": "dead", "error": "timed out", "skipped": None, "steps": []},
            {"host": "tom", "error": None, "skipped": "marked down (-D)", "steps": []},
        ],
        "dns": {"error": None, "steps": [{"feature": "dns", "host": "", "step": "create A web", "diff": ""}]},
        "changes": 2,
    }  # fmt: skip
    assert plan.errors == ["dead: timed out"]
