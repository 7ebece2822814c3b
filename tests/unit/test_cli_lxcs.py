"""`infr hosts`, `infr host NAME`, `infr lxcs`, `infr lxc NAME ...`: routing, aliases, ports, tcp forwards."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from infr.errors import ConflictError, InfrError, NotFoundError, UsageError
from infr.state.model import TcpForward
from infr.state.store import Store
from tests.conftest import clone_state, run_cli, seed_host, seed_lxc, snapshot


def seed_world(root: Path) -> None:
    seed_host(root, "bob", "45.32.191.151")  # 10.8.1.1
    seed_host(root, "tom", "45.32.191.152")  # 10.8.1.2
    seed_lxc(root, "fozzie", "bob", distro="ubuntu", release="xenial")  # 10.8.1.3
    seed_lxc(root, "web", "bob")  # 10.8.1.4
    seed_lxc(root, "db", "tom")  # 10.8.1.5


@pytest.fixture
def world(tmp_path: Path, state_template: Callable[..., Path]) -> Path:
    """bob (fozzie, web) and tom (db), as in the Infr README."""
    return clone_state(state_template("world", seed_world), tmp_path / "state")


def ok(root: Path, *args: str) -> str:
    result = run_cli(root, *args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def note(root: Path, *args: str) -> str:
    """The line a change prints about itself (what follows it is about applying it to hosts)."""
    return ok(root, *args).splitlines()[0]


def refused(root: Path, error: type[InfrError], *args: str) -> str:
    """Run a command that must fail with `error` and change nothing; returns the error text."""
    before = snapshot(root)
    result = run_cli(root, *args)
    assert isinstance(result.exception, error), (args, result.output, result.exception)
    assert snapshot(root) == before
    return str(result.exception)


def commits(root: Path) -> int:
    out = subprocess.run(["git", "-C", str(root), "rev-list", "--count", "HEAD"], capture_output=True, text=True)
    return int(out.stdout)


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


# ---- hosts and lxcs lists, show -------------------------------------------------------------


@pytest.mark.parametrize("command", [["hosts"], ["hosts", "list"]])
def test_hosts_lists_every_host(world: Path, command: list[str]) -> None:
    out = lines(ok(world, *command))
    assert out[0] == ["NAME", "PUBLIC", "IP", "PRIVATE", "IP", "STATUS"]
    assert out[2:] == [
        ["bob", "45.32.191.151", "10.8.1.1", "installing"],
        ["tom", "45.32.191.152", "10.8.1.2", "installing"],
    ]


@pytest.mark.parametrize("command", [["lxcs"], ["lxcs", "list"]])
def test_lxcs_lists_every_lxc_with_its_hosts_public_ip(world: Path, command: list[str]) -> None:
    out = lines(ok(world, *command))
    assert out[0] == ["NAME", "HOST", "PUBLIC", "IP", "PRIVATE", "IP", "STATUS"]
    assert out[2:] == [
        ["db", "tom", "45.32.191.152", "10.8.1.5", "ready"],
        ["fozzie", "bob", "45.32.191.151", "10.8.1.3", "ready"],
        ["web", "bob", "45.32.191.151", "10.8.1.4", "ready"],
    ]


def test_empty_lists_say_how_to_add(state_dir: Path) -> None:
    result = run_cli(state_dir, "hosts")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == "no hosts yet: add one with 'infr hosts add NAME IP'\n"
    assert "no LXCs yet" in run_cli(state_dir, "lxcs").stderr


@pytest.mark.parametrize("command", [["host", "bob"], ["host", "bob", "show"]])
def test_host_show(world: Path, command: list[str]) -> None:
    out = ok(world, *command).splitlines()
    assert out[0].split() == ["Name:", "bob"]
    assert out[1].split() == ["Public", "IP:", "45.32.191.151"]
    assert out[2].split() == ["Private", "IP:", "10.8.1.1"]
    assert ["LXCs:", "fozzie,", "web"] in lines("\n".join(out))


@pytest.mark.parametrize("command", [["lxc", "fozzie"], ["lxc", "fozzie", "show"]])
def test_lxc_show_uses_infrs_layout(world: Path, command: list[str]) -> None:
    seed = Store(world).load().lxcs["fozzie"]
    assert seed.vnet_ip == "10.8.1.3"
    out = ok(world, *command).splitlines()
    assert out[:4] == [
        "Name:           fozzie",
        "Host:           bob",
        "Distro:         ubuntu xenial",
        "Private IP:     10.8.1.3",
    ]
    assert "HTTP:           NONE" in out and "HTTPS:          NONE" in out
    assert "Aliases:" in out and "TCP Forwards:" in out and "LXC Http Port:  80" in out


def test_unknown_names_say_what_to_do(world: Path) -> None:
    assert refused(world, NotFoundError, "lxc", "nope") == "no LXC named 'nope' (list them with 'infr lxcs')"
    assert refused(world, NotFoundError, "lxc", "bob") == "no LXC named 'bob' (bob is a host: use 'infr host bob')"
    assert refused(world, NotFoundError, "host", "nope") == "no host named 'nope' (list them with 'infr hosts')"
    assert refused(world, NotFoundError, "host", "web") == "no host named 'web' (web is an LXC: use 'infr lxc web')"
    assert refused(world, NotFoundError, "lxc", "nope", "http", "FORWARD").startswith("no LXC named 'nope'")


# ---- http / https modes and ports ------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "field", "value", "expected"),
    [
        (["http", "FORWARD"], "http", "FORWARD", "fozzie: http NONE -> FORWARD"),
        (["http", "redirect-https"], "http", "REDIRECT-HTTPS", "fozzie: http NONE -> REDIRECT-HTTPS"),
        (["https", "TERMINATE"], "https", "TERMINATE", "fozzie: https NONE -> TERMINATE"),
        (["https", "forward"], "https", "FORWARD", "fozzie: https NONE -> FORWARD"),
        (["http-port", "8080"], "http_port", 8080, "fozzie: http_port 80 -> 8080"),
        (["https-port", "8443"], "https_port", 8443, "fozzie: https_port 443 -> 8443"),
    ],
)
def test_routing_changes_are_saved_and_committed(
    world: Path, command: list[str], field: str, value: object, expected: str
) -> None:
    before = commits(world)
    assert note(world, "lxc", "fozzie", *command) == expected
    assert getattr(Store(world).load().lxcs["fozzie"], field) == value
    assert commits(world) == before + 1


def test_setting_the_current_mode_again_changes_nothing(world: Path) -> None:
    before = snapshot(world)
    assert note(world, "lxc", "fozzie", "http", "NONE") == "fozzie: http is already NONE"
    assert snapshot(world) == before


@pytest.mark.parametrize(
    "command",
    [
        ["http", "TERMINATE"],
        ["https", "REDIRECT-HTTPS"],
        ["http", "bogus"],
        ["http"],
        ["http-port", "abc"],
        ["https-port", "1.5"],
        ["frobnicate"],
    ],
)
def test_bad_routing_arguments_are_usage_errors(world: Path, command: list[str]) -> None:
    before = snapshot(world)
    result = run_cli(world, "lxc", "fozzie", *command)
    assert result.exit_code == 2, result.output
    assert snapshot(world) == before


@pytest.mark.parametrize(("which", "port"), [("http-port", "0"), ("https-port", "65536"), ("http-port", "-1")])
def test_ports_outside_1_to_65535_are_refused(world: Path, which: str, port: str) -> None:
    text = refused(world, UsageError, "lxc", "fozzie", which, "--", port)
    assert f"port {port} is not a port number between 1 and 65535" in text


# ---- aliases -----------------------------------------------------------------------------------


def test_add_and_remove_an_alias(world: Path) -> None:
    assert note(world, "lxc", "fozzie", "add-alias", "WWW.Example.org.") == "fozzie: alias www.example.org added"
    assert note(world, "lxc", "fozzie", "add-alias", "shop.example.co.uk") == "fozzie: alias shop.example.co.uk added"
    assert Store(world).load().lxcs["fozzie"].aliases == ["www.example.org", "shop.example.co.uk"]
    assert "Aliases:        www.example.org, shop.example.co.uk" in ok(world, "lxc", "fozzie").splitlines()
    assert note(world, "lxc", "fozzie", "remove-alias", "www.example.org") == "fozzie: alias www.example.org removed"
    assert Store(world).load().lxcs["fozzie"].aliases == ["shop.example.co.uk"]


@pytest.mark.parametrize("alias", ["foo.notatld", "com", "co.uk", "www_x.example.org", "a-.example.org", "example"])
def test_an_alias_must_be_a_domain_under_a_public_suffix(world: Path, alias: str) -> None:
    text = refused(world, UsageError, "lxc", "fozzie", "add-alias", alias)
    assert text.startswith(f"alias '{alias}' is not") and text.endswith(
        "(give a full domain name such as www.example.org)"
    )


@pytest.mark.parametrize("alias", ["www.example.org\nlxc.mount.entry = / mnt", "\x1b[2J", "a..example.org"])
def test_removing_an_alias_that_is_no_domain_is_refused_before_anything(world: Path, alias: str) -> None:
    # Found by tests/unit/test_fuzz_cli.py: it was echoed raw in a note, then applied to the host.
    before = snapshot(world)
    text = refused(world, UsageError, "lxc", "fozzie", "remove-alias", alias)
    assert text.startswith(f"alias {alias.lower()!r} is not")
    assert snapshot(world) == before


def test_an_alias_routes_to_one_lxc_only(world: Path) -> None:
    ok(world, "lxc", "fozzie", "add-alias", "www.example.org")
    before = snapshot(world)
    assert note(world, "lxc", "fozzie", "add-alias", "www.example.org") == (
        "fozzie: alias www.example.org is already there"
    )
    assert snapshot(world) == before
    assert refused(world, ConflictError, "lxc", "db", "add-alias", "www.example.org") == (
        "www.example.org already routes to fozzie (remove it there first: infr lxc fozzie remove-alias www.example.org)"
    )
    # Another LXC's own names are taken too.
    assert refused(world, ConflictError, "lxc", "db", "add-alias", "web.infr.example.com").startswith(
        "web.infr.example.com already routes to web"
    )


def test_removing_an_alias_the_lxc_does_not_have_changes_nothing(world: Path) -> None:
    ok(world, "lxc", "fozzie", "add-alias", "www.example.org")
    before = snapshot(world)
    assert note(world, "lxc", "fozzie", "remove-alias", "shop.example.org") == (
        "fozzie: has no alias shop.example.org (its aliases: www.example.org)"
    )
    assert snapshot(world) == before


# ---- tcp forwards --------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["add-tcp-forward", "tcp-forward"])
def test_add_and_remove_a_tcp_forward(world: Path, spelling: str) -> None:
    assert note(world, "lxc", "fozzie", spelling, "2222", "22") == "fozzie: bob:2222 -> fozzie:22"
    assert note(world, "lxc", "fozzie", spelling, "5432", "5432") == "fozzie: bob:5432 -> fozzie:5432"
    assert Store(world).load().lxcs["fozzie"].tcp_forwards == [TcpForward(2222, 22), TcpForward(5432, 5432)]
    assert "TCP Forwards:   2222 -> 22, 5432 -> 5432" in ok(world, "lxc", "fozzie").splitlines()
    out = note(world, "lxc", "fozzie", "remove-tcp-forward", "2222")
    assert out == "fozzie: tcp forward from bob:2222 removed"
    assert Store(world).load().lxcs["fozzie"].tcp_forwards == [TcpForward(5432, 5432)]


@pytest.mark.parametrize("port", ["22", "80", "443"])
def test_reserved_host_ports_are_refused(world: Path, port: str) -> None:
    text = refused(world, UsageError, "lxc", "fozzie", "add-tcp-forward", port, "8000")
    assert text == (
        f"host port {port} is reserved (22 is sshd, 80 and 443 are HAProxy's HTTP and HTTPS) "
        "(use another host port, e.g. 2222)"
    )


def test_a_host_port_is_forwarded_to_one_lxc_per_host(world: Path) -> None:
    ok(world, "lxc", "fozzie", "add-tcp-forward", "2222", "22")
    assert refused(world, ConflictError, "lxc", "web", "add-tcp-forward", "2222", "22") == (
        "host port 2222 on bob is already forwarded to fozzie "
        "(use another host port, or: infr lxc fozzie remove-tcp-forward 2222)"
    )
    assert refused(world, ConflictError, "lxc", "fozzie", "tcp-forward", "2222", "2200").startswith(
        "host port 2222 on bob is already forwarded to fozzie"
    )
    # Another host may use the same port.
    assert note(world, "lxc", "db", "add-tcp-forward", "2222", "22") == "db: tom:2222 -> db:22"


@pytest.mark.parametrize(
    ("host_port", "lxc_port", "what"), [("0", "22", "host port 0"), ("2222", "65536", "LXC port 65536")]
)
def test_tcp_forward_ports_must_be_1_to_65535(world: Path, host_port: str, lxc_port: str, what: str) -> None:
    text = refused(world, UsageError, "lxc", "fozzie", "add-tcp-forward", host_port, lxc_port)
    assert text.startswith(f"{what} is not a port number between 1 and 65535")


def test_a_tcp_forward_needs_two_whole_numbers(world: Path) -> None:
    for args in (["2222"], ["x", "22"], ["2222", "22", "33"]):
        before = snapshot(world)
        assert run_cli(world, "lxc", "fozzie", "add-tcp-forward", *args).exit_code == 2
        assert snapshot(world) == before


def test_removing_a_tcp_forward_that_is_not_there_changes_nothing(world: Path) -> None:
    ok(world, "lxc", "fozzie", "add-tcp-forward", "2222", "22")
    before = snapshot(world)
    assert note(world, "lxc", "fozzie", "remove-tcp-forward", "2223") == (
        "fozzie: has no tcp forward from host port 2223 (its forwarded host ports: 2222)"
    )
    assert note(world, "lxc", "web", "remove-tcp-forward", "2222") == (
        "web: has no tcp forward from host port 2222 (its forwarded host ports: none)"
    )
    again = note(world, "lxc", "fozzie", "add-tcp-forward", "2222", "22")
    assert again == "fozzie: bob:2222 -> fozzie:22 is already there"
    assert snapshot(world) == before
