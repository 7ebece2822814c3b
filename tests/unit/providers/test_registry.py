"""The provider registry: plain data the CLI reads cheaply, and load_provider."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from infr import oplog
from infr.errors import ProviderError
from infr.providers import PROVIDERS, load_provider
from infr.providers.base import Provider


def test_importing_the_registry_loads_no_heavy_module() -> None:
    code = "import sys, infr.providers; print(sorted(m for m in ('requests', 'dns') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_setting_reaches_a_constructor_argument(name: str) -> None:
    spec = PROVIDERS[name]
    cls = getattr(__import__(spec.module, fromlist=[spec.class_name]), spec.class_name)
    assert issubclass(cls, Provider) and cls.name == name
    parameters = inspect.signature(cls).parameters
    for setting in spec.settings:
        assert setting.arg in parameters, setting
        assert setting.required == (parameters[setting.arg].default is inspect.Parameter.empty), setting
    assert all(s.key.startswith("dns") for s in spec.settings)


def test_unknown_provider_names_the_choices() -> None:
    with pytest.raises(ProviderError) as refused:
        load_provider("route53", {})
    assert str(refused.value) == "unknown DNS provider 'route53' (choose one of vultr, rage4, powerdns, rfc2136)"


def test_every_missing_setting_is_named_at_once() -> None:
    with pytest.raises(ProviderError) as refused:
        load_provider("rfc2136", {"dnsRFC2136Server": "192.0.2.53", "dnsRFC2136KeyName": ""})
    assert refused.value.message == "DNS provider rfc2136 needs dnsRFC2136KeyName, dnsRFC2136KeySecret"


def test_secrets_are_masked_in_the_log_from_load_on() -> None:
    key = "vultr-secret-for-the-mask-test"
    provider = load_provider("vultr", {"dnsVultrAPIKey": key, "dnsDomain": "example.com"})
    assert provider.name == "vultr"
    assert oplog.mask(f"Bearer {key}") == f"Bearer {oplog.MASK}"


def test_integer_settings_are_converted_or_refused() -> None:
    settings = {"dnsRFC2136Server": "192.0.2.53", "dnsRFC2136KeyName": "k", "dnsRFC2136KeySecret": "c2VjcmV0"}
    provider = load_provider("rfc2136", {**settings, "dnsRFC2136Port": "5353"})
    assert getattr(provider, "port", None) == 5353
    with pytest.raises(ProviderError, match="dnsRFC2136Port must be a whole number"):
        load_provider("rfc2136", {**settings, "dnsRFC2136Port": "fifty"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"dnsRFC2136KeySecret": "not base64!"}, "dnsRFC2136KeySecret is not valid base64"),
        ({"dnsRFC2136KeyAlgorithm": "hmac-md4"}, "unknown TSIG algorithm 'hmac-md4'"),
    ],
)
def test_bad_tsig_settings_are_one_clear_line(extra: dict[str, str], message: str) -> None:
    settings = {"dnsRFC2136Server": "192.0.2.53", "dnsRFC2136KeyName": "k", "dnsRFC2136KeySecret": "c2VjcmV0"}
    with pytest.raises(ProviderError) as refused:
        load_provider("rfc2136", {**settings, **extra})
    assert refused.value.message == message
