"""infr.vnet.members against fake hosts: applying the mesh, hosts joining, LXC changes, keys, status."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from infr.connector import SSHConnection, Target
from infr.connector.target import Result
from infr.errors import RemoteError
from infr.state.model import HOST_READY
from infr.state.session import Session
from infr.vnet import desired, members, status

KEY_A = "A" * 43 + "="
KEY_B = "B" * 43 + "="
KEY_C = "C" * 43 + "="
KEY_NEW = "N" * 43 + "="
MESH_FILES = {desired.ZONES_PATH, desired.CONF_PATH, desired.UP_SCRIPT, desired.UNIT_PATH}
WROTE_ALL = [f"wrote {p}" for p in (desired.ZONES_PATH, desired.CONF_PATH, desired.UP_SCRIPT, desired.UNIT_PATH)]


class FakeHost:
    """A host's files in a dict; answers what infr.vnet asks (keygen, nft -c, systemctl, the dump)."""

    def __init__(self, name: str, key: str = KEY_NEW, nft_ok: bool = True, dump: str = "") -> None:
        self.name = name
        self.key = key
        self.nft_ok = nft_ok
        self.dump = dump
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.enabled = False
        self.active = False
        self.ran: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, check: bool = True, **_: object) -> Result:
        argv = tuple(argv)
        self.ran.append(argv)
        result = self._answer(argv)
        if check and result.exit_status != 0:
            raise RemoteError(f"{self.name}: {argv[0]} failed: {result.stderr.decode()}")
        return result

    def _answer(self, argv: tuple[str, ...]) -> Result:
        if argv[0] == "stat":
            mode = self.modes.get(argv[-1], 0)
            return Result(0 if argv[-1] in self.files else 1, f"root:root:{mode:o}\n".encode(), b"")
        if argv[0] == "cat":
            return Result(0, self.files[argv[-1]], b"")
        if argv[0] == "nft":
            return Result(0, b"", b"") if self.nft_ok else Result(1, b"", b"Error: syntax error")
        if argv[0] == "mv":
            self.files[argv[-1]] = self.files.pop(argv[-2])
            self.modes[argv[-1]] = self.modes.pop(argv[-2])
        if argv[0] == "rm":
            self.files.pop(argv[-1], None)
        if argv[:2] == ("sh", "-c") and argv[2] == members.KEYGEN:
            return Result(0, f"{self.key}\n".encode(), b"")
        if argv[:2] == ("sh", "-c") and argv[2] == status.DUMP:
            return Result(0, self.dump.encode(), b"")
        if argv[0] == "systemctl":
            return self._systemctl(argv[1])
        return Result(0, b"", b"")

    def _systemctl(self, verb: str) -> Result:
        if verb == "is-enabled":
            return Result(0 if self.enabled else 1, b"", b"")
        if verb == "is-active":
            return Result(0 if self.active else 3, b"", b"")
        self.enabled = self.enabled or verb == "enable"
        self.active = self.active or verb == "restart"
        return Result(0, b"", b"")

    def put_file(self, path: str, data: bytes, *, mode: int = 0o644, **_: object) -> None:
        self.files[path] = data
        self.modes[path] = mode

    def restarts(self) -> int:
        return self.ran.count(("systemctl", "restart", desired.UNIT_NAME))

    def __enter__(self) -> FakeHost:
        return self

    def __exit__(self, *_: object) -> None:
        pass


class Unreachable(FakeHost):
    def run(self, argv: Sequence[str], **_: object) -> Result:
        raise RemoteError(f"{self.name}: connection refused")


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, FakeHost]]:
    """Fake hosts by name; SSHConnection.connect hands them out (an unknown host is a test bug)."""
    hosts: dict[str, FakeHost] = {}

    def connect(target: Target) -> FakeHost:
        return hosts[target.name]

    monkeypatch.setattr(SSHConnection, "connect", connect)
    yield hosts


def seed(root: Path) -> None:
    """a, b: ready members; c: ready, not in the mesh; d: in the mesh but being reinstalled."""
    from tests.conftest import seed_host, seed_lxc

    seed_host(root, "a", "203.0.113.1", status=HOST_READY, wg_public_key=KEY_A)
    seed_host(root, "b", "203.0.113.2", status=HOST_READY, wg_public_key=KEY_B)
    seed_host(root, "c", "203.0.113.3", status=HOST_READY)
    seed_host(root, "d", "203.0.113.4", wg_public_key=KEY_C)
    seed_lxc(root, "web", "b", vnet_ip="10.8.1.20")


def lines(messages: list[str]) -> members.Report:
    return messages.append


def test_apply_writes_enables_runs_then_has_nothing_to_do(state_dir: Path) -> None:
    seed(state_dir)
    session = Session(state_dir)
    host = FakeHost("a")
    done = members._apply(host, session, session.inventory().hosts["a"])  # type: ignore[arg-type]
    assert set(host.files) == MESH_FILES
    assert done == [*WROTE_ALL, f"enabled {desired.UNIT_NAME}", f"ran {desired.UNIT_NAME}"]
    assert host.modes[desired.CONF_PATH] == 0o600 and host.enabled and host.restarts() == 1
    assert ("nft", "-c", "-f", desired.ZONES_PATH + ".infr-new") in host.ran  # checked before it replaced anything
    assert b"AllowedIPs = 10.8.1.2/32, 10.8.1.20/32" in host.files[desired.CONF_PATH]
    assert members._apply(host, session, session.inventory().hosts["a"]) == []  # type: ignore[arg-type]
    assert host.restarts() == 1


def test_apply_runs_the_unit_again_when_it_is_not_up(state_dir: Path) -> None:
    seed(state_dir)
    session = Session(state_dir)
    host = FakeHost("a")
    members._apply(host, session, session.inventory().hosts["a"])  # type: ignore[arg-type]
    host.active = False  # e.g. its last run failed, or someone stopped it
    assert members._apply(host, session, session.inventory().hosts["a"]) == [f"ran {desired.UNIT_NAME}"]  # type: ignore[arg-type]


def test_rules_that_fail_nft_check_are_not_put_in_place(state_dir: Path) -> None:
    seed(state_dir)
    session = Session(state_dir)
    host = FakeHost("a", nft_ok=False)
    with pytest.raises(RemoteError, match="failed its check: Error: syntax error"):
        members._apply(host, session, session.inventory().hosts["a"])  # type: ignore[arg-type]
    assert desired.ZONES_PATH not in host.files and host.restarts() == 0


def test_host_key_must_look_like_one() -> None:
    with pytest.raises(RemoteError, match="is wireguard-tools installed"):
        members.host_public_key(FakeHost("a", key="sh: 1: wg: not found"))  # type: ignore[arg-type]
    assert members.host_public_key(FakeHost("a", key=KEY_NEW)) == KEY_NEW  # type: ignore[arg-type]
    assert "umask 077" in members.KEYGEN and "[ -s /etc/wireguard/infrwg0.key ] ||" in members.KEYGEN


def test_a_joining_host_is_recorded_and_the_ready_members_learn_it(state_dir: Path, fleet: dict[str, FakeHost]) -> None:
    from tests.conftest import seed_host

    seed(state_dir)
    new = seed_host(state_dir, "e", "203.0.113.5")  # being adopted: installing
    fleet.update(a=FakeHost("a"), b=FakeHost("b"))  # c (not in the mesh) and d (not ready) are not asked
    session = Session(state_dir)
    said: list[str] = []
    changes = members.join_host(session, FakeHost("e", key=KEY_NEW), new, lines(said))  # type: ignore[arg-type]
    assert changes[0] == f"WireGuard public key {KEY_NEW}"
    assert Session(state_dir).inventory().hosts["e"].wg_public_key == KEY_NEW
    for name in ("a", "b"):
        assert f"PublicKey = {KEY_NEW}".encode() in fleet[name].files[desired.CONF_PATH]
        assert f"{name}: mesh applied" in said
    assert "a: ran infr-mesh.service" in changes
    # again (reconfigure): same key, so only the host itself is looked at
    fleet.clear()
    again = FakeHost("e", key=KEY_NEW)
    host = Session(state_dir).inventory().hosts["e"]
    expected = [*WROTE_ALL, f"enabled {desired.UNIT_NAME}", f"ran {desired.UNIT_NAME}"]
    assert members.join_host(Session(state_dir), again, host, lines(said)) == expected  # type: ignore[arg-type]


def test_a_member_down_or_unreachable_does_not_stop_a_join(state_dir: Path, fleet: dict[str, FakeHost]) -> None:
    from tests.conftest import seed_host

    seed(state_dir)
    new = seed_host(state_dir, "e", "203.0.113.5")
    fleet.update(a=Unreachable("a"))
    session = Session(state_dir, down_hosts=frozenset({"b"}))
    said: list[str] = []
    members.join_host(session, FakeHost("e"), new, lines(said))  # type: ignore[arg-type]
    assert "a: mesh not applied: a: connection refused" in said
    assert "a does not know e yet; later: infr vnet apply" in said
    assert "b: mesh skipped (marked down); apply it later with: infr apply b" in said


def test_after_lxc_change_without_a_mesh_does_nothing(state_dir: Path, fleet: dict[str, FakeHost]) -> None:
    from tests.conftest import seed_host

    seed_host(state_dir, "a", "203.0.113.1", status=HOST_READY)  # ready, never joined
    assert members.after_lxc_change(Session(state_dir), lines([])) == []  # and connected nowhere (fleet is empty)


def test_after_lxc_change_updates_every_ready_member(state_dir: Path, fleet: dict[str, FakeHost]) -> None:
    from tests.conftest import seed_lxc

    seed(state_dir)
    fleet.update(a=FakeHost("a"), b=FakeHost("b"))
    said: list[str] = []
    members.after_lxc_change(Session(state_dir), lines(said))
    seed_lxc(state_dir, "db", "b", vnet_ip="10.8.1.21", zone="shop")
    changes = members.after_lxc_change(Session(state_dir), lines(said))
    # a routes db's /32 to b; both hosts get the new zone
    assert "AllowedIPs = 10.8.1.2/32, 10.8.1.20/32, 10.8.1.21/32" in fleet["a"].files[desired.CONF_PATH].decode()
    # routes: b and its LXCs, and d (in the mesh while it is reinstalled)
    assert 'wanted="10.8.1.2 10.8.1.4 10.8.1.20 10.8.1.21"' in fleet["a"].files[desired.UP_SCRIPT].decode()
    for name in ("a", "b"):
        assert "elements = { 10.8.1.21 }" in fleet[name].files[desired.ZONES_PATH].decode()
    assert f"a: wrote {desired.CONF_PATH}" in changes and f"b: wrote {desired.ZONES_PATH}" in changes
    assert f"b: wrote {desired.CONF_PATH}" not in changes  # b's own containers are not in its config
    assert "b: ran infr-mesh.service" in changes


def test_after_lxc_change_reports_an_unreachable_member_and_goes_on(
    state_dir: Path, fleet: dict[str, FakeHost]
) -> None:
    seed(state_dir)
    fleet.update(a=Unreachable("a"), b=FakeHost("b"))
    said: list[str] = []
    changes = members.after_lxc_change(Session(state_dir), lines(said))
    assert "a: mesh not applied: a: connection refused" in said and "b: mesh applied" in said
    assert changes and all(line.startswith("b: ") for line in changes)


def test_deploy_brings_in_ready_hosts_and_records_changed_keys(state_dir: Path, fleet: dict[str, FakeHost]) -> None:
    seed(state_dir)
    fleet.update(a=FakeHost("a", key=KEY_A), b=FakeHost("b", key=KEY_NEW), c=FakeHost("c", key=KEY_C.lower()))
    said: list[str] = []
    assert members.deploy(Session(state_dir), lines(said)) == {}
    hosts = Session(state_dir).inventory().hosts
    assert hosts["b"].wg_public_key == KEY_NEW  # b was reinstalled: its new key replaces the old
    assert hosts["c"].wg_public_key == KEY_C.lower()  # c joined
    assert hosts["d"].wg_public_key == KEY_C  # not ready: untouched
    config_a = fleet["a"].files[desired.CONF_PATH].decode()
    assert f"PublicKey = {KEY_NEW}" in config_a and f"PublicKey = {KEY_C.lower()}" in config_a
    assert KEY_B not in config_a
    assert all(fleet[n].enabled and fleet[n].active for n in "abc")


def test_deploy_returns_the_hosts_it_could_not_reach(state_dir: Path, fleet: dict[str, FakeHost]) -> None:
    seed(state_dir)
    fleet.update(a=FakeHost("a", key=KEY_A), b=Unreachable("b"), c=FakeHost("c", key=KEY_NEW))
    failed = members.deploy(Session(state_dir), lines([]))
    assert list(failed) == ["b"] and "connection refused" in failed["b"]
    assert desired.CONF_PATH in fleet["a"].files and desired.CONF_PATH in fleet["c"].files


def test_status_reads_every_ready_host_and_names_the_peers(state_dir: Path, fleet: dict[str, FakeHost]) -> None:
    seed(state_dir)
    dump_a = f"1000\ninfrwg0\t{KEY_B}\t(none)\t203.0.113.2:51820\t10.8.1.2/32,10.8.1.20/32\t990\t100\t200\t25\n"
    fleet.update(a=FakeHost("a", dump=dump_a), b=FakeHost("b", dump="1000\n"), c=Unreachable("c"))
    rows, failed = status.status(Session(state_dir))
    assert [(r["host"], r["peer"], r["handshake"], r["rx_bytes"]) for r in rows] == [("a", "b", "10s ago", 100)]
    assert list(failed) == ["c"]


def test_after_host_removed_drops_it_from_the_members(state_dir: Path, fleet: dict[str, FakeHost]) -> None:
    seed(state_dir)
    fleet.update(a=FakeHost("a"), b=FakeHost("b"))
    with Session(state_dir).change() as change:
        change.delete_lxc("web")
        change.delete_host("b")
    fleet.pop("b")
    changes = members.after_host_removed(Session(state_dir), lines([]))
    assert f"a: wrote {desired.CONF_PATH}" in changes
    assert KEY_B.encode() not in fleet["a"].files[desired.CONF_PATH]
