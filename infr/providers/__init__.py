"""The DNS providers infr can drive, as plain data, and `load_provider` to build one.

This module imports nothing heavy: the CLI reads the registry for `infr config` and help
text on every start, and only `load_provider` imports a provider's module (requests,
dnspython) when a DNS command really needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infr.errors import ProviderError
from infr.oplog import register_secret

if TYPE_CHECKING:
    from infr.providers.base import Provider


@dataclass(frozen=True)
class Setting:
    """A config key a provider reads, and the constructor argument it becomes."""

    key: str
    arg: str
    help: str
    secret: bool = False
    required: bool = True
    integer: bool = False


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    module: str
    class_name: str
    summary: str
    settings: tuple[Setting, ...]


PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            "vultr",
            "infr.providers.vultr",
            "VultrProvider",
            "Vultr DNS, API v2",
            (Setting("dnsVultrAPIKey", "api_key", "Vultr API key", secret=True),),
        ),
        ProviderSpec(
            "rage4",
            "infr.providers.rage4",
            "Rage4Provider",
            "Rage4 DNS, REST API (experimental)",
            (
                Setting("dnsRage4Account", "account", "Rage4 account email"),
                Setting("dnsRage4Key", "key", "Rage4 API key", secret=True),
            ),
        ),
        ProviderSpec(
            "powerdns",
            "infr.providers.powerdns",
            "PowerDNSProvider",
            "PowerDNS Authoritative, HTTP API",
            (
                Setting("dnsPowerDNSURL", "url", "PowerDNS API URL, e.g. http://ns1:8081"),
                Setting("dnsPowerDNSAPIKey", "api_key", "PowerDNS API key", secret=True),
                Setting("dnsPowerDNSServerId", "server_id", "PowerDNS server id (localhost)", required=False),
            ),
        ),
        ProviderSpec(
            "rfc2136",
            "infr.providers.rfc2136",
            "RFC2136Provider",
            "any server taking RFC 2136 updates and AXFR signed with TSIG (BIND, Knot, PowerDNS)",
            (
                Setting("dnsRFC2136Server", "server", "DNS server address"),
                Setting("dnsRFC2136Port", "port", "DNS server port (53)", required=False, integer=True),
                Setting("dnsRFC2136KeyName", "key_name", "TSIG key name"),
                Setting("dnsRFC2136KeySecret", "key_secret", "TSIG key secret, base64", secret=True),
                Setting("dnsRFC2136KeyAlgorithm", "key_algorithm", "TSIG algorithm (hmac-sha256)", required=False),
            ),
        ),
    )
}


def load_provider(name: str, settings: Mapping[str, object]) -> Provider:
    """Build provider `name` from config `settings` (camelCase keys); secrets get masked in logs.

    Every missing setting is named in one ProviderError.
    """
    spec = PROVIDERS.get(name)
    if spec is None:
        raise ProviderError(f"unknown DNS provider {name!r}", f"choose one of {', '.join(PROVIDERS)}")
    missing = [s.key for s in spec.settings if s.required and settings.get(s.key) in (None, "")]
    if missing:
        raise ProviderError(
            f"DNS provider {name} needs {', '.join(missing)}",
            "set each with `infr config set KEY VALUE` (secrets go to the secrets file)",
        )
    kwargs: dict[str, object] = {}
    for setting in spec.settings:
        value = settings.get(setting.key)
        if value in (None, ""):
            continue
        if setting.secret:
            register_secret(str(value))
        kwargs[setting.arg] = _convert(setting, value)
    cls = getattr(importlib.import_module(spec.module), spec.class_name)
    provider: Provider = cls(**kwargs)
    return provider


def _convert(setting: Setting, value: object) -> object:
    if not setting.integer:
        return str(value)
    try:
        return int(str(value))
    except ValueError:
        raise ProviderError(f"{setting.key} must be a whole number, not {value!r}") from None
