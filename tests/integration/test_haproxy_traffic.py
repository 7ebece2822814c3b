"""Real traffic through a real HAProxy running configs from render_haproxy().

Every config goes live through infr-haproxy-apply, as on a host; see haproxy_fixture.py.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from infr.state.model import TcpForward
from tests.integration.haproxy_fixture import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    HOST,
    Containers,
    Haproxy,
    containers_fixture,
    free_port,
    haproxy_fixture,
    http_get,
    https_get,
    loopback_fixture,
    make_cert,
    pem_der,
    tls_connect,
)

pytestmark = pytest.mark.integration


def fqdn(name: str) -> str:
    return f"{name}.infr.example.test"


def install_cert(proxy: Haproxy, name: str, *domains: str) -> bytes:
    """A certificate as the deploy hook leaves it (chain then key in one PEM); returns its DER."""
    certs = Path(proxy.settings.certs_dir)
    certs.mkdir(exist_ok=True)
    cert, key = make_cert(proxy.dir, *domains)
    (certs / f"{name}.pem").write_text(cert.read_text() + key.read_text())
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_http_forward_routes_by_host_header_with_or_without_port(haproxy: Haproxy, containers: Containers) -> None:
    web, api = containers.add("web"), containers.add("api")
    haproxy.start([web.lxc(http="FORWARD", aliases=["www.example.test"]), api.lxc(http="FORWARD")])
    port = haproxy.settings.http_port
    for host, expected in [
        (fqdn("web"), "web"),
        (f"{fqdn('web')}:{port}", "web"),
        ("WEB.Infr.Example.Test:80", "web"),
        ("web.vnet.example.test", "web"),
        ("www.example.test", "web"),
        (fqdn("api"), "api"),
    ]:
        status, _, body = http_get(haproxy.address, port, host, "/page?q=1")
        assert (status, body.splitlines()[0]) == (200, f"container {expected}"), host
        assert "path /page?q=1" in body
    assert "proto http\nfor 127." in body  # the container learns the client's address


def test_unknown_names_get_a_clear_page_over_http_and_https(haproxy: Haproxy, containers: Containers) -> None:
    haproxy.start([containers.add("web").lxc(http="FORWARD")])
    status, headers, body = http_get(haproxy.address, haproxy.settings.http_port, "nope.example.test:8080")
    assert (status, body) == (404, "No such site: nope.example.test\n")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    # Unknown SNI: TLS ends in HAProxy with the default certificate, then the same page.
    status, cert, body = https_get(haproxy.address, haproxy.settings.https_port, "nope.example.test")
    assert (status, body) == (404, "No such site: nope.example.test\n")
    assert cert == pem_der(Path(haproxy.settings.default_cert).read_text())


def test_redirect_https_answers_301_but_not_for_acme_challenges(haproxy: Haproxy, containers: Containers) -> None:
    shop, blog = containers.add("shop"), containers.add("blog")
    haproxy.start([shop.lxc(http="REDIRECT-HTTPS", https="TERMINATE"), blog.lxc(http="REDIRECT-HTTPS")])
    http_port, https_port = haproxy.settings.http_port, haproxy.settings.https_port
    status, headers, _ = http_get(haproxy.address, http_port, f"{fqdn('shop')}:{http_port}", "/cart?id=7")
    assert status == 301
    assert headers["location"] == f"https://{fqdn('shop')}:{https_port}/cart?id=7"
    status, headers, _ = http_get(haproxy.address, http_port, fqdn("blog"), "/.well-known/acme-challenge/x")
    assert (status, headers["location"]) == (301, f"https://{fqdn('blog')}:{https_port}/.well-known/acme-challenge/x")
    # shop's certificate is HAProxy's business: its challenge goes to certbot (not running: 503).
    status, _, _ = http_get(haproxy.address, http_port, fqdn("shop"), "/.well-known/acme-challenge/x")
    assert status == 503


def test_https_forward_passes_tls_through_untouched(haproxy: Haproxy, containers: Containers) -> None:
    mail = containers.add("mail", tls=True)
    other = containers.add("other", tls=True)
    haproxy.start([mail.lxc(https="FORWARD", aliases=["webmail.example.test"]), other.lxc(https="FORWARD")])
    for name, box in [(fqdn("mail"), mail), ("webmail.example.test", mail), (fqdn("other"), other)]:
        status, cert, body = https_get(haproxy.address, haproxy.settings.https_port, name)
        assert cert == box.cert_der, f"{name} did not show {box.name}'s own certificate"
        assert (status, body.splitlines()[0]) == (200, f"container {box.name} over its own TLS")
    # openssl s_client, as an admin would check it
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"{haproxy.address}:{haproxy.settings.https_port}",
         "-servername", fqdn("mail")],
        input="", capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert "subject=CN = mail.container.test" in out.stdout


def test_terminate_serves_haproxys_certificate_and_speaks_http_to_the_lxc(
    haproxy: Haproxy, containers: Containers
) -> None:
    app = containers.add("app")
    der = install_cert(haproxy, "app", fqdn("app"), "app.example.test")
    haproxy.start([app.lxc(https="TERMINATE", aliases=["app.example.test"])])
    for name in (fqdn("app"), "app.example.test"):
        status, cert, body = https_get(haproxy.address, haproxy.settings.https_port, name, "/x")
        assert cert == der
        assert status == 200
        assert body.startswith(f"container app\nhost {name}\npath /x\nproto https\nfor 127.")
    # Browsers speak HTTP/2 after ALPN: HAProxy turns :authority into the Host it routes by.
    port = haproxy.settings.https_port
    out = subprocess.run(
        ["curl", "-sS", "--http2", "-k", "-w", "%{http_version}",
         "--resolve", f"{fqdn('app')}:{port}:{haproxy.address}", f"https://{fqdn('app')}:{port}/h2"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert out.stdout.startswith("container app\n") and out.stdout.endswith("\n2"), out.stderr
    # http NONE: plain HTTP for a TERMINATE-only name gets the clear page.
    assert http_get(haproxy.address, haproxy.settings.http_port, fqdn("app"))[0] == 404


def test_every_mode_passes_haproxy_check_without_warnings(haproxy: Haproxy) -> None:
    from tests.unit.test_haproxy_render import EVERY_MODE

    lxcs = [replace(lxc, host=HOST.name) for lxc in EVERY_MODE]
    Path(haproxy.settings.certs_dir).mkdir()
    cert, key = make_cert(haproxy.dir, "default.test")
    Path(haproxy.settings.default_cert).write_text(cert.read_text() + key.read_text())
    config = haproxy.dir / "every_mode.cfg"
    config.write_text(haproxy.render(lxcs))
    out = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "WARNING" not in out.stdout + out.stderr


def test_tcp_forward_reaches_the_container(haproxy: Haproxy, containers: Containers) -> None:
    db = containers.add("db", tcp=True)
    host_port = free_port(haproxy.address)
    haproxy.start([db.lxc(tcp_forwards=[TcpForward(host_port, db.tcp_port)])])
    with socket.create_connection((haproxy.address, host_port), timeout=10) as conn:
        conn.sendall(b"hello\n")
        assert conn.makefile().readline() == "tcp db got hello\n"


def test_config_that_fails_the_check_never_goes_live(haproxy: Haproxy, containers: Containers) -> None:
    web = containers.add("web")
    haproxy.start([web.lxc(http="FORWARD")])
    live = haproxy.config.read_text()
    broken = haproxy.dir / "broken.cfg"
    broken.write_text(live + "\nbackend broken\n    server x 10.0.0.1:notaport\n")
    result = haproxy.run_apply(broken)
    assert result.returncode == 2
    assert "failed 'haproxy -c'; nothing changed" in result.stderr
    assert "notaport" in result.stderr  # HAProxy's own words reach the user
    assert haproxy.config.read_text() == live
    assert http_get(haproxy.address, haproxy.settings.http_port, fqdn("web"))[0] == 200


def test_failed_reload_puts_the_previous_config_back(haproxy: Haproxy, containers: Containers) -> None:
    web, db = containers.add("web"), containers.add("db", tcp=True)
    haproxy.start([web.lxc(http="FORWARD")])
    live = haproxy.config.read_text()
    # Passes `haproxy -c` (which does not bind) but cannot load: the port is taken.
    with socket.socket() as squatter:
        squatter.bind((haproxy.address, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        result = haproxy.apply([web.lxc(http="FORWARD"), db.lxc(tcp_forwards=[TcpForward(taken, db.tcp_port)])])
    assert result.returncode == 3, result.stderr
    assert "cannot bind socket" in result.stderr
    assert "the previous config is back and serving" in result.stderr
    assert haproxy.config.read_text() == live
    assert (haproxy.dir / "haproxy.cfg.prev").read_text() == live
    assert " [failed: 0] " in haproxy.show_proc()  # the restored config loaded cleanly
    assert http_get(haproxy.address, haproxy.settings.http_port, fqdn("web"))[0] == 200


def test_unchanged_config_is_not_reloaded(haproxy: Haproxy, containers: Containers) -> None:
    lxcs = [containers.add("web").lxc(http="FORWARD")]
    haproxy.start(lxcs)
    before = haproxy.show_proc().splitlines()[1]
    result = haproxy.apply(lxcs)
    assert (result.returncode, result.stderr) == (0, "infr-haproxy-apply: unchanged\n")
    assert haproxy.show_proc().splitlines()[1].split()[:3] == before.split()[:3]


def test_reload_under_a_steady_stream_of_requests_drops_none(haproxy: Haproxy, containers: Containers) -> None:
    web, app = containers.add("web"), containers.add("app")
    install_cert(haproxy, "app", fqdn("app"))
    configs = [
        [web.lxc(http="FORWARD"), app.lxc(https="TERMINATE")],
        [web.lxc(http="FORWARD", aliases=["www.example.test"]), app.lxc(https="TERMINATE")],
    ]
    haproxy.start(configs[0])
    stop = threading.Event()
    results: dict[str, list[int]] = {"http": [0, 0], "https": [0, 0]}  # [answered 200, failed]
    errors: list[str] = []
    address, http_port, https_port = haproxy.address, haproxy.settings.http_port, haproxy.settings.https_port

    def stream(kind: str) -> None:
        # A new connection per request, as many clients make them; bounded in time and count.
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline and sum(results[kind]) < 50_000:
            try:
                if kind == "http":
                    status = http_get(address, http_port, fqdn("web"))[0]
                else:
                    status = https_get(address, https_port, fqdn("app"))[0]
            except (OSError, ssl.SSLError) as exc:
                status = 0
                errors.append(f"{kind}: {exc!r}")
            results[kind][0 if status == 200 else 1] += 1

    streams = [threading.Thread(target=stream, args=(k,)) for k in ("http", "http", "http", "https")]
    for thread in streams:
        thread.start()
    reloads = 6
    try:
        time.sleep(0.5)
        for i in range(reloads):
            result = haproxy.apply(configs[(i + 1) % 2])
            assert result.returncode == 0, result.stderr
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in streams:
            thread.join()
    answered = results["http"][0] + results["https"][0]
    total = answered + results["http"][1] + results["https"][1]
    print(
        f"\nreload under load: {answered}/{total} requests answered 200 across {reloads} reloads "
        f"(http {results['http'][0]}/{sum(results['http'])}, https TERMINATE {results['https'][0]}/"
        f"{sum(results['https'])})"
    )
    assert errors == []
    assert answered == total
    assert results["http"][0] > 100 and results["https"][0] > 20


def test_a_tls_client_without_sni_gets_the_default_certificate(haproxy: Haproxy, containers: Containers) -> None:
    haproxy.start([containers.add("mail", tls=True).lxc(https="FORWARD")])
    with tls_connect(haproxy.address, haproxy.settings.https_port, None) as tls:
        cert = tls.getpeercert(binary_form=True)
    assert cert == pem_der(Path(haproxy.settings.default_cert).read_text())
