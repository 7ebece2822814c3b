"""A certificate from a real ACME CA (pebble), validated over HTTP-01 through the rendered
HAProxy, installed by the deploy hook and then served by HAProxy; renewal does the same."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import pytest

from infr.routing.certs import (
    DEPLOY_HOOK,
    CertbotSettings,
    certificates_argv,
    certonly_argv,
    check_names_resolve,
    parse_certbot_certificates,
    renew_argv,
)
from infr.routing.haproxy import certificate_requests
from tests.integration.haproxy_fixture import (  # noqa: F401  (the *_fixture names register pytest fixtures)
    Containers,
    Haproxy,
    containers_fixture,
    haproxy_fixture,
    http_get,
    https_get,
    loopback_fixture,
    pem_der,
    require_tools,
)
from tests.integration.pebble import StartPebble, pebble_factory_fixture  # noqa: F401

pytestmark = pytest.mark.integration


def certbot(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout}\n{result.stderr}"
    return result


def test_terminate_certificate_from_pebble_through_haproxy(
    haproxy: Haproxy, containers: Containers, pebble_factory: StartPebble, tmp_path: Path
) -> None:
    require_tools("certbot")
    shop = containers.add("shop")
    lxcs = [shop.lxc(http="REDIRECT-HTTPS", https="TERMINATE", aliases=["www.shop.example.test"])]
    haproxy.start(lxcs)
    ca = pebble_factory(haproxy.address, haproxy.settings.http_port, haproxy.address)
    (request,) = certificate_requests(lxcs, haproxy.settings)
    assert request.domains == ("shop.infr.example.test", "www.shop.example.test")

    # The pre-flight asks the same DNS the CA will use.
    assert check_names_resolve(request.domains, haproxy.address, ca.resolve) == []

    settings = CertbotSettings(
        server=ca.directory_url,
        email="admin@infr.example.test",
        http01_address=haproxy.settings.acme_address,
        http01_port=haproxy.settings.acme_port,
        config_dir=str(tmp_path / "letsencrypt"),
        work_dir=str(tmp_path / "work"),
        logs_dir=str(tmp_path / "logs"),
        deploy_hook=str(haproxy.install(DEPLOY_HOOK)),
    )
    env = {
        **haproxy.env(),
        "REQUESTS_CA_BUNDLE": str(ca.listener_cert),
        "INFR_HAPROXY_APPLY": str(haproxy.apply_script),
    }
    certbot(certonly_argv(request, settings), env)
    # certbot's standalone server is only reachable through HAProxy's acme backend.
    assert "acme/certbot" in haproxy.log.read_text()

    live = Path(settings.config_dir) / "live" / "shop"
    installed = Path(haproxy.settings.certs_dir) / "shop.pem"
    assert installed.read_text() == (live / "fullchain.pem").read_text() + (live / "privkey.pem").read_text()
    assert installed.stat().st_mode & 0o777 == 0o600
    first = served_certificate(haproxy, ca.root_pem(), tmp_path, request.domains)
    assert first == pem_der((live / "cert.pem").read_text())

    # The listing infr certs will show, from certbot's real output.
    listing = certbot(certificates_argv(settings), env).stdout
    (info,) = parse_certbot_certificates(listing)
    assert (info.name, set(info.domains)) == ("shop", set(request.domains))
    assert info.path == str(live / "fullchain.pem")

    # What the systemd timer runs, forced because the certificate is new.
    certbot([*renew_argv(settings), "--force-renewal"], env)
    renewed = served_certificate(haproxy, ca.root_pem(), tmp_path, request.domains)
    assert renewed != first
    assert renewed == pem_der((live / "cert.pem").read_text())

    # A new alias: the same lineage is issued again with the longer name list.
    lxcs = [shop.lxc(http="REDIRECT-HTTPS", https="TERMINATE", aliases=["www.shop.example.test", "shop.example.test"])]
    assert haproxy.apply(lxcs).returncode == 0
    (request,) = certificate_requests(lxcs, haproxy.settings)
    certbot(certonly_argv(request, settings), env)
    served_certificate(haproxy, ca.root_pem(), tmp_path, request.domains)
    (info,) = parse_certbot_certificates(certbot(certificates_argv(settings), env).stdout)
    assert set(info.domains) == set(request.domains)

    # A record pointing elsewhere is caught before the CA is asked.
    ca.set_a("www.shop.example.test", "127.0.0.9")
    assert check_names_resolve(request.domains, haproxy.address, ca.resolve) == [
        f"www.shop.example.test resolves to 127.0.0.9, not {haproxy.address}"
    ]


def served_certificate(haproxy: Haproxy, root_pem: str, tmp_path: Path, names: tuple[str, ...]) -> bytes:
    """The certificate HAProxy serves for every name, verified up to pebble's root."""
    root = tmp_path / "pebble-root.pem"
    root.write_text(root_pem)
    context = ssl.create_default_context(cafile=str(root))
    served = set()
    for name in names:
        status, cert, body = https_get(haproxy.address, haproxy.settings.https_port, name, "/", context)
        assert (status, body.splitlines()[0]) == (200, "container shop")
        served.add(cert)
    assert len(served) == 1
    return served.pop()


def test_deploy_hook_keeps_the_old_certificate_when_haproxy_refuses_the_new_one(
    haproxy: Haproxy, containers: Containers, tmp_path: Path
) -> None:
    app = containers.add("app")
    haproxy.start([app.lxc(https="TERMINATE")])
    certs = Path(haproxy.settings.certs_dir)
    good = Path(haproxy.settings.default_cert).read_text()
    (certs / "app.pem").write_text(good)
    lineage = tmp_path / "live" / "app"
    lineage.mkdir(parents=True)
    (lineage / "fullchain.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    (lineage / "privkey.pem").write_text("")
    hook = haproxy.install(DEPLOY_HOOK)
    env = {**haproxy.env(), "RENEWED_LINEAGE": str(lineage), "INFR_HAPROXY_APPLY": str(haproxy.apply_script)}
    result = subprocess.run([str(hook)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "HAProxy did not take the new certificate app; the previous one stays" in result.stderr
    assert (certs / "app.pem").read_text() == good
    assert sorted(os.listdir(certs)) == ["app.pem"]  # no temporary files left behind
    assert http_get(haproxy.address, haproxy.settings.http_port, "x.example.test")[0] == 404  # still serving
