"""個人番号 at rest (hub.pii): sealed values, keyed lookups, the key file and its rotation, and what the hub's
SQLite files hold after the sinks and the processors wrote residents: no 個人番号 in clear."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from hub import pii
from hub.engine.handler import Delivery
from hub.pii import PiiError, PiiKeys, add_key, key_id_of, open_key_file, retire_key
from monitoring.metrics import HubMetrics
from processors.app import Processors
from processors.rules.steps import PersonLog, encode_log
from processors.store import LOG_COLUMN, PROCESSORS_MIGRATIONS, open_log, people, reencrypt_people
from schemas import models as m
from sinks.db import make_engine, upgrade
from sinks.residents import (
    MY_NUMBER_COLUMN,
    ResidentsSink,
    find_by_my_number,
    key_usage,
    my_number_of,
    readable_row,
    reencrypt_residents,
)
from sinks.tables import residents
from tests import samples
from topics import catalog

pytestmark = pytest.mark.unit

TENANT = samples.TENANT
OTHER_TENANT = "011002"  # 札幌市
NUMBERS = [samples.my_number(f"{n:011d}") for n in (31415926535, 27182818284, 16180339887, 14142135623)]
WHERE = {"tenant": TENANT, "column": MY_NUMBER_COLUMN, "row": "0000000001"}


@pytest.fixture
def keys() -> PiiKeys:
    return PiiKeys.generate()


@pytest.fixture(autouse=True)
def _no_process_keys() -> Iterator[None]:
    """Every test resolves the process's keys afresh and leaves none behind."""
    pii.configure(None)
    yield
    pii.configure(None)


def state(atena_no: str, number: str | None, version: int = 1, tenant: str = TENANT) -> m.ResidentState:
    return m.ResidentState(
        **{**samples.header("kenshin-hub.residents"), "tenant": tenant},  # type: ignore[arg-type]
        atena_no=atena_no,
        my_number=number,
        person=samples.person(),
        status=m.ResidentStatus.RESIDENT,
        resident_since=date(2000, 4, 1),
        support_measure=False,
        version=version,
    )


def write(engine: Engine, sink: ResidentsSink, events: list[m.ResidentState]) -> None:
    for offset, event in enumerate(events):
        sink.add(event, b"key", 0, offset)
    with engine.begin() as conn:
        sink.flush(conn)
    sink.clear()


def stored(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(residents).order_by(residents.c.atena_no))]


def file_bytes(db: Path) -> bytes:
    """The database file and its WAL / shared-memory companions, as they are on disk."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


def clear_numbers(data: bytes, numbers: list[str]) -> list[str]:
    """The 個人番号 found in ``data`` as ASCII or UTF-16 text (no encoding a database would use hides one)."""
    return [n for n in numbers if n.encode() in data or n.encode("utf-16-le") in data or n.encode("utf-16-be") in data]


# --- sealed values -------------------------------------------------------------------------------------------


def test_a_sealed_value_opens_to_the_same_value_and_never_repeats(keys: PiiKeys) -> None:
    number = NUMBERS[0]
    sealed = keys.encrypt(number, **WHERE)
    again = keys.encrypt(number, **WHERE)
    assert sealed != again  # a random 96-bit nonce per value
    assert number not in sealed
    assert key_id_of(sealed) == keys.current == "k1"
    assert sealed.startswith("pii1.k1.")
    assert keys.decrypt(sealed, **WHERE) == keys.decrypt(again, **WHERE) == number
    raw = base64.urlsafe_b64decode(sealed.split(".")[2] + "==")
    assert len(raw) == 12 + len(number) + 16  # nonce, ciphertext, GCM tag
    assert len(sealed) <= residents.c.my_number_enc.type.length  # type: ignore[attr-defined]


def test_an_altered_or_moved_sealed_value_is_refused(keys: PiiKeys) -> None:
    number = NUMBERS[0]
    sealed = keys.encrypt(number, **WHERE)
    head, body = sealed.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=="))
    for i in (0, 12, len(raw) - 1):  # the nonce, the ciphertext, the tag
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        tampered = f"{head}.{base64.urlsafe_b64encode(bytes(flipped)).rstrip(b'=').decode()}"
        with pytest.raises(PiiError, match="does not authenticate") as refused:
            keys.decrypt(tampered, **WHERE)
        assert number not in str(refused.value)
    with pytest.raises(PiiError, match="does not authenticate"):
        keys.decrypt(sealed, **{**WHERE, "tenant": OTHER_TENANT})  # another tenant's row
    with pytest.raises(PiiError, match="does not authenticate"):
        keys.decrypt(sealed, **{**WHERE, "column": LOG_COLUMN})  # another column
    with pytest.raises(PiiError, match="does not authenticate"):
        keys.decrypt(sealed, **{**WHERE, "row": "0000000002"})  # another person's row
    with pytest.raises(PiiError, match="truncated"):
        keys.decrypt(f"{head}.{body[:20]}", **WHERE)
    with pytest.raises(PiiError, match="not a sealed value"):
        keys.decrypt(number, **WHERE)
    other = PiiKeys.generate()
    with pytest.raises(PiiError, match="does not authenticate"):
        other.decrypt(sealed, **WHERE)  # same key id, another secret
    with pytest.raises(PiiError, match="unknown key id"):
        keys.decrypt(sealed.replace("pii1.k1.", "pii1.k9."), **WHERE)


def test_lookup_hashes_are_keyed_per_tenant_and_column(keys: PiiKeys) -> None:
    where = {"tenant": TENANT, "column": MY_NUMBER_COLUMN}
    h = keys.lookup_hash(NUMBERS[0], **where)
    assert h == keys.lookup_hash(NUMBERS[0], **where)
    assert len(h) == 64
    assert NUMBERS[0] not in h
    assert h != keys.lookup_hash(NUMBERS[1], **where)
    assert h != keys.lookup_hash(NUMBERS[0], tenant=OTHER_TENANT, column=MY_NUMBER_COLUMN)
    assert h != keys.lookup_hash(NUMBERS[0], tenant=TENANT, column=LOG_COLUMN)
    assert h != PiiKeys.generate().lookup_hash(NUMBERS[0], **where)  # not a plain hash: without the key, no match


# --- the sinks' residents ------------------------------------------------------------------------------------


def test_residents_are_found_by_my_number_through_the_keyed_hash(tmp_path: Path, keys: PiiKeys) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    try:
        upgrade(engine)
        sink = ResidentsSink(keys=keys)
        write(engine, sink, [state("0000000001", NUMBERS[0]), state("0000000002", NUMBERS[1])])
        write(engine, sink, [state("0000000003", NUMBERS[0], tenant=OTHER_TENANT), state("0000000004", None)])
        rows = stored(engine)
        assert all("my_number" not in r for r in rows)
        by_atena = {r["atena_no"]: r for r in rows}
        assert by_atena["0000000004"]["my_number_enc"] is None
        assert by_atena["0000000004"]["my_number_hash"] is None
        assert by_atena["0000000001"]["my_number_hash"] == keys.lookup_hash(
            NUMBERS[0], tenant=TENANT, column=MY_NUMBER_COLUMN
        )
        with engine.connect() as conn:
            [found] = find_by_my_number(conn, TENANT, NUMBERS[0], keys)
            assert (found["atena_no"], found["my_number"]) == ("0000000001", NUMBERS[0])
            assert [r["atena_no"] for r in find_by_my_number(conn, OTHER_TENANT, NUMBERS[0], keys)] == ["0000000003"]
            assert find_by_my_number(conn, TENANT, NUMBERS[2], keys) == []
            # the lookup is an equality on the indexed hash column, the clear value is in no statement
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM residents WHERE tenant = ? AND my_number_hash = ?", (TENANT, "x")
            ).all()
        assert "ix_residents_my_number_hash" in str(plan)
        assert readable_row(by_atena["0000000002"], keys)["my_number"] == NUMBERS[1]
        # a moved sealed value (another person's) is refused, not read as this person's number
        swapped = {**by_atena["0000000002"], "my_number_enc": by_atena["0000000001"]["my_number_enc"]}
        with pytest.raises(PiiError):
            my_number_of(swapped, keys)
    finally:
        engine.dispose()


def test_a_replayed_state_keeps_the_stored_sealed_value(tmp_path: Path, keys: PiiKeys) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    try:
        upgrade(engine)
        sink = ResidentsSink(keys=keys)
        write(engine, sink, [state("0000000001", NUMBERS[0], version=2)])
        first = stored(engine)
        write(engine, sink, [state("0000000001", NUMBERS[0], version=2)])  # redelivered: the same bytes
        assert stored(engine) == first
        write(engine, sink, [state("0000000001", NUMBERS[1], version=3)])  # a new number: sealed anew
        [row] = stored(engine)
        assert row["my_number_enc"] != first[0]["my_number_enc"]
        assert my_number_of(row, keys) == NUMBERS[1]
    finally:
        engine.dispose()


def test_no_my_number_in_clear_in_the_sinks_sqlite_file(tmp_path: Path, keys: PiiKeys) -> None:
    """The bytes of the database file (and its WAL) after the sinks wrote residents, replays and updates."""
    db = tmp_path / "kenshin-hub.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        upgrade(engine)
        sink = ResidentsSink(keys=keys)
        events = [state(f"{n:010d}", number) for n, number in enumerate(NUMBERS)]
        write(engine, sink, events)
        write(engine, sink, [dataclasses.replace(e, version=2) for e in events])
        write(engine, sink, events)  # an old replay, refused by the version guard
        with engine.connect() as conn:
            assert sorted(r["my_number"] for r in map(readable_row, stored(engine), [keys] * 4)) == sorted(NUMBERS)
            assert len(conn.execute(sa.select(residents)).all()) == len(NUMBERS)
    finally:
        engine.dispose()
    data = file_bytes(db)
    assert data  # the scan reads something
    assert clear_numbers(data, NUMBERS) == []


# --- the processors' store -----------------------------------------------------------------------------------


def move_in(atena_no: str, number: str, day: int = 1) -> m.ResidentChange:
    return m.ResidentChange(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2025, 4, day, 9, tzinfo=UTC),
        tenant=TENANT,
        source_system="juki",
        atena_no=atena_no,
        my_number=number,
        change_type=m.ResidentChangeType.MOVE_IN if day == 1 else m.ResidentChangeType.MOVE_WITHIN,
        change_date=date(2025, 4, day),
        person=samples.person(),
        previous_municipality=OTHER_TENANT if day == 1 else None,
    )


def process(engine: Engine, handler: Processors, changes: list[m.ResidentChange]) -> list[m.Event]:
    topic = catalog.RESIDENT_CHANGES
    out: list[m.Event] = []
    for offset, change in enumerate(changes):
        with engine.begin() as conn:
            [outcome] = handler.handle(conn, [Delivery(topic, 0, offset, topic.key_of(change).encode(), change)])
        assert isinstance(outcome, list)
        out += [event for _, event in outcome]
    return out


def test_the_processors_store_the_change_logs_sealed(tmp_path: Path, keys: PiiKeys) -> None:
    db = tmp_path / "processors.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        upgrade(engine, script_location=PROCESSORS_MIGRATIONS)
        handler = Processors(HubMetrics(CollectorRegistry(), process="processors", runtime=False), pii=keys)
        changes = [move_in(f"{n:010d}", number) for n, number in enumerate(NUMBERS)]
        process(engine, handler, changes)
        # a second change of a person: its log is opened, folded and sealed again
        [state_out] = [e for e in process(engine, handler, [move_in("0000000000", NUMBERS[0], day=2)])]
        assert isinstance(state_out, m.ResidentState)
        # published sealed (residents.v1 carries no 個人番号 in clear), bound to the tenant and the person
        assert state_out.my_number is None
        assert state_out.my_number_sealed is not None
        assert pii.resident_number(state_out, keys) == NUMBERS[0]
        assert clear_numbers(state_out.to_json().encode(), NUMBERS) == []
        assert len(state_out.history) == 2
        with engine.connect() as conn:
            rows = conn.execute(sa.select(people.c.key, people.c.tenant, people.c.log)).all()
        assert len(rows) == len(NUMBERS)
        for key, tenant, log in rows:
            assert log.startswith("pii1.k1.")
            assert clear_numbers(log.encode(), NUMBERS) == []
            assert json.loads(open_log(log, keys, tenant, key) or "[]")
        with pytest.raises(PiiError):
            open_log(rows[0][2], keys, rows[1][1], rows[1][0])  # another person's log in this row
        with engine.connect() as conn:  # the people table holds no clear 個人番号, in any column
            dump = repr(conn.execute(sa.select(people)).all()).encode()
        assert clear_numbers(dump, NUMBERS) == []
    finally:
        engine.dispose()


# --- migrations of rows an older version stored ----------------------------------------------------------------


def test_the_migrations_seal_what_an_older_version_stored(tmp_path: Path, keys: PiiKeys) -> None:
    sinks_db, processors_db = tmp_path / "kenshin-hub.db", tmp_path / "processors.db"
    sinks_engine = make_engine(f"sqlite:///{sinks_db}")
    processors_engine = make_engine(f"sqlite:///{processors_db}")
    try:
        upgrade(sinks_engine, "0005")  # before the 個人番号 was sealed
        upgrade(processors_engine, "0001", script_location=PROCESSORS_MIGRATIONS)
        with sinks_engine.begin() as conn:
            for n, number in enumerate(NUMBERS):
                conn.execute(
                    sa.text(
                        "INSERT INTO residents (tenant, atena_no, my_number, name, name_kana, sex, birth_date, "
                        "address, status, support_measure, version, updated_at) VALUES (:t, :a, :n, '旭川 花子', "
                        "'アサヒカワ ハナコ', 'FEMALE', '1976-04-01', '北海道旭川市', 'RESIDENT', 0, 1, "
                        "'2026-05-01 09:00:00')"
                    ),
                    {"t": TENANT, "a": f"{n:010d}", "n": number},
                )
        changes = [move_in(f"{n:010d}", number) for n, number in enumerate(NUMBERS)]
        with processors_engine.begin() as conn:
            conn.execute(
                sa.insert(people),
                [
                    {"key": f"{TENANT}:{c.atena_no}", "tenant": TENANT, "partition": 0,
                     "log": encode_log(PersonLog((c,))), "book": None}
                    for c in changes
                ],
            )  # fmt: skip
        assert len(clear_numbers(file_bytes(sinks_db), NUMBERS)) == len(NUMBERS)  # in clear before

        upgrade(sinks_engine, pii_keys=keys)
        upgrade(processors_engine, script_location=PROCESSORS_MIGRATIONS, pii_keys=keys)

        rows = stored(sinks_engine)
        assert [my_number_of(r, keys) for r in rows] == NUMBERS
        with sinks_engine.connect() as conn:
            assert [r["atena_no"] for r in find_by_my_number(conn, TENANT, NUMBERS[2], keys)] == ["0000000002"]
        handler = Processors(HubMetrics(CollectorRegistry(), process="processors", runtime=False), pii=keys)
        [moved] = process(processors_engine, handler, [move_in("0000000001", NUMBERS[1], day=2)])
        assert isinstance(moved, m.ResidentState)
        assert pii.resident_number(moved, keys) == NUMBERS[1]
        assert len(moved.history) == 2
    finally:
        sinks_engine.dispose()  # the last connection closed: the WAL is checkpointed into the main file
        processors_engine.dispose()
    assert clear_numbers(file_bytes(sinks_db), NUMBERS) == []  # the freed pages of the clear column were zeroed
    assert clear_numbers(file_bytes(processors_db), NUMBERS) == []  # the clear logs' cells were zeroed too


def test_a_migration_without_a_usable_key_file_stops_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "keys" / "pii.key"
    open_key_file(bad)
    bad.chmod(0o644)
    monkeypatch.setenv("KENSHIN_PII_KEY_FILE", str(bad))
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO residents (tenant, atena_no, my_number, name, name_kana, sex, birth_date, address, "
                    "status, support_measure, version, updated_at) VALUES (:t, 'A1', :n, 'x', 'x', 'FEMALE', "
                    "'1976-04-01', 'x', 'RESIDENT', 0, 1, '2026-05-01 09:00:00')"
                ),
                {"t": TENANT, "n": NUMBERS[0]},
            )
        with pytest.raises(PiiError, match=r"needs the key file \(KENSHIN_PII_KEY_FILE\).*chmod 600") as refused:
            upgrade(engine)
        assert NUMBERS[0] not in str(refused.value)
        with engine.connect() as conn:  # rolled back: still at 0005, the row as it was
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0005"
        bad.chmod(0o600)
        upgrade(engine)  # the key file of the settings (hub.pii.default_keys)
        [row] = stored(engine)
        assert my_number_of(row) == NUMBERS[0]
    finally:
        engine.dispose()


# --- the key file and its rotation ---------------------------------------------------------------------------


def test_the_key_file_is_created_once_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "pii.key"
    first = open_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc["format"] == "kenshin-hub-pii-keys/1"
    assert doc["current"] == "k1"
    assert len(base64.b64decode(doc["keys"]["k1"]["secret"])) == 32
    sealed = first.encrypt(NUMBERS[0], **WHERE)
    assert open_key_file(path).decrypt(sealed, **WHERE) == NUMBERS[0]  # the same key, not a new one
    path.chmod(0o640)
    with pytest.raises(PiiError, match="readable by others"):
        open_key_file(path)
    path.chmod(0o600)
    path.write_text("{not json")
    with pytest.raises(PiiError, match="damaged"):
        open_key_file(path)


def test_default_keys_come_from_the_settings_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KENSHIN_PII_KEY_FILE", raising=False)
    monkeypatch.setenv("KENSHIN_STATE_DIR", str(tmp_path / "state"))
    keys = pii.default_keys()
    assert keys.path == tmp_path / "state" / "keys" / "pii.key"
    assert pii.default_keys() is keys  # read once
    monkeypatch.setenv("KENSHIN_PII_KEY_FILE", str(tmp_path / "elsewhere.key"))
    pii.configure(None)
    assert pii.default_keys().path == tmp_path / "elsewhere.key"


def test_rotation_add_a_key_reencrypt_then_retire_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys" / "pii.key"
    for name in [k for k in os.environ if k.startswith("KENSHIN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KENSHIN_PII_KEY_FILE", str(path))  # what `python -m hub.pii` reads
    monkeypatch.setenv("KENSHIN_DATABASE_URL", f"sqlite:///{tmp_path / 'sinks.db'}")
    monkeypatch.setenv("KENSHIN_PROCESSORS_DATABASE_URL", f"sqlite:///{tmp_path / 'processors.db'}")
    monkeypatch.setenv("KENSHIN_STATE_DIR", str(tmp_path / "state"))
    old = open_key_file(path)
    sinks_engine = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    processors_engine = make_engine(f"sqlite:///{tmp_path / 'processors.db'}")
    try:
        upgrade(sinks_engine)
        upgrade(processors_engine, script_location=PROCESSORS_MIGRATIONS)
        write(sinks_engine, ResidentsSink(keys=old), [state(f"{n:010d}", x) for n, x in enumerate(NUMBERS)])
        handler = Processors(HubMetrics(CollectorRegistry(), process="processors", runtime=False), pii=old)
        process(processors_engine, handler, [move_in(f"{n:010d}", x) for n, x in enumerate(NUMBERS)])

        assert pii.main(["add-key"]) == 0
        assert "k2 is now the current key" in capsys.readouterr().out
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        new = open_key_file(path)
        assert (new.current, new.key_ids) == ("k2", ("k1", "k2"))
        # before any re-encryption: old rows open and are found (every key's hash is looked up)
        with sinks_engine.connect() as conn:
            assert key_usage(conn) == {"k1": 4}
            assert [r["atena_no"] for r in find_by_my_number(conn, TENANT, NUMBERS[3], new)] == ["0000000003"]
        # a running process with the old keys meets a value under k2: it reads the file again
        fresh = new.encrypt(NUMBERS[0], **WHERE)
        assert old.decrypt(fresh, **WHERE) == NUMBERS[0]
        assert old.current == "k2"  # and seals under the new key from then on

        # lazily: a row the sinks write again is sealed under the new key
        write(sinks_engine, ResidentsSink(keys=new), [state("0000000000", NUMBERS[0], version=2)])
        with sinks_engine.connect() as conn:
            assert key_usage(conn) == {"k1": 3, "k2": 1}
        assert pii.main(["status"]) == 0
        assert capsys.readouterr().out.splitlines()[1:] == ["  sinks: k1: 3, k2: 1", "  processors: k1: 4"]
        assert pii.main(["retire-key", "k1"]) == 1  # still in use
        assert "still seals" in capsys.readouterr().err

        assert reencrypt_residents(sinks_engine, new, batch=2) == 3
        assert reencrypt_people(processors_engine, new, batch=3) == 4
        assert reencrypt_residents(sinks_engine, new) == 0  # nothing left under k1
        with sinks_engine.connect() as conn:
            assert key_usage(conn) == {"k2": 4}
        with pytest.raises(PiiError, match="current key"):
            retire_key(path, "k2")
        assert pii.main(["retire-key", "k1"]) == 0
        only_new = open_key_file(path)
        assert only_new.key_ids == ("k2",)
        with sinks_engine.connect() as conn:
            assert [my_number_of(r, only_new) for r in stored(sinks_engine)] == NUMBERS
            assert [r["atena_no"] for r in find_by_my_number(conn, TENANT, NUMBERS[1], only_new)] == ["0000000001"]
        handler = Processors(HubMetrics(CollectorRegistry(), process="processors", runtime=False), pii=only_new)
        [moved] = process(processors_engine, handler, [move_in("0000000002", NUMBERS[2], day=2)])
        assert isinstance(moved, m.ResidentState)
        assert pii.resident_number(moved, only_new) == NUMBERS[2]

        assert add_key(path) == "k3"  # the next rotation, re-encrypted at once by the command
        capsys.readouterr()
        assert pii.main(["reencrypt"]) == 0
        out = capsys.readouterr().out
        assert "sinks: 4 values sealed again under k3" in out
        assert "processors: 4 values" in out
        assert NUMBERS[0] not in out
    finally:
        sinks_engine.dispose()
        processors_engine.dispose()


def test_a_resident_number_sealed_for_the_topic_opens_only_as_that_tenants_that_persons(keys: PiiKeys) -> None:
    clear = state("0000000001", NUMBERS[0])
    sealed = pii.seal_resident_number(clear, keys)
    assert sealed.my_number is None
    assert pii.is_sealed(sealed.my_number_sealed)
    assert pii.resident_number(sealed, keys) == NUMBERS[0]
    assert pii.seal_resident_number(state("0000000001", None), keys).my_number_sealed is None
    assert pii.resident_number(clear, keys) == NUMBERS[0]  # a record from before the sealing: read as it is
    with pytest.raises(PiiError):  # copied onto another person
        pii.resident_number(dataclasses.replace(sealed, atena_no="0000000099"), keys)
    with pytest.raises(PiiError):  # or another tenant
        pii.resident_number(dataclasses.replace(sealed, tenant="131016"), keys)
    with pytest.raises(PiiError):  # a key that did not seal it
        pii.resident_number(sealed, PiiKeys.generate())
    with pytest.raises(m.ModelError, match="not both"):
        dataclasses.replace(sealed, my_number=NUMBERS[0])
    with pytest.raises(m.ModelError, match="not a sealed value"):
        dataclasses.replace(sealed, my_number_sealed=NUMBERS[0])


def test_the_residents_sink_refuses_a_sealed_number_that_does_not_open(keys: PiiKeys) -> None:
    sealed = pii.seal_resident_number(state("0000000001", NUMBERS[0]), keys)
    sink = ResidentsSink(keys=keys)
    assert sink.to_row(sealed)["my_number"] == NUMBERS[0]
    moved = dataclasses.replace(sealed, atena_no="0000000099")
    with pytest.raises(PiiError):
        sink.to_row(moved)
