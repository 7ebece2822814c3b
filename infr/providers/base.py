"""What every DNS provider is: a `Record` model, the `Provider` interface and a shared HTTP client.

A provider only lists, creates, updates and deletes single records. What to change is decided
elsewhere (`infr.dns.plan`), from what the provider lists, so a provider holds no state
beyond the record ids its API needs, which it learns from `list_records`.
"""

from __future__ import annotations

import email.utils
import re
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from infr.errors import ProviderError
from infr.oplog import get_logger

log = get_logger("dns")


@dataclass(frozen=True)
class Record:
    """One DNS record: `name` absolute, lowercase, no trailing dot; a TXT `value` unquoted."""

    name: str
    type: str
    value: str
    ttl: int

    def __post_init__(self) -> None:
        # Providers spell names and types in their own ways; one spelling makes records comparable.
        object.__setattr__(self, "name", self.name.rstrip(".").lower())
        object.__setattr__(self, "type", self.type.upper())

    def __str__(self) -> str:
        value = f'"{self.value}"' if self.type == "TXT" else self.value
        return f"{self.name} {self.ttl} {self.type} {value}"


class Provider(ABC):
    """A DNS provider's API for one zone at a time. Errors are raised as `ProviderError`."""

    name = "provider"

    @abstractmethod
    def list_records(self, zone: str) -> list[Record]:
        """Every record of `zone` (SOA excepted)."""

    @abstractmethod
    def create(self, zone: str, record: Record) -> None:
        """Add `record` to `zone`."""

    @abstractmethod
    def update(self, zone: str, old: Record, new: Record) -> None:
        """Replace `old` with `new`, which has the same name and type."""

    @abstractmethod
    def delete(self, zone: str, record: Record) -> None:
        """Remove `record` from `zone`."""


class RecordIds:
    """The ids an API gives records, learnt from listing, for APIs that address records by id.

    The same record may exist twice (two identical rows), so each record maps to a list.
    """

    def __init__(self, provider: str, list_records: Callable[[str], object]) -> None:
        self.provider = provider
        self.list_records = list_records
        self._ids: dict[Record, list[str]] = defaultdict(list)

    def clear(self) -> None:
        self._ids.clear()

    def add(self, record: Record, record_id: object) -> None:
        self._ids[record].append(str(record_id))

    def forget(self, record: Record, record_id: str) -> None:
        self._ids[record].remove(record_id)

    def of(self, zone: str, record: Record) -> str:
        """The id of `record`, listing `zone` first if this provider has not seen it yet."""
        if not self._ids.get(record):
            self.list_records(zone)
        if not self._ids.get(record):
            raise ProviderError(f"{self.provider} has no record {record} in {zone}")
        return self._ids[record][0]


def relative_name(name: str, zone: str) -> str:
    """`name` relative to `zone` ("" for the apex), as most APIs want it."""
    zone = zone.rstrip(".").lower()
    if name == zone:
        return ""
    if not name.endswith("." + zone):
        raise ProviderError(f"{name} is not in zone {zone}")
    return name[: -len(zone) - 1]


def absolute_name(relative: str, zone: str) -> str:
    zone = zone.rstrip(".").lower()
    return f"{relative}.{zone}".lower() if relative and relative != "@" else zone


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def quote_txt(value: str) -> str:
    """TXT text in zone-file form, split into 255-byte strings as DNS requires."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    chunks = [escaped[i : i + 255] for i in range(0, len(escaped), 255)] or [""]
    return " ".join(f'"{chunk}"' for chunk in chunks)


def unquote_txt(text: str) -> str:
    """The inverse of `quote_txt`; text without quotes is returned as it is."""
    strings = _QUOTED.findall(text)
    if not strings:
        return text
    return re.sub(r"\\(.)", r"\1", "".join(strings))


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (0-based): 0.5, 1, 2, 4 … up to `cap`."""
    return float(min(cap, base * 2**attempt))


def one_line(text: str, limit: int = 200) -> str:
    """An API's error text squeezed onto one short line for a ProviderError."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asked us to wait (Retry-After holds seconds or an HTTP date)."""
    header = response.headers.get("Retry-After")
    if not header:
        return None
    if header.strip().isdigit():
        return float(header)
    when = email.utils.parsedate_to_datetime(header)
    return max(0.0, when.timestamp() - time.time()) if when else None


class HttpApi:
    """A requests session for one provider's API with the policy all HTTP providers share.

    429, 5xx, timeouts and refused connections are retried with exponential backoff, waiting
    as long as Retry-After says when the server says it. Requests are spaced `min_interval`
    apart so a big fix stays under the provider's rate limit instead of leaning on 429s.
    401/403 become one ProviderError whose hint names the setting to check.
    """

    RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

    def __init__(
        self,
        base_url: str,
        *,
        provider: str,
        auth_hint: str,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 15.0,
        attempts: int = 6,
        min_interval: float = 0.0,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.auth_hint = auth_hint
        self.timeout = timeout
        self.attempts = attempts
        self.min_interval = min_interval
        # Tests and the benchmark pass fakes so that backoff and spacing cost no real time.
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        self._last_start: float | None = None
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **(headers or {})})
        self.session.auth = auth

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        describe: Callable[[requests.Response], str] | None = None,
    ) -> requests.Response:
        """Send one API call, retrying transient failures; any other failure is a ProviderError.

        `describe` turns an error response into the API's own message, for the error line.
        """
        url = f"{self.base_url}{path}"
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                response = self._send(method, url, params, json)
            except requests.RequestException as exc:
                transient = isinstance(exc, (requests.ConnectionError, requests.Timeout))
                # A POST whose answer timed out may have been carried out: sending it again
                # could create a duplicate, so report it and let the next plan see the truth.
                if method == "POST" and isinstance(exc, requests.ReadTimeout):
                    transient = False
                if last or not transient:
                    raise ProviderError(
                        f"{self.provider} API did not answer {method} {path}: {one_line(str(exc))}",
                        "check the network; the next `infr dns fix` finishes the job",
                    ) from exc
                self.sleep(backoff_delay(attempt))
                continue
            if response.status_code in self.RETRY_STATUSES and not last:
                self.sleep(_retry_after(response) or backoff_delay(attempt))
                continue
            if response.ok:
                return response
            raise self._error(method, path, response, describe)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, method: str, url: str, params: Mapping[str, Any] | None, json: Any) -> requests.Response:
        if self._last_start is not None:
            wait = self._last_start + self.min_interval - self.clock()
            if wait > 0:
                self.sleep(wait)
        self._last_start = self.clock()
        try:
            response = self.session.request(method, url, params=params, json=json, timeout=self.timeout)
        except requests.RequestException as exc:
            log.info("%s %s %s: %s", self.provider, method, url, exc)
            raise
        elapsed = (self.clock() - self._last_start) * 1000
        log.info("%s %s %s -> %s (%.0f ms)", self.provider, method, response.url, response.status_code, elapsed)
        return response

    def _error(
        self,
        method: str,
        path: str,
        response: requests.Response,
        describe: Callable[[requests.Response], str] | None,
    ) -> ProviderError:
        status = response.status_code
        if status in (401, 403):
            return ProviderError(f"{self.provider} refused the credentials (HTTP {status})", self.auth_hint)
        detail = one_line(describe(response) if describe else response.text) or response.reason
        if status in self.RETRY_STATUSES:
            return ProviderError(
                f"{self.provider} API still failing after {self.attempts} tries: "
                f"{method} {path}: HTTP {status} {detail}",
                "try again later; the next `infr dns fix` finishes the job",
            )
        return ProviderError(f"{self.provider} API refused {method} {path}: HTTP {status} {detail}")


def json_field(response: requests.Response, *keys: str) -> str:
    """The first of `keys` present in a JSON error body, or the raw body: for `describe`."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        for key in keys:
            if body.get(key):
                return str(body[key])
    return response.text
