"""開示請求 and the auditor's export (hub/audit.py): everything on one person, a period of records, 0600 files."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub import pii
from hub.audit import audit_lines, person_document, write_private
from hub.errors import CommandError
from processors import store as processor_store
from processors.rules.residents import PersonLog
from processors.rules.steps import encode_log
from schemas import models as m
from sinks.db import make_engine, upgrade
from sinks.ledger import LedgerSink
from sinks.residents import ResidentsSink
from sinks.tables import integrated_atena, metadata, provision_records, staff_operations
from tests import samples
from tests.unit.test_sinks import KEYS, ledger, resident, write

pytestmark = pytest.mark.unit

TENANT = "012041"
PERSON = "0000123456"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    pii.configure(KEYS)  # the key the residents sink sealed with opens the number again
    eng = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()
    pii.configure(None)


def _record(request_body: str, at: datetime) -> dict[str, object]:
    return {
        "record_id": str(uuid.uuid4()), "tenant": TENANT, "request_id": str(uuid.uuid4()), "side": "REQUESTER",
        "requester": TENANT, "provider": "011002", "affair_code": "JM01", "info_name_code": "TM01", "items": "K001",
        "requested_at": at, "non_disclosure": False, "outcome": "PROVIDED", "request_body": request_body,
        "recorded_at": at,
    }  # fmt: skip


def _operation(target: str, at: datetime) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()), "tenant": TENANT, "staff_id": "h001", "operation": "SHOW", "target": target,
        "outcome": "SUCCESS", "performed_at": at,
    }  # fmt: skip


def test_a_person_export_holds_everything_on_them_and_nothing_on_others(engine: Engine) -> None:
    write(engine, ResidentsSink(keys=KEYS), [resident(PERSON), resident("0000000009")])
    write(engine, LedgerSink(), [ledger(PERSON, version=1), ledger(PERSON, version=2), ledger("0000000009")])
    at = datetime(2026, 5, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(integrated_atena), [
            {"tenant": TENANT, "atena_no": PERSON, "integrated_no": "KH0000000000001", "created_at": at},
            {"tenant": TENANT, "atena_no": "0000000009", "integrated_no": "KH0000000000009", "created_at": at},
        ])  # fmt: skip
        conn.execute(sa.insert(provision_records), [
            _record('{"integrated_atena_no": "KH0000000000001"}', at),
            _record('{"integrated_atena_no": "KH0000000000009"}', at),
        ])  # fmt: skip
        conn.execute(sa.insert(staff_operations), [_operation(f"person {PERSON}", at), _operation("errors", at)])
    with engine.connect() as conn:
        doc = person_document(conn, None, TENANT, PERSON)
    assert doc["resident"]["my_number"] == samples.my_number()  # the person's own number, opened
    assert [v["version"] for v in doc["ledger_versions"]] == [1, 2]
    assert [e["atena_no"] for e in doc["ledger_entries"]] == [PERSON]
    assert [r["request_body"] for r in doc["provision_records"]] == ['{"integrated_atena_no": "KH0000000000001"}']
    assert [o["target"] for o in doc["staff_operations"]] == [f"person {PERSON}"]
    assert "0000000009" not in json.dumps(doc)
    with engine.connect() as conn, pytest.raises(CommandError, match="no resident"):
        person_document(conn, None, TENANT, "0000000001")


def test_a_person_export_covers_every_table_that_names_a_person(engine: Engine) -> None:
    write(engine, ResidentsSink(keys=KEYS), [resident(PERSON)])
    with engine.connect() as conn:
        doc = person_document(conn, None, TENANT, PERSON)
    by_person = {t.name for t in metadata.sorted_tables if "atena_no" in t.c} - {"residents"}
    assert by_person <= set(doc), sorted(by_person - set(doc))


def test_an_audit_export_is_the_period_only_and_the_file_is_the_owners_and_new(engine: Engine, tmp_path: Path) -> None:
    inside, before = datetime(2026, 5, 1, 12, tzinfo=UTC), datetime(2026, 3, 31, 23, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(staff_operations), [_operation("a", inside), _operation("b", before)])
        conn.execute(sa.insert(provision_records), [_record("{}", inside), _record("{}", before)])
    with engine.connect() as conn:
        lines = list(audit_lines(conn, TENANT, date(2026, 4, 1), date(2026, 6, 1)))
    assert [(t, r.get("target")) for t, r in lines] == [("staff_operations", "a"), ("provision_records", None)]
    out = tmp_path / "audit.jsonl"
    digest = write_private(out, [json.dumps(r, default=str) + "\n" for _, r in lines])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert len(digest) == 64
    with pytest.raises(CommandError, match="never overwrites"):
        write_private(out, ["x"])


def test_a_person_below_target_age_is_exported_from_the_processors_minimal_log(engine: Engine, tmp_path: Path) -> None:
    """開示請求 for a child: no residents row, but the processors keep a minimal change log, and that is exported."""
    child = "0000000077"
    basis = m.TargetBasis(sex=m.Sex.FEMALE, birth_date=date(2015, 7, 1))
    birth = m.ResidentChange(
        **samples.header("juki"),  # type: ignore[arg-type]
        atena_no=child,
        change_type=m.ResidentChangeType.BIRTH,
        change_date=basis.birth_date,
        basis=basis,
    )
    processors = make_engine(f"sqlite:///{tmp_path / 'processors.db'}")
    upgrade(processors, script_location=processor_store.PROCESSORS_MIGRATIONS)
    key = f"{TENANT}:{child}"
    stored = processor_store.seal_log(encode_log(PersonLog((birth,))), KEYS, TENANT, key)
    with processors.begin() as conn:
        conn.execute(sa.insert(processor_store.people), [{"key": key, "tenant": TENANT, "partition": 0, "log": stored}])
    try:
        with engine.connect() as conn, processors.connect() as pconn:
            doc = person_document(conn, pconn, TENANT, child)
            with pytest.raises(CommandError, match="no resident"):
                person_document(conn, pconn, TENANT, "0000000078")
    finally:
        processors.dispose()
    assert doc["resident"] is None
    (change,) = (json.loads(c) for c in doc["processor_state"]["log"])
    assert change["basis"] == {"sex": "FEMALE", "birth_date": "2015-07-01"}
    assert change["person"] is None
