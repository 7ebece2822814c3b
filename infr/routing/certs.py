"""Certificates for https TERMINATE: certbot command lines, a DNS pre-flight, listings.

Pure: every function builds or parses text; the caller runs the commands on the host.
The challenge is HTTP-01 through the host's HAProxy, which routes
`/.well-known/acme-challenge/` of TERMINATE names to certbot on 127.0.0.1:8888.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from infr.errors import ValidationError
from infr.state.settings import ACME_SERVERS, is_acme_server

LETSENCRYPT = ACME_SERVERS["letsencrypt"]

# Where infr installs its host-side files (see infr/templates/certbot/).
DEPLOY_HOOK = "/usr/local/lib/infr/certbot-deploy-haproxy"

STANDALONE = "standalone"
WEBROOT = "webroot"

Resolver = Callable[[str], Iterable[str]]


@dataclass(frozen=True)
class CertRequest:
    """One certificate: its certbot lineage name and every name it covers."""

    name: str
    domains: tuple[str, ...]


@dataclass(frozen=True)
class CertbotSettings:
    """How certbot runs on a host. The defaults are certbot's own Debian paths."""

    server: str = LETSENCRYPT
    # Empty: register without an email (no expiry warnings from the CA).
    email: str = ""
    challenge: str = STANDALONE
    # standalone: certbot's own server, only up while it validates; HAProxy's acme backend.
    http01_address: str = "127.0.0.1"
    http01_port: int = 8888
    # webroot: challenge files land here and a static server on the acme port serves them.
    webroot: str = "/var/lib/infr/acme-webroot"
    config_dir: str = "/etc/letsencrypt"
    work_dir: str = "/var/lib/letsencrypt"
    logs_dir: str = "/var/log/letsencrypt"
    deploy_hook: str = DEPLOY_HOOK
    certbot: str = "certbot"


@dataclass(frozen=True)
class CertInfo:
    """A certificate as listed by `certbot certificates` or read from a PEM."""

    name: str
    domains: tuple[str, ...]
    expiry: datetime
    path: str = ""


def acme_server_url(value: str) -> str:
    """`letsencrypt`, `staging`, or any https ACME directory URL."""
    if is_acme_server(value):
        return ACME_SERVERS.get(value, value)
    choices = ", ".join(ACME_SERVERS)
    raise ValidationError(
        [f"ACME server {value!r} is neither {choices} nor an https:// URL"],
        "e.g. staging while testing, then letsencrypt",
    )


def certonly_argv(request: CertRequest, settings: CertbotSettings) -> list[str]:
    """Obtain (or change the names of) the certificate `request.name`.

    `--deploy-hook` also lands in the renewal config, so renewals install themselves.
    """
    argv = [
        settings.certbot,
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--cert-name",
        request.name,
        "--server",
        settings.server,
        *_account_args(settings),
        *_challenge_args(settings),
        "--deploy-hook",
        settings.deploy_hook,
        *_dir_args(settings),
    ]
    for domain in request.domains:
        argv += ["-d", domain]
    return argv


def renew_argv(settings: CertbotSettings) -> list[str]:
    # Without a TTY certbot sleeps up to 8 minutes first, which only suits a cron job run
    # by thousands of machines at the same minute; the systemd timer already adds jitter.
    return [
        settings.certbot,
        "renew",
        "--non-interactive",
        "--no-random-sleep-on-renew",
        "--deploy-hook",
        settings.deploy_hook,
        *_dir_args(settings),
    ]


def delete_argv(name: str, settings: CertbotSettings) -> list[str]:
    return [settings.certbot, "delete", "--non-interactive", "--cert-name", name, *_dir_args(settings)]


def certificates_argv(settings: CertbotSettings) -> list[str]:
    return [settings.certbot, "certificates", *_dir_args(settings)]


def _account_args(settings: CertbotSettings) -> list[str]:
    if settings.email:
        return ["-m", settings.email, "--no-eff-email"]
    return ["--register-unsafely-without-email"]


def _challenge_args(settings: CertbotSettings) -> list[str]:
    if settings.challenge == STANDALONE:
        return [
            "--standalone",
            "--http-01-address",
            settings.http01_address,
            "--http-01-port",
            str(settings.http01_port),
        ]
    if settings.challenge == WEBROOT:
        return ["--webroot", "-w", settings.webroot]
    raise ValidationError([f"unknown ACME challenge setup {settings.challenge!r}"], f"use {STANDALONE} or {WEBROOT}")


def _dir_args(settings: CertbotSettings) -> list[str]:
    # Always explicit: certbot would otherwise fall back to /etc/letsencrypt, and resolves
    # relative paths against its working directory.
    return ["--config-dir", settings.config_dir, "--work-dir", settings.work_dir, "--logs-dir", settings.logs_dir]


def check_names_resolve(names: Iterable[str], expected_ip: str, resolver: Resolver) -> list[str]:
    """Problems that would make HTTP-01 fail, found before asking the CA.

    Every address of every name must be the host's: the CA may pick any of them, and a
    failed validation counts against Let's Encrypt's rate limit. Empty list: all good.
    """
    problems = []
    for name in names:
        try:
            addresses = sorted(set(resolver(name)))
        except (OSError, LookupError) as exc:
            problems.append(f"{name} does not resolve ({exc})")
            continue
        if not addresses:
            problems.append(f"{name} has no A or AAAA record")
        elif addresses != [expected_ip]:
            problems.append(f"{name} resolves to {', '.join(addresses)}, not {expected_ip}")
    return problems


def system_resolver(name: str) -> list[str]:
    """Addresses of `name` from this machine's resolver (A and AAAA)."""
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def dns_resolver(server: str) -> Resolver:
    """A resolver asking one DNS server, `IP` or `IP:PORT` (A and AAAA)."""
    import dns.exception
    import dns.resolver

    address, _, port = server.partition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [address]
    resolver.port = int(port or 53)
    resolver.lifetime = 5.0

    def resolve(name: str) -> list[str]:
        found = []
        for kind in ("A", "AAAA"):
            try:
                found += [answer.to_text() for answer in resolver.resolve(name, kind)]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException as exc:
                raise LookupError(f"{server} did not answer: {exc}") from exc
        return found

    return resolve


_FIELD = re.compile(r"^\s*(Certificate Name|Domains|Expiry Date|Certificate Path):\s*(.*)$")


def parse_certbot_certificates(output: str) -> list[CertInfo]:
    """The certificates in `certbot certificates` output (certbot 1.x and 2.x format)."""
    entries: list[dict[str, str]] = []
    for line in output.splitlines():
        match = _FIELD.match(line)
        if not match:
            continue
        key, value = match.groups()
        if key == "Certificate Name":
            entries.append({})
        if entries:
            entries[-1][key] = value.strip()
    return [_cert_info(entry) for entry in entries]


def _cert_info(entry: dict[str, str]) -> CertInfo:
    # "2027-02-20 12:00:00+00:00 (VALID: 89 days)"
    expiry = entry.get("Expiry Date", "").split(" (")[0]
    return CertInfo(
        name=entry["Certificate Name"],
        domains=tuple(entry.get("Domains", "").split()),
        expiry=datetime.fromisoformat(expiry),
        path=entry.get("Certificate Path", ""),
    )


def x509_text_argv(pem_path: str) -> list[str]:
    """What `parse_x509_text` reads: a PEM's subject, expiry and alternative names."""
    return [
        "openssl",
        "x509",
        "-in",
        pem_path,
        "-noout",
        "-subject",
        "-enddate",
        "-ext",
        "subjectAltName",
        "-nameopt",
        "multiline",
    ]


def parse_x509_text(name: str, output: str, path: str = "") -> CertInfo:
    """A certificate file's names and expiry from `x509_text_argv` output (OpenSSL 3)."""
    domains = re.findall(r"DNS:([^,\s]+)", output)
    if not domains:
        domains = re.findall(r"^\s*commonName\s*=\s*(.+?)\s*$", output, re.M)
    expiry = re.search(r"^notAfter=(.+)$", output, re.M)
    if not expiry:
        raise ValueError(f"no notAfter in openssl output for {name}")
    when = datetime.strptime(expiry.group(1).strip(), "%b %d %H:%M:%S %Y %Z")
    return CertInfo(name, tuple(domains), when.replace(tzinfo=UTC), path)
