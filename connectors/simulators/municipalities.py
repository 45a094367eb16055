"""Other municipalities on the network, played for the demo and tests: what their connectors would publish.

For a synthetic city (:mod:`connectors.simulators.city`): each resident who moved in is known to the municipality
they came from (with up to three years of screening 副本 there), each resident who moved out is known to the one
they went to, and some residents under a support measure are known to 札幌市. Those municipalities then query this
city: about the people who moved to them (permitted; every fourth also asks for 精検判定, a sensitive item; every
seventh asks for something the permitted-query list does not allow) and about the support-measure residents (held by
the person-level 自動応答不可フラグ).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from connectors.keys import person_token
from connectors.network import derived_id
from connectors.service import Output
from schemas.models import (
    ChukanPerson,
    ChukanQuery,
    FukuhonOperation,
    FukuhonRegistration,
    ResidentStatus,
)
from topics import catalog

from .city import City, PersonRecord

SOURCE = "kenshin-hub.simulator.municipality"
QUERY_ITEMS = ("K001", "K002", "K003", "K004", "K005", "K006", "K008")
PERMITTED_INFO = "TM00000000000139"
NOT_PERMITTED_INFO = "TM00000000000140"
AFFAIR = "JM0139"
SUPPORT_MEASURE_KNOWN_BY = "011002"  # 札幌市


@dataclass
class OtherMunicipalities:
    registrations: list[Output] = field(default_factory=list)  # persons and their 副本, before this city starts
    queries: list[Output] = field(default_factory=list)  # their queries to this city, once it is registered
    kinds: dict[str, int] = field(default_factory=dict)  # what the queries are meant to show


def simulate_others(
    city: City, linkage_key: bytes, seed: int, move_in_since: date, now: datetime | None = None
) -> OtherMunicipalities:
    rng = random.Random(seed * 7919 + 17)  # noqa: S311 - a deterministic simulation, not a secret
    at = now or datetime.now(UTC)
    out = OtherMunicipalities()
    numbers: dict[str, int] = {}

    def header(tenant: str, *parts: object) -> dict[str, object]:
        return {"event_id": derived_id("sim", tenant, *parts), "occurred_at": at, "tenant": tenant,
                "source_system": SOURCE}  # fmt: skip

    def register(tenant: str, p: PersonRecord) -> str:
        numbers[tenant] = numbers.get(tenant, 0) + 1
        integrated = f"9{numbers[tenant]:014d}"
        out.registrations.append((catalog.for_tenant(catalog.CHUKAN_PERSONS, tenant), ChukanPerson(
            **header(tenant, "person", p.atena_no),  # type: ignore[arg-type]
            integrated_atena_no=integrated, person_token=person_token(linkage_key, p.my_number),
            person=p.identity_on(p.resident_since), status=ResidentStatus.RESIDENT, support_measure=False, version=1,
        )))  # fmt: skip
        return integrated

    def history(tenant: str, integrated: str, p: PersonRecord) -> None:
        for back in range(rng.randint(0, 3)):
            fy = city.fiscal_year - 1 - back
            out.registrations.append((catalog.for_tenant(catalog.CHUKAN_FUKUHON, tenant), FukuhonRegistration(
                **header(tenant, "fukuhon", p.atena_no, fy),  # type: ignore[arg-type]
                record_id=f"KH{tenant}{integrated}STO{fy}", integrated_atena_no=integrated,
                info_name_code=PERMITTED_INFO, dataset_item_code="GANKENSHIN01",
                record_key=f"{integrated}:STOMACH:{fy}", version=1, publication_start=date(fy, 7, 1),
                publication_end=date(fy + 6, 3, 31), operation=FukuhonOperation.REGISTER,
                data={"K001": "STOMACH", "K002": str(fy), "K003": f"{fy}-07-01", "K005": "0", "K008": "XRAY"},
            )))  # fmt: skip

    def query(tenant: str, integrated: str, p: PersonRecord, info: str, items: tuple[str, ...], kind: str) -> None:
        out.kinds[kind] = out.kinds.get(kind, 0) + 1
        request_id = derived_id("sim-query", tenant, p.atena_no, kind)
        out.queries.append((catalog.for_tenant(catalog.CHUKAN_QUERIES, tenant), ChukanQuery(
            **header(tenant, "query", request_id),  # type: ignore[arg-type]
            request_id=request_id, integrated_atena_no=integrated, provider=city.tenant, affair_code=AFFAIR,
            info_name_code=info, items=items, fiscal_year_from=city.fiscal_year - 4,
            fiscal_year_to=city.fiscal_year, requested_at=at,
        )))  # fmt: skip

    people = sorted(city.residents.values(), key=lambda p: p.atena_no)
    for p in people:
        previous = p.previous_municipality
        if previous and previous != city.tenant and p.resident_since >= move_in_since:
            history(previous, register(previous, p), p)
    moved_out = [p for p in people if p.status is ResidentStatus.MOVED_OUT and p.next_municipality]
    for n, p in enumerate(moved_out):
        tenant = p.next_municipality
        assert tenant is not None
        integrated = register(tenant, p)
        if n % 7 == 6:
            query(tenant, integrated, p, NOT_PERMITTED_INFO, QUERY_ITEMS, "not permitted")
        elif n % 4 == 3:
            query(tenant, integrated, p, PERMITTED_INFO, (*QUERY_ITEMS, "K007"), "sensitive item (精検判定)")
        else:
            query(tenant, integrated, p, PERMITTED_INFO, QUERY_ITEMS, "permitted")
    supported = [p for p in people if p.support_measure and p.status is ResidentStatus.RESIDENT][:10]
    for p in supported:
        if p.previous_municipality == SUPPORT_MEASURE_KNOWN_BY:
            continue
        integrated = register(SUPPORT_MEASURE_KNOWN_BY, p)
        query(SUPPORT_MEASURE_KNOWN_BY, integrated, p, PERMITTED_INFO, QUERY_ITEMS, "support-measure person")
    return out
