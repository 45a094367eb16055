"""An in-process provision world: the network, the 中間サーバー and municipalities' connectors on one :class:`Bus`.

Used by the unit and property tests (SQLite files, no broker) and handy for trying rules out. Each party keeps its
own database, as it does when run on Kafka; municipalities other than the one with a connector are played by
:meth:`World.register`, which publishes exactly what their connectors would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from connectors.chukan import ChukanServer, TenantStore
from connectors.keys import PermitSigner, PermitVerifier, person_token, public_key_text, signed_review
from connectors.network import NetworkSimulator
from connectors.policy import Policies, default_policies
from connectors.service import Bus, Output
from connectors.stores import CHUKAN_MIGRATIONS, NETWORK_MIGRATIONS, chukan_effects, network_effects
from schemas.models import (
    ChukanPerson,
    ChukanQuery,
    Event,
    FukuhonOperation,
    FukuhonRegistration,
    PersonIdentity,
    ResidentStatus,
    ReviewDecision,
)
from sinks.db import make_engine, upgrade
from topics import catalog

SOURCE = "kenshin-hub.world"
REVIEWER = "reviewer1"
_TEMPLATES: dict[str, bytes] = {}


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    root: Path
    clock: Clock
    policies: Policies = field(default_factory=default_policies)
    linkage_key: bytes = b"test-linkage-key"
    bus: Bus = field(default_factory=Bus)
    signer: PermitSigner = field(init=False)
    chukan: ChukanServer = field(init=False)
    network: NetworkSimulator = field(init=False)
    engines: dict[str, Engine] = field(default_factory=dict)
    reviewer_keys: dict[tuple[str, str], Ed25519PrivateKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        key = Ed25519PrivateKey.generate()
        self.signer = PermitSigner(key)
        self.chukan = ChukanServer(self.policies, PermitVerifier(key.public_key()), self.clock)
        self.network = NetworkSimulator(self.policies, self.signer, self.clock)
        self.engines["chukan"] = self._engine("chukan", CHUKAN_MIGRATIONS)
        self.engines["network"] = self._engine("network", NETWORK_MIGRATIONS)
        self.bus.join(self.chukan, self.engines["chukan"], chukan_effects)
        self.bus.join(self.network, self.engines["network"], network_effects)

    def _engine(self, name: str, migrations: str) -> Engine:
        path = self.root / f"{name}.db"
        template = _TEMPLATES.get(migrations)
        if template is None:
            engine = make_engine(f"sqlite:///{path}")
            upgrade(engine, script_location=migrations)
            engine.dispose()
            _TEMPLATES[migrations] = template = path.read_bytes()
        else:
            path.write_bytes(template)  # a freshly migrated database, copied: migrating each world is slow
        return make_engine(f"sqlite:///{path}")

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()

    def publish(self, *outputs: Output) -> None:
        self.bus.publish(outputs)
        self.bus.run()

    def header(self, tenant: str) -> dict[str, object]:
        return {"event_id": uuid.uuid4(), "occurred_at": self.clock(), "tenant": tenant, "source_system": SOURCE}

    # --- playing a municipality's connector ------------------------------------------------------------------

    def register(
        self,
        tenant: str,
        integrated_no: str,
        my_number: str | None,
        person: PersonIdentity,
        *,
        support_measure: bool = False,
        version: int = 1,
    ) -> None:
        token = person_token(self.linkage_key, my_number) if my_number else None
        event = ChukanPerson(
            **self.header(tenant),  # type: ignore[arg-type]
            integrated_atena_no=integrated_no,
            person_token=token,
            person=person,
            status=ResidentStatus.RESIDENT,
            support_measure=support_measure,
            version=version,
        )
        self.publish((catalog.for_tenant(catalog.CHUKAN_PERSONS, tenant), event))

    def fukuhon(self, tenant: str, integrated_no: str, record_id: str, data: dict[str, str], *,
                version: int = 1, start: date = date(2020, 4, 1), end: date | None = None,
                event_id: uuid.UUID | None = None,
                operation: FukuhonOperation | None = None) -> FukuhonRegistration:  # fmt: skip
        header = self.header(tenant)
        if event_id is not None:
            header["event_id"] = event_id
        event = FukuhonRegistration(
            **header,  # type: ignore[arg-type]
            record_id=record_id,
            integrated_atena_no=integrated_no,
            info_name_code="TM00000000000139",
            dataset_item_code="GANKENSHIN01",
            record_key=f"{integrated_no}:{record_id}",
            version=version,
            publication_start=start,
            publication_end=end,
            operation=operation or (FukuhonOperation.REGISTER if version == 1 else FukuhonOperation.UPDATE),
            data=data,
        )
        self.publish((catalog.for_tenant(catalog.CHUKAN_FUKUHON, tenant), event))
        return event

    def query(self, requester: str, integrated_no: str, provider: str, items: tuple[str, ...], *,
              info_name_code: str = "TM00000000000139", affair_code: str = "JM0139",
              fiscal_years: tuple[int, int] | None = None) -> ChukanQuery:  # fmt: skip
        event = ChukanQuery(
            **self.header(requester),  # type: ignore[arg-type]
            request_id=uuid.uuid4(),
            integrated_atena_no=integrated_no,
            provider=provider,
            affair_code=affair_code,
            info_name_code=info_name_code,
            items=items,
            fiscal_year_from=fiscal_years[0] if fiscal_years else None,
            fiscal_year_to=fiscal_years[1] if fiscal_years else None,
            requested_at=self.clock(),
        )
        self.publish((catalog.for_tenant(catalog.CHUKAN_QUERIES, requester), event))
        return event

    def enrol(self, tenant: str, staff_id: str = REVIEWER) -> Ed25519PrivateKey:
        """A reviewer of ``tenant`` with a key of their own, enrolled at the 中間サーバー (as its operator does)."""
        key = self.reviewer_keys.get((tenant, staff_id))
        if key is None:
            key = self.reviewer_keys[(tenant, staff_id)] = Ed25519PrivateKey.generate()
            with self.engines["chukan"].begin() as conn:
                TenantStore(conn, tenant).enrol_reviewer(staff_id, public_key_text(key.public_key()), self.clock())
        return key

    def decide(
        self, tenant: str, request_id: uuid.UUID, approve: bool, reason: str | None = None, staff_id: str = REVIEWER
    ) -> ReviewDecision:
        """A reviewer's decision, signed and sent to the 中間サーバー as the staff tools send it (enrolled first)."""
        decision = signed_review(self.enrol(tenant, staff_id), tenant=tenant, source_system=SOURCE,
                                 request_id=request_id, staff_id=staff_id, approve=approve, reason=reason,
                                 now=self.clock())  # fmt: skip
        self.publish((catalog.for_tenant(catalog.REVIEW_DECISIONS, tenant), decision))
        return decision

    def events(self, topic: catalog.Topic) -> list[Event]:
        """What crossed ``topic``; for a template, what crossed every municipality's topic of it, in order."""
        return self.bus.on(topic)

    def count(self, name: str, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        with self.engines[name].connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())
