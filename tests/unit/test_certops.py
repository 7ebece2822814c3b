"""What a host's certificates need (certificates.plan) and the settings that steer certbot."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from infr.routing.certificates import plan
from infr.routing.certs import CertInfo, CertRequest
from infr.state.settings import SETTINGS

LATER = datetime(2027, 1, 1, tzinfo=UTC)


def info(name: str, *domains: str) -> CertInfo:
    return CertInfo(name, domains, LATER)


def test_missing_certificates_are_obtained() -> None:
    wanted = [CertRequest("shop", ("shop.infr.example.com",))]
    assert plan(wanted, []).obtain == wanted


def test_a_certificate_with_the_same_names_is_kept_whatever_their_order() -> None:
    wanted = [CertRequest("shop", ("a.example.com", "b.example.com"))]
    todo = plan(wanted, [info("shop", "b.example.com", "a.example.com")])
    assert (todo.obtain, todo.delete) == ([], [])


def test_an_added_alias_asks_again_under_the_same_name() -> None:
    wanted = [CertRequest("shop", ("shop.infr.example.com", "www.shop.example"))]
    assert plan(wanted, [info("shop", "shop.infr.example.com")]).obtain == wanted


def test_certificates_no_lxc_terminates_any_more_are_deleted() -> None:
    todo = plan([], [info("old", "old.infr.example.com"), info("gone", "g.example.com")])
    assert todo.delete == ["gone", "old"]


@pytest.mark.parametrize("value", ["system", "127.0.0.1", "198.51.100.1:8053"])
def test_dns_check_resolver_accepts(value: str) -> None:
    assert SETTINGS["dnsCheckResolver"].parse(value) == value


@pytest.mark.parametrize("value", ["8.8.8", "dns.example:53", "127.0.0.1:0", "127.0.0.1:x"])
def test_dns_check_resolver_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="neither 'system' nor IP"):
        SETTINGS["dnsCheckResolver"].parse(value)


def test_acme_ca_cert_must_be_a_pem_file(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert SETTINGS["acmeCaCert"].parse(str(pem)) == str(pem)
    with pytest.raises(ValueError, match="is not a file"):
        SETTINGS["acmeCaCert"].parse(str(tmp_path / "missing.pem"))
    (tmp_path / "key.txt").write_text("not a certificate")
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        SETTINGS["acmeCaCert"].parse(str(tmp_path / "key.txt"))


def test_acme_server_must_be_https() -> None:
    with pytest.raises(ValueError, match="nor an https:// ACME directory URL"):
        SETTINGS["acmeServer"].parse("http://ca.example/dir")
