"""The 中間サーバーコネクタ without a broker: 統合宛名番号, what leaves the city, 転入 queries, the offline medium."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.connector import Connector, export_offline, read_offline
from connectors.keys import PermitSigner, PermitVerifier, linkage_key, person_token, signing_key, verify_key
from connectors.service import act_once
from schemas import models as m
from sinks.db import make_engine, upgrade
from sinks.tables import connector_queries, fukuhon_outbox, integrated_atena, service_effects
from tests import samples
from topics import catalog

pytestmark = pytest.mark.unit

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
HOME = "012041"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(e)
    yield e
    e.dispose()


def state(atena_no: str, *, version: int = 1, moved_from: str | None = None, day: date = date(2026, 5, 1),
          status: m.ResidentStatus = m.ResidentStatus.RESIDENT) -> m.ResidentState:  # fmt: skip
    move = m.ResidentHistoryItem(event_id=uuid.UUID(int=int(atena_no)), change_type=m.ResidentChangeType.MOVE_IN,
                                 change_date=day, occurred_at=T0)  # fmt: skip
    return m.ResidentState(
        event_id=uuid.uuid4(), occurred_at=T0, tenant=HOME, source_system="test", atena_no=atena_no,
        my_number=samples.my_number(), person=samples.person(), status=status, resident_since=day,
        increase_reason=m.ResidentChangeType.MOVE_IN if moved_from else m.ResidentChangeType.BIRTH,
        previous_municipality=moved_from, support_measure=False, version=version,
        history=(move,) if moved_from else (),
    )  # fmt: skip


def fukuhon(atena_no: str) -> m.FukuhonRegistration:
    return m.FukuhonRegistration(
        event_id=uuid.uuid4(), occurred_at=T0, tenant=HOME, source_system="test",
        record_id=f"KH{HOME}{atena_no}STO2025", atena_no=atena_no, info_name_code="TM00000000000139",
        dataset_item_code="GANKENSHIN01", record_key=f"{atena_no}:STOMACH:2025", version=1,
        publication_start=date(2025, 6, 1), operation=m.FukuhonOperation.REGISTER, data={"K001": "STOMACH"},
    )  # fmt: skip


def run(engine: Engine, connector: Connector, topic: catalog.Topic, event: m.Event) -> list[tuple[str, m.Event]]:
    with engine.begin() as conn:
        return [(t.name, e) for t, e in act_once(conn, service_effects, connector, topic, event)]


def test_integrated_numbers_are_stable_and_never_reused(engine: Engine) -> None:
    c = Connector(HOME, b"k", clock=lambda: T0, move_in_since=date(2026, 4, 1))
    first = run(engine, c, catalog.RESIDENTS, state("1001"))
    again = run(engine, c, catalog.RESIDENTS, state("1001", version=2))
    second = run(engine, c, catalog.RESIDENTS, state("1002"))
    numbers = [e.integrated_atena_no for _, e in (*first, *again, *second) if isinstance(e, m.ChukanPerson)]
    assert numbers == ["000000000000001", "000000000000001", "000000000000002"]
    with engine.begin() as conn:  # a person removed from the link table does not free their number
        conn.execute(sa.delete(integrated_atena).where(integrated_atena.c.atena_no == "1002"))
    third = run(engine, c, catalog.RESIDENTS, state("1003"))
    assert [e.integrated_atena_no for _, e in third if isinstance(e, m.ChukanPerson)] == ["000000000000003"]


def test_what_leaves_the_connector_carries_no_my_number_and_no_atena_no(engine: Engine) -> None:
    c = Connector(HOME, b"k", clock=lambda: T0)
    out = run(engine, c, catalog.RESIDENTS, state("1001"))
    out += run(engine, c, catalog.FUKUHON_REGISTRATIONS, fukuhon("1001"))
    text = "".join(e.to_json() for _, e in out)
    assert samples.my_number() not in text
    assert "1001" not in text.replace("000000000000001", "")
    person = next(e for _, e in out if isinstance(e, m.ChukanPerson))
    assert person.person_token == person_token(b"k", samples.my_number())
    [(topic, forwarded)] = [(t, e) for t, e in out if isinstance(e, m.FukuhonRegistration)]
    assert topic == catalog.for_tenant(catalog.CHUKAN_FUKUHON, HOME).name  # the city's own topic, no other's
    assert isinstance(forwarded, m.FukuhonRegistration)
    assert forwarded.atena_no is None
    assert forwarded.record_id == f"KH{HOME}000000000000001STO2025"


def test_a_recent_move_in_is_queried_once(engine: Engine) -> None:
    c = Connector(HOME, b"k", clock=lambda: T0, move_in_since=date(2026, 4, 1))
    out = run(engine, c, catalog.RESIDENTS, state("1001", moved_from="011002"))
    out += run(engine, c, catalog.RESIDENTS, state("1001", version=2, moved_from="011002"))
    out += run(engine, c, catalog.RESIDENTS, state("1002", moved_from="011002", day=date(2019, 1, 1)))
    queries = [e for _, e in out if isinstance(e, m.ChukanQuery)]
    assert len(queries) == 1
    assert (queries[0].provider, queries[0].fiscal_year_from, queries[0].fiscal_year_to) == ("011002", 2022, 2026)
    assert "K007" not in queries[0].items
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(connector_queries)).scalar_one() == 1


def test_offline_mode_queues_fukuhon_for_the_offline_medium(engine: Engine, tmp_path: Path) -> None:
    c = Connector(HOME, b"k", offline=True, clock=lambda: T0)
    assert run(engine, c, catalog.FUKUHON_REGISTRATIONS, fukuhon("1001")) == []
    out = tmp_path / "medium.jsonl"
    count, digest = export_offline(engine, HOME, out)
    assert count == 1
    assert len(digest) == 64
    assert out.stat().st_mode & 0o777 == 0o600
    [reg] = read_offline(out)
    assert reg.atena_no is None
    assert reg.integrated_atena_no == "000000000000001"
    with engine.connect() as conn:
        assert conn.execute(sa.select(fukuhon_outbox.c.status)).scalar_one() == "EXPORTED"
    with pytest.raises(FileExistsError):
        export_offline(engine, HOME, out)
    assert json.loads(out.read_text())["record_id"].startswith("KH")


def test_keys_are_created_once_and_permits_verify_only_with_the_network_key(tmp_path: Path) -> None:
    assert linkage_key(tmp_path) == linkage_key(tmp_path)
    assert (tmp_path / "keys" / "linkage.key").stat().st_mode & 0o777 == 0o600
    signer, verifier = PermitSigner(signing_key(tmp_path)), PermitVerifier(verify_key(tmp_path))
    permit = m.ProvisionPermit(
        permit_id=uuid.uuid4(), request_id=uuid.uuid4(), requester="011002", provider=HOME,
        info_name_code="TM00000000000139", items=("K001",), expires_at=T0, signature="",
    )  # fmt: skip
    signed = replace(permit, signature=signer.sign(permit))
    assert verifier.valid_signature(signed)
    assert not verifier.valid_signature(replace(signed, items=("K001", "K007")))
    assert not verifier.valid_signature(replace(signed, signature="not base64!"))
