"""The 提供許可証 binds everything and is used once (issue 9, item 3): property tests on the 中間サーバー's checks.

A genuine permit is what the network issues for a routed request (:meth:`NetworkSimulator.handle`, not delivered).
Each test then presents requests straight to the provider's 中間サーバー (``ChukanServer.handle``, one transaction
each, as the runtime does) and reads its outputs. The number of tampered presentations is counted per test and
printed at the end of the module (``pytest -s``); issue 9's report quotes those figures.
"""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.chukan import (
    MSG_BAD_SIGNATURE,
    MSG_NO_PERMIT,
    MSG_PERMIT_EXPIRED,
    MSG_PERMIT_MISMATCH,
    MSG_PERMIT_USED,
    MSG_UNKNOWN_FUGO,
    permit_mismatches,
)
from connectors.keys import PermitSigner, fugo_digest, permit_message
from connectors.policy import Policies, default_policies
from connectors.service import Output
from connectors.stores import chukan_persons, chukan_used_permits
from connectors.world import Clock, World
from schemas.models import (
    HeldProvision,
    ProvisionOutcome,
    ProvisionPermit,
    ProvisionRecord,
    ProvisionRequest,
    ProvisionResponse,
    RecordSide,
)
from tests import samples
from topics import catalog

pytestmark = pytest.mark.unit

HOME, SAPPORO, HAKODATE, OTARU = "012041", "011002", "012025", "012033"
AFFAIR, OTHER_AFFAIR = "JM0139", "JM0141"
INFO = "TM00000000000139"
ITEMS = ("K001", "K002", "K003")
YEARS = (2022, 2026)
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
A_HOME, B_HOME, A_SAPPORO, B_SAPPORO = "000000000000001", "000000000000002", "000000000000101", "000000000000102"
PROVIDED = (ProvisionOutcome.PROVIDED_AUTOMATICALLY, ProvisionOutcome.PROVIDED_AFTER_REVIEW)

TAMPERED: Counter[str] = Counter()  # tampered presentations per test, printed at the end of the module
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def two_affairs() -> Policies:
    """The default rules plus a second permitted 事務 for the same information: a changed 事務 passes the list."""
    base = default_policies()
    entry = base.permitted.entries[0]
    other = replace(entry, id="141", affair_code=OTHER_AFFAIR, affair="別の事務 (試験用)")
    return replace(base, permitted=replace(base.permitted, entries=(*base.permitted.entries, other)))


@dataclasses.dataclass
class Town:
    world: World
    fugo: dict[tuple[str, str], str]  # (tenant, 統合宛名番号) -> 符号


def history(fy: int, kind: str = "STOMACH") -> dict[str, str]:
    return {"K001": kind, "K002": str(fy), "K003": f"{fy}-06-01"}


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Town]:
    """Two residents of HOME (A and B) with 副本 of FY2016 and FY2025, both known in 札幌."""
    world = World(root=tmp_path_factory.mktemp("permits"), clock=Clock(T0), policies=two_affairs())
    a, b = samples.my_number(), samples.my_number("98765432109")
    for tenant, no, number in ((HOME, A_HOME, a), (HOME, B_HOME, b), (SAPPORO, A_SAPPORO, a), (SAPPORO, B_SAPPORO, b)):
        world.register(tenant, no, number, samples.person())
    for no in (A_HOME, B_HOME):
        world.fukuhon(HOME, no, f"{no}-2016", history(2016))
        world.fukuhon(HOME, no, f"{no}-2025", history(2025))
    with world.engines["chukan"].connect() as conn:
        rows = conn.execute(sa.select(chukan_persons)).all()
    yield Town(world, {(r.tenant, r.integrated_no): r.fugo for r in rows})
    world.close()
    print("\ntampered permits presented, by test:", dict(TAMPERED), "total", sum(TAMPERED.values()))


def genuine(town: Town, *, person: str = A_SAPPORO, items: tuple[str, ...] = ITEMS,
            years: tuple[int, int] | None = YEARS, affair: str = AFFAIR) -> ProvisionRequest:  # fmt: skip
    """A query of 札幌 about ``person``, routed by the network: the provider's request with a genuine permit."""
    world = town.world
    query = ProvisionRequest(
        event_id=uuid.uuid4(),
        occurred_at=world.clock(),
        tenant=SAPPORO,
        source_system="kenshin-hub.chukan",
        request_id=uuid.uuid4(),
        requester=SAPPORO,
        provider=HOME,
        affair_code=affair,
        info_name_code=INFO,
        items=items,
        fugo=town.fugo[(SAPPORO, person)],
        fiscal_year_from=years[0] if years else None,
        fiscal_year_to=years[1] if years else None,
        requested_at=world.clock(),
    )
    with world.engines["network"].begin() as conn:
        [(topic, routed)] = world.network.handle(
            conn, catalog.for_tenant(catalog.NETWORK_QUERIES, query.requester), query
        )
    assert topic == catalog.for_tenant(catalog.PROVISION_REQUESTS, query.provider)
    assert isinstance(routed, ProvisionRequest)
    assert routed.permit is not None
    return routed


@dataclasses.dataclass
class Reply:
    outputs: list[Output]

    @property
    def response(self) -> ProvisionResponse | None:
        found = [
            e
            for t, e in self.outputs
            if t.template == catalog.PROVISION_RESPONSES.name and isinstance(e, ProvisionResponse)
        ]
        return found[0] if found else None

    @property
    def outcome(self) -> ProvisionOutcome:
        if any(isinstance(e, HeldProvision) for _, e in self.outputs):
            return ProvisionOutcome.HELD
        assert self.response is not None
        return self.response.outcome

    @property
    def record(self) -> ProvisionRecord | None:
        found = [
            e
            for t, e in self.outputs
            if t.template == catalog.PROVISION_RECORDS.name and isinstance(e, ProvisionRecord)
        ]
        return found[0] if found else None


def present(town: Town, request: ProvisionRequest) -> Reply:
    """Deliver ``request`` (with an event id of its own, as any copy has) to its tenant's 中間サーバー."""
    request = replace(request, event_id=uuid.uuid4())
    world = town.world
    with world.engines["chukan"].begin() as conn:
        return Reply(world.chukan.handle(conn, catalog.for_tenant(catalog.PROVISION_REQUESTS, request.tenant), request))


def assert_refused(reply: Reply, message: str) -> None:
    response = reply.response
    assert response is not None, reply.outputs
    assert response.outcome is ProvisionOutcome.REFUSED, response
    assert response.message == message
    assert response.lines == ()  # nothing is provided
    assert reply.record is not None
    assert reply.record.side is RecordSide.PROVIDER
    assert reply.record.provided_at is None


# --- the request is tampered in one bound field ------------------------------------------------------------------


def tenant_code(five: int) -> str:
    """A valid 団体コード (5 digits + check digit) from its first five digits."""
    digits = f"{five:05d}"
    s = sum(w * int(d) for w, d in zip((6, 5, 4, 3, 2), digits, strict=True))
    return digits + str((11 - s % 11) % 10)


BODIES = st.one_of(st.sampled_from([HAKODATE, OTARU, "012050"]), st.integers(1000, 47999).map(tenant_code))
TEXT = st.text(max_size=12)
YEAR = st.one_of(st.none(), st.integers(min_value=1900, max_value=2200))
REQUEST_FIELDS: dict[str, tuple[str, Any]] = {
    "request_id": ("照会要求ID", st.uuids()),
    "requester": ("情報照会者", BODIES),
    "provider": ("情報提供者", BODIES),
    "affair_code": ("事務コード", st.one_of(st.just(OTHER_AFFAIR), TEXT)),
    "info_name_code": ("特定個人情報名コード", st.one_of(st.just("TM00000000000140"), TEXT)),
    "items": ("照会項目", st.lists(st.sampled_from([f"K00{i}" for i in range(1, 9)]), min_size=1, max_size=5)),
    "fiscal_year_from": ("対象年度(開始)", YEAR),
    "fiscal_year_to": ("対象年度(終了)", YEAR),
    "fugo": ("符号", st.one_of(st.just("B"), st.text(min_size=1, max_size=40))),  # "B": the other person's 符号
}


@pytest.mark.parametrize("field", list(REQUEST_FIELDS))
@SETTINGS
@given(data=st.data())
def test_a_request_differing_from_its_permit_in_one_bound_field_is_refused(town: Town, field: str,
                                                                           data: st.DataObject) -> None:  # fmt: skip
    name, values = REQUEST_FIELDS[field]
    request = genuine(town)
    value = data.draw(values.filter(lambda v: _value(town, field, v) != _value(town, field, getattr(request, field))))
    tampered = replace(request, **{field: _value(town, field, value)})
    TAMPERED[f"request.{field}"] += 1
    reply = present(town, tampered)  # presented first: the copy, not the genuine request
    assert_refused(reply, MSG_PERMIT_MISMATCH)
    assert reply.record is not None
    assert reply.record.reason is not None
    assert name in reply.record.reason.split(": ", 1)[1].split("、")
    # the copy used the permit up: the genuine request that follows is refused (fail safe)
    assert_refused(present(town, request), MSG_PERMIT_USED)


def _value(town: Town, field: str, value: Any) -> Any:
    if field == "items":
        return tuple(value)
    if field == "fugo" and value == "B":
        return town.fugo[(HOME, B_HOME)]
    return value


def test_a_permit_presented_to_another_tenant_is_refused_there(town: Town) -> None:
    request = genuine(town)
    TAMPERED["request.tenant"] += 1
    reply = present(town, replace(request, tenant=HAKODATE))
    assert_refused(reply, MSG_PERMIT_MISMATCH)
    assert reply.record is not None
    assert "情報提供者" in (reply.record.reason or "")
    # 函館's use of it is 函館's (tenants are kept apart); at its own provider the permit still works once
    assert present(town, request).outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY
    assert_refused(present(town, request), MSG_PERMIT_USED)


# --- the permit is tampered (the signature no longer covers it) --------------------------------------------------

MS_DATETIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)
INT32 = st.one_of(st.none(), st.integers(min_value=-(2**31), max_value=2**31 - 1))
PERMIT_FIELDS: dict[str, Any] = {
    "permit_id": st.uuids(),
    "request_id": st.uuids(),
    "requester": st.one_of(BODIES, TEXT),
    "provider": st.one_of(BODIES, TEXT),
    "affair_code": st.one_of(st.none(), st.just(OTHER_AFFAIR), TEXT),
    "info_name_code": TEXT,
    "items": st.lists(TEXT, max_size=5).map(tuple),
    "fiscal_year_from": INT32,
    "fiscal_year_to": INT32,
    "fugo_sha256": st.one_of(st.none(), st.just("B"), TEXT),  # "B": the hash of the other person's 符号
    "expires_at": MS_DATETIMES,
}


@pytest.mark.parametrize("field", list(PERMIT_FIELDS))
@SETTINGS
@given(data=st.data(), rebind=st.booleans())
def test_a_permit_changed_in_one_field_fails_its_signature(town: Town, field: str, data: st.DataObject,
                                                           rebind: bool) -> None:  # fmt: skip
    """Changed in the permit alone, or in the permit and the request alike (``rebind``: what a copier needs to pass
    the binding check): either way the network's signature no longer verifies."""
    request = genuine(town)
    permit = request.permit
    assert permit is not None
    current = getattr(permit, field)
    value = data.draw(PERMIT_FIELDS[field].filter(lambda v: _permit_value(town, field, v) != current))
    bad = replace(permit, **{field: _permit_value(town, field, value)})
    tampered = replace(request, permit=bad)
    rebindable = field in REQUEST_FIELDS and field not in ("requester", "provider")  # those must be 団体コード
    if rebind and rebindable and (getattr(bad, field) is not None or field.startswith("fiscal_year")):
        tampered = replace(tampered, **{field: getattr(bad, field)})
    if rebind and field == "fugo_sha256" and value == "B":
        tampered = replace(tampered, fugo=town.fugo[(HOME, B_HOME)])
    TAMPERED[f"permit.{field}"] += 1
    assert_refused(present(town, tampered), MSG_BAD_SIGNATURE)
    after = present(town, request)
    if field == "permit_id":
        assert after.outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY  # the copy used up another id, not this one
    else:
        assert_refused(after, MSG_PERMIT_USED)


def _permit_value(town: Town, field: str, value: Any) -> Any:
    if field == "fugo_sha256" and value == "B":
        return fugo_digest(town.fugo[(HOME, B_HOME)])
    return value


# --- genuine, forged, expired ----------------------------------------------------------------------------------


@SETTINGS
@given(
    items=st.lists(st.sampled_from([f"K00{i}" for i in range(1, 9)]), min_size=1, max_size=8, unique=True),
    years=st.one_of(st.none(), st.tuples(st.integers(2010, 2030), st.integers(2010, 2030))),
    person=st.sampled_from([A_SAPPORO, B_SAPPORO]),
)
def test_a_genuine_permit_is_accepted_once_and_refused_the_second_time(
    town: Town, items: list[str], years: tuple[int, int] | None, person: str
) -> None:
    request = genuine(town, person=person, items=tuple(items), years=years)
    first = present(town, request)
    assert first.outcome in (ProvisionOutcome.PROVIDED_AUTOMATICALLY, ProvisionOutcome.HELD)  # K007 is held
    if first.outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY:
        assert first.response is not None
        own = A_HOME if person == A_SAPPORO else B_HOME
        assert all(line.record_id is None or line.record_id.startswith(own) for line in first.response.lines)
    assert_refused(present(town, request), MSG_PERMIT_USED)
    assert used_outcome(town, request) == first.outcome.value


@SETTINGS
@given(field=st.sampled_from([None, *REQUEST_FIELDS]), data=st.data())
def test_a_permit_signed_by_anyone_but_the_network_is_refused(town: Town, field: str | None,
                                                              data: st.DataObject) -> None:  # fmt: skip
    """A forger signs a permit for exactly the request it sends (changed in one field, or not at all)."""
    forger = PermitSigner(Ed25519PrivateKey.generate())
    request = genuine(town)
    if field is not None:
        _, values = REQUEST_FIELDS[field]
        value = _value(town, field, data.draw(values))
        request_forged = replace(request, **{field: value})
    else:
        request_forged = request
    permit = request.permit
    assert permit is not None
    bound = replace(
        permit,
        request_id=request_forged.request_id,
        requester=request_forged.requester,
        provider=request_forged.provider,
        affair_code=request_forged.affair_code,
        info_name_code=request_forged.info_name_code,
        items=request_forged.items,
        fiscal_year_from=request_forged.fiscal_year_from,
        fiscal_year_to=request_forged.fiscal_year_to,
        fugo_sha256=fugo_digest(request_forged.fugo),
    )
    forged = replace(request_forged, permit=replace(bound, signature=forger.sign(bound)))
    TAMPERED["forged"] += 1
    assert_refused(present(town, forged), MSG_BAD_SIGNATURE)
    assert_refused(present(town, request), MSG_PERMIT_USED)  # the forgery carried the genuine id and used it up


@SETTINGS
@given(late=st.integers(min_value=0, max_value=10**7))
def test_an_expired_permit_is_refused(town: Town, late: int) -> None:
    request = genuine(town)
    assert request.permit is not None
    town.world.clock.now = request.permit.expires_at + timedelta(milliseconds=late)
    try:
        TAMPERED["expired"] += 1
        assert_refused(present(town, request), MSG_PERMIT_EXPIRED)
        assert_refused(present(town, request), MSG_PERMIT_EXPIRED)  # still expired first, and now also used
        assert used_outcome(town, request) == ProvisionOutcome.REFUSED.value
    finally:
        town.world.clock.now = T0


def used_outcome(town: Town, request: ProvisionRequest) -> str | None:
    assert request.permit is not None
    t = chukan_used_permits
    with town.world.engines["chukan"].connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            sa.select(t.c.outcome).where(t.c.tenant == HOME, t.c.permit_id == str(request.permit.permit_id))
        ).scalar_one()


# --- used on every outcome -------------------------------------------------------------------------------------


def test_a_permit_is_used_up_by_a_held_a_refused_and_an_erroneous_first_presentation(town: Town) -> None:
    # held: a sensitive item
    held = genuine(town, items=("K001", "K007"))
    assert present(town, held).outcome is ProvisionOutcome.HELD
    assert_refused(present(town, held), MSG_PERMIT_USED)
    assert used_outcome(town, held) == "HELD"
    # refused by this server's own copy of the list (a permit the network should not have issued)
    signer = town.world.signer
    outside = genuine(town)
    assert outside.permit is not None
    unlisted = replace(outside.permit, info_name_code="TM00000000000140")
    unlisted = replace(unlisted, signature=signer.sign(unlisted))
    outside = replace(outside, info_name_code="TM00000000000140", permit=unlisted)
    reply = present(town, outside)
    assert reply.response is not None
    assert reply.response.outcome is ProvisionOutcome.REFUSED
    assert (reply.response.message or "").endswith("許可されていません")
    assert_refused(present(town, outside), MSG_PERMIT_USED)
    # error: a 符号 this server does not know (a permit the network signed for it)
    unknown = genuine(town)
    assert unknown.permit is not None
    nobody = replace(unknown.permit, fugo_sha256=fugo_digest("F-NOBODY"))
    unknown = replace(unknown, fugo="F-NOBODY", permit=replace(nobody, signature=signer.sign(nobody)))
    reply = present(town, unknown)
    assert reply.response is not None
    assert reply.response.outcome is ProvisionOutcome.ERROR
    assert reply.response.message == MSG_UNKNOWN_FUGO
    assert_refused(present(town, unknown), MSG_PERMIT_USED)
    assert used_outcome(town, unknown) == "ERROR"
    # no permit at all: refused, nothing to use up
    assert_refused(present(town, replace(genuine(town), permit=None)), MSG_NO_PERMIT)


# --- the finding of issue 9, and what never leaves ---------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"fugo": "B", "fiscal_year_from": 2015, "fiscal_year_to": 2030},  # as found: another person, other years
        {"fugo": "B"},
        {"fiscal_year_from": 2015, "fiscal_year_to": 2030},
        {"affair_code": OTHER_AFFAIR},
    ],
)
def test_a_copy_of_a_genuine_permit_on_another_request_is_refused_and_uses_the_permit_up(
    town: Town, change: dict[str, Any]
) -> None:
    request = genuine(town)
    copy = replace(request, **{k: _value(town, k, v) for k, v in change.items()})
    TAMPERED["finding"] += 1
    reply = present(town, copy)
    assert_refused(reply, MSG_PERMIT_MISMATCH)
    assert reply.response is not None
    assert B_HOME not in reply.response.to_json()  # the other person's record is not in the answer
    assert_refused(present(town, request), MSG_PERMIT_USED)


def test_no_fugo_and_no_fugo_hash_in_records_answers_or_holds(town: Town) -> None:
    request = genuine(town, items=("K001", "K007"))
    tampered = replace(request, fugo=town.fugo[(HOME, B_HOME)])
    outputs = present(town, genuine(town)).outputs + present(town, request).outputs + present(town, tampered).outputs
    fugos = [f for f in town.fugo.values() if f]
    secrets = fugos + [fugo_digest(f) for f in fugos]
    visible = "".join(e.to_json() for _, e in outputs)
    assert outputs
    assert not any(s in visible for s in secrets)
    assert not any(s in (r.reason or "") for _, r in outputs if isinstance(r, ProvisionRecord) for s in secrets)


# --- the encoding and the schema -------------------------------------------------------------------------------


def test_the_signed_encoding_is_typed_and_length_prefixed() -> None:
    permit = ProvisionPermit(
        permit_id=uuid.UUID(int=1), request_id=uuid.UUID(int=2), requester=SAPPORO, provider=HOME,
        affair_code=AFFAIR, info_name_code=INFO, items=("K001", "K002"), fiscal_year_from=None,
        fiscal_year_to=2026, fugo_sha256="ab", expires_at=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), signature="",
    )  # fmt: skip
    message = permit_message(permit)
    assert message.startswith(b"s\x00\x00\x00\x15kenshin-hub-permit-v2s\x00\x00\x00\x24")
    assert b"l\x00\x00\x00\x02s\x00\x00\x00\x04K001s\x00\x00\x00\x04K002n" in message
    tail = b"i" + (2026).to_bytes(8, "big") + b"s\x00\x00\x00\x02ab" + b"i" + (1000).to_bytes(8, "big")
    assert message.endswith(tail)
    # no two permits that differ only in how their values split give the same bytes
    assert permit_message(replace(permit, items=("K001K002",))) != message
    assert permit_message(replace(permit, items=("K001", "K002", ""))) != message
    assert permit_message(replace(permit, affair_code="")) != permit_message(replace(permit, affair_code=None))
    assert permit_message(replace(permit, fiscal_year_from=2026, fiscal_year_to=None)) != message
    assert permit_message(replace(permit, requester=HOME, provider=SAPPORO)) != message


def test_permits_written_before_the_binding_still_decode_and_are_refused() -> None:
    """BACKWARD: a request with a permit of the old schema reads with today's; the missing binding refuses it."""
    schema = json.loads(ProvisionRequest.schema_str())
    old = json.loads(json.dumps(schema))
    [permit_field] = [f for f in old["fields"] if f["name"] == "permit"]
    added = {"affair_code", "fiscal_year_from", "fiscal_year_to", "fugo_sha256"}
    permit_field["type"][1]["fields"] = [f for f in permit_field["type"][1]["fields"] if f["name"] not in added]
    request = next(e for e in samples.every_event() if isinstance(e, ProvisionRequest))
    assert request.permit is not None
    record = request.to_wire()
    record["permit"] = {k: v for k, v in record["permit"].items() if k not in added}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), record)
    buf.seek(0)
    read = fastavro.schemaless_reader(buf, fastavro.parse_schema(old), fastavro.parse_schema(schema))
    decoded = ProvisionRequest.from_dict(read)
    assert decoded.permit is not None
    assert decoded.permit.affair_code is None
    assert decoded.permit.fugo_sha256 is None
    assert {"事務コード", "符号"} <= set(permit_mismatches(decoded.permit, decoded, request.provider))
