"""Retention (hub/retention.py, retention.toml, `kenshin-hub retention run`): per tenant, in every store.

Every store (the hub's database, the processors', the 中間サーバー's, the network's) is seeded for two tenants with
rows past their period and rows within it, in every table retention checks; retention runs for ONE tenant, and
each table must have lost exactly that tenant's expired rows (and the tenant-less runtime outbox rows Kafka has or
that are too old), nothing else. A dry run changes nothing and counts the same. Every table of every store is
either checked or listed as kept on purpose, so a new table cannot be forgotten.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaError, Message
from sqlalchemy.engine import Engine

import hub.cli
import hub.office
import hub.review
from connectors import stores as ct
from connectors.policy import PolicyError, Retention, default_policies, load_retention
from hub.office import Office
from hub.pii import PiiKeys
from hub.retention import (
    COMPACTED,
    JST,
    SCHEDULE_PREFIX,
    DeliveryCallback,
    Position,
    RetentionError,
    RetentionSchedule,
    RetentionStores,
    TenantSchedules,
    last_run,
    record_run,
    run_retention,
    send_tombstones,
    served_tenants,
    tombstone_key,
)
from hub.settings import Settings, load_settings
from hub.staff import ANONYMOUS, StaffService, unit_test_password_cost
from hub.validation import fiscal_year
from processors import store as pt
from processors.rules.residents import PersonLog
from processors.rules.steps import encode_log
from schemas import models as m
from schemas.models import OperationOutcome, StaffOperation, StaffOperationType
from sinks import tables as st
from sinks.db import make_engine, upgrade
from tests import samples
from topics import catalog

pytestmark = pytest.mark.unit

A, B, C = "012041", "011002", "012025"  # 旭川市 (retention runs for it), 札幌市, 函館市
NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 12:00 JST, fiscal year 2026
GROUP = "kenshin-hub-test"

# Tables retention never deletes from, and why (no tenant's resident data, or needed as they are).
KEPT: dict[str, set[str]] = {  # the runs' records, accounts (reviewers too), counters and reference data
    "sinks": {
        "statistics",
        "staff_accounts",
        "staff_sessions",
        "integrated_atena_seq",
        "runtime_offsets",
        "institution_versions",
        "retention_runs",
    },
    "processors": {
        "processor_years",
        "processor_runtime_offsets",
        "processor_institutions",
        "processor_retention_runs",
    },
    "chukan": {"chukan_retention_runs", "runtime_offsets", "chukan_reviewers"},
    "network": {"runtime_offsets", "network_retention_runs"},
}
METADATA: dict[str, sa.MetaData] = {
    "sinks": st.metadata,
    "processors": pt.metadata,
    "chukan": ct.chukan_metadata,
    "network": ct.network_metadata,
}


def ago(days: float = 0, years: int = 0) -> datetime:
    return NOW - timedelta(days=days + 366 * years)


def today() -> date:
    return NOW.astimezone(JST).date()


FY = fiscal_year(today())


# --- stores and seeds ---------------------------------------------------------------------------------------------


@dataclass
class Stores:
    engines: dict[str, Engine]
    keys: PiiKeys
    gone: dict[tuple[str, str], set[tuple[Any, ...]]] = field(default_factory=dict)  # A's expired rows
    tombstones: set[tuple[str, bytes]] = field(default_factory=set)

    def retention(self) -> RetentionStores:
        e = self.engines
        return RetentionStores(sinks=e["sinks"], processors=e["processors"], chukan=e["chukan"], network=e["network"])

    def snapshot(self) -> dict[tuple[str, str], set[tuple[Any, ...]]]:
        out: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
        for store, meta in METADATA.items():
            with self.engines[store].connect() as conn:
                for table in meta.tables.values():
                    pk = list(table.primary_key.columns) or list(table.columns)
                    out[(store, table.name)] = {tuple(r) for r in conn.execute(sa.select(*pk))}
        return out


def _engine(path: Path, keys: PiiKeys, migrations: str | None = None) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    if migrations is None:
        upgrade(engine, pii_keys=keys)
    else:
        upgrade(engine, script_location=migrations, pii_keys=keys)
    return engine


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    keys = PiiKeys.generate()
    s = Stores(
        {
            "sinks": _engine(tmp_path / "hub.db", keys),
            "processors": _engine(tmp_path / "processors.db", keys, pt.PROCESSORS_MIGRATIONS),
            "chukan": _engine(tmp_path / "chukan.db", keys, ct.CHUKAN_MIGRATIONS),
            "network": _engine(tmp_path / "network.db", keys, ct.NETWORK_MIGRATIONS),
        },
        keys,
    )
    seed(s)
    yield s
    for engine in s.engines.values():
        engine.dispose()


class Seed:
    """Inserts rows of one tenant; those marked ``gone`` (tenant A only) are expected to be deleted."""

    def __init__(self, s: Stores, tenant: str) -> None:
        self.s = s
        self.tenant = tenant

    def add(self, store: str, table: sa.Table, gone: bool, **values: Any) -> None:
        if "tenant" in table.c and "tenant" not in values:
            values["tenant"] = self.tenant
        with self.s.engines[store].begin() as conn:
            conn.execute(sa.insert(table).values(**values))
        if gone and (self.tenant == A or values.get("tenant") == A or values.get("institution") == A):
            key = tuple(values[c.name] for c in table.primary_key.columns)
            self.s.gone.setdefault((store, table.name), set()).add(key)
            topic = COMPACTED.get(table.name)
            if topic is not None:  # a held provision's tombstone goes to its tenant's own topic
                topic = catalog.own(topic, values["tenant"])
                self.s.tombstones.add((topic.name, tombstone_key(topic, values)))


def _resident(status: str, ceased: date | None) -> dict[str, Any]:
    return {
        "name": "旭川 花子",
        "name_kana": "アサヒカワ ハナコ",
        "sex": "FEMALE",
        "birth_date": date(1970, 4, 1),
        "address": "北海道旭川市",
        "status": status,
        "ceased_on": ceased,
        "support_measure": False,
        "version": 1,
        "updated_at": ago(1),
    }


def _entry(fy: int) -> dict[str, Any]:
    return {
        "version": 1,
        "sex": "FEMALE",
        "birth_date": date(1970, 4, 1),
        "reception_no": f"R{fy}-{uuid.uuid4().hex[:8]}",
        "exam_date": date(fy, 6, 1),
        "exam_age": 50,
        "institution_code": "I001",
        "institution_name": "旭川病院",
        "setting": "INDIVIDUAL",
        "follow_up_required": False,
        "primary_findings": {},
        "source_event_id": str(uuid.uuid4()),
        "updated_at": ago(1),
    }


def _error(status: str, detected: datetime, resolved: datetime | None, atena: str) -> dict[str, Any]:
    return {
        "reception_no": f"E-{uuid.uuid4().hex[:10]}",
        "atena_no": atena,
        "kind": "STOMACH",
        "stage": "PRIMARY",
        "reasons": "UNKNOWN_PERSON",
        "mismatched_fields": "",
        "status": status,
        "detected_at": detected,
        "resolved_at": resolved,
        "result_event_id": str(uuid.uuid4()),
    }


def _effects(tenant: str | None) -> str:
    if tenant is None:
        return "[]"
    return json.dumps([{"topic": "chukan.provision-records.v1", "value": {"tenant": tenant, "x": "副本"}}])


def _change(tenant: str, atena: str, kind: m.ResidentChangeType, day: date, minimal: bool) -> m.ResidentChange:
    """A change as the processors keep it: whole, or (``minimal``) for a person below target age."""
    needs = kind in m.ResidentChange.NEEDS_PERSON
    basis = m.TargetBasis(sex=m.Sex.FEMALE, birth_date=date(2012, 5, 1))
    return m.ResidentChange(
        event_id=uuid.uuid4(),
        occurred_at=ago(1),
        tenant=tenant,
        source_system="test",
        atena_no=atena,
        change_type=kind,
        change_date=day,
        person=samples.person() if needs and not minimal else None,
        basis=basis if minimal else None,
        my_number=None if minimal else samples.my_number(),
    )


def seed_tenant(s: Stores, t: str) -> None:
    x = Seed(s, t)
    long_ago, lately = today() - timedelta(days=366 * 6), today() - timedelta(days=366)
    old_fy, new_fy = FY - 6, FY - 2
    # --- the hub's database -------------------------------------------------------------------------------------
    x.add("sinks", st.residents, True, atena_no="gone", **_resident("MOVED_OUT", long_ago))
    x.add("sinks", st.residents, True, atena_no="dead", **_resident("DECEASED", long_ago))
    x.add("sinks", st.residents, False, atena_no="left", **_resident("MOVED_OUT", lately))
    x.add("sinks", st.residents, False, atena_no="live", **_resident("RESIDENT", None))
    x.add("sinks", st.ledger_entries, True, atena_no="live", kind="STOMACH", fiscal_year=old_fy, **_entry(old_fy))
    x.add("sinks", st.ledger_entries, False, atena_no="live", kind="STOMACH", fiscal_year=new_fy, **_entry(new_fy))
    x.add("sinks", st.ledger_entries, True, atena_no="gone", kind="LUNG", fiscal_year=new_fy, **_entry(new_fy))
    x.add("sinks", st.ledger_entries, False, atena_no="left", kind="LUNG", fiscal_year=new_fy, **_entry(new_fy))
    version = {"version": 1, "withdrawn": False, "reception_no": "R1", "institution_code": "I001"}
    version |= {"follow_up_required": False, "source_event_id": str(uuid.uuid4()), "recorded_at": ago(1)}
    for atena, kind, fy, gone in (("live", "STOMACH", old_fy, True), ("live", "STOMACH", new_fy, False),
                                  ("gone", "LUNG", new_fy, True), ("left", "LUNG", new_fy, False)):  # fmt: skip
        x.add("sinks", st.ledger_versions, gone, atena_no=atena, kind=kind, fiscal_year=fy,
              exam_date=date(fy, 6, 1), **version)  # fmt: skip
    history = {"version": 1, "kind": "STOMACH", "items": {"K001": "STOMACH"}, "request_id": str(uuid.uuid4())}
    for record, atena, fy, received, gone in (
        ("H1", "live", old_fy, ago(1), True),
        ("H2", "live", None, ago(years=7), True),
        ("H3", "live", new_fy, ago(1), False),
        ("H4", "live", None, ago(30), False),
        ("H5", "gone", new_fy, ago(1), True),
    ):
        x.add(
            "sinks",
            st.ledger_history,
            gone,
            atena_no=atena,
            from_tenant=C,
            record_id=record,
            fiscal_year=fy,
            received_at=received,
            **history,
        )
    x.add("sinks", st.screening_errors, True, **_error("RESOLVED", ago(years=7), ago(years=6), "live"))
    x.add("sinks", st.screening_errors, False, **_error("RESOLVED", ago(years=7), ago(years=1), "live"))
    x.add("sinks", st.screening_errors, False, **_error("OPEN", ago(years=9), None, "live"))  # open: never
    x.add("sinks", st.screening_errors, True, **_error("WITHDRAWN", ago(years=6), None, "live"))
    x.add("sinks", st.screening_errors, True, **_error("OPEN", ago(5), None, "gone"))
    invitation = {"trigger": "FISCAL_YEAR_START", "age_at_fiscal_year_end": 50, "issued_at": ago(1)}
    x.add(
        "sinks",
        st.invitations,
        True,
        atena_no="live",
        kind="STOMACH",
        fiscal_year=old_fy,
        invitation_type="INVITATION",
        **invitation,
    )
    x.add(
        "sinks",
        st.invitations,
        False,
        atena_no="live",
        kind="STOMACH",
        fiscal_year=new_fy,
        invitation_type="INVITATION",
        **invitation,
    )
    x.add(
        "sinks",
        st.invitations,
        True,
        atena_no="dead",
        kind="LUNG",
        fiscal_year=new_fy,
        invitation_type="CARRY_OVER",
        **invitation,
    )
    request = {"kind": "BREAST", "channel": "COUNTER", "staff_id": "s1", "requested_at": ago(1)}
    for n, (expired, atena, fy, issued) in enumerate(
        [(True, "live", old_fy, True), (False, "live", new_fy, False), (True, "dead", new_fy, True)]
    ):
        x.add(
            "sinks",
            st.notice_decisions,
            expired,
            request_event_id=str(uuid.UUID(int=900 + n)),
            atena_no=atena,
            fiscal_year=fy,
            issued=issued,
            refusals="" if issued else "ATTENDED_LAST_YEAR",
            **request,
        )
    mailed = {"kind": "STOMACH", "invitation_type": "INVITATION", "batch_id": "b1", "sent_to": "REGISTERED",
              "staff_id": "s1", "mailed_at": ago(1)}  # fmt: skip
    for expired, atena, fy in [(True, "live", old_fy), (False, "live", new_fy), (True, "dead", new_fy)]:
        x.add("sinks", st.notice_mailings, expired, atena_no=atena, fiscal_year=fy, **mailed)
    decided = {"decision": "WITHHOLD", "reason": "支援措置", "staff_id": "s1", "decided_at": ago(4000)}
    x.add("sinks", st.mailing_decisions, False, atena_no="live", **decided)
    x.add("sinks", st.mailing_decisions, True, atena_no="dead", **decided)
    x.add(
        "sinks",
        st.statistics,
        False,
        fiscal_year=FY - 10,
        kind="STOMACH",
        sex="FEMALE",
        age_band="40-49",
        targets=1,
        attendees=1,
        follow_up_required=0,
        follow_up_attended=0,
        cancer_found=0,
        computed_at=ago(3000),
    )
    x.add(
        "sinks",
        st.staff_operations,
        True,
        event_id=str(uuid.uuid4()),
        staff_id="a1",
        operation="LOGIN",
        outcome="SUCCESS",
        performed_at=ago(years=8),
    )
    x.add(
        "sinks",
        st.staff_operations,
        False,
        event_id=str(uuid.uuid4()),
        staff_id="a1",
        operation="LOGIN",
        outcome="SUCCESS",
        performed_at=ago(years=6),
    )
    for atena, gone in (("gone", True), ("dead", True), ("left", False), ("live", False)):
        x.add("sinks", st.integrated_atena, gone, atena_no=atena, integrated_no=f"{t}{atena:0>9}", created_at=ago(9))
    x.add("sinks", st.integrated_atena_seq, False, last_no=4)
    outbox = {"version": 1, "payload": "{}"}
    x.add(
        "sinks",
        st.fukuhon_outbox,
        True,
        record_id="F1",
        integrated_no=f"{t}{'live':0>9}",
        status="FORWARDED",
        queued_at=ago(120),
        **outbox,
    )
    x.add(
        "sinks",
        st.fukuhon_outbox,
        False,
        record_id="F2",
        integrated_no=f"{t}{'live':0>9}",
        status="FORWARDED",
        queued_at=ago(10),
        **outbox,
    )
    x.add(
        "sinks",
        st.fukuhon_outbox,
        False,
        record_id="F3",
        integrated_no=f"{t}{'live':0>9}",
        status="PENDING",
        queued_at=ago(years=5),
        **outbox,
    )
    x.add(
        "sinks",
        st.fukuhon_outbox,
        True,
        record_id="F4",
        integrated_no=f"{t}{'gone':0>9}",
        status="PENDING",
        queued_at=ago(3),
        **outbox,
    )
    for atena, when, gone in (("live", ago(years=8), True), ("live", ago(years=1), False), ("gone", ago(2), True)):
        x.add(
            "sinks",
            st.connector_queries,
            gone,
            request_id=str(uuid.uuid4()),
            atena_no=atena,
            provider=C,
            requested_at=when,
        )
    record = {
        "request_id": str(uuid.uuid4()),
        "side": "PROVIDER",
        "requester": C,
        "provider": t,
        "affair_code": "A",
        "info_name_code": "TM00000000000139",
        "items": "K001",
        "non_disclosure": False,
        "outcome": "REFUSED",
        "request_body": "{}",
        "recorded_at": ago(1),
    }
    x.add("sinks", st.provision_records, True, record_id=str(uuid.uuid4()), requested_at=ago(years=8), **record)
    x.add("sinks", st.provision_records, False, record_id=str(uuid.uuid4()), requested_at=ago(years=6), **record)
    # --- the processors' store ----------------------------------------------------------------------------------
    R = m.ResidentChangeType
    lives = {
        "p-gone": ([(R.MOVE_IN, date(2000, 1, 1)), (R.MOVE_OUT, long_ago)], True),
        "p-dead": ([(R.BIRTH, date(1950, 1, 1)), (R.DEATH, long_ago)], True),
        "p-left": ([(R.MOVE_IN, date(2000, 1, 1)), (R.MOVE_OUT, lately)], False),
        "p-live": ([(R.MOVE_IN, date(2000, 1, 1))], False),
        # below target age: kept minimal (no resident state), and gone all the same once moved out long ago
        "p-child-gone": ([(R.BIRTH, date(2012, 5, 1)), (R.MOVE_OUT, long_ago)], True),
        "p-child": ([(R.BIRTH, date(2012, 5, 1))], False),
    }
    for atena, (changes, gone) in lives.items():
        key = f"{t}:{atena}"
        minimal = atena.startswith("p-child")
        person_log = PersonLog(tuple(_change(t, atena, kind, day, minimal) for kind, day in changes))
        stored = pt.seal_log(encode_log(person_log), s.keys, t, key)
        x.add("processors", pt.people, gone, key=key, partition=0, log=stored, book=None)
        # the reception index's row of a 受付番号 the person sent a result under goes with them
        claim = {"submitted_at": ago(years=8), "result_event_id": str(uuid.uuid4())}
        x.add("processors", pt.receptions, gone, reception_no=f"R-{atena}", atena_no=atena, **claim)
    x.add("processors", pt.people, False, key=f"{t}:p-book", partition=1, log=None, book='{"entries": []}')
    x.add("processors", pt.years, False, partition=0, fiscal_year=FY)
    # --- the 中間サーバー ---------------------------------------------------------------------------------------
    person = {
        "name": "旭川 花子",
        "name_kana": "アサヒカワ ハナコ",
        "sex": "FEMALE",
        "birth_date": date(1970, 4, 1),
        "address": "北海道旭川市",
        "support_measure": False,
        "version": 1,
        "fugo_requested": True,
    }
    x.add(
        "chukan",
        ct.chukan_persons,
        False,
        integrated_no="I1",
        status="RESIDENT",
        fugo=f"F{t}-1",
        updated_at=ago(years=9),
        **person,
    )
    x.add(
        "chukan",
        ct.chukan_persons,
        True,
        integrated_no="I2",
        status="MOVED_OUT",
        fugo=f"F{t}-2",
        updated_at=ago(years=6),
        **person,
    )
    x.add(
        "chukan",
        ct.chukan_persons,
        False,
        integrated_no="I3",
        status="MOVED_OUT",
        fugo=f"F{t}-3",
        updated_at=ago(years=1),
        **person,
    )
    x.add(
        "chukan",
        ct.chukan_persons,
        True,
        integrated_no="I4",
        status="DECEASED",
        fugo=None,
        updated_at=ago(years=6),
        **person,
    )
    fukuhon = {
        "event_id": str(uuid.uuid4()),
        "info_name_code": "TM00000000000139",
        "dataset_item_code": "D",
        "record_key": "k",
        "publication_start": date(2020, 4, 1),
        "operation": "REGISTER",
        "data": "{}",
        "registered_at": ago(1),
    }
    for record_id, integrated, end, gone in (
        ("R1", "I1", today() - timedelta(days=1), True),
        ("R2", "I1", None, False),
        ("R3", "I1", today(), False),
        ("R4", "I2", None, True),
    ):
        x.add(
            "chukan",
            ct.chukan_fukuhon,
            gone,
            record_id=record_id,
            version=1,
            integrated_no=integrated,
            publication_end=end,
            **fukuhon,
        )
    x.add(
        "chukan",
        ct.chukan_records,
        True,
        record_id=str(uuid.uuid4()),
        request_id="q",
        side="PROVIDER",
        outcome="REFUSED",
        requested_at=ago(years=7, days=1),
        body="{}",
    )
    x.add(
        "chukan",
        ct.chukan_records,
        False,
        record_id=str(uuid.uuid4()),
        request_id="q",
        side="PROVIDER",
        outcome="REFUSED",
        requested_at=ago(years=6),
        body="{}",
    )
    held = {"request": "{}", "hold_reasons": "ITEM_FLAG", "flagged_items": "K003", "held_at": ago(years=3)}
    for integrated, status, decided, gone in (
        ("I1", "APPROVED", ago(400), True),
        ("I1", "REFUSED", ago(10), False),
        ("I1", "HELD", None, False),  # undecided: staff still have to decide it
        ("I2", "APPROVED", ago(10), True),
        ("I2", "HELD", None, False),
    ):
        x.add(
            "chukan",
            ct.chukan_held,
            gone,
            request_id=str(uuid.uuid4()),
            integrated_no=integrated,
            status=status,
            decided_at=decided,
            decided_by="r1" if decided else None,
            **held,
        )
    for integrated, status, when, gone in (
        ("I1", "ANSWERED", ago(400), True),
        ("I1", "ANSWERED", ago(10), False),
        ("I1", "SENT", ago(years=3), False),
        ("I4", "WAITING_FUGO", ago(2), True),
    ):
        x.add(
            "chukan",
            ct.chukan_outgoing,
            gone,
            request_id=str(uuid.uuid4()),
            integrated_no=integrated,
            query="{}",
            status=status,
            requested_at=when,
        )
    x.add("chukan", ct.chukan_used_permits, True, permit_id=str(uuid.uuid4()), request_id="q", used_at=ago(31))
    x.add("chukan", ct.chukan_used_permits, False, permit_id=str(uuid.uuid4()), request_id="q", used_at=ago(2))
    review = {"request_id": "q", "staff_id": "r1", "verdict": "APPROVE", "outcome": "ACCEPTED"}
    x.add("chukan", ct.chukan_review_decisions, True, event_id=str(uuid.uuid4()), received_at=ago(years=7, days=1),
          **review)  # fmt: skip
    x.add("chukan", ct.chukan_review_decisions, False, event_id=str(uuid.uuid4()), received_at=ago(years=6),
          **review)  # fmt: skip
    # --- the network ----------------------------------------------------------------------------------------------
    for fugo, issued, gone in (
        (f"F{t}-1", ago(years=9), False),  # held by I1
        (f"F{t}-2", ago(years=9), True),  # I2 is deleted from the 中間サーバー in the same run
        (f"F{t}-3", ago(years=9), False),  # held by I3
        (f"F{t}-9", ago(years=9), True),  # nobody holds it any more
        (f"F{t}-8", ago(30), False),  # too recent to judge
    ):
        x.add("network", ct.network_fugo, gone, institution=t, fugo=fugo, person_token=f"tok-{fugo}", issued_at=issued)
    log = {"info_name_code": "TM00000000000139", "items": "K001", "outcome": "PROVIDED_AUTOMATICALLY"}
    x.add(
        "network",
        ct.network_log,
        True,
        request_id=str(uuid.uuid4()),
        requester=t,
        provider=C,
        logged_at=ago(years=8),
        **log,
    )
    x.add(
        "network",
        ct.network_log,
        False,
        request_id=str(uuid.uuid4()),
        requester=t,
        provider=C,
        logged_at=ago(years=6),
        **log,
    )
    # --- stored effects of every service ------------------------------------------------------------------------
    for store, table in (("sinks", st.service_effects), ("chukan", ct.chukan_effects), ("network", ct.network_effects)):
        x.add(store, table, True, service="svc", input_id=f"old-{t}", outputs=_effects(t), acted_at=ago(401))
        x.add(store, table, False, service="svc", input_id=f"new-{t}", outputs=_effects(t), acted_at=ago(399))
        x.add(store, table, False, service="svc", input_id=f"empty-{t}", outputs=_effects(None), acted_at=ago(900))


def seed_outbox(s: Stores, group: str = GROUP, t1: str = "t1", t2: str = "t2") -> None:
    """Tenant-less runtime tables: Kafka has committed t1:0 below 20; t2:1's inputs below offset 5 are too old.

    ``group``, ``t1`` and ``t2`` name the consumer group and the topics (the integration tier's own on its broker).
    """
    for store, (offsets, outbox) in {
        "sinks": (st.runtime_offsets, st.runtime_outbox),
        "processors": (pt.runtime_offsets, pt.runtime_outbox),
        "chukan": ct.chukan_runtime,
        "network": ct.network_runtime,
    }.items():
        x = Seed(s, A)
        for topic, partition, nxt in ((t1, 0, 30), (t2, 1, 10)):
            x.add(
                store, offsets, False, group_id=group, topic=topic, partition=partition, next_offset=nxt, topic_id="id"
            )
        for topic, partition, first, last, gone in (
            (t1, 0, 0, 9, True),
            (t1, 0, 10, 19, True),
            (t1, 0, 20, 29, False),
            (t2, 1, 0, 4, True),
            (t2, 1, 5, 9, False),
        ):
            x.add(
                store,
                outbox,
                gone,
                group_id=group,
                topic=topic,
                partition=partition,
                first_offset=first,
                last_offset=last,
                records=b"encoded answers",
            )


def seed(s: Stores, group: str = GROUP, t1: str = "t1", t2: str = "t2") -> None:
    seed_tenant(s, A)
    seed_tenant(s, B)
    x = Seed(s, A)  # a line where A provided to B: A is a party, so it is A's to delete; B → C is not A's
    x.add(
        "network",
        ct.network_log,
        True,
        request_id=str(uuid.uuid4()),
        requester=B,
        provider=A,
        logged_at=ago(years=8),
        info_name_code="TM00000000000139",
        items="K001",
        outcome="REFUSED",
    )
    x.add(
        "network",
        ct.network_log,
        False,
        request_id=str(uuid.uuid4()),
        requester=B,
        provider=C,
        logged_at=ago(years=8),
        info_name_code="TM00000000000139",
        items="K001",
        outcome="REFUSED",
    )
    seed_outbox(s, group, t1, t2)


# --- fakes --------------------------------------------------------------------------------------------------------


class FakeKafka:
    def committed(self, group_id: str, positions: Sequence[Position]) -> dict[Position, int]:
        return {("t1", 0): 20} if group_id == GROUP and ("t1", 0) in positions else {}

    def first_offsets_at(self, positions: Sequence[Position], when: datetime) -> dict[Position, int]:
        assert when == NOW - timedelta(days=30)
        return {p: 5 if p == ("t2", 1) else 0 for p in positions}


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self._pending: list[DeliveryCallback] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        self.sent.append((topic, key, value))
        if on_delivery is not None:
            self._pending.append(on_delivery)

    def poll(self, timeout: float = -1) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        error = KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail else None
        for callback in self._pending:
            callback(error, cast(Message, None))
        self._pending.clear()
        return 0


# --- the stores ---------------------------------------------------------------------------------------------------


def test_retention_deletes_exactly_the_expired_rows_of_one_tenant_in_every_store(stores: Stores) -> None:
    before = stores.snapshot()
    producer = FakeProducer()
    report = run_retention(
        stores.retention(),
        A,
        policy=load_retention(),
        now=NOW,
        kafka=FakeKafka(),
        producer=producer,
        pii_keys=stores.keys,
    )
    after = stores.snapshot()
    for where, rows in before.items():
        assert rows - after[where] == stores.gone.get(where, set()), where
        assert after[where] <= rows, where
    for store, counts in report.counts().items():
        for table, n in counts.items():
            assert n == len(stores.gone.get((store, table), set())), (store, table)
    # every table is checked or kept on purpose; every checked table had rows of both kinds
    for store, meta in METADATA.items():
        checked = set(report.counts()[store])
        assert checked | KEPT[store] == set(meta.tables), store
        assert not checked & KEPT[store]
        for table in checked:
            assert stores.gone.get((store, table)), (store, table)  # expired rows were seeded
            assert after[(store, table)], (store, table)  # and rows within their period
    # tombstones for every deleted row of a compacted topic's table, with a null value, on that topic
    assert {(t, k) for t, k, _ in producer.sent} == stores.tombstones
    assert all(v is None for _, _, v in producer.sent)
    compacted = {catalog.own(t, A).name for t in catalog.ALL_TOPICS if t.cleanup_policy == "compact"}
    assert {t for t, _, _ in producer.sent} == compacted
    assert report.tombstones_sent == len(stores.tombstones)
    assert (len(report.results), report.tables_checked) == (4, 32)
    print(f"\nstores checked by retention: {len(report.results)} stores, {report.tables_checked} tables")
    # a second run finds nothing
    again = run_retention(
        stores.retention(),
        A,
        policy=load_retention(),
        now=NOW,
        kafka=FakeKafka(),
        producer=FakeProducer(),
        pii_keys=stores.keys,
    )
    assert sum(r.total for r in again.results) == 0
    assert stores.snapshot() == after


def test_the_other_tenants_run_deletes_its_own_rows_afterwards(stores: Stores) -> None:
    policy = load_retention()
    run_retention(
        stores.retention(), A, policy=policy, now=NOW, kafka=FakeKafka(), producer=FakeProducer(), pii_keys=stores.keys
    )
    report = run_retention(stores.retention(), B, policy=policy, now=NOW, producer=FakeProducer(), pii_keys=stores.keys)
    counts = report.counts()
    assert counts["sinks"]["residents"] == 2
    assert counts["processors"]["processor_people"] == 3
    assert counts["chukan"]["chukan_persons"] == 2
    assert counts["network"]["network_fugo"] == 2
    assert counts["network"]["network_log"] == 2  # B's old lines (B → C); B → A went with A's run
    assert all(r.counts.get("runtime_outbox", 0) == 0 for r in report.results)
    assert any("no Kafka" in note for r in report.results for note in r.notes)  # nothing was asked: nothing deleted


def test_a_dry_run_counts_the_same_rows_and_changes_nothing(stores: Stores) -> None:
    before = stores.snapshot()
    producer = FakeProducer()
    dry = run_retention(
        stores.retention(),
        A,
        policy=load_retention(),
        now=NOW,
        kafka=FakeKafka(),
        producer=producer,
        pii_keys=stores.keys,
        dry_run=True,
    )
    assert stores.snapshot() == before
    assert producer.sent == []
    assert dry.tombstones_sent == 0
    assert dry.tombstones == len(stores.tombstones)
    for (store, table), rows in stores.gone.items():
        assert dry.count(store, table) == len(rows), (store, table)
    with pytest.raises(ValueError, match="dry run"):
        record_run(stores.engines["chukan"], dry, "admin1")


def test_an_undelivered_tombstone_rolls_the_store_back(stores: Stores) -> None:
    before = stores.snapshot()
    with pytest.raises(RetentionError, match="undelivered"):
        run_retention(
            stores.retention(),
            A,
            policy=load_retention(),
            now=NOW,
            kafka=FakeKafka(),
            producer=FakeProducer(fail=True),
            pii_keys=stores.keys,
        )
    assert stores.snapshot() == before  # the sinks' store failed first: nothing anywhere was deleted
    with pytest.raises(RetentionError, match="no producer"):
        run_retention(stores.retention(), A, policy=load_retention(), now=NOW, pii_keys=stores.keys)
    assert stores.snapshot() == before


def test_send_tombstones_waits_for_every_delivery() -> None:
    producer = FakeProducer()
    key = tombstone_key(catalog.RESIDENTS, {"tenant": A, "atena_no": "0001"})
    assert key == b"012041:0001"
    assert send_tombstones(producer, [(catalog.RESIDENTS.name, key)]) == 1
    assert producer.sent == [("residents.v1", b"012041:0001", None)]
    assert send_tombstones(producer, []) == 0
    with pytest.raises(RetentionError, match="_MSG_TIMED_OUT"):
        send_tombstones(FakeProducer(fail=True), [(catalog.RESIDENTS.name, key)])
    with pytest.raises(ValueError, match="not a compacted topic"):
        send_tombstones(producer, [(catalog.INVITATIONS.name, key)])


def test_the_compacted_topics_keys_are_the_tables_primary_keys() -> None:
    compacted = {t.name for t in catalog.ALL_TOPICS if t.cleanup_policy == "compact"}
    assert {t.name for t in COMPACTED.values()} == compacted
    tables = {t.name: t for meta in METADATA.values() for t in meta.tables.values()}
    for table, topic in COMPACTED.items():
        assert [c.name for c in tables[table].primary_key.columns] == list(topic.key_fields)


def test_retention_refuses_a_store_call_without_a_tenant(stores: Stores) -> None:
    with pytest.raises(ValueError, match="one tenant"):
        run_retention(stores.retention(), "", policy=load_retention(), now=NOW)
    with pytest.raises(ValueError, match="one tenant"):
        run_retention(stores.retention(), "%", policy=load_retention(), now=NOW)


# --- retention.toml ----------------------------------------------------------------------------------------------


def _toml(tmp_path: Path, **changes: object) -> Path:
    text = (Path(__file__).parents[2] / "connectors" / "data" / "retention.toml").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in changes:
            value = changes.pop(key)
            if value is None:
                continue
            line = f"{key} = {value}"
        lines.append(line)
    lines += [f"{k} = {v}" for k, v in changes.items()]
    path = tmp_path / "retention.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_the_packaged_retention_toml_has_a_period_for_everything() -> None:
    policy = load_retention()
    assert isinstance(policy, Retention)
    assert policy.provision_record_years == 7
    assert policy.dead_letter_days * catalog.DAY_MS >= catalog.DLQ_RETENTION_MS
    assert 0 <= policy.retention_hour <= 23


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ledger_years": 5}, "unknown key.*ledger_years"),
        ({"ceased_resident_years": None}, "missing key.*ceased_resident_years"),
        ({"dead_letter_days": None, "outbox_uncommitted_days": None}, "missing key.*outbox_uncommitted_days"),
        ({"held_decided_days": 0}, "held_decided_days must be an integer >= 1"),
        ({"retention_hour": 24}, "retention_hour must be an integer between 0 and 23"),
        ({"min_interval_hours": '"20"'}, "min_interval_hours must be an integer"),
        ({"ledger_fiscal_years": "true"}, "ledger_fiscal_years must be an integer"),
        ({"used_permit_days": 1}, "used_permit_days must be an integer >= 2"),
        ({"dead_letter_days": 30}, "dead_letter_days is 30 but .*dlq.v1 keeps its dead letters 90 days"),
        ({"service_effects_days": 30}, "service_effects_days must be >= 400"),
        ({"version": None}, "version"),
    ],
)
def test_a_bad_retention_toml_is_refused(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=f"retention.toml: .*{message}"):
        load_retention(_toml(tmp_path, **changes))


# --- the schedule -----------------------------------------------------------------------------------------------


def jst(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=JST).astimezone(UTC)


def test_the_schedule_runs_once_a_day_from_its_hour_and_records_each_run(stores: Stores) -> None:
    chukan = stores.engines["chukan"]
    policy = load_retention()
    made: list[FakeProducer] = []

    def producer() -> FakeProducer:
        made.append(FakeProducer())
        return made[-1]

    def schedule() -> RetentionSchedule:
        return RetentionSchedule(
            RetentionStores(chukan=chukan), A, name="chukan", record=chukan, policy=policy, producer=producer
        )

    s = schedule()
    assert policy.retention_hour == 2
    assert not s.due(jst(1, 1, 59))
    assert s.tick(jst(1, 1, 59), background=False) is False
    assert s.tick(jst(1, 2, 5), background=False) is True
    assert s.last_report is not None
    assert s.last_report.count("chukan", "chukan_persons") == 2
    assert not s.due(jst(1, 2, 6))
    assert not s.due(jst(1, 23, 59))
    assert not schedule().due(jst(1, 23, 59))  # a restarted process reads the last run
    assert last_run(chukan, A, f"{SCHEDULE_PREFIX}chukan") == jst(1, 2, 5)
    assert not s.due(jst(2, 1, 59))
    assert s.due(jst(2, 2, 0))
    s.run(jst(1, 23, 0))  # a late run the day before (e.g. a process started late): 20 hours must pass
    assert not s.due(jst(2, 2, 0))
    assert not s.due(jst(2, 18, 59))
    assert s.due(jst(2, 19, 0))
    runs = ct.chukan_retention_runs
    with chukan.connect() as conn:
        rows = conn.execute(sa.select(runs).order_by(runs.c.ran_at)).all()
    assert [(r.tenant, r.run_by) for r in rows] == [(A, "schedule:chukan")] * 2
    assert json.loads(rows[0].counts)["chukan"]["chukan_persons"] == 2
    assert rows[0].records_deleted == 1
    assert rows[0].fukuhon_deleted == 2
    assert len(made) == 2  # a producer per run, for the held provisions' tombstones


def test_the_schedule_runs_in_the_background_from_a_heartbeat_and_survives_a_failure(stores: Stores) -> None:
    chukan = stores.engines["chukan"]
    beats: list[int] = []
    clock = [jst(1, 3)]
    s = RetentionSchedule(
        RetentionStores(chukan=chukan),
        A,
        name="chukan",
        record=chukan,
        policy=load_retention(),
        producer=lambda: FakeProducer(fail=True),
        check_every_s=0,
        clock=lambda: clock[0],
    )
    turn = s.heartbeat(lambda: beats.append(1))
    turn()
    s.join(30)
    assert beats == [1]
    assert s.last_report is None  # the tombstones failed: rolled back, tried again an hour later
    assert last_run(chukan, A, "schedule:chukan") is None
    assert not s.due(jst(1, 3, 59))
    assert s.due(jst(1, 4, 0))
    s.producer = FakeProducer
    clock[0] = jst(1, 4)
    turn()
    s.join(30)
    assert s.last_report is not None
    assert s.last_report.tombstones_sent == 2
    assert beats == [1, 1]


def test_each_process_records_its_runs_in_its_own_store(stores: Stores, tmp_path: Path) -> None:
    """No process writes another party's store to say it ran: the city's processes their own, the 中間サーバー and
    the network theirs (the network only reads which 符号 the 中間サーバー still holds)."""
    settings = load_settings({"KENSHIN_STATE_DIR": str(tmp_path / "state"), "KENSHIN_TENANT": A,
                              "KENSHIN_CHUKAN_DATABASE_URL": f"sqlite:///{tmp_path / 'chukan-ro.db'}"})  # fmt: skip
    for process, table in (("sinks", st.retention_runs), ("processors", pt.retention_runs),
                           ("chukan", ct.chukan_retention_runs), ("network", ct.network_retention_runs)):  # fmt: skip
        engine = stores.engines[process]
        schedule = RetentionSchedule.for_process(settings, process, engine)
        assert (schedule.record, schedule.table) == (engine, table), process
    processors = stores.engines["processors"]
    s = RetentionSchedule(RetentionStores(processors=processors), A, name="processors", record=processors,
                          table=pt.retention_runs, policy=load_retention(), producer=FakeProducer)  # fmt: skip
    runs_before = stores.snapshot()[("chukan", ct.chukan_retention_runs.name)]
    assert s.tick(jst(1, 2, 5), background=False) is True
    assert last_run(processors, A, f"{SCHEDULE_PREFIX}processors", pt.retention_runs) == jst(1, 2, 5)
    assert not s.due(jst(1, 3, 0))
    assert stores.snapshot()[("chukan", ct.chukan_retention_runs.name)] == runs_before


def test_a_shared_services_schedule_runs_for_every_tenant_it_serves_one_at_a_time(stores: Stores) -> None:
    """The 中間サーバー and the network hold every municipality's rows: their daily run covers each, not only the
    tenant of the process's settings (which left the other municipalities' expired rows there for ever)."""
    chukan = stores.engines["chukan"]
    assert set(served_tenants("chukan", A)) == set(default_policies().network.bodies) >= {A, B, C}
    assert served_tenants("network", A) == served_tenants("chukan", A)
    assert served_tenants("sinks", A) == served_tenants("processors", A) == (A,)

    def one(tenant: str) -> RetentionSchedule:
        return RetentionSchedule(RetentionStores(chukan=chukan), tenant, name="chukan", record=chukan,
                                 policy=load_retention(), producer=FakeProducer)  # fmt: skip

    pe = ct.chukan_persons

    def persons() -> dict[str, int]:
        with chukan.connect() as conn:
            rows = conn.execute(sa.select(pe.c.tenant, sa.func.count()).group_by(pe.c.tenant)).all()
        return {str(t): int(n) for t, n in rows}

    before = persons()
    every = TenantSchedules([one(A), one(B)])
    assert every.tick(jst(1, 2, 5), background=False) is True
    assert every.tick(jst(1, 2, 6), background=False) is True
    assert every.tick(jst(1, 2, 7), background=False) is False  # both ran today
    assert [s.last_report.count("chukan", "chukan_persons") for s in every.schedules if s.last_report] == [2, 2]
    assert persons() == {A: before[A] - 2, B: before[B] - 2}
    assert last_run(chukan, B, f"{SCHEDULE_PREFIX}chukan") == jst(1, 2, 6)


# --- the command ------------------------------------------------------------------------------------------------


class LocalOffice(Office):
    """:class:`hub.office.Office` over the seeded hub database, without Kafka (the producer is a fake)."""

    def __init__(self, settings: Settings, engine: Engine, records: list[StaffOperation]) -> None:
        self.settings = settings
        self.engine = engine
        self.staff = StaffService(engine, settings.tenant, records.append)
        self.producer = FakeProducer()  # type: ignore[assignment]

    def close(self) -> None:
        pass


def test_the_command_runs_for_the_callers_tenant_and_records_the_counts(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"KENSHIN_STATE_DIR": str(tmp_path / "state"), "KENSHIN_DATABASE_URL": "sqlite://", "KENSHIN_TENANT": A}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    records: list[StaffOperation] = []
    local = LocalOffice(load_settings(env), stores.engines["sinks"], records)

    @contextmanager
    def office(_settings: Settings) -> Iterator[Office]:
        yield local

    monkeypatch.setattr(hub.office, "office", office)
    monkeypatch.setattr(hub.review, "office", office)
    monkeypatch.setattr(hub.review, "processors_engine", lambda _s: stores.engines["processors"])
    monkeypatch.setattr(hub.review, "chukan_engine", lambda _s: stores.engines["chukan"])
    monkeypatch.setattr(hub.review, "network_engine", lambda _s: stores.engines["network"])
    monkeypatch.setattr(hub.review, "KafkaOffsets", lambda _s: FakeKafka())
    monkeypatch.setattr(hub.review, "now_utc", lambda: NOW)
    monkeypatch.setattr("hub.pii._default", stores.keys)

    def cli(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return hub.cli.main(list(argv))

    assert cli("retention", "run") == 1  # no session: DENIED, no store opened
    with unit_test_password_cost():
        local.staff.init_admin("admin1", "管理者", "admin-long-passphrase")
        admin = local.staff.login("admin1", "admin-long-passphrase")
        local.staff.create_account("h1", "保健", {"health"}, "health-long-passphrase", by=admin)
        assert cli("login", "h1", "--password-stdin", stdin="health-long-passphrase") == 0
        assert cli("retention", "run") == 1  # not an admin: DENIED
        assert cli("login", "admin1", "--password-stdin", stdin="admin-long-passphrase") == 0
    before = stores.snapshot()
    capsys.readouterr()
    assert cli("retention", "run", "--dry-run") == 0
    assert "DRY RUN" in capsys.readouterr().out
    assert stores.snapshot() == before
    assert cli("retention", "run") == 0
    out = capsys.readouterr().out
    assert "2 store(s), 19 table(s) checked" in out  # the city's: the hub's database and the processors' store
    assert "residents" in out
    assert "processor_people" in out
    assert "network_fugo" not in out
    ops = [(r.staff_id, r.outcome, r.target) for r in records if r.operation is StaffOperationType.RETENTION_PURGE]
    assert ops == [
        (ANONYMOUS, OperationOutcome.DENIED, "retention run"),
        ("h1", OperationOutcome.DENIED, "retention run"),
        ("admin1", OperationOutcome.SUCCESS, "retention run --dry-run"),
        ("admin1", OperationOutcome.SUCCESS, "retention run"),
    ]
    detail = records[-1].detail or ""
    assert "tenant 012041" in detail
    assert "sinks.residents=2" in detail
    assert "network" not in detail
    after = stores.snapshot()
    for where, rows in before.items():
        if where[1] in ("staff_accounts", "staff_sessions"):  # the logins
            continue
        if where[0] in ("chukan", "network"):  # not the city's to write: their operator's, and their own schedule
            assert after[where] == rows, where
        else:
            assert rows - after[where] == stores.gone.get(where, set()), where
    held = catalog.for_tenant(catalog.HELD_PROVISIONS, A).name
    city = {(t, k) for t, k in stores.tombstones if t != held}
    assert {(t, k) for t, k, _ in cast(FakeProducer, local.producer).sent} == city

    # the shared platform's operator: the 中間サーバー's and the network's stores, for one municipality, recorded
    made: list[FakeProducer] = []
    monkeypatch.setattr(hub.review, "Producer", lambda _conf: made.append(FakeProducer()) or made[-1])
    assert cli("chukan", "retention", "run", "12345") == 1  # not a 団体コード
    assert cli("chukan", "retention", "run", A) == 0
    assert "2 store(s), 13 table(s) checked" in capsys.readouterr().out
    shared = stores.snapshot()
    for where, rows in after.items():
        if where[0] in ("chukan", "network") and where[1] != ct.chukan_retention_runs.name:
            assert rows - shared[where] == stores.gone.get(where, set()), where
    assert {(t, k) for p in made for t, k, _ in p.sent} == {(t, k) for t, k in stores.tombstones if t == held}
    runs = ct.chukan_retention_runs
    with stores.engines["chukan"].connect() as conn:
        (run,) = conn.execute(sa.select(runs)).all()
    assert (run.tenant, run.run_by) == (A, "operator")
    assert json.loads(run.counts)["network"]["network_fugo"] == 2
