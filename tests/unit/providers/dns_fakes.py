"""In-memory emulations of the Vultr v2 and Rage4 DNS APIs for `responses`.

They answer in the documented request and response shapes and check what a real API would
refuse (wrong credentials, pages over 500, unquoted TXT data, fields PATCH does not take),
so a provider that passes against them speaks the API's language. Faults are injected by
queueing answers (`fail_next`) or refusing writes to a name (`refuse`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from infr.providers.base import Record, unquote_txt

Reply = tuple[int, dict[str, str], str]
Handler = Callable[[requests.PreparedRequest], Reply]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body)


class _Emulator:
    """What both emulations share: queued faults, refused names, a request log."""

    def __init__(self) -> None:
        self.fail_next: list[Reply | Exception] = []
        self.refuse: set[str] = set()
        self.requests: list[str] = []
        self._next_id = 1000

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _guarded(self, handler: Handler) -> Handler:
        def reply(request: requests.PreparedRequest) -> Reply:
            self.requests.append(f"{request.method} {urlsplit(request.url or '').path}")
            if self.fail_next:
                fault = self.fail_next.pop(0)
                if isinstance(fault, Exception):
                    raise fault
                return fault
            return handler(request)

        return reply

    @staticmethod
    def _query(request: requests.PreparedRequest) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(request.url or "").query).items()}

    @staticmethod
    def _body(request: requests.PreparedRequest) -> dict[str, Any]:
        raw = request.body or b"{}"
        return dict(json.loads(raw if isinstance(raw, str) else raw.decode()))


class VultrEmulator(_Emulator):
    """https://api.vultr.com/v2 DNS records of one domain."""

    BASE = "https://api.vultr.com/v2"
    TYPES = {"A", "AAAA", "CNAME", "NS", "MX", "SRV", "TXT", "CAA", "SSHFP"}

    def __init__(self, mock: responses.RequestsMock, zone: str, api_key: str) -> None:
        super().__init__()
        self.zone, self.api_key = zone, api_key
        self.records: dict[str, dict[str, Any]] = {}
        records = re.compile(rf"{re.escape(self.BASE)}/domains/([^/?]+)/records(\?.*)?$")
        one = re.compile(rf"{re.escape(self.BASE)}/domains/([^/?]+)/records/([^/?]+)$")
        mock.add_callback(responses.GET, records, callback=self._guarded(self._list))
        mock.add_callback(responses.POST, records, callback=self._guarded(self._create))
        mock.add_callback(responses.PATCH, one, callback=self._guarded(self._update))
        mock.add_callback(responses.DELETE, one, callback=self._guarded(self._delete))

    def seed(self, name: str, rtype: str, data: str, ttl: int = 300) -> None:
        """A record put in place as the Vultr control panel would: `name` relative."""
        record_id = f"rec-{self._new_id()}"
        self.records[record_id] = {
            "id": record_id,
            "type": rtype,
            "name": name,
            "data": data,
            "priority": -1,
            "ttl": ttl,
        }

    def _absolute(self, name: str) -> str:
        return f"{name}.{self.zone}" if name else self.zone

    def state(self) -> list[Record]:
        """The zone as Vultr holds it, read without the provider under test."""
        return [
            Record(
                self._absolute(r["name"]),
                r["type"],
                unquote_txt(r["data"]) if r["type"] == "TXT" else r["data"],
                r["ttl"],
            )
            for r in self.records.values()
        ]

    def _refused(self, request: requests.PreparedRequest, domain: str) -> Reply | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json(401, {"error": "Invalid API token.", "status": 401})
        if domain != self.zone:
            return _json(404, {"error": "Invalid domain.", "status": 404})
        return None

    def _match(self, request: requests.PreparedRequest) -> tuple[str, str]:
        parts = urlsplit(request.url or "").path.split("/")  # "", "v2", "domains", domain, "records", id
        return parts[3], parts[5] if len(parts) > 5 else ""

    def _list(self, request: requests.PreparedRequest) -> Reply:
        domain, _ = self._match(request)
        if refusal := self._refused(request, domain):
            return refusal
        query = self._query(request)
        per_page = int(query.get("per_page", 100))
        if not 1 <= per_page <= 500:
            return _json(400, {"error": "per_page must be between 1 and 500", "status": 400})
        start = int(base64.b64decode(query["cursor"]).decode()) if "cursor" in query else 0
        rows = list(self.records.values())
        end = start + per_page
        cursor = base64.b64encode(str(end).encode()).decode() if end < len(rows) else ""
        meta = {"total": len(rows), "links": {"next": cursor, "prev": ""}}
        return _json(200, {"records": rows[start:end], "meta": meta})

    def _check_fields(self, body: dict[str, Any], rtype: str) -> str | None:
        if rtype == "TXT" and not str(body.get("data", '""')).startswith('"'):
            return "TXT data must be quoted"
        if self._absolute(body.get("name", "")) in self.refuse:
            return f"record {body['name']} is not allowed"
        return None

    def _create(self, request: requests.PreparedRequest) -> Reply:
        domain, _ = self._match(request)
        if refusal := self._refused(request, domain):
            return refusal
        body = self._body(request)
        problem = self._check_fields(body, body.get("type", ""))
        if body.get("type") not in self.TYPES or "data" not in body or "name" not in body:
            problem = "name, type and data are required"
        if problem:
            return _json(400, {"error": problem, "status": 400})
        self.seed(body["name"], body["type"], body["data"], body.get("ttl", 300))
        return _json(201, {"record": list(self.records.values())[-1]})

    def _update(self, request: requests.PreparedRequest) -> Reply:
        domain, record_id = self._match(request)
        if refusal := self._refused(request, domain):
            return refusal
        if record_id not in self.records:
            return _json(404, {"error": "Invalid record.", "status": 404})
        body = self._body(request)
        record = self.records[record_id]
        if extra := set(body) - {"name", "data", "ttl", "priority"}:
            return _json(400, {"error": f"cannot update {', '.join(sorted(extra))}", "status": 400})
        if problem := self._check_fields({"name": record["name"], **body}, record["type"]):
            return _json(400, {"error": problem, "status": 400})
        record.update(body)
        return 204, {}, ""

    def _delete(self, request: requests.PreparedRequest) -> Reply:
        domain, record_id = self._match(request)
        if refusal := self._refused(request, domain):
            return refusal
        if record_id not in self.records:
            return _json(404, {"error": "Invalid record.", "status": 404})
        if self._absolute(self.records[record_id]["name"]) in self.refuse:
            return _json(400, {"error": "record is locked", "status": 400})
        del self.records[record_id]
        return 204, {}, ""


def _problem(status: int, title: str) -> Reply:
    """An RFC 7807 problem answer, as Rage4 gives for 4xx."""
    return _json(status, {"type": "about:blank", "title": title, "status": status, "traceId": "00-test"})


class Rage4Emulator(_Emulator):
    """https://rage4.com/rapi records of one domain, basic auth."""

    BASE = "https://rage4.com/rapi"
    DOMAIN_ID = 4242

    def __init__(self, mock: responses.RequestsMock, zone: str, account: str, key: str) -> None:
        super().__init__()
        self.zone = zone
        self.auth = "Basic " + base64.b64encode(f"{account}:{key}".encode()).decode()
        self.records: dict[int, dict[str, Any]] = {}
        routes = {
            (responses.GET, "GetDomainByName"): self._domain,
            (responses.GET, "GetRecords"): self._list,
            (responses.POST, "CreateRecord"): self._create,
            (responses.PUT, "UpdateRecord"): self._update,
            (responses.DELETE, "DeleteRecord"): self._delete,
        }
        for (method, name), handler in routes.items():
            url = re.compile(rf"{re.escape(self.BASE)}/{name}(\?.*)?$")
            mock.add_callback(method, url, callback=self._guarded(self._authorized(handler)))

    def seed(self, name: str, rtype: str, content: str, ttl: int = 300) -> int:
        record_id = self._new_id()
        self.records[record_id] = {
            "id": record_id,
            "name": name,
            "content": content,
            "type": rtype,
            "ttl": ttl,
            "priority": 0,
            "domain_id": self.DOMAIN_ID,
            "is_active": True,
        }
        return record_id

    def state(self) -> list[Record]:
        return [
            Record(r["name"], r["type"], r["content"], r["ttl"]) for r in self.records.values() if r["type"] != "SOA"
        ]

    def _authorized(self, handler: Handler) -> Handler:
        def reply(request: requests.PreparedRequest) -> Reply:
            if request.headers.get("Authorization") != self.auth:
                return _problem(401, "Unauthorized")
            return handler(request)

        return reply

    def _domain(self, request: requests.PreparedRequest) -> Reply:
        if self._query(request).get("name") != self.zone:
            return _problem(404, "Domain not found")
        return _json(200, {"id": self.DOMAIN_ID, "name": self.zone, "type": "NATIVE", "online": True})

    def _list(self, request: requests.PreparedRequest) -> Reply:
        if self._query(request).get("id") != str(self.DOMAIN_ID):
            return _problem(404, "Domain not found")
        return _json(200, list(self.records.values()))

    def _answer(self, record_id: int, error: str | None = None) -> Reply:
        return _json(200, {"status": error is None, "id": record_id, "error": error})

    def _create(self, request: requests.PreparedRequest) -> Reply:
        body = self._body(request)
        if body.get("id") != self.DOMAIN_ID or not {"name", "content", "type"} <= set(body):
            return _problem(400, "One or more validation errors occurred.")
        if body["name"] in self.refuse:
            return self._answer(0, f"record {body['name']} is not allowed")
        return self._answer(self.seed(body["name"], body["type"], body["content"], body.get("ttl", 3600)))

    def _record(self, request: requests.PreparedRequest) -> dict[str, Any] | None:
        record_id = self._query(request).get("id", "")
        return self.records.get(int(record_id)) if record_id.isdigit() else None

    def _update(self, request: requests.PreparedRequest) -> Reply:
        record = self._record(request)
        if record is None:
            return _problem(404, "Record not found")
        body = self._body(request)
        if record["name"] in self.refuse:
            return self._answer(record["id"], "record is locked")
        record.update({k: body[k] for k in ("name", "content", "ttl") if k in body})
        return self._answer(record["id"])

    def _delete(self, request: requests.PreparedRequest) -> Reply:
        record = self._record(request)
        if record is None:
            return _problem(404, "Record not found")
        if record["name"] in self.refuse:
            return self._answer(record["id"], "record is locked")
        del self.records[record["id"]]
        return self._answer(record["id"])
