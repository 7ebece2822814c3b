"""certbot command lines, the DNS pre-flight and the certificate listings."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from infr.errors import ValidationError
from infr.routing.certs import (
    LETSENCRYPT,
    CertbotSettings,
    CertRequest,
    acme_server_url,
    certificates_argv,
    certonly_argv,
    check_names_resolve,
    delete_argv,
    parse_certbot_certificates,
    parse_x509_text,
    renew_argv,
    x509_text_argv,
)

REQUEST = CertRequest("shop", ("shop.infr.example.com", "www.shop.example.org"))
DIRS = ["--config-dir", "/etc/letsencrypt", "--work-dir", "/var/lib/letsencrypt", "--logs-dir", "/var/log/letsencrypt"]


def test_certonly_standalone_behind_haproxy() -> None:
    argv = certonly_argv(REQUEST, CertbotSettings(email="admin@example.com"))
    assert argv == [
        "certbot", "certonly", "--non-interactive", "--agree-tos",
        "--cert-name", "shop", "--server", LETSENCRYPT,
        "-m", "admin@example.com", "--no-eff-email",
        "--standalone", "--http-01-address", "127.0.0.1", "--http-01-port", "8888",
        "--deploy-hook", "/usr/local/lib/infr/certbot-deploy-haproxy", *DIRS,
        "-d", "shop.infr.example.com", "-d", "www.shop.example.org",
    ]  # fmt: skip


def test_certonly_webroot_any_server_without_email() -> None:
    settings = CertbotSettings(server="https://acme.test:14000/dir", challenge="webroot", webroot="/srv/acme")
    argv = certonly_argv(REQUEST, settings)
    assert argv[argv.index("--server") + 1] == "https://acme.test:14000/dir"
    assert argv[argv.index("--webroot") : argv.index("--webroot") + 3] == ["--webroot", "-w", "/srv/acme"]
    assert "--register-unsafely-without-email" in argv
    assert "--standalone" not in argv


def test_unknown_challenge_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown ACME challenge setup 'dns'"):
        certonly_argv(REQUEST, CertbotSettings(challenge="dns"))


def test_renew_never_sleeps_and_installs_through_the_hook() -> None:
    assert renew_argv(CertbotSettings()) == [
        "certbot", "renew", "--non-interactive", "--no-random-sleep-on-renew",
        "--deploy-hook", "/usr/local/lib/infr/certbot-deploy-haproxy", *DIRS,
    ]  # fmt: skip


def test_delete_and_list_use_the_same_directories() -> None:
    settings = CertbotSettings(config_dir="/c", work_dir="/w", logs_dir="/l")
    assert delete_argv("shop", settings)[-6:] == ["--config-dir", "/c", "--work-dir", "/w", "--logs-dir", "/l"]
    assert certificates_argv(settings) == [
        "certbot",
        "certificates",
        "--config-dir",
        "/c",
        "--work-dir",
        "/w",
        "--logs-dir",
        "/l",
    ]


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("letsencrypt", LETSENCRYPT),
        ("letsencrypt-staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
        ("https://127.0.0.1:14000/dir", "https://127.0.0.1:14000/dir"),
    ],
)
def test_acme_server_names_and_urls(value: str, url: str) -> None:
    assert acme_server_url(value) == url


@pytest.mark.parametrize("value", ["http://insecure.example/dir", "prod", "https://a b/"])
def test_acme_server_refuses_anything_else(value: str) -> None:
    with pytest.raises(ValidationError, match="neither letsencrypt, letsencrypt-staging nor an https:// URL"):
        acme_server_url(value)


def test_names_must_resolve_only_to_the_host() -> None:
    zone = {
        "ok.example.com": ["203.0.113.10"],
        "twice.example.com": ["203.0.113.10", "203.0.113.10"],
        "elsewhere.example.com": ["198.51.100.1"],
        "split.example.com": ["203.0.113.10", "2001:db8::1"],
        "empty.example.com": [],
    }

    def resolver(name: str) -> list[str]:
        if name not in zone:
            raise socket.gaierror(-2, "Name or service not known")
        return zone[name]

    problems = check_names_resolve([*zone, "missing.example.com"], "203.0.113.10", resolver)
    assert problems == [
        "elsewhere.example.com resolves to 198.51.100.1, not 203.0.113.10",
        "split.example.com resolves to 2001:db8::1, 203.0.113.10, not 203.0.113.10",
        "empty.example.com has no A or AAAA record",
        "missing.example.com does not resolve ([Errno -2] Name or service not known)",
    ]
    assert check_names_resolve(["ok.example.com"], "203.0.113.10", resolver) == []


# certbot 2.1.0's format (Debian 12); tests/integration/test_certbot_pebble.py parses the real thing.
CERTBOT_CERTIFICATES = """\
Saving debug log to /tmp/cb/logs/letsencrypt.log

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Found the following certs:
  Certificate Name: shop
    Serial Number: 4b1fa1e0d1c1a02b
    Key Type: ECDSA
    Domains: shop.infr.example.test www.shop.example.test
    Expiry Date: 2031-11-22 20:55:01+00:00 (VALID: 1825 days)
    Certificate Path: /tmp/cb/config/live/shop/fullchain.pem
    Private Key Path: /tmp/cb/config/live/shop/privkey.pem
  Certificate Name: old
    Serial Number: 1a
    Key Type: RSA
    Domains: old.infr.example.test
    Expiry Date: 2026-01-01 00:00:00+00:00 (INVALID: EXPIRED)
    Certificate Path: /tmp/cb/config/live/old/fullchain.pem
    Private Key Path: /tmp/cb/config/live/old/privkey.pem
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
"""


def test_parse_certbot_certificates() -> None:
    shop, old = parse_certbot_certificates(CERTBOT_CERTIFICATES)
    assert shop.name == "shop"
    assert shop.domains == ("shop.infr.example.test", "www.shop.example.test")
    assert shop.expiry == datetime(2031, 11, 22, 20, 55, 1, tzinfo=UTC)
    assert shop.path == "/tmp/cb/config/live/shop/fullchain.pem"
    assert old.expiry == datetime(2026, 1, 1, tzinfo=UTC)


def test_parse_certbot_certificates_when_there_are_none() -> None:
    assert parse_certbot_certificates("No certificates found.\n") == []


def test_parse_x509_text_reads_names_and_expiry() -> None:
    assert x509_text_argv("/etc/haproxy/certs/shop.pem")[:4] == [
        "openssl",
        "x509",
        "-in",
        "/etc/haproxy/certs/shop.pem",
    ]
    output = (
        "subject=\n    commonName                = shop.infr.example.test\n"
        "notAfter=Nov 22 20:55:01 2031 GMT\n"
        "X509v3 Subject Alternative Name: \n    DNS:shop.infr.example.test, DNS:www.shop.example.test\n"
    )
    info = parse_x509_text("shop", output, "/etc/haproxy/certs/shop.pem")
    assert info.domains == ("shop.infr.example.test", "www.shop.example.test")
    assert info.expiry == datetime(2031, 11, 22, 20, 55, 1, tzinfo=UTC)


def test_parse_x509_text_falls_back_to_the_common_name() -> None:
    output = "subject=\n    commonName                = infr default certificate\nnotAfter=Nov 20 20:00:00 2036 GMT\n"
    assert parse_x509_text("default", output).domains == ("infr default certificate",)
