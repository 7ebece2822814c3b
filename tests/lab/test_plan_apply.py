"""Drift on the shared lab fleet (issue 13): things broken by hand on the hosts, a change
recorded while a host was down (-D), and a teammate's change pulled with `infr sync`.
`infr plan` names each difference by host and feature and exits 2; `infr apply --yes`
repairs them all (proved on the hosts, not taken from infr's word); `infr plan` then exits 0.

The fleet is shared with the other lab modules: every test here puts back what it changed,
whatever failed (the fixtures' teardowns), and conftest.py runs this module after the mesh
tests (it starts and stops the bob -> tom backup pair, which test_backups.py builds on).
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from infr.lab import LabHost
from infr.state.session import Session
from tests.conftest import DEFAULT_SETTINGS, make_key
from tests.lab.conftest import Fleet, LabKey, infr
from tests.lab.test_adopt import login, run_as_manager

pytestmark = [pytest.mark.lab, pytest.mark.timeout(3600)]
LXC = "beaker"
NAME = f"{LXC}.{DEFAULT_SETTINGS['dnsPrefix']}.{DEFAULT_SETTINGS['dnsDomain']}"
SECOND_KEY = "scooter@laptop"  # the admin key removed by hand (the lab logs in with its own key)
TEAMMATE_KEY = "waldorf@laptop"
TIMER = "infr-backup.timer"
HAND_EDIT = "# edited by hand, not by infr"
# One page per port inside the container, each served by a unit that starts at boot.
PAGES = (
    "mkdir -p /srv/www80 /srv/www8081 && echo beaker on 80 > /srv/www80/index.html"
    " && echo beaker on 8081 > /srv/www8081/index.html"
    " && printf '%s\\n' '[Service]' 'ExecStart=/bin/busybox httpd -f -p %i -h /srv/www%i'"
    " '[Install]' 'WantedBy=multi-user.target' > /etc/systemd/system/web@.service"
    " && systemctl daemon-reload && systemctl enable --now web@80.service web@8081.service"
)
STEP = re.compile(r"^(\S+): (\S+): would (.+)$")  # show_plan's "HOST: FEATURE: would DESCRIPTION"


def ok(fleet: Fleet, key: LabKey, *args: str) -> str:
    result = infr(fleet.state, key.private, *args)
    assert result.returncode == 0, f"infr {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def sudo(host: LabHost, key: LabKey, command: str) -> str:
    code, out = run_as_manager(host.ip, key.private, command)
    assert code == 0, f"{command}: {out}"
    return out


def differences(output: str) -> list[tuple[str, str, str]]:
    return [(m[1], m[2], m[3]) for line in output.splitlines() if (m := STEP.match(line))]


def listed(found: list[tuple[str, str, str]], host: str, feature: str, *words: str) -> list[str]:
    """The steps of `feature` on `host` that name any of `words` (in any case)."""
    return [step for h, f, step in found if (h, f) == (host, feature) and any(w in step.lower() for w in words)]


def page(ip: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(ip, 80, timeout=20)
    try:
        connection.request("GET", "/", headers={"Host": NAME})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def served(ip: str, body: bytes, within: float = 180) -> None:
    """Wait until HAProxy on `ip` serves `body` for the container's name (it may be booting)."""
    deadline, last = time.monotonic() + within, ""
    while time.monotonic() < deadline:
        try:
            if (seen := page(ip)) == (200, body):
                return
            last = repr(seen)
        except OSError as error:
            last = repr(error)
        time.sleep(3)
    raise AssertionError(f"{NAME} via {ip}: wanted 200 {body!r}, last answer {last}")


def backup_pair_status(state: Path) -> str:
    pair = Session(state).inventory().find_backup("bob", "tom")
    return pair.status if pair else ""


def settle_backup_run(tom: LabHost, key: LabKey) -> None:
    """Wait out a backup run the timer started (a oneshot is 'activating' while it runs)."""
    wait = (
        "for i in $(seq 900); do case $(systemctl show -p ActiveState --value infr-backup.service) in"
        " activating|deactivating) sleep 1;; *) exit 0;; esac; done; exit 1"
    )
    run_as_manager(tom.ip, key.private, wait, timeout=960)


@dataclass(frozen=True)
class Scene:
    """The container beaker on bob served through HAProxy, a second admin key, backups bob -> tom."""

    second_key: Path  # its private key
    vnet_ip: str


@pytest.fixture
def scene(fleet: Fleet, lab_key: LabKey, tmp_path: Path) -> Iterator[Scene]:
    pair_before = backup_pair_status(fleet.state)
    second = make_key(tmp_path / "second", comment=SECOND_KEY)
    try:
        ok(fleet, lab_key, "lxcs", "add", LXC, "debian", "bookworm", "bob")
        sudo(fleet.bob, lab_key, f'sudo -n lxc-attach -n {LXC} -- sh -c "{PAGES}"')
        ok(fleet, lab_key, "lxc", LXC, "http", "FORWARD")
        served(fleet.bob.ip, b"beaker on 80\n")
        ok(fleet, lab_key, "keys", "add", str(second))
        if pair_before != "active":
            ok(fleet, lab_key, "backup", "start", "bob", "tom")
        yield Scene(second.with_suffix(""), Session(fleet.state).inventory().lxcs[LXC].vnet_ip)
    finally:
        restore(fleet, lab_key, pair_before)


def restore(fleet: Fleet, key: LabKey, pair_before: str) -> None:
    """Put the fleet back as the other lab modules expect it, by hand where infr did not."""
    problems: list[str] = []

    def attempt(what: str, *args: str) -> None:
        result = infr(fleet.state, key.private, *args)
        if result.returncode != 0:
            problems.append(f"{what}: {result.stdout}{result.stderr}")

    tom_key = Session(fleet.state).inventory().hosts["tom"].wg_public_key
    cfg = "/etc/haproxy/haproxy.cfg"
    by_hand = (
        ("bob", fleet.bob, "sudo -n systemctl start haproxy"),
        ("bob", fleet.bob, f"sudo -n wg show infrwg0 peers | grep -qF '{tom_key}' || "
                           "sudo -n systemctl restart infr-mesh"),
        ("tom", fleet.tom, f"! sudo -n grep -qF '{HAND_EDIT}' {cfg} || "
                           f"(sudo -n sed -i '/{HAND_EDIT}/d' {cfg} && sudo -n systemctl reload haproxy)"),
    )  # fmt: skip
    for name, host, command in by_hand:  # each a no-op where apply did its job
        code, out = run_as_manager(host.ip, key.private, command)
        if code != 0:
            problems.append(f"{name}: {command}: {out}")
    if backup_pair_status(fleet.state) == "active":
        settle_backup_run(fleet.tom, key)  # a run the timer started may be pulling beaker
    inv = Session(fleet.state).inventory()
    if LXC in inv.lxcs:
        attempt(f"removing {LXC}", "lxc", LXC, "remove", "--yes")
    if SECOND_KEY in inv.keys:
        attempt(f"removing {SECOND_KEY}", "keys", "remove", SECOND_KEY)
    if pair_before != "active" and backup_pair_status(fleet.state) == "active":
        attempt("stopping the backups bob -> tom", "backup", "stop", "bob", "tom")
    elif pair_before == "active":
        code, out = run_as_manager(fleet.tom.ip, key.private, f"sudo -n systemctl enable --now {TIMER}")
        if code != 0:
            problems.append(f"tom: enabling {TIMER}: {out}")
    assert not problems, "the fleet could not be put back:\n" + "\n".join(problems)


def break_by_hand(fleet: Fleet, key: LabKey, scene: Scene, tom_wg_key: str) -> None:
    """Each drift the issue names, made on the hosts behind infr's back, and seen to take."""
    bob, tom = fleet.bob, fleet.tom
    blob = scene.second_key.with_suffix(".pub").read_text().split()[1]  # base64: never a '|'
    sudo(tom, key, f"echo '{HAND_EDIT}' | sudo -n tee -a /etc/haproxy/haproxy.cfg >/dev/null")
    sudo(bob, key, "sudo -n systemctl stop haproxy")
    sudo(tom, key, f"sudo -n sed -i '\\|{blob}|d' /home/manager/.ssh/authorized_keys")
    sudo(tom, key, f"sudo -n systemctl disable --now {TIMER}")
    sudo(bob, key, f"sudo -n lxc-stop -n {LXC}")
    sudo(bob, key, f"sudo -n wg set infrwg0 peer '{tom_wg_key}' remove")
    with pytest.raises(OSError):
        page(bob.ip)
    assert sudo(bob, key, f"sudo -n lxc-info -n {LXC} -s -H").strip() == "STOPPED"
    assert tom_wg_key not in sudo(bob, key, "sudo -n wg show infrwg0 peers")
    assert run_as_manager(tom.ip, key.private, f"systemctl is-enabled {TIMER}")[1].strip() == "disabled"


def handshake_is_fresh(fleet: Fleet, key: LabKey, tom_vnet_ip: str) -> None:
    """bob and tom shake hands again once traffic flows over the mesh (beaker pings tom)."""
    deadline = time.monotonic() + 120
    while True:
        ping = f"sudo -n lxc-attach -n {LXC} -- busybox ping -c 2 -W 2 {tom_vnet_ip}"
        run_as_manager(fleet.bob.ip, key.private, ping)
        rows = json.loads(ok(fleet, key, "vnet", "status", "-o", "json"))
        pair = next(row for row in rows if (row["host"], row["peer"]) == ("bob", "tom"))
        if not pair["stale"] and pair["handshake_age"] is not None and pair["handshake_age"] < 180:
            return
        assert time.monotonic() < deadline, f"no fresh handshake between bob and tom: {pair}"
        time.sleep(5)


def test_plan_names_every_difference_made_by_hand_or_while_down_and_apply_repairs_them(
    fleet: Fleet, lab_key: LabKey, scene: Scene
) -> None:
    state, bob, tom = fleet.state, fleet.bob, fleet.tom
    hosts = Session(state).inventory().hosts
    baseline = infr(state, lab_key.private, "plan")
    assert baseline.returncode == 0, f"nothing is broken yet:\n{baseline.stdout}{baseline.stderr}"

    break_by_hand(fleet, lab_key, scene, hosts["tom"].wg_public_key)
    with pytest.raises(paramiko.AuthenticationException):
        login(tom.ip, "manager", scene.second_key)
    ok(fleet, lab_key, "-D", "bob", "lxc", LXC, "http-port", "8081")  # saved, not applied: bob is "down"
    assert Session(state).inventory().lxcs[LXC].http_port == 8081

    planned = infr(state, lab_key.private, "plan")
    shown = planned.stdout + planned.stderr
    assert planned.returncode == 2, shown
    found = differences(planned.stdout)
    assert listed(found, "tom", "routing", "haproxy"), f"haproxy.cfg edited on tom:\n{shown}"
    assert HAND_EDIT in planned.stdout, f"the diff shows the hand edit:\n{shown}"
    stopped = [step for step in listed(found, "bob", "routing", "haproxy") if "start" in step.lower()]
    assert stopped, f"haproxy stopped on bob:\n{shown}"
    assert f"{scene.vnet_ip}:8081" in planned.stdout, f"the port recorded while bob was down, in a diff:\n{shown}"
    assert listed(found, "tom", "host", "authorized_keys"), f"a key removed on tom:\n{shown}"
    assert listed(found, "tom", "backups", "infr-backup"), f"the backup timer disabled on tom:\n{shown}"
    assert listed(found, "bob", "lxcs", LXC), f"{LXC} stopped on bob:\n{shown}"
    assert listed(found, "bob", "vnet", "peer", "tom", "wg"), f"tom's peer removed on bob:\n{shown}"
    assert not listed(found, "bob", "host", "authorized_keys"), f"bob's keys were not touched:\n{shown}"

    applied = infr(state, lab_key.private, "apply", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    print(applied.stdout)
    served(bob.ip, b"beaker on 8081\n")  # haproxy runs, the container runs, the port set while down is live
    assert HAND_EDIT not in sudo(tom, lab_key, "sudo -n cat /etc/haproxy/haproxy.cfg")
    assert run_as_manager(tom.ip, scene.second_key, "true")[0] == 0
    timer = run_as_manager(tom.ip, lab_key.private, f"systemctl is-enabled {TIMER}; systemctl is-active {TIMER}")[1]
    assert timer.split() == ["enabled", "active"], timer
    assert sudo(bob, lab_key, f"sudo -n lxc-info -n {LXC} -s -H").strip() == "RUNNING"
    assert hosts["tom"].wg_public_key in sudo(bob, lab_key, "sudo -n wg show infrwg0 peers")
    handshake_is_fresh(fleet, lab_key, hosts["tom"].vnet_ip)

    again = infr(state, lab_key.private, "plan")
    assert again.returncode == 0, again.stdout + again.stderr


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def teammate(fleet: Fleet, lab_key: LabKey, tmp_path: Path) -> Iterator[Path]:
    """The fleet's state published to a bare remote, and a teammate's clone of it; the state
    loses the remote again afterwards (and the teammate's key, if it came in)."""
    assert not git(fleet.state, "remote"), "the lab's state has a remote already"
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(fleet.state, "remote", "add", "origin", remote.as_uri())
    try:
        ok(fleet, lab_key, "sync")  # publishes the state to the empty remote
        clone = tmp_path / "teammate"
        subprocess.run(["git", "clone", "-q", "-b", "main", remote.as_uri(), str(clone)], check=True)
        yield clone
    finally:
        try:
            if TEAMMATE_KEY in Session(fleet.state).inventory().keys:
                ok(fleet, lab_key, "keys", "remove", TEAMMATE_KEY)
        finally:
            git(fleet.state, "remote", "remove", "origin")


def test_a_teammates_change_pulled_with_sync_shows_in_the_plan_and_is_applied(
    fleet: Fleet, lab_key: LabKey, teammate: Path, tmp_path: Path
) -> None:
    state = fleet.state
    key = make_key(tmp_path / "waldorf", comment=TEAMMATE_KEY)
    # The teammate grants access in their clone; no host is touched from there (-D all).
    added = infr(teammate, lab_key.private, "-D", "bob,tom", "keys", "add", str(key))
    assert added.returncode == 0, added.stdout + added.stderr
    pushed = infr(teammate, lab_key.private, "sync")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert TEAMMATE_KEY not in Session(state).inventory().keys

    pulled = infr(state, lab_key.private, "sync")
    shown = pulled.stdout + pulled.stderr
    assert pulled.returncode == 0, shown  # the sync worked; its plan only informs
    assert TEAMMATE_KEY in Session(state).inventory().keys
    found = differences(pulled.stdout)
    for name, host in (("bob", fleet.bob), ("tom", fleet.tom)):
        assert listed(found, name, "host", "authorized_keys"), f"sync shows what the pull implies for {name}:\n{shown}"
        with pytest.raises(paramiko.AuthenticationException):
            login(host.ip, "manager", key.with_suffix(""))

    planned = infr(state, lab_key.private, "plan")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    applied = infr(state, lab_key.private, "apply", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    for name, host in (("bob", fleet.bob), ("tom", fleet.tom)):
        assert run_as_manager(host.ip, key.with_suffix(""), "true")[0] == 0, f"{name} refuses the new key"
    again = infr(state, lab_key.private, "plan")
    assert again.returncode == 0, again.stdout + again.stderr
