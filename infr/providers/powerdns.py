"""PowerDNS Authoritative through its HTTP API (/api/v1), X-API-Key auth.

PowerDNS changes whole RRsets (name + type, one TTL) with PATCH REPLACE/DELETE, while infr
changes single records: each change rewrites the record's RRset from the last listing, kept
up to date after every change, so other values sharing the RRset are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from infr.providers.base import HttpApi, Provider, Record, json_field, quote_txt, unquote_txt

RRsetKey = tuple[str, str]


class PowerDNSProvider(Provider):
    name = "powerdns"

    def __init__(
        self,
        url: str,
        api_key: str,
        server_id: str = "localhost",
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.api = HttpApi(
            f"{url.rstrip('/')}/api/v1/servers/{quote(server_id, safe='')}",
            provider="powerdns",
            auth_hint="check dnsPowerDNSAPIKey against api-key in pdns.conf",
            headers={"X-API-Key": api_key},
            sleep=sleep,
        )
        # zone -> (name, type) -> (ttl, values): the RRsets as last listed or changed.
        self._rrsets: dict[str, dict[RRsetKey, tuple[int, list[str]]]] = {}

    def list_records(self, zone: str) -> list[Record]:
        body = self._call("GET", self._zone_path(zone))
        rrsets: dict[RRsetKey, tuple[int, list[str]]] = {}
        records = []
        for rrset in body.get("rrsets", []):
            if rrset["type"] == "SOA":
                continue
            key = (rrset["name"].rstrip(".").lower(), rrset["type"])
            values = [self._value(key[1], r["content"]) for r in rrset["records"]]
            rrsets[key] = (int(rrset["ttl"]), values)
            records += [Record(key[0], key[1], v, int(rrset["ttl"])) for v in values]
        self._rrsets[zone] = rrsets
        return records

    def create(self, zone: str, record: Record) -> None:
        _, values = self._rrset(zone, record)
        self._replace(zone, record, record.ttl, [*values, record.value])

    def update(self, zone: str, old: Record, new: Record) -> None:
        _, values = self._rrset(zone, old)
        self._replace(zone, new, new.ttl, self._without(values, old.value) + [new.value])

    def delete(self, zone: str, record: Record) -> None:
        ttl, values = self._rrset(zone, record)
        self._replace(zone, record, ttl, self._without(values, record.value))

    def _replace(self, zone: str, record: Record, ttl: int, values: list[str]) -> None:
        """Make the RRset of `record` hold exactly `values` (none: delete it)."""
        rrset: dict[str, Any] = {"name": f"{record.name}.", "type": record.type}
        if values:
            content = [quote_txt(v) if record.type == "TXT" else v for v in values]
            rrset |= {
                "changetype": "REPLACE",
                "ttl": ttl,
                "records": [{"content": c, "disabled": False} for c in content],
            }
        else:
            rrset["changetype"] = "DELETE"
        self._call("PATCH", self._zone_path(zone), json={"rrsets": [rrset]})
        rrsets = self._rrsets[zone]
        key = (record.name, record.type)
        if values:
            rrsets[key] = (ttl, values)
        else:
            rrsets.pop(key, None)

    def _rrset(self, zone: str, record: Record) -> tuple[int, list[str]]:
        if zone not in self._rrsets:
            self.list_records(zone)  # a fresh provider has not seen the zone yet
        return self._rrsets[zone].get((record.name, record.type), (record.ttl, []))

    @staticmethod
    def _without(values: list[str], value: str) -> list[str]:
        rest = list(values)
        if value in rest:
            rest.remove(value)
        return rest

    @staticmethod
    def _value(rtype: str, content: str) -> str:
        return unquote_txt(content) if rtype == "TXT" else content

    @staticmethod
    def _zone_path(zone: str) -> str:
        return f"/zones/{quote(zone.rstrip('.') + '.', safe='')}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api.request(method, path, describe=lambda r: json_field(r, "error"), **kwargs)
        return response.json() if response.content else None
