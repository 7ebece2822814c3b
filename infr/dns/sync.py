"""`infr dns` and `infr dns fix`: the records state wants, against what the provider has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infr.dns.wanted import managed_suffixes, wanted_records
from infr.state.session import Session

if TYPE_CHECKING:
    from infr.dns.plan import ApplyReport, Plan
    from infr.providers.base import Provider, Record

Purposes = dict[tuple[str, str], str]


@dataclass(frozen=True)
class Reconcile:
    """Everything `dns list` and `dns fix` need: the provider, its zone, the plan."""

    provider: Provider
    zone: str
    plan: Plan
    purposes: Purposes


def _desired(session: Session) -> tuple[list[Record], Purposes]:
    from infr.providers.base import Record

    wanted = wanted_records(session.inventory(), session.settings())
    records = [Record(w.fqdn, w.type, w.value, w.ttl) for w in wanted]
    return records, {(w.fqdn, w.type): w.purpose for w in wanted}


def provider_configured(session: Session) -> bool:
    return "dnsProvider" in session.settings()


def reconcile(session: Session, adopt: bool = False) -> Reconcile:
    """Read the provider's zone and plan the changes that make it match state."""
    from infr.dns import plan as dns_plan
    from infr.providers import load_provider

    settings = session.settings()
    provider = load_provider(str(settings["dnsProvider"]), settings)
    zone = str(settings["dnsDomain"])
    desired, purposes = _desired(session)
    suffixes = managed_suffixes(settings)
    plan = dns_plan.compute_plan(
        desired, provider.list_records(zone), suffixes, str(settings["dnsOwnerId"]), adopt=adopt
    )
    return Reconcile(provider, zone, plan, purposes)


def rows(session: Session) -> list[dict[str, Any]]:
    """`infr dns` rows: every record with its STATUS (??? without a provider)."""
    if not provider_configured(session):
        records, purposes = _desired(session)
        return [_row(r, purposes, "???") for r in records]
    found = reconcile(session)
    return [_row(row.record, found.purposes, str(row.status)) for row in found.plan.rows]


def fix(found: Reconcile, force: bool) -> ApplyReport:
    from infr.dns import plan as dns_plan

    return dns_plan.apply(found.provider, found.zone, found.plan, force=force)


def _row(record: Record, purposes: Purposes, status: str) -> dict[str, Any]:
    return {
        "fqdn": record.name,
        "type": record.type,
        "value": record.value,
        "ttl": record.ttl,
        "purpose": purposes.get((record.name, record.type), "ownership marker" if record.type == "TXT" else ""),
        "status": status,
    }
