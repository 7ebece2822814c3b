"""The routing feature as data: facts in (haproxy.cfg, host files, units, certificates), steps out."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infr.connector.target import Result
from infr.engine.facts import FileFact, UnitFact
from infr.engine.run import Context
from infr.engine.steps import FileSpec
from infr.errors import DnsNotReadyError
from infr.routing import certificates, deploy
from infr.routing.certs import CertbotSettings, CertInfo
from infr.routing.feature import FEATURE, Certbot, Desired, Found, decide, desired
from infr.routing.haproxy import HaproxySettings
from infr.state.model import HOST_READY, Host, Inventory, Lxc, TcpForward
from infr.state.session import Session
from tests.conftest import seed_host, seed_lxc

SETTINGS = HaproxySettings(dns_domain="example.org")
HOST = Host("bob", "203.0.113.10", "10.10.0.1", status=HOST_READY)
LATER = datetime(2027, 2, 20, 12, tzinfo=UTC)
CONFIG = deploy.CONFIG
RUNNING = UnitFact(enabled=True, active=True)
OFF = UnitFact(enabled=False, active=False)


def lxc(name: str, host: str = HOST.name, **fields: object) -> Lxc:
    return Lxc(name, host, "debian", "12", "10.10.0.20", **fields)  # type: ignore[arg-type]


def inventory(*lxcs: Lxc, **config: str) -> Inventory:
    settings = {"dnsDomain": "example.org", "dnsPrefix": "infr", "vnetPrefix": "vnet", **config}
    return Inventory(settings, {HOST.name: HOST}, {c.name: c for c in lxcs})


def want(*lxcs: Lxc, ca: bytes | None = None) -> Desired:
    return desired(inventory(*lxcs), HOST, SETTINGS, ca)


def in_place(target: Desired, *, config: str | None = None, certs: Sequence[CertInfo] = ()) -> Found:
    """A host holding every host file, `config` (the wanted one by default), units as they should be."""
    files: dict[str, FileFact | None] = {spec.path: FileFact(spec.content, meta(spec)) for spec in target.files}
    files[CONFIG] = FileFact((target.config if config is None else config).encode(), "root:haproxy:640")
    units = {"haproxy": RUNNING, deploy.RENEW_TIMER: RUNNING, deploy.DEBIAN_RENEW_TIMER: OFF}
    return Found(files, units, list(certs))


def meta(spec: FileSpec) -> str:
    return f"{spec.owner}:{spec.group}:{spec.mode:o}"


def certbot(resolves_to: str = HOST.public_ip, said: list[str] | None = None) -> Certbot:
    lines = said if said is not None else []
    return Certbot(CertbotSettings(), lambda: lambda name: [resolves_to], lines.append)


def steps_of(target: Desired, found: Found) -> list[str]:
    return [step.description for step in decide(HOST, target, found, certbot())]


class Recorder:
    """A connection that answers every command with success (stat: no such file) and keeps what it was asked."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.uploads: dict[str, bytes] = {}

    def run(self, argv: Sequence[str], **options: object) -> Result:
        self.commands.append(list(argv))
        return Result(1 if argv[0] == "stat" else 0, b"", b"")

    def put_file(self, path: str, data: bytes, *, owner: str, group: str, mode: int) -> None:
        self.uploads[path] = data


def test_a_host_that_holds_what_state_says_needs_nothing() -> None:
    target = want(lxc("web", http="FORWARD"), lxc("shop", https="TERMINATE"))
    shop = CertInfo("shop", ("shop.infr.example.org",), LATER)
    assert steps_of(target, in_place(target, certs=[shop])) == []


def test_a_new_lxc_is_one_config_step_named_by_its_sections_and_put_live_by_the_apply_script() -> None:
    before, after = want(), want(lxc("web", http="FORWARD"))
    [step] = decide(HOST, after, in_place(after, config=before.config), certbot())
    assert step.description == "update haproxy.cfg: added backend lxc_web_http; changed frontend http (+3 -0 lines)"
    assert "+backend lxc_web_http\n" in step.diff
    conn = Recorder()
    assert step.run(conn) == ["added backend lxc_web_http", "changed frontend http (+3 -0 lines)"]
    assert conn.uploads == {deploy.STAGED: after.config.encode()}
    assert conn.commands == [[deploy.APPLY_SCRIPT, deploy.STAGED]]


def test_a_hand_edited_config_shows_the_edit_in_the_diff() -> None:
    target = want(lxc("web", http="FORWARD"))
    edited = target.config.replace("timeout client", "timeout client 1s\n    # by hand\n    timeout client", 1)
    [step] = decide(HOST, target, in_place(target, config=edited), certbot())
    assert step.description.startswith("update haproxy.cfg: changed defaults")
    assert "-    timeout client 1s\n" in step.diff and "-    # by hand\n" in step.diff


def test_a_host_with_no_config_yet_counts_the_sections_past_the_first_three() -> None:
    target = want(lxc("web", http="FORWARD"))
    found = in_place(target)
    found = dataclasses.replace(found, files={**found.files, CONFIG: None})
    [step] = decide(HOST, target, found, certbot())
    assert step.description.startswith("update haproxy.cfg: added global; added defaults; added ")
    assert step.description.endswith(" more sections")


def test_a_stopped_haproxy_starts_after_its_config_goes_live() -> None:
    before, after = want(), want(lxc("web", http="FORWARD"))
    found = in_place(after, config=before.config)
    stopped = dataclasses.replace(found, units={**found.units, "haproxy": UnitFact(enabled=True, active=False)})
    assert steps_of(after, stopped) == [
        "update haproxy.cfg: added backend lxc_web_http; changed frontend http (+3 -0 lines)",
        "start haproxy",
    ]
    assert steps_of(after, dataclasses.replace(stopped, files=in_place(after).files)) == ["start haproxy"]


def test_missing_host_files_and_debians_timer_come_back_to_infrs() -> None:
    target = want()
    found = in_place(target)
    files = {**found.files, deploy.APPLY_SCRIPT: None}
    units = {
        **found.units,
        deploy.RENEW_TIMER: OFF,
        deploy.DEBIAN_RENEW_TIMER: RUNNING,
    }
    assert steps_of(target, Found(files, units, [])) == [
        f"create {deploy.APPLY_SCRIPT}",
        f"enable and start {deploy.RENEW_TIMER}",
        f"stop and disable {deploy.DEBIAN_RENEW_TIMER}",
    ]


@pytest.mark.parametrize(
    ("lxcs", "certs", "expected"),
    [
        (
            [lxc("shop", https="TERMINATE", aliases=["shop.example.com"])],
            [],
            ["obtain certificate shop for shop.infr.example.org,shop.example.com"],
        ),
        (
            [lxc("shop", https="TERMINATE", aliases=["shop.example.com"])],
            [CertInfo("shop", ("shop.infr.example.org",), LATER)],
            ["obtain certificate shop for shop.infr.example.org,shop.example.com"],
        ),
        ([], [CertInfo("old", ("old.infr.example.org",), LATER)], ["delete certificate old"]),
        (
            [lxc("shop", https="TERMINATE")],
            [CertInfo("old", ("old.infr.example.org",), LATER)],
            ["delete certificate old", "obtain certificate shop for shop.infr.example.org"],
        ),
    ],
)
def test_certificates_follow_the_terminate_lxcs(lxcs: list[Lxc], certs: list[CertInfo], expected: list[str]) -> None:
    target = want(*lxcs)
    assert steps_of(target, in_place(target, certs=certs)) == expected


def test_certificate_steps_come_after_the_config_that_routes_the_challenge() -> None:
    before, after = want(), want(lxc("shop", https="TERMINATE"))
    found = in_place(after, config=before.config)
    assert [s.split(":")[0] for s in steps_of(after, found)] == [
        "update haproxy.cfg",
        "obtain certificate shop for shop.infr.example.org",
    ]


def test_obtaining_asks_certbot_only_once_every_name_points_at_the_host() -> None:
    target = want(lxc("shop", https="TERMINATE"))
    said: list[str] = []
    [step] = decide(HOST, target, in_place(target), certbot(said=said))
    conn = Recorder()
    assert step.run(conn) == ["certificate shop for shop.infr.example.org"]
    assert conn.commands[0][:2] == ["certbot", "certonly"] and "shop.infr.example.org" in conn.commands[0]
    assert said == [f"asking {CertbotSettings().server} for a certificate: shop.infr.example.org"]
    [elsewhere] = decide(HOST, target, in_place(target), certbot(resolves_to="198.51.100.7"))
    conn = Recorder()
    with pytest.raises(DnsNotReadyError, match="resolves to 198.51.100.7, not 203.0.113.10"):
        elsewhere.run(conn)
    assert conn.commands == []


def test_deleting_takes_the_certificate_out_of_haproxy() -> None:
    target = want()
    [step] = decide(HOST, target, in_place(target, certs=[CertInfo("old", ("o.example.org",), LATER)]), certbot())
    conn = Recorder()
    assert step.run(conn) == ["certificate old deleted"]
    assert conn.commands[1:] == [
        ["rm", "-f", "--", "/etc/haproxy/certs/old.pem"],
        [deploy.APPLY_SCRIPT, "--reload"],
    ]


def test_a_private_acme_ca_is_trusted_only_where_certificates_are_wanted() -> None:
    shop = lxc("shop", https="TERMINATE")
    have = [CertInfo("shop", ("shop.infr.example.org",), LATER)]
    target = want(shop, ca=b"CA PEM\n")
    [step] = decide(HOST, target, in_place(target, certs=have), certbot())
    assert (step.description, "+CA PEM" in step.diff) == (f"create {certificates.CA_FILE}", True)
    conn = Recorder()
    assert step.run(conn) == [f"wrote {certificates.CA_FILE}"]
    assert ["update-ca-certificates", "--fresh"] in conn.commands
    assert steps_of(want(ca=b"CA PEM\n"), in_place(want())) == []
    public = want(shop)
    found = in_place(public, certs=have)
    ca = FileFact(b"CA PEM\n", "root:root:644")
    found = dataclasses.replace(found, files={**found.files, certificates.CA_FILE: ca})
    assert steps_of(public, found) == [f"stop trusting a private ACME CA: remove {certificates.CA_FILE}"]


# touched(before, after): which hosts an edit changes the routing of.

OTHER = Host("ann", "203.0.113.11", "10.10.0.2", status=HOST_READY)


def fleet(*lxcs: Lxc, **config: str) -> Inventory:
    inv = inventory(*lxcs, **config)
    inv.hosts[OTHER.name] = OTHER
    return inv


WEB = lxc("web", http="FORWARD")


@pytest.mark.parametrize(
    ("after", "hosts"),
    [
        (fleet(WEB), set()),
        (fleet(dataclasses.replace(WEB, zone="z", status="creating")), set()),
        (fleet(dataclasses.replace(WEB, https="TERMINATE")), {"bob"}),
        (fleet(dataclasses.replace(WEB, http_port=8080)), {"bob"}),
        (fleet(dataclasses.replace(WEB, aliases=["www.example.com"])), {"bob"}),
        (fleet(dataclasses.replace(WEB, tcp_forwards=[TcpForward(2222, 22)])), {"bob"}),
        (fleet(dataclasses.replace(WEB, vnet_ip="10.10.0.30")), {"bob"}),
        (fleet(dataclasses.replace(WEB, host="ann")), {"bob", "ann"}),
        (fleet(), {"bob"}),
        (fleet(WEB, lxc("api", host="ann")), {"ann"}),
        (fleet(WEB, dnsPrefix="www"), {"bob", "ann"}),
        (fleet(WEB, acmeServer="letsencrypt-staging"), {"bob", "ann"}),
    ],
)
def test_touched_names_the_hosts_whose_routing_inputs_changed(after: Inventory, hosts: set[str]) -> None:
    assert FEATURE.touched(fleet(WEB), after) == hosts


def test_a_host_becoming_ready_is_touched() -> None:
    before = fleet(WEB)
    before.hosts["ann"] = dataclasses.replace(OTHER, status="installing")
    assert FEATURE.touched(before, fleet(WEB)) == {"ann"}
    assert FEATURE.touched(fleet(WEB), fleet(WEB)) == set()


# plan(): the batched reads on one connection, then the decision.


class FakeHost:
    """Answers the routing feature's reads (one file read, one systemctl show, certbot's listing)."""

    def __init__(self, files: dict[str, FileFact], units: dict[str, str], certs: str = "") -> None:
        self.files, self.units, self.certs = files, units, certs  # units: "UnitFileState ActiveState"
        self.commands: list[list[str]] = []

    def run(self, argv: Sequence[str], **options: object) -> Result:
        argv = list(argv)
        self.commands.append(argv)
        if argv[:2] == ["sh", "-c"]:
            return Result(0, "".join(self._listing(path) + "\n" for path in argv[4:]).encode(), b"")
        if argv[:2] == ["systemctl", "show"]:
            states = [self.units[unit].split() for unit in argv[4:]]
            blocks = [f"LoadState=loaded\nUnitFileState={file}\nActiveState={active}" for file, active in states]
            return Result(0, "\n\n".join(blocks).encode(), b"")
        if argv[0] == "find":
            return Result(0, b"/etc/letsencrypt/renewal/old.conf\n" if self.certs else b"", b"")
        if argv[:2] == ["certbot", "certificates"]:
            return Result(0, self.certs.encode(), b"")
        raise AssertionError(f"a plan ran {argv}")

    def _listing(self, path: str) -> str:
        found = self.files.get(path)
        return f"{found.meta} {base64.b64encode(found.content).decode()}" if found else "-"

    def put_file(self, path: str, data: bytes, *, owner: str, group: str, mode: int) -> None:
        raise AssertionError(f"a plan wrote {path}")


CERTBOT_LISTING = """Found the following certs:
  Certificate Name: old
    Domains: old.infr.example.org
    Expiry Date: 2027-02-20 12:00:00+00:00 (VALID: 76 days)
    Certificate Path: /etc/letsencrypt/live/old/fullchain.pem
"""


def test_plan_reads_the_host_in_four_commands_and_plans_what_differs(state_dir: Path) -> None:
    seed_host(state_dir, "bob", "203.0.113.10", status=HOST_READY)
    seed_lxc(state_dir, "web", "bob", http="FORWARD")
    session = Session(state_dir)
    host = session.inventory().hosts["bob"]
    files = {spec.path: FileFact(spec.content, meta(spec)) for spec in deploy.host_files()}
    units = {
        "haproxy": "enabled inactive",
        deploy.RENEW_TIMER: "enabled active",
        deploy.DEBIAN_RENEW_TIMER: "enabled active",
    }
    conn = FakeHost(files, units, CERTBOT_LISTING)
    steps = [step.description for step in FEATURE.plan(Context(session), host, conn)]
    assert steps[0].startswith("update haproxy.cfg: added global; added defaults; added ")
    assert steps[1:] == [
        "start haproxy",
        f"stop and disable {deploy.DEBIAN_RENEW_TIMER}",
        "delete certificate old",
    ]
    assert [argv[:2] for argv in conn.commands] == [
        ["systemctl", "show"],
        ["sh", "-c"],
        ["find", "/etc/letsencrypt/renewal"],
        ["certbot", "certificates"],
    ]
    # Nothing differs once the host holds the config too and HAProxy runs.
    config = deploy.desired_config(session.inventory(), host, deploy.settings_for(session))
    files[CONFIG] = FileFact(config.encode(), "root:haproxy:640")
    units |= {"haproxy": "enabled active", deploy.DEBIAN_RENEW_TIMER: "disabled inactive"}
    assert FEATURE.plan(Context(session), host, FakeHost(files, units)) == []
