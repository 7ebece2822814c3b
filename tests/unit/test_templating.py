"""The renderer's one rule: a value holding a newline, a carriage return or any other control
character never reaches a rendered file (issue 12 item 1), for every template infr has and for
the files built in code (`fill`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infr.engine import templating
from infr.errors import InfrError

TEMPLATES = sorted(
    str(p.relative_to(Path(templating.__file__).parents[1] / "templates"))
    for p in (Path(templating.__file__).parents[1] / "templates").rglob("*.j2")
)
CONTROL = st.sampled_from(
    ["\n", "\r", "\r\n", "\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\t"]
)
PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")), max_size=20)


def with_control_character() -> st.SearchStrategy[str]:
    return st.builds(lambda a, c, b: a + c + b, PRINTABLE, CONTROL, PRINTABLE)


class Anything:
    """Every name a template looks up: any attribute or item is itself, it iterates as two of
    itself (so `for a, b in x` unpacks), it is true, and it prints as `text`."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: object) -> Anything:
        return self

    def __iter__(self) -> Any:
        return iter([self, self])


def every_name() -> set[str]:
    from jinja2 import meta

    env = templating.environment()
    assert env.loader is not None
    return {n for t in TEMPLATES for n in meta.find_undeclared_variables(env.parse(env.loader.get_source(env, t)[0]))}


NAMES = every_name()


def test_every_template_is_covered() -> None:
    assert len(TEMPLATES) >= 20 and "preseed.cfg.j2" in TEMPLATES and "mesh/_peer.j2" in TEMPLATES


@pytest.mark.parametrize("template", TEMPLATES)
@given(text=with_control_character())
def test_a_value_with_a_control_character_is_refused_by_every_template(template: str, text: str) -> None:
    value = Anything(text)
    with pytest.raises(InfrError) as refused:
        templating.render(template, **dict.fromkeys(NAMES, value))
    message = str(refused.value)
    assert f"refusing to render {template}: {{{{" in message and ".j2 line " in message
    assert text not in message  # never shown: the value may be a secret


@pytest.mark.parametrize("template", TEMPLATES)
@given(text=PRINTABLE)
def test_the_same_template_renders_printable_values(template: str, text: str) -> None:
    templating.render(template, **dict.fromkeys(NAMES, Anything(text)))


def test_the_refusal_names_the_template_line_and_the_kind_of_character() -> None:
    peer = {"name": "bob", "public_key": "KEY\nAllowedIPs = 0.0.0.0/0", "endpoint": "x", "allowed": []}
    with pytest.raises(InfrError, match=r"mesh/_peer.j2 line 8\) contains a newline"):
        templating.render("mesh/host.conf.j2", port=1, hosts=[peer], admins=[], keepalive=25)


@given(text=with_control_character())
def test_fill_refuses_a_value_with_a_control_character_and_names_its_field(text: str) -> None:
    with pytest.raises(InfrError, match="refusing to write distro: its value contains") as refused:
        templating.fill("# {name} ({distro})\n", name="web", distro=text)
    assert text not in str(refused.value)


@given(text=PRINTABLE)
def test_fill_interpolates_printable_values(text: str) -> None:
    assert templating.fill("a = {v}\n", v=text) == f"a = {text}\n"


# ---------------------------------------------------------------------------
# Files built in code: each builder, with one value poisoned


def _builders(bad: str) -> dict[str, Any]:
    from infr.backups import btrbk
    from infr.hosts import desired
    from infr.lxcs import desired as lxcs_desired
    from infr.state.model import Host, Inventory, Key, Lxc
    from infr.vnet import desired as vnet_desired

    settings = {"dnsPrefix": "infr", "dnsDomain": "example.com", "vnetPrefix": "vnet", "vnetNetwork": "10.8.0.0/16"}
    host = Host("bob", "203.0.113.1", "10.8.0.1", host_key="ssh-ed25519 AAAA")
    lxc = Lxc("web", "bob", "debian", "bookworm", "10.8.1.2")
    return {
        "LXC config (distro)": lambda: lxcs_desired.container_config(replace(lxc, distro=bad), host, settings),
        "LXC config (release)": lambda: lxcs_desired.container_config(replace(lxc, release=bad), host, settings),
        "authorized_keys": lambda: desired.authorized_keys(Inventory({}, keys={"a": Key("a", bad)})),
        "/etc/hosts": lambda: desired.name_files("bob", {**settings, "dnsDomain": bad}),
        "lxc-net": lambda: desired.network_files(replace(host, vnet_ip=bad), settings),
        "btrbk known_hosts": lambda: btrbk.render_known_hosts([replace(host, host_key=bad)]),
        "vnet hosts block": lambda: vnet_desired.hosts_block(
            Inventory(settings, lxcs={bad: replace(lxc, name=bad)}), settings
        ),
    }


BUILDERS = sorted(_builders("x"))


@pytest.mark.parametrize("builder", BUILDERS)
@given(text=with_control_character())
def test_a_file_built_in_code_refuses_a_value_with_a_control_character(builder: str, text: str) -> None:
    with pytest.raises(InfrError, match="refusing to write") as refused:
        _builders(text)[builder]()
    assert text not in str(refused.value)


@pytest.mark.parametrize("builder", BUILDERS)
def test_a_file_built_in_code_still_builds_from_valid_values(builder: str) -> None:
    _builders("10.8.0.9")[builder]()
