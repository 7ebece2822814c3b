"""Rage4 DNS through its REST API (https://rage4.com/rapi), HTTP basic auth (account email, key).

Experimental: the shapes below follow Rage4's "dns-legacy" Swagger as current clients use it
(GetDomainByName, GetRecords, CreateRecord with the domain id in the body, UpdateRecord and
DeleteRecord by record id, answers `{"status", "id", "error"}`, RFC 7807 problem JSON for
4xx). They are tested against an emulation of those shapes, not against the live service.
Names are absolute; TXT content is unquoted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from infr.errors import ProviderError
from infr.providers.base import HttpApi, Provider, Record, RecordIds, json_field

BASE_URL = "https://rage4.com/rapi"


def _describe(response: requests.Response) -> str:
    return json_field(response, "detail", "title", "error")


class Rage4Provider(Provider):
    name = "rage4"

    def __init__(
        self,
        account: str,
        key: str,
        *,
        base_url: str = BASE_URL,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.api = HttpApi(
            base_url,
            provider="rage4",
            auth_hint="check dnsRage4Account (the account email) and dnsRage4Key",
            auth=(account, key),
            sleep=sleep,
            clock=clock,
        )
        self._domain_ids: dict[str, int] = {}
        self._ids = RecordIds("rage4", self.list_records)

    def list_records(self, zone: str) -> list[Record]:
        items = self._call("GET", "/GetRecords", params={"id": self._domain_id(zone)})
        self._ids.clear()
        records = []
        for item in items:
            record = Record(item["name"], item["type"], item["content"], int(item["ttl"]))
            if record.type == "SOA":
                continue
            records.append(record)
            self._ids.add(record, item["id"])
        return records

    def create(self, zone: str, record: Record) -> None:
        body = {"id": self._domain_id(zone), "type": record.type, **self._fields(record)}
        answer = self._checked(self._call("POST", "/CreateRecord", json=body), record)
        self._ids.add(record, answer["id"])

    def update(self, zone: str, old: Record, new: Record) -> None:
        record_id = self._ids.of(zone, old)
        answer = self._call("PUT", "/UpdateRecord", params={"id": record_id}, json=self._fields(new))
        self._checked(answer, new)
        self._ids.forget(old, record_id)
        self._ids.add(new, record_id)

    def delete(self, zone: str, record: Record) -> None:
        record_id = self._ids.of(zone, record)
        self._checked(self._call("DELETE", "/DeleteRecord", params={"id": record_id}), record)
        self._ids.forget(record, record_id)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.api.request(method, path, describe=_describe, **kwargs).json()

    @staticmethod
    def _checked(answer: Any, record: Record) -> dict[str, Any]:
        # Rage4 reports some refusals as HTTP 200 with status false.
        if not isinstance(answer, dict) or not answer.get("status"):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise ProviderError(f"rage4 refused {record}: {error or 'no reason given'}")
        return answer

    @staticmethod
    def _fields(record: Record) -> dict[str, Any]:
        return {"name": record.name, "content": record.value, "ttl": record.ttl}

    def _domain_id(self, zone: str) -> int:
        if zone not in self._domain_ids:
            domain = self._call("GET", "/GetDomainByName", params={"name": zone})
            if not isinstance(domain, dict) or not domain.get("id"):
                raise ProviderError(f"rage4 has no domain {zone}", "create the zone at Rage4 or check dnsDomain")
            self._domain_ids[zone] = int(domain["id"])
        return self._domain_ids[zone]
