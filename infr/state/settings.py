"""The config schema: every setting infr knows, its default, its validator, and whether it is secret.

Config keys are camelCase, as in Infr (`infr config set dnsProvider vultr`).
Secret settings live in secrets.toml (mode 0600, never committed) or in the
environment (INFR_<KEY_IN_UPPER_SNAKE>), never in config.toml.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infr.state import validate

Value = str | int


@dataclass(frozen=True)
class Setting:
    key: str
    help: str
    default: Value | None = None
    secret: bool = False
    integer: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[str], str | None] | None = None
    # Secrets may come from this environment variable instead of secrets.toml.
    env: str = ""
    # Used instead of `check` on the value stored in config.toml, which every command loads,
    # where `check` asks this machine (a file that is a teammate's path) or is slow (public
    # suffixes: 0.3-0.5 s of imports). It still makes sure of the value's syntax.
    stored_check: Callable[[str], str | None] | None = None

    def parse(self, text: str) -> Value:
        """Turn the text a user typed into the stored value, or raise ValueError with the problem."""
        if self.integer:
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{self.key} must be a whole number, not {text!r}") from None
        if self.choices and text not in self.choices:
            raise ValueError(f"{self.key} must be one of {', '.join(self.choices)}, not {text!r}")
        if self.check and (problem := self.check(text)):
            raise ValueError(problem)
        return text


def _url(text: str) -> str | None:
    if re.match(r"^https?://[^\s/]+(/\S*)?\Z", text):
        return None
    return f"{text!r} is not an http:// or https:// URL"


def is_acme_server(text: str) -> bool:
    """A name in ACME_SERVERS or an https:// directory URL (the one rule for settings and certbot)."""
    return text in ACME_SERVERS or re.match(r"^https://[^\s/]+(/\S*)?\Z", text) is not None


def _acme(text: str) -> str | None:
    if is_acme_server(text):
        return None
    return f"{text!r} is neither {', '.join(ACME_SERVERS)} nor an https:// ACME directory URL"


def _pem_file(text: str) -> str | None:
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        return f"acmeCaCert {text!r} is not a file"
    if b"-----BEGIN CERTIFICATE-----" not in path.read_bytes():
        return f"acmeCaCert {text!r} holds no PEM certificate"
    return None


def _resolver(text: str) -> str | None:
    if text == "system":
        return None
    address, _, port = text.partition(":")
    if validate.ipv4(address) is None and (not port or port.isdigit() and 0 < int(port) < 65536):
        return None
    return f"dnsCheckResolver {text!r} is neither 'system' nor IP[:PORT]"


def _relay(text: str, name_check: Callable[[str, str], str | None] = validate.fqdn) -> str | None:
    """HOST[:PORT] of an SMTP relay, or empty for none."""
    if not text:
        return None
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    host_ok = validate.ipv4(host) is None or name_check(host, "smtpRelay") is None or host == "localhost"
    if host_ok and (not port or port.isdigit() and 0 < int(port) < 65536):
        return None
    return f"smtpRelay {text!r} is not HOST[:PORT], e.g. smtp.example.com:587"


def _ttl(value: int) -> str | None:
    return None if 60 <= value <= 86400 else f"dnsTTL {value} must be between 60 and 86400 seconds"


ACME_SERVERS = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
REQUIRED = ("vnetNetwork", "vnetPoolStart", "dnsDomain", "dnsPrefix", "vnetPrefix", "adminEmail")

SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting(
            "vnetNetwork",
            "private network hosts and LXCs get addresses from",
            "10.8.0.0/16",
            check=lambda v: validate.private_network(v, "vnetNetwork"),
        ),
        Setting(
            "vnetPoolStart",
            "first address handed out in vnetNetwork",
            "10.8.1.0",
            check=lambda v: validate.ipv4(v, "vnetPoolStart"),
        ),
        Setting(
            "dnsDomain",
            "domain the host and LXC names live under, e.g. example.com",
            check=validate.registrable_domain,
            stored_check=lambda v: validate.hostname(v, "dnsDomain"),
        ),
        Setting(
            "dnsPrefix",
            "label for public names: NAME.<dnsPrefix>.<dnsDomain>",
            "infr",
            check=lambda v: validate.dns_label(v, "dnsPrefix"),
        ),
        Setting(
            "vnetPrefix",
            "label for private names: NAME.<vnetPrefix>.<dnsDomain>",
            "vnet",
            check=lambda v: validate.dns_label(v, "vnetPrefix"),
        ),
        Setting(
            "adminEmail",
            "address for Let's Encrypt and failed-backup mail",
            check=lambda v: validate.email(v, "adminEmail"),
        ),
        Setting(
            "dnsProvider", "DNS provider whose API infr keeps right", choices=("vultr", "rage4", "powerdns", "rfc2136")
        ),
        Setting("dnsTTL", "TTL of the records infr manages, in seconds", 3600, integer=True),
        Setting(
            "dnsOwnerId",
            "marks the DNS records this infr owns (differ per installation sharing a zone)",
            "infr",
            check=lambda v: validate.dns_label(v, "dnsOwnerId"),
        ),
        Setting(
            "acmeServer", "ACME CA: letsencrypt, letsencrypt-staging or a directory URL", "letsencrypt", check=_acme
        ),
        Setting(
            "acmeCaCert",
            "PEM file of a private ACME CA's root, trusted on the hosts (empty: public CAs only)",
            "",
            check=_pem_file,
            stored_check=lambda v: None,  # a path on the machine of whoever set it
        ),
        Setting(
            "dnsCheckResolver",
            "DNS server asked before requesting certificates: 'system' or IP[:PORT]",
            "system",
            check=_resolver,
        ),
        Setting(
            "debianRelease",
            "Debian release hosts are installed with",
            "bookworm",
            check=lambda v: validate.dns_label(v, "debianRelease"),
        ),
        Setting("debianMirror", "Debian mirror hosts are installed from", "http://deb.debian.org/debian", check=_url),
        Setting("lxcImageSource", "where LXC images come from: 'download' or a URL/path", "download"),
        Setting("backupMaxAgeMinutes", "age after which `backup status` turns red", 15, integer=True),
        Setting("vnetListenPort", "UDP port of the WireGuard mesh", 51820, integer=True),
        Setting(
            "smtpRelay",
            "SMTP server HOST[:PORT] that failed-backup mail goes through (empty: the host's own mailer)",
            "",
            check=_relay,
            stored_check=lambda v: _relay(v, validate.hostname),
        ),
        Setting(
            "smtpTls", "how to reach smtpRelay: starttls, tls or off", "starttls", choices=("starttls", "tls", "off")
        ),
        Setting("smtpUser", "login at smtpRelay (empty: none)", ""),
        Setting("smtpPassword", "password at smtpRelay", secret=True, env="INFR_SMTP_PASSWORD"),
    )
}


# Checks and defaults for provider settings, beyond what the provider registry says.
_PROVIDER_EXTRAS: dict[str, dict[str, Any]] = {
    "dnsRage4Account": {"check": lambda v: validate.email(v, "dnsRage4Account")},
    "dnsPowerDNSURL": {"check": _url},
    "dnsPowerDNSServerId": {"default": "localhost"},
    "dnsRFC2136Server": {"check": lambda v: validate.ipv4(v, "dnsRFC2136Server")},
    "dnsRFC2136Port": {"default": 53},
    "dnsRFC2136KeyAlgorithm": {"default": "hmac-sha256", "choices": ("hmac-sha256", "hmac-sha512", "hmac-sha1")},
}


def _provider_settings() -> list[Setting]:
    """Each DNS provider's settings, from the provider registry (one source of truth)."""
    from infr.providers import PROVIDERS

    return [
        Setting(
            item.key,
            f"{item.help} ({spec.name})",
            secret=item.secret,
            integer=item.integer,
            env=f"INFR_{spec.name.upper()}_{item.arg.upper()}" if item.secret else "",
            **_PROVIDER_EXTRAS.get(item.key, {}),
        )
        for spec in PROVIDERS.values()
        for item in spec.settings
    ]


SETTINGS.update((setting.key, setting) for setting in _provider_settings())


def lookup(key: str) -> Setting:
    """The setting called `key`, or ValueError naming the known keys and the closest match."""
    if key in SETTINGS:
        return SETTINGS[key]
    close = difflib.get_close_matches(key, SETTINGS, n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in SETTINGS}
        close = [lowered[key.lower()]] if key.lower() in lowered else []
    hint = f"did you mean {close[0]}? " if close else ""
    raise ValueError(f"unknown config key {key!r}; {hint}known keys: {', '.join(SETTINGS)}")


def check_value(setting: Setting, value: Any, stored: bool = False) -> str | None:
    """Problem with a stored value (from a file someone may have edited by hand).

    `stored`: the value as every command loads it, checked with `stored_check` where the
    setting has one."""
    if setting.integer:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{setting.key} must be a whole number"
        if setting.key == "dnsTTL":
            return _ttl(value)
        if setting.key.endswith("Port"):
            return validate.port(value, setting.key)
        return None if value > 0 else f"{setting.key} must be positive"
    if not isinstance(value, str):
        return f"{setting.key} must be text"
    if problem := validate.single_line(value, setting.key):
        return problem
    if stored and setting.stored_check:
        return setting.stored_check(value)
    try:
        setting.parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def _network_problems(config: dict[str, Any]) -> list[str]:
    """vnetPoolStart must be an address a machine can have in vnetNetwork."""
    network, start = config.get("vnetNetwork"), config.get("vnetPoolStart")
    if not isinstance(network, str) or not isinstance(start, str):
        return []
    if validate.private_network(network) or validate.ipv4(start):
        return []  # reported on their own
    problem = validate.usable_address(start, network, "vnetPoolStart")
    return [problem] if problem else []


def _prefix_problems(config: dict[str, Any]) -> list[str]:
    prefixes = (config.get("dnsPrefix"), config.get("vnetPrefix"))
    if prefixes[0] and prefixes[0] == prefixes[1]:
        return ["dnsPrefix and vnetPrefix must differ, or public and private names clash"]
    return []


def check_stored(config: dict[str, Any]) -> list[str]:
    """Problems with config.toml's values, as every command loads it: each value as strict
    as `config set`, save the checks `stored_check` stands in for. Unknown and missing keys
    are left to `config validate`: no file is rendered from them, and `config set` must be
    able to mend a config one key at a time."""
    problems = []
    for key, value in config.items():
        setting = SETTINGS.get(key)
        if setting is None:
            problem = validate.single_line(value, key) if isinstance(value, str) else None
        elif setting.secret:
            problem = f"{key} is secret and belongs in secrets.toml, not config.toml"
        else:
            problem = check_value(setting, value, stored=True)
        if problem:
            problems.append(f"config.toml: {problem}")
    cross = _network_problems(config) + _prefix_problems(config)
    return problems + [f"config.toml: {problem}" for problem in cross]


def check_config(config: dict[str, Value], secrets: dict[str, Value]) -> list[str]:
    """Every problem in a whole config at once, cross-field rules included."""
    problems = []
    for key, value in {**config, **secrets}.items():
        try:
            setting = lookup(key)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if setting.secret and key in config:
            problems.append(f"{key} is secret and belongs in secrets.toml, not config.toml")
        if problem := check_value(setting, value):
            problems.append(problem)
    problems += [f"{key} is not set" for key in REQUIRED if key not in config]
    if not problems:
        problems += _network_problems(config)
    return problems + _prefix_problems(config)
