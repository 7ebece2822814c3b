"""Vultr DNS through API v2 (https://api.vultr.com/v2), bearer-token auth.

Records are listed with cursor paging at 500 a page (the maximum), updated with PATCH and
addressed by the id the list returns. Vultr allows 30 requests a second per address and
answers 429 beyond that: requests are spaced to stay under it and 429s are retried.
Names are relative to the domain ("" is the apex); TXT data is sent and returned quoted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infr.providers.base import (
    HttpApi,
    Provider,
    Record,
    RecordIds,
    absolute_name,
    json_field,
    quote_txt,
    relative_name,
    unquote_txt,
)

BASE_URL = "https://api.vultr.com/v2"
PAGE_SIZE = 500
# 30 requests a second is Vultr's limit; 25 leaves room for clock jitter on both sides.
MIN_INTERVAL = 1 / 25


class VultrProvider(Provider):
    name = "vultr"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = BASE_URL,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.api = HttpApi(
            base_url,
            provider="vultr",
            auth_hint="check dnsVultrAPIKey and that this address is in the key's access list",
            headers={"Authorization": f"Bearer {api_key}"},
            min_interval=MIN_INTERVAL,
            sleep=sleep,
            clock=clock,
        )
        self._ids = RecordIds("vultr", self.list_records)

    def list_records(self, zone: str) -> list[Record]:
        records: list[Record] = []
        self._ids.clear()
        cursor = ""
        while True:
            params = {"per_page": PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
            body = self._call("GET", f"/domains/{zone}/records", params=params)
            for item in body.get("records", []):
                if item["type"] == "SOA":
                    continue
                record = self._record(item, zone)
                records.append(record)
                self._ids.add(record, item["id"])
            cursor = ((body.get("meta") or {}).get("links") or {}).get("next") or ""
            if not cursor:
                return records

    def create(self, zone: str, record: Record) -> None:
        body = {"type": record.type, **self._fields(record, zone)}
        created = self._call("POST", f"/domains/{zone}/records", json=body)
        self._ids.add(record, created["record"]["id"])

    def update(self, zone: str, old: Record, new: Record) -> None:
        record_id = self._ids.of(zone, old)
        self._call("PATCH", f"/domains/{zone}/records/{record_id}", json=self._fields(new, zone))
        self._ids.forget(old, record_id)
        self._ids.add(new, record_id)

    def delete(self, zone: str, record: Record) -> None:
        record_id = self._ids.of(zone, record)
        self._call("DELETE", f"/domains/{zone}/records/{record_id}")
        self._ids.forget(record, record_id)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api.request(method, path, describe=lambda r: json_field(r, "error"), **kwargs)
        return response.json() if response.content else None

    @staticmethod
    def _record(item: dict[str, Any], zone: str) -> Record:
        value = str(item["data"])
        if item["type"] == "TXT":
            value = unquote_txt(value)
        return Record(absolute_name(item["name"], zone), item["type"], value, int(item["ttl"]))

    @staticmethod
    def _fields(record: Record, zone: str) -> dict[str, Any]:
        data = quote_txt(record.value) if record.type == "TXT" else record.value
        return {"name": relative_name(record.name, zone), "data": data, "ttl": record.ttl}
