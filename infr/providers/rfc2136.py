"""Any DNS server that takes RFC 2136 dynamic updates signed with TSIG: BIND, Knot, PowerDNS.

Records are listed by a zone transfer (AXFR) signed with the same key, so the server must
allow both with it: in BIND `update-policy { grant KEY zonesub ANY; }` and
`allow-transfer { key KEY; }`, in Knot an acl with `action: [update, transfer]`.
Each change is one signed UPDATE message over TCP; an update replaces the old record with
the new one in the same message, so it is atomic.
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Callable
from typing import TypeVar

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone

from infr.errors import ProviderError
from infr.oplog import get_logger
from infr.providers.base import Provider, Record, backoff_delay, quote_txt

log = get_logger("dns")
T = TypeVar("T")

ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
}


class RFC2136Provider(Provider):
    name = "rfc2136"

    def __init__(
        self,
        server: str,
        key_name: str,
        key_secret: str,
        port: int = 53,
        key_algorithm: str = "hmac-sha256",
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if key_algorithm.lower() not in ALGORITHMS:
            raise ProviderError(
                f"unknown TSIG algorithm {key_algorithm!r}",
                f"set dnsRFC2136KeyAlgorithm to one of {', '.join(ALGORITHMS)}",
            )
        self.server, self.port = server, int(port)
        self.key_name = dns.name.from_text(key_name)
        self.algorithm = ALGORITHMS[key_algorithm.lower()]
        try:
            self.keyring = dns.tsigkeyring.from_text({key_name: key_secret})
        except (binascii.Error, ValueError) as exc:
            raise ProviderError(
                "dnsRFC2136KeySecret is not valid base64", "copy the secret from the server's key file"
            ) from exc
        self.timeout, self.attempts = timeout, attempts
        self.sleep = sleep or time.sleep

    def list_records(self, zone: str) -> list[Record]:
        def transfer() -> dns.zone.Zone:
            copy = dns.zone.Zone(zone, relativize=False)
            query, _ = dns.xfr.make_query(
                copy, keyring=self.keyring, keyname=self.key_name, keyalgorithm=self.algorithm
            )
            dns.query.inbound_xfr(self.server, copy, query, port=self.port, lifetime=self.timeout)
            return copy

        copy = self._talk(f"AXFR {zone}", transfer)
        records = []
        for name, rdataset in copy.iterate_rdatasets():
            rtype = dns.rdatatype.to_text(rdataset.rdtype)
            if rtype == "SOA":
                continue
            for rdata in rdataset:
                value = b"".join(rdata.strings).decode("utf-8", "replace") if rtype == "TXT" else rdata.to_text()
                records.append(Record(name.to_text(), rtype, value, rdataset.ttl))
        return records

    def create(self, zone: str, record: Record) -> None:
        self._change(zone, f"create {record}", None, record)

    def update(self, zone: str, old: Record, new: Record) -> None:
        self._change(zone, f"update {old} -> {new}", old, new)

    def delete(self, zone: str, record: Record) -> None:
        self._change(zone, f"delete {record}", record, None)

    def _change(self, zone: str, what: str, remove: Record | None, add: Record | None) -> None:
        """One signed UPDATE that removes `remove` and adds `add`, atomically."""
        update = dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=self.key_name, keyalgorithm=self.algorithm
        )
        try:
            if remove is not None:
                update.delete(f"{remove.name}.", remove.type, self._text(remove))
            if add is not None:
                update.add(f"{add.name}.", add.ttl, add.type, self._text(add))
        except dns.exception.DNSException as exc:
            raise ProviderError(f"cannot {what}: {exc}") from exc
        self._send(zone, update, what)

    @staticmethod
    def _text(record: Record) -> str:
        return quote_txt(record.value) if record.type == "TXT" else record.value

    def _send(self, zone: str, update: dns.update.UpdateMessage, what: str) -> None:
        answer = self._talk(what, lambda: dns.query.tcp(update, self.server, port=self.port, timeout=self.timeout))
        rcode = answer.rcode()
        if rcode != dns.rcode.NOERROR:
            raise ProviderError(
                f"{self._where()} refused {what}: {dns.rcode.to_text(rcode)}",
                f"allow key {self.key_name.to_text(omit_final_dot=True)} to update zone {zone}",
            )

    def _talk(self, what: str, call: Callable[[], T]) -> T:
        """Run one exchange with the server, retrying timeouts and refused connections."""
        for attempt in range(self.attempts):
            started = time.monotonic()
            try:
                result = call()
            except dns.tsig.PeerError as exc:
                raise ProviderError(
                    f"{self._where()} refused the TSIG key {self.key_name.to_text(omit_final_dot=True)} ({exc})",
                    "check dnsRFC2136KeyName, dnsRFC2136KeySecret and dnsRFC2136KeyAlgorithm",
                ) from exc
            except dns.xfr.TransferError as exc:
                raise ProviderError(
                    f"{self._where()} refused {what}: {exc}", "allow zone transfers (AXFR) with the TSIG key"
                ) from exc
            except (dns.exception.Timeout, OSError) as exc:
                log.info("rfc2136 %s %s: %s", self._where(), what, exc)
                if attempt == self.attempts - 1:
                    raise ProviderError(
                        f"{self._where()} did not answer {what}: {exc}", "check dnsRFC2136Server and dnsRFC2136Port"
                    ) from exc
                self.sleep(backoff_delay(attempt))
                continue
            except dns.exception.DNSException as exc:
                raise ProviderError(f"{self._where()} failed {what}: {exc}") from exc
            log.info("rfc2136 %s %s (%.0f ms)", self._where(), what, (time.monotonic() - started) * 1000)
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _where(self) -> str:
        return f"{self.server}:{self.port}"
