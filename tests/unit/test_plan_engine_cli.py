"""`infr plan` and `infr apply` (infr/cli/cmd_plan.py, show_plan.py) over a stand-in reconcile:
exit 0 when nothing differs, 2 when something does, 1 on error; apply shows the plan, asks
unless --yes, and prints how each step ended; `infr sync` ends with the plan of what it pulled."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from infr import reconcile
from infr.engine.plan import FleetPlan, HostPlan, Outcome, Status, Step
from infr.engine.run import Context, Scope
from infr.errors import NotFoundError, UsageError
from infr.state.model import HOST_READY
from tests.conftest import make_key, run_cli, seed_host

CFG = "/etc/haproxy/haproxy.cfg"
KEYS = "/home/manager/.ssh/authorized_keys"
DIFF = f"--- {CFG} (on the host)\n+++ {CFG} (from state)\n@@ -1,2 +1 @@\n global\n-# edited by hand\n"
REWRITE = Step("routing", "bob", f"rewrite {CFG}", DIFF)
START = Step("lxcs", "bob", "start the container web")
DIFFERS = FleetPlan(
    (HostPlan("bob", (REWRITE, START)), HostPlan("tom", skipped="marked down (-D)")),
    (Step("dns", "", "create A web.example.com -> 198.51.100.11"),),
)
MATCHES = FleetPlan((HostPlan("bob"), HostPlan("tom")))
UNREACHABLE = FleetPlan((HostPlan("bob", (REWRITE,)), HostPlan("dead", error="cannot reach dead: timed out")))


@dataclass
class Reconcile:
    """Stands in for infr.reconcile: the plan to show, and what applying it ends with."""

    found: FleetPlan
    outcomes: list[Outcome] = field(default_factory=list)
    left: FleetPlan = field(default_factory=FleetPlan)
    asked: list[tuple[Collection[str], Collection[str]]] = field(default_factory=list)
    applied: list[FleetPlan] = field(default_factory=list)

    def plan(self, ctx: Context, hosts: Collection[str] = (), features: Collection[str] = ()) -> FleetPlan:
        self.asked.append((hosts, features))
        return self.found

    def apply(
        self, ctx: Context, planned: FleetPlan, hosts: Collection[str] = (), features: Collection[str] = ()
    ) -> tuple[list[Outcome], FleetPlan]:
        self.applied.append(planned)
        for outcome in self.outcomes:  # as the engine reports each step while it runs
            if outcome.status is Status.OK:
                ctx.report(f"{outcome.host}: {outcome.feature}: {outcome.step}")
        return self.outcomes, self.left


@pytest.fixture
def fleet(state_dir: Path) -> Path:
    seed_host(state_dir, "bob", "198.51.100.11", status=HOST_READY)
    seed_host(state_dir, "tom", "198.51.100.12", status=HOST_READY)
    return state_dir


def _stand_in(monkeypatch: pytest.MonkeyPatch, found: FleetPlan, **applying: Any) -> Reconcile:
    fake = Reconcile(found, **applying)
    monkeypatch.setattr(reconcile, "plan", fake.plan)
    monkeypatch.setattr(reconcile, "apply", fake.apply)
    return fake


def test_plan_exits_0_when_the_fleet_matches_state(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, MATCHES)
    result = run_cli(fleet, "plan")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["bob: up to date", "tom: up to date", "no changes: the fleet matches state"]


def test_plan_exits_2_and_names_each_difference_by_host_and_feature(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in(monkeypatch, DIFFERS)
    result = run_cli(fleet, "plan")
    assert result.exit_code == 2, result.output
    assert result.stdout.splitlines() == [
        f"bob: routing: would rewrite {CFG}",
        f"    --- {CFG} (on the host)",
        f"    +++ {CFG} (from state)",
        "    @@ -1,2 +1 @@",
        "     global",
        "    -# edited by hand",
        "bob: lxcs: would start the container web",
        "tom: skipped: marked down (-D)",
        "dns: would create A web.example.com -> 198.51.100.11",
        "3 change(s) to make",
    ]
    quiet = run_cli(fleet, "plan", "--no-diff")
    assert quiet.exit_code == 2 and "edited by hand" not in quiet.stdout
    assert f"bob: routing: would rewrite {CFG}" in quiet.stdout


def test_plan_exits_1_when_a_host_cannot_be_planned_and_still_shows_the_others(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in(monkeypatch, UNREACHABLE)
    result = run_cli(fleet, "plan", "--no-diff")
    assert result.exit_code == 1, result.output
    assert result.stderr == "dead: could not be planned: cannot reach dead: timed out\n"
    summary = "1 change(s) to make; 1 could not be planned"
    assert result.stdout.splitlines() == [f"bob: routing: would rewrite {CFG}", summary]


def test_plan_passes_the_hosts_and_features_asked_for(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _stand_in(monkeypatch, MATCHES)
    assert run_cli(fleet, "plan", "bob", "-f", "host", "-f", "dns").exit_code == 0
    assert [(tuple(h), tuple(f)) for h, f in fake.asked] == [(("bob",), ("host", "dns"))]


def test_plan_refuses_an_unknown_feature_or_host_before_reading_anything(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _stand_in(monkeypatch, MATCHES)
    assert isinstance(run_cli(fleet, "plan", "-f", "firewall").exception, UsageError)
    assert isinstance(run_cli(fleet, "plan", "nosuch").exception, NotFoundError)
    assert isinstance(run_cli(fleet, "apply", "-f", "firewall", "--yes").exception, UsageError)
    assert fake.asked == []


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_plan_as_data(fleet: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    _stand_in(monkeypatch, DIFFERS)
    result = run_cli(fleet, "plan", "-o", fmt)
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout) if fmt == "json" else yaml.safe_load(result.stdout)
    assert data == DIFFERS.as_json()


def test_plan_as_csv_has_a_row_per_step(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, DIFFERS)
    result = run_cli(fleet, "plan", "-o", "csv")
    assert result.exit_code == 2, result.output
    assert result.stdout.splitlines() == [
        "host,feature,step",
        f"bob,routing,rewrite {CFG}",
        "bob,lxcs,start the container web",
        ",dns,create A web.example.com -> 198.51.100.11",
    ]


def test_a_description_cannot_drive_the_terminal(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, FleetPlan((HostPlan("bob", (Step("lxcs", "bob", "start web\x1b[2J\nx"),)),)))
    assert "bob: lxcs: would start web\\x1b[2J\\nx\n" in run_cli(fleet, "plan").stdout


OK_REWRITE = Outcome("bob", "routing", f"rewrite {CFG}", Status.OK, changed=(f"wrote {CFG}",))
OK_START = Outcome("bob", "lxcs", "start the container web", Status.OK)


def test_apply_yes_applies_without_asking_and_prints_each_outcome(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _stand_in(monkeypatch, DIFFERS, outcomes=[OK_REWRITE, OK_START], left=MATCHES)
    result = run_cli(fleet, "apply", "--yes")
    assert result.exit_code == 0, result.output
    assert fake.applied == [DIFFERS]
    out = result.stdout
    assert "apply these changes?" not in out
    assert out.index(f"bob: routing: would rewrite {CFG}") < out.index(f"bob: routing: rewrite {CFG}\n")
    assert "bob: lxcs: start the container web\n" in out
    assert out.endswith("2 change(s) made\n")


def test_apply_reports_failed_and_skipped_steps_and_exits_1(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    why = "haproxy -c: unknown keyword; the old one is back"
    failed = Outcome("bob", "routing", f"rewrite {CFG}", Status.FAILED, why)
    skipped = Outcome("bob", "routing", "start haproxy", Status.SKIPPED, "an earlier step failed")
    left = FleetPlan((HostPlan("bob", (REWRITE,)),))
    _stand_in(monkeypatch, DIFFERS, outcomes=[failed, skipped, OK_START], left=left)
    result = run_cli(fleet, "apply", "--yes")
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        f"bob: routing: failed: rewrite {CFG}: haproxy -c: unknown keyword; the old one is back",
        "bob: routing: skipped: start haproxy: an earlier step failed",
    ]
    assert result.stdout.endswith("1 change(s) made, 1 failed\n")


def test_apply_exits_1_when_a_host_was_not_reached_or_something_still_differs(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in(monkeypatch, UNREACHABLE, outcomes=[OK_REWRITE], left=UNREACHABLE)
    result = run_cli(fleet, "apply", "--yes")
    assert result.exit_code == 1, result.output
    assert "not reached: dead: cannot reach dead: timed out" in result.stderr
    _stand_in(monkeypatch, DIFFERS, outcomes=[OK_REWRITE], left=FleetPlan((HostPlan("bob", (START,)),)))
    result = run_cli(fleet, "apply", "--yes")
    assert result.exit_code == 1, result.output
    assert "1 change(s) still differ; see 'infr plan'" in result.stderr


def test_apply_without_yes_asks_and_a_no_applies_nothing(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _stand_in(monkeypatch, DIFFERS, outcomes=[OK_REWRITE, OK_START], left=MATCHES)
    refused = run_cli(fleet, "apply", input="n\n")
    assert refused.exit_code == 1, refused.output
    assert "apply these changes? [y/N]" in refused.stdout
    assert f"bob: routing: would rewrite {CFG}" in refused.stdout
    assert fake.applied == []
    agreed = run_cli(fleet, "apply", input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert fake.applied == [DIFFERS]


def test_apply_with_nothing_to_do_or_dry_run_never_asks_nor_applies(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _stand_in(monkeypatch, MATCHES)
    result = run_cli(fleet, "apply")
    assert (result.exit_code, result.stdout.splitlines()[-1]) == (0, "no changes: the fleet matches state")
    fake.found = DIFFERS
    dry = run_cli(fleet, "apply", "--dry-run")
    assert dry.exit_code == 0 and "apply these changes?" not in dry.stdout
    assert "3 change(s) to make" in dry.stdout
    fake.found = FleetPlan((HostPlan("dead", error="timed out"),))
    assert run_cli(fleet, "apply", "--yes").exit_code == 1
    assert fake.applied == []


def test_apply_reports_the_dns_records_it_fixed(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS is fixed in one go after the hosts; each record fixed is reported like a host step."""
    from infr.state.session import Session

    record = "create A web.example.com -> 198.51.100.11"
    monkeypatch.setattr(reconcile, "_apply_dns", lambda session: [Outcome("", "dns", record, Status.OK)])
    monkeypatch.setattr(reconcile, "_dns_steps", lambda session: ([], ""))
    lines: list[str] = []
    ctx = Context(Session(fleet), report=lines.append)
    outcomes, left = reconcile.apply(ctx, FleetPlan(zone_steps=(Step("dns", "", record),)), features=("dns",))
    assert lines == [f"dns: {record}"]
    assert [o.status for o in outcomes] == [Status.OK] and left.exit_code() == 0


def test_sync_ends_with_the_plan_of_what_it_pulled(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teammate's key comes in with `infr sync`: the hosts don't have it yet, and sync says so."""
    remote, clone = tmp_path / "remote.git", tmp_path / "teammate"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "-C", str(fleet), "remote", "add", "origin", remote.as_uri()], check=True)
    assert run_cli(fleet, "sync").exit_code == 0
    subprocess.run(["git", "clone", "-q", "-b", "main", remote.as_uri(), str(clone)], check=True)
    key = make_key(tmp_path / "bea", comment="bea@laptop")
    assert run_cli(clone, "-D", "bob,tom", "keys", "add", str(key)).exit_code == 0  # state only
    assert run_cli(clone, "sync").exit_code == 0
    asked: list[tuple[frozenset[str], frozenset[str], list[str]]] = []

    def plan_scope(ctx: Context, scope: Scope) -> FleetPlan:
        asked.append((scope.hosts, scope.features, sorted(ctx.inv.keys)))
        return FleetPlan(tuple(HostPlan(h, (Step("host", h, f"rewrite {KEYS}"),)) for h in sorted(scope.hosts)))

    monkeypatch.setattr(reconcile, "plan_scope", plan_scope)
    result = run_cli(fleet, "sync")
    assert result.exit_code == 0, result.output
    [(hosts, features, keys)] = asked
    assert (hosts, "host" in features, keys) == ({"bob", "tom"}, True, ["alice@laptop", "bea@laptop"])
    assert result.stdout.splitlines()[1:] == [
        "the pulled changes would change the hosts as follows:",
        f"bob: host: would rewrite {KEYS}",
        f"tom: host: would rewrite {KEYS}",
        "2 change(s) to make",
        "apply it with: infr apply",
    ]
    assert run_cli(fleet, "sync").stdout.count("\n") == 1  # nothing new came in: no plan
    assert len(asked) == 1
