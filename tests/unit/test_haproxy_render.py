"""haproxy.cfg rendering: golden files for every mode, validation, and structural invariants.

Regenerate the golden files after an intended template change with
    INFR_REGEN_GOLDEN=1 pytest tests/unit/test_haproxy_render.py
and review the diff like code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infr.engine import templating
from infr.errors import ValidationError
from infr.routing import haproxy
from infr.routing.certs import CertbotSettings, CertRequest, renew_argv
from infr.routing.haproxy import (
    HOST_FILES,
    HaproxySettings,
    certificate_requests,
    config_diff,
    lxc_fqdns,
    render_haproxy,
    summarize_changes,
)
from infr.state.model import HTTP_MODES, HTTPS_MODES, Host, Lxc, TcpForward

GOLDEN = Path(__file__).parent / "golden" / "haproxy"
HOST = Host("alpha", "203.0.113.10", "10.8.0.1")
SETTINGS = HaproxySettings(dns_domain="example.com")


def lxc(name: str, ip: str, **fields) -> Lxc:
    return Lxc(name, "alpha", "debian", "12", ip, **fields)


# One LXC for each combination Infr users had, plus aliases, ports and forwards.
EVERY_MODE = [
    lxc("plain", "10.8.1.2", http="FORWARD"),
    lxc(
        "shop",
        "10.8.1.3",
        http="REDIRECT-HTTPS",
        https="TERMINATE",
        aliases=["shop.example.org", "www.shop.example.org"],
    ),
    lxc("mail", "10.8.1.4", https="FORWARD", https_port=8443),
    lxc("app", "10.8.1.5", http="FORWARD", https="TERMINATE", http_port=8080),
    lxc("db", "10.8.1.6", tcp_forwards=[TcpForward(5432, 5432), TcpForward(2222, 22)]),
    lxc("blog", "10.8.1.7", http="REDIRECT-HTTPS", https="FORWARD", aliases=["Blog.Example.NET"]),
    lxc("quiet", "10.8.1.8"),
]

CUSTOM = HaproxySettings(
    dns_domain="example.test",
    dns_prefix="hosting",
    vnet_prefix="private",
    bind_addresses=("198.51.100.7", "127.0.0.1"),
    http_port=8080,
    https_port=8443,
    certs_dir="/srv/certs",
    default_cert="/srv/default.pem",
    acme_port=9980,
    terminate_socket="/srv/run/terminate.sock",
    stats_socket="/srv/run/stats.sock",
    log_target="stderr format short local0 info",
    user=None,
    group=None,
    hard_stop_after="10m",
)

CASES = {
    "empty": ([], SETTINGS),
    "every_mode": (EVERY_MODE, SETTINGS),
    "custom_settings": (EVERY_MODE[:3], CUSTOM),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden_file(case: str) -> None:
    lxcs, settings_ = CASES[case]
    rendered = render_haproxy(HOST, lxcs, settings_)
    path = GOLDEN / f"{case}.cfg"
    if os.environ.get("INFR_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert rendered == path.read_text()


def test_every_mode_is_rendered() -> None:
    config = render_haproxy(HOST, EVERY_MODE, SETTINGS)
    rendered_modes = {(c.http, c.https) for c in EVERY_MODE}
    assert {m for m, _ in rendered_modes} == set(HTTP_MODES)
    assert {m for _, m in rendered_modes} == set(HTTPS_MODES)
    assert "use_backend lxc_plain_http if host_plain" in config
    assert "code 301 if host_shop !acme_path" in config  # ACME never redirected for TERMINATE
    assert "code 301 if host_blog\n" in config
    assert "use_backend lxc_mail_https if sni_mail" in config
    assert "server mail 10.8.1.4:8443" in config
    assert "server app 10.8.1.5:8080" in config
    assert "use_backend acme if acme_path host_app" in config
    assert "acl host_blog req.hdr(host),field(1,:) -m str -i blog.example.net" in config
    assert "listen tcp_2222" in config and "server db 10.8.1.6:22" in config
    assert "quiet" not in config


def test_strict_undefined_rejects_a_missing_value() -> None:
    import jinja2

    template = templating.environment().get_template(haproxy.TEMPLATE)
    context = haproxy._context(haproxy._plan(HOST, EVERY_MODE, SETTINGS), SETTINGS)
    template.render(host=HOST, settings=SETTINGS, **context)  # complete context renders
    del context["https_suffix"]
    with pytest.raises(jinja2.UndefinedError, match="https_suffix"):
        template.render(host=HOST, settings=SETTINGS, **context)


def test_strict_undefined_rejects_a_missing_attribute() -> None:
    import jinja2

    class Incomplete:
        dns_domain = "example.com"

    template = templating.environment().get_template(haproxy.TEMPLATE)
    context = haproxy._context(haproxy._plan(HOST, [], SETTINGS), SETTINGS)
    with pytest.raises(jinja2.UndefinedError, match="log_target"):
        template.render(host=HOST, settings=Incomplete(), **context)


def test_importing_the_modules_does_not_import_jinja2() -> None:
    code = "import sys, infr.routing.haproxy, infr.routing.certs; print('jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_redirect_adds_only_a_non_standard_https_port() -> None:
    shop = [EVERY_MODE[1]]
    assert "https://%[req.hdr(host),field(1,:)]%[pathq]" in render_haproxy(HOST, shop, SETTINGS)
    custom = render_haproxy(HOST, [lxc("shop", "10.8.1.3", http="REDIRECT-HTTPS")], CUSTOM)
    assert "https://%[req.hdr(host),field(1,:)]:8443%[pathq]" in custom


def test_lxc_fqdns_public_vnet_then_aliases_lowercased_once() -> None:
    c = lxc("web", "10.8.1.9", aliases=["WWW.Example.org.", "web.infr.example.com", "a.example.org"])
    names = lxc_fqdns(c, dns_domain="example.com", dns_prefix="infr", vnet_prefix="vnet")
    assert names == ["web.infr.example.com", "web.vnet.example.com", "www.example.org", "a.example.org"]
    assert "web.vnet.example.com" not in lxc_fqdns(
        c, dns_domain="example.com", dns_prefix="infr", vnet_prefix="vnet", vnet=False
    )


def test_certificate_requests_cover_terminate_lxcs_without_vnet_names() -> None:
    assert certificate_requests(EVERY_MODE, SETTINGS) == [
        CertRequest("app", ("app.infr.example.com",)),
        CertRequest("shop", ("shop.infr.example.com", "shop.example.org", "www.shop.example.org")),
    ]


def test_every_problem_is_reported_at_once() -> None:
    bad = [
        Lxc("elsewhere", "beta", "debian", "12", "10.8.1.2"),
        lxc("evil", "10.8.1.3", http="FORWARD", aliases=["x.example.org\n    server pwn 1.2.3.4:80"]),
        lxc("twin", "10.8.1.4", http="FORWARD", aliases=["plain.infr.example.com"]),
        lxc("plain", "10.8.1.5", http="FORWARD"),
        lxc("ports", "10.8.1.6", tcp_forwards=[TcpForward(443, 443), TcpForward(2222, 22)]),
        lxc("other", "10.8.1.7", tcp_forwards=[TcpForward(2222, 22)]),
        lxc("odd", "not-an-ip", http="SOMETIMES", http_port=70000),
        lxc("bad name", "10.8.1.9"),
    ]
    with pytest.raises(ValidationError) as err:
        render_haproxy(HOST, bad, SETTINGS)
    problems = "\n".join(err.value.problems)
    for fragment in [
        "elsewhere is on beta, not alpha",
        "alias 'x.example.org\\n    server pwn 1.2.3.4:80' is not a host name",
        "plain.infr.example.com is routed to both plain and twin",
        "host port 443 is reserved",
        "host port 2222 is forwarded to both other and ports",
        "'not-an-ip' is not an IPv4 address",
        "unknown http mode 'SOMETIMES'",
        "http_port 70000 is not a port number",
        "LXC name 'bad name' is not a DNS label",
    ]:
        assert fragment in problems
    assert len(err.value.problems) == 9


def test_settings_cannot_inject_directives() -> None:
    bad = replace(SETTINGS, log_target="stdout\n    stats socket /tmp/x level admin", dns_prefix="in fr")
    with pytest.raises(ValidationError) as err:
        render_haproxy(HOST, [], bad)
    assert err.value.problems == [
        "HAProxy setting log_target 'stdout\\n    stats socket /tmp/x level admin' spans lines",
        "dns_prefix 'in fr' is not a host name",
    ]


def test_forward_on_the_configured_frontend_port_is_refused() -> None:
    with pytest.raises(ValidationError, match="host port 8080 is reserved"):
        render_haproxy(HOST, [lxc("db", "10.8.1.6", tcp_forwards=[TcpForward(8080, 80)])], CUSTOM)


def test_summarize_changes_names_sections() -> None:
    old = render_haproxy(HOST, EVERY_MODE[:2], SETTINGS)
    new = render_haproxy(HOST, [EVERY_MODE[0], lxc("shop", "10.8.1.3", http="FORWARD")], SETTINGS)
    assert summarize_changes(old, new) == [
        "removed backend acme",
        "changed frontend http (+1 -4 lines)",
        "changed frontend https_terminate (+0 -5 lines)",
    ]
    assert summarize_changes(new, new) == []
    diff = config_diff(old, new)
    assert diff.startswith("--- running\n+++ new\n")
    assert "-    use_backend acme if acme_path host_shop\n" in diff


def test_host_files_are_packaged_and_agree_with_each_other() -> None:
    texts = {f.template: f.text() for f in HOST_FILES}
    for f in HOST_FILES:
        if f.mode & 0o111:
            assert texts[f.template].startswith("#!/bin/sh\n")
    hook = texts["certbot/certbot-deploy-haproxy"]
    assert f"INFR_HAPROXY_APPLY:-{haproxy.APPLY_SCRIPT}" in hook
    service = texts["certbot/infr-certbot-renew.service"]
    exec_start = re.search(r"^ExecStart=(.*)$", service, re.M)
    assert exec_start is not None
    assert exec_start.group(1) == " ".join(renew_argv(CertbotSettings(certbot="/usr/bin/certbot")))


# --- structural invariants over random inventories -------------------------------------

_names = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), min_size=0, max_size=6, unique=True)


@st.composite
def inventories(draw: st.DrawFn) -> list[Lxc]:
    lxcs = []
    ports = iter(range(10000, 10100))
    for i, name in enumerate(draw(_names)):
        forwards = [TcpForward(next(ports), 22) for _ in range(draw(st.integers(0, 2)))]
        aliases = [f"{a}.{name}.example.org" for a in draw(st.lists(st.sampled_from(["www", "m"]), unique=True))]
        lxcs.append(
            lxc(
                name,
                f"10.8.1.{i + 2}",
                http=draw(st.sampled_from(HTTP_MODES)),
                https=draw(st.sampled_from(HTTPS_MODES)),
                aliases=aliases,
                tcp_forwards=forwards,
            )
        )
    return lxcs


def _sections(config: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    for line in config.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = sections.setdefault(line, [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return sections


@settings(max_examples=60, deadline=None)
@given(inventories())
def test_every_reference_is_declared(lxcs: list[Lxc]) -> None:
    """What `haproxy -c` would reject: a backend or ACL used but never declared."""
    sections = _sections(render_haproxy(HOST, lxcs, SETTINGS))
    backends = {name.split()[1] for name in sections if name.startswith(("backend ", "listen "))}
    for lines in sections.values():
        acls = {line.split()[1] for line in lines if line.startswith("acl ")}
        for line in lines:
            if line.startswith(("use_backend ", "default_backend ")):
                assert line.split()[1] in backends, line
            if " if " in line and not line.startswith("tcp-request"):
                used = re.findall(r"!?([a-z_][a-z0-9_]*)", line.split(" if ", 1)[1])
                assert set(used) <= acls, line
