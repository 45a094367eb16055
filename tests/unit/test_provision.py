"""The provision flow in process: network, 中間サーバー and connectors on a Bus (SQLite, no broker).

Property tests (hypothesis) drive random requests — permitted or not, flagged or not, with genuine, forged, expired,
mismatched and replayed permits — and check the controls of the seed's リスク2 (不正な提供). The permit's binding of
each field and its single use are property-tested field by field in ``test_permits.py``; the person-level flag's
fail-closed rule in ``test_flag.py``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy.exc as sa_exc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.chukan import (
    MSG_BAD_SIGNATURE,
    MSG_DUPLICATE_RECORD,
    MSG_NO_PERMIT,
    MSG_PERMIT_EXPIRED,
    MSG_PERMIT_MISMATCH,
    MSG_PERMIT_USED,
    sanitized_request,
)
from connectors.keys import PermitSigner
from connectors.network import MSG_NO_FUGO
from connectors.policy import PolicyError, load_network, load_permitted_queries, load_sensitive_items
from connectors.stores import chukan_fukuhon, chukan_held, chukan_persons, chukan_records, chukan_retention_runs
from connectors.world import Clock, World
from hub.retention import RetentionStores, record_run, run_retention
from schemas.models import (
    DeadLetter,
    FukuhonOperation,
    HeldProvision,
    HoldStatus,
    ProvisionOutcome,
    ProvisionRecord,
    ProvisionRequest,
    ProvisionResponse,
    RecordSide,
)
from tests import samples
from tests.unit.conftest import T0
from topics import catalog

pytestmark = pytest.mark.unit

HOME, SAPPORO, HAKODATE = "012041", "011002", "012025"
ITEMS = ("K001", "K002", "K003", "K004", "K005", "K006", "K008")


def history(fy: int, kind: str = "STOMACH") -> dict[str, str]:
    return {"K001": kind, "K002": str(fy), "K003": f"{fy}-06-01", "K004": "61", "K005": "0", "K008": "XRAY"}


def person_in(world: World, tenant: str, no: str, my_number: str, *, support: bool = False) -> None:
    world.register(tenant, no, my_number, samples.person(), support_measure=support)


def responses(world: World, request_id: uuid.UUID) -> list[ProvisionResponse]:
    return [
        e
        for e in world.events(catalog.QUERY_ANSWERS)
        if isinstance(e, ProvisionResponse) and e.request_id == request_id
    ]


def records(world: World, request_id: uuid.UUID) -> list[ProvisionRecord]:
    return [
        e
        for e in world.events(catalog.PROVISION_RECORDS)
        if isinstance(e, ProvisionRecord) and e.request_id == request_id
    ]


# --- rule files ------------------------------------------------------------------------------------------------


def test_rule_files_load_and_broken_ones_are_refused(tmp_path: Path) -> None:
    assert load_permitted_queries().entries[0].legal_basis.startswith("番号法第19条第8号")
    assert len(load_network().bodies) >= 3
    assert load_sensitive_items().flagged("TM00000000000139", ("K001", "K007")) == ("K007",)
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\n[[entries]]\nid = "1"\nrequester = "a"\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"permitted_queries\.toml"):
        load_permitted_queries(bad)
    bad.write_text('version = "x"\npermit_ttl_seconds = 60\n[[bodies]]\ncode = "012040"\nname = "x"\nclass = "c"\n')
    with pytest.raises(PolicyError, match="団体コード"):
        load_network(bad)


# --- the flow --------------------------------------------------------------------------------------------------


def test_a_permitted_query_is_answered_automatically_from_the_fukuhon(world: World) -> None:
    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    world.fukuhon(SAPPORO, "000000000000077", "R1", history(2024))
    world.fukuhon(SAPPORO, "000000000000077", "R2", history(2019))
    query = world.query(HOME, "000000000000001", SAPPORO, ITEMS, fiscal_years=(2022, 2026))
    [answer] = responses(world, query.request_id)
    assert answer.outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY
    assert answer.integrated_atena_no == "000000000000001"
    [line] = answer.lines
    assert line.record_id == "R1"
    assert line.status == "OK"
    assert {i.item_code: i.value for i in line.items}["K002"] == "2024"
    assert {i.item_code: i.status for i in line.items}["K006"] == "NO_DATA"
    sides = sorted(r.side for r in records(world, query.request_id))
    assert sides == [RecordSide.PROVIDER, RecordSide.REQUESTER]
    # the 符号 never reaches the connector or the records
    fugos = {
        row.fugo
        for row in world.engines["chukan"].connect().execute(chukan_persons.select()).all()
        if row.fugo is not None
    }
    assert len(fugos) == 2
    outside = json.dumps([e.to_json() for e in world.events(catalog.QUERY_ANSWERS)])
    outside += json.dumps([e.to_json() for e in world.events(catalog.PROVISION_RECORDS)])
    assert not any(f in outside for f in fugos)


def test_a_query_outside_the_list_is_refused_by_the_network(world: World) -> None:
    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    query = world.query(HOME, "000000000000001", SAPPORO, ITEMS, info_name_code="TM00000000000140")
    [answer] = responses(world, query.request_id)
    assert answer.outcome is ProvisionOutcome.REFUSED
    assert answer.message == "特定個人情報名「TM00000000000140」の照会は許可されていません"
    assert world.events(catalog.PROVISION_REQUESTS) == []
    assert [r.side for r in records(world, query.request_id)] == [RecordSide.REQUESTER]


def test_a_person_without_a_fugo_cannot_be_queried(world: World) -> None:
    world.register(HOME, "000000000000001", None, samples.person())
    query = world.query(HOME, "000000000000001", SAPPORO, ITEMS)
    [answer] = responses(world, query.request_id)
    assert answer.outcome is ProvisionOutcome.ERROR
    assert answer.message == MSG_NO_FUGO
    person_in(world, HOME, "000000000000002", samples.my_number())
    query = world.query(HOME, "000000000000002", HAKODATE, ITEMS)  # not known in 函館: no 符号 there
    [answer] = responses(world, query.request_id)
    assert answer.outcome is ProvisionOutcome.ERROR
    assert answer.message == MSG_NO_FUGO


def test_flagged_provisions_are_held_and_decided_by_staff(world: World) -> None:
    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number(), support=True)
    world.fukuhon(SAPPORO, "000000000000077", "R1", history(2025))
    person_in(world, HOME, "000000000000002", samples.my_number("98765432109"))
    person_in(world, SAPPORO, "000000000000078", samples.my_number("98765432109"))
    world.fukuhon(SAPPORO, "000000000000078", "R9", {**history(2025), "K007": "CANCER"})
    by_person = world.query(HOME, "000000000000001", SAPPORO, ITEMS)
    by_item = world.query(HOME, "000000000000002", SAPPORO, (*ITEMS, "K007"))
    assert responses(world, by_person.request_id) == []
    assert responses(world, by_item.request_id) == []
    held = [e for e in world.events(catalog.HELD_PROVISIONS) if isinstance(e, HeldProvision)]
    assert {(h.request_id, h.hold_reasons[0].value) for h in held} == {
        (by_person.request_id, "PERSON_FLAG"),
        (by_item.request_id, "ITEM_FLAG"),
    }
    world.decide(SAPPORO, by_person.request_id, approve=False, reason="DV等支援措置の対象者")
    world.decide(SAPPORO, by_item.request_id, approve=True)
    [refused] = responses(world, by_person.request_id)
    [approved] = responses(world, by_item.request_id)
    assert refused.outcome is ProvisionOutcome.REFUSED
    assert refused.message == "DV等支援措置の対象者"
    assert approved.outcome is ProvisionOutcome.PROVIDED_AFTER_REVIEW
    assert {i.item_code: i.value for i in approved.lines[0].items}["K007"] == "CANCER"
    provider_record = next(r for r in records(world, by_person.request_id) if r.side is RecordSide.PROVIDER)
    assert provider_record.non_disclosure is True
    # deciding again changes nothing: the 中間サーバー rejects the second decision and sends nothing more
    world.decide(SAPPORO, by_item.request_id, approve=False, reason="too late")
    assert [r.event_id for r in responses(world, by_item.request_id)] == [approved.event_id]
    assert world.count("chukan", chukan_held, chukan_held.c.status == HoldStatus.HELD.value) == 0


def test_a_deleted_fukuhon_is_never_provided_again(world: World) -> None:
    """A 台帳 entry voided by staff (`ledger void`) or withdrawn by later data: its 副本's DELETE is honoured."""
    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    world.fukuhon(SAPPORO, "000000000000077", "R1", history(2024))
    world.fukuhon(SAPPORO, "000000000000077", "R2", history(2023))
    world.fukuhon(SAPPORO, "000000000000077", "R1", history(2024), version=2, operation=FukuhonOperation.DELETE)
    assert world.events(catalog.CHUKAN_FUKUHON.dlq) == []  # type: ignore[arg-type]
    query = world.query(HOME, "000000000000001", SAPPORO, ITEMS, fiscal_years=(2022, 2026))
    [answer] = responses(world, query.request_id)
    assert answer.outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY
    assert [line.record_id for line in answer.lines] == ["R2"]  # R1 deleted: not provided


def test_a_duplicate_record_id_is_rejected_to_the_dead_letter_topic(world: World) -> None:
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    first = world.fukuhon(SAPPORO, "000000000000077", "R1", history(2024))
    world.fukuhon(SAPPORO, "000000000000077", "R1", history(2024), event_id=first.event_id)  # redelivery: fine
    assert world.events(catalog.CHUKAN_FUKUHON.dlq) == []  # type: ignore[arg-type]
    world.fukuhon(SAPPORO, "000000000000077", "R1", history(2025))
    [letter] = world.events(catalog.CHUKAN_FUKUHON.dlq)  # type: ignore[arg-type]
    assert isinstance(letter, DeadLetter)
    assert letter.reason == MSG_DUPLICATE_RECORD


def test_request_bodies_in_records_carry_no_fugo() -> None:
    request = samples.every_event()
    body = sanitized_request(next(e for e in request if isinstance(e, ProvisionRequest)))
    assert "fugo" not in json.loads(body)


# --- properties ------------------------------------------------------------------------------------------------

TAMPER = st.sampled_from(["none", "none", "none", "forged", "expired", "mismatch", "replay", "missing"])
TENANTS = st.sampled_from([SAPPORO, HAKODATE, "012033"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(
            TENANTS,  # requester
            st.booleans(),  # permitted info name
            st.lists(st.sampled_from([*ITEMS, "K007", "K099"]), min_size=1, max_size=4, unique=True),
            st.booleans(),  # subject under support measure
            TAMPER,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_provision_controls_hold_for_random_requests(tmp_path_factory: pytest.TempPathFactory, data: list) -> None:  # type: ignore[type-arg]
    world = World(root=tmp_path_factory.mktemp("w"), clock=Clock(T0))
    try:
        _check_random_requests(world, data)
    finally:
        world.close()


def _check_random_requests(world: World, data: list) -> None:  # type: ignore[type-arg]
    forger = PermitSigner(Ed25519PrivateKey.generate())
    flagged_people: set[str] = set()
    for n, (requester, permitted, items, support, tamper) in enumerate(data):
        mine, theirs = f"{n + 1:015d}", f"{n + 101:015d}"
        number = samples.my_number(f"{n + 10000000000:011d}")
        person_in(world, requester, theirs, number)
        person_in(world, HOME, mine, number, support=support)
        world.fukuhon(HOME, mine, f"R{n}", {**history(2025), "K007": "NO_ABNORMALITY"})
        world.fukuhon(requester, theirs, f"OTHER{n}", history(2025))  # another tenant's data: never in HOME's answers
        if support:
            flagged_people.add(mine)
        info = "TM00000000000139" if permitted else "TM00000000000140"
        query = world.query(requester, theirs, HOME, tuple(items), info_name_code=info)
        routed = [
            e
            for e in world.events(catalog.PROVISION_REQUESTS)
            if isinstance(e, ProvisionRequest) and e.request_id == query.request_id
        ]
        if tamper != "none" and routed:
            _attack(world, routed[0], tamper, forger)
    # staff decide everything held (refusing half), so that every request has reached its end
    for h in [e for e in world.events(catalog.HELD_PROVISIONS) if isinstance(e, HeldProvision)]:
        if h.status is HoldStatus.HELD:
            world.decide(HOME, h.request_id, approve=h.request_id.int % 2 == 0, reason="再確認の結果")

    list_items = set(world.policies.permitted.entries[0].items)
    all_responses = [e for e in world.events(catalog.PROVISION_RESPONSES) if isinstance(e, ProvisionResponse)]
    held_ids = {e.request_id for e in world.events(catalog.HELD_PROVISIONS) if isinstance(e, HeldProvision)}
    requests = {e.request_id: e for e in world.events(catalog.NETWORK_QUERIES) if isinstance(e, ProvisionRequest)}
    for response in all_responses:
        provided = response.outcome in (ProvisionOutcome.PROVIDED_AUTOMATICALLY, ProvisionOutcome.PROVIDED_AFTER_REVIEW)
        if not provided:
            continue
        request = requests[response.request_id]
        # nothing is provided without a list match ...
        assert request.info_name_code == "TM00000000000139"
        assert set(request.items) <= list_items
        # ... nothing flagged is answered automatically ...
        flagged = "K007" in request.items or response.request_id in held_ids
        if flagged:
            assert response.outcome is ProvisionOutcome.PROVIDED_AFTER_REVIEW
        # ... and no answer carries another tenant's data
        for line in response.lines:
            assert line.record_id is None or line.record_id.startswith("R")
    # the person-level flag holds every provision about the person
    for response in all_responses:
        if response.outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY:
            assert response.request_id not in held_ids
    # every request leaves exactly one record at the requester; every request that reached the provider one there
    recs = [e for e in world.events(catalog.PROVISION_RECORDS) if isinstance(e, ProvisionRecord)]
    for request_id in requests:
        sides = [r.side for r in recs if r.request_id == request_id and r.source_system == "kenshin-hub.chukan"]
        assert sides.count(RecordSide.REQUESTER) == 1
    genuine = [e for e in world.events(catalog.PROVISION_REQUESTS) if e.source_system == "kenshin-hub.network"]
    for request in genuine:
        provider_side = [r for r in recs if r.request_id == request.request_id and r.side is RecordSide.PROVIDER]
        assert len({r.record_id for r in provider_side}) >= 1
        assert len([r for r in provider_side if r.event_id == provider_side[0].event_id]) == 1
    # the 符号 of one institution never appears anywhere another party reads
    fugos = [row.fugo for row in world.engines["chukan"].connect().execute(chukan_persons.select()) if row.fugo]
    visible = "".join(e.to_json() for t in (catalog.QUERY_ANSWERS, catalog.PROVISION_RECORDS,
                                             catalog.PROVISION_RESPONSES, catalog.HELD_PROVISIONS)
                      for e in world.events(t))  # fmt: skip
    assert not any(f in visible for f in fugos)


def _attack(world: World, genuine: ProvisionRequest, tamper: str, forger: PermitSigner) -> None:
    """Send a tampered copy of a routed request straight to the provider's 中間サーバー; it must be refused."""
    permit = genuine.permit
    assert permit is not None
    if tamper == "forged":
        bad = replace(permit, items=(*permit.items, "K007"))
        request = replace(genuine, items=bad.items, permit=replace(bad, signature=forger.sign(bad)))
        expected = MSG_BAD_SIGNATURE
    elif tamper == "expired":
        world.clock.now = T0 + timedelta(days=1)
        request = replace(genuine, request_id=uuid.uuid4())
        request = replace(request, permit=replace(permit, request_id=request.request_id))
        expected = MSG_BAD_SIGNATURE  # re-bound without the network's key: the signature no longer matches
    elif tamper == "mismatch":
        request = replace(genuine, request_id=uuid.uuid4())
        expected = MSG_PERMIT_MISMATCH
    elif tamper == "replay":
        request = genuine
        expected = MSG_PERMIT_USED
    else:
        request = replace(genuine, permit=None)
        expected = MSG_NO_PERMIT
    attack = replace(request, event_id=uuid.uuid4(), source_system="attacker")
    world.publish((catalog.for_tenant(catalog.PROVISION_REQUESTS, attack.tenant), attack))
    answers = [
        e
        for e in world.events(catalog.PROVISION_RESPONSES)
        if isinstance(e, ProvisionResponse) and e.request_id == attack.request_id
    ]
    assert answers[-1].outcome is ProvisionOutcome.REFUSED
    if tamper == "replay" and answers[0].outcome is ProvisionOutcome.REFUSED:
        return  # the genuine one was already refused (e.g. not on the list): nothing to replay
    assert answers[-1].message == expected
    world.clock.now = T0


def test_an_expired_genuine_permit_is_refused(world: World) -> None:
    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    world.fukuhon(HOME, "000000000000001", "R1", history(2025))
    routed: list[ProvisionRequest] = []
    world.bus.taps.append(lambda t, e: routed.append(e) if t.template == catalog.PROVISION_REQUESTS.name else None)  # type: ignore[arg-type, func-returns-value]
    # hold the routed request back: deliver it after the permit's expiry
    world.bus.members = [m for m in world.bus.members if m[0] is not world.chukan] + [
        m for m in world.bus.members if m[0] is world.chukan
    ]
    query = world.query(SAPPORO, "000000000000077", HOME, ITEMS)
    [genuine] = [r for r in routed if r.request_id == query.request_id]
    late = replace(genuine, event_id=uuid.uuid4(), request_id=genuine.request_id)
    world.clock.now = T0 + timedelta(seconds=world.policies.network.permit_ttl_seconds + 1)
    world.publish((catalog.for_tenant(catalog.PROVISION_REQUESTS, late.tenant), late))
    last = [e for e in world.events(catalog.PROVISION_RESPONSES) if e.request_id == query.request_id][-1]  # type: ignore[attr-defined]
    assert last.outcome is ProvisionOutcome.REFUSED
    assert last.message in (MSG_PERMIT_EXPIRED, MSG_PERMIT_USED)


@pytest.mark.parametrize(
    "change",
    [
        {"fugo": "B", "fiscal_year_from": 2015, "fiscal_year_to": 2030},  # as found
        {"fugo": "B"},
        {"fiscal_year_from": 2015, "fiscal_year_to": 2030},
        {"affair_code": "JM0141"},
    ],
    ids=["other-person-and-years", "other-person", "other-years", "other-affair"],
)
def test_issue9_a_copy_of_a_genuine_permit_on_a_changed_request_is_refused(tmp_path: Path, change: dict) -> None:  # type: ignore[type-arg]
    """Issue 9's finding: a copy of a genuine permit, carried over to a request for another person's 符号, other
    fiscal years or another (permitted) 事務, was answered with that person's record, and the genuine request was
    then refused as used. Now the copy is refused (the permit binds those fields) and it still uses the permit up:
    the genuine request that follows is refused as used (fail safe: the requester asks for a new permit)."""
    from connectors.network import derived_id
    from connectors.policy import default_policies

    base = default_policies()
    other = replace(base.permitted.entries[0], id="141", affair_code="JM0141", affair="別の事務 (試験用)")
    policies = replace(base, permitted=replace(base.permitted, entries=(*base.permitted.entries, other)))
    world = World(root=tmp_path, clock=Clock(T0), policies=policies)
    try:
        a, b = samples.my_number(), samples.my_number("98765432109")
        person_in(world, HOME, "000000000000001", a)
        person_in(world, HOME, "000000000000002", b)
        person_in(world, SAPPORO, "000000000000077", a)
        world.fukuhon(HOME, "000000000000001", "A2025", history(2025))
        world.fukuhon(HOME, "000000000000002", "B2025", history(2025))
        world.fukuhon(HOME, "000000000000002", "B2016", history(2016))
        with world.engines["chukan"].connect() as conn:
            fugo = {(r.tenant, r.integrated_no): r.fugo for r in conn.execute(chukan_persons.select())}
        query = ProvisionRequest(
            **world.header(SAPPORO),  # type: ignore[arg-type]
            request_id=uuid.uuid4(), requester=SAPPORO, provider=HOME, affair_code="JM0139",
            info_name_code="TM00000000000139", items=ITEMS, fugo=fugo[(SAPPORO, "000000000000077")],
            fiscal_year_from=2024, fiscal_year_to=2026, requested_at=T0,
        )  # fmt: skip
        with world.engines["network"].begin() as conn:  # what the network routes to the provider (held back here)
            [(_, genuine)] = world.network.handle(
                conn, catalog.for_tenant(catalog.NETWORK_QUERIES, query.tenant), query
            )
        assert isinstance(genuine, ProvisionRequest)
        assert genuine.permit is not None
        values = {k: fugo[(HOME, "000000000000002")] if v == "B" else v for k, v in change.items()}
        copy = replace(genuine, event_id=uuid.uuid4(), source_system="attacker", **values)

        def answer_to(request: ProvisionRequest) -> ProvisionResponse:
            world.publish((catalog.for_tenant(catalog.PROVISION_REQUESTS, request.tenant), request))
            [answer] = [
                e
                for e in world.events(catalog.PROVISION_RESPONSES)
                if isinstance(e, ProvisionResponse) and e.event_id == derived_id("response", request.event_id)
            ]
            return answer

        stolen = answer_to(copy)
        assert stolen.outcome is ProvisionOutcome.REFUSED
        assert stolen.message == MSG_PERMIT_MISMATCH
        assert stolen.lines == ()
        assert "B20" not in stolen.to_json()
        later = answer_to(genuine)
        assert later.outcome is ProvisionOutcome.REFUSED
        assert later.message == MSG_PERMIT_USED
    finally:
        world.close()


def test_retention_deletes_old_records_and_expired_fukuhon_of_one_tenant_only(world: World) -> None:
    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    world.fukuhon(SAPPORO, "000000000000077", "R1", history(2019), end=date(2025, 3, 31))
    world.fukuhon(SAPPORO, "000000000000077", "R2", history(2024), end=date(2030, 3, 31))
    world.query(HOME, "000000000000001", SAPPORO, ITEMS)
    assert world.count("chukan", chukan_records) == 2  # one on each side
    engine, policy = world.engines["chukan"], world.chukan.policies.retention

    def run(tenant: str) -> dict[str, int]:
        report = run_retention(RetentionStores(chukan=engine), tenant, policy=policy, now=world.clock())
        record_run(engine, report, "test")
        return report.counts()["chukan"]

    first = run(SAPPORO)
    assert (first["chukan_records"], first["chukan_fukuhon"]) == (0, 1)
    assert world.count("chukan", chukan_fukuhon, chukan_fukuhon.c.record_id == "R1") == 0
    assert world.count("chukan", chukan_fukuhon) == 1
    assert run(HOME)["chukan_fukuhon"] == 0
    world.clock.now = T0 + timedelta(days=366 * 7 + 1)
    assert run(SAPPORO)["chukan_records"] == 1  # the provider's record; the requester's (HOME's) stays
    assert world.count("chukan", chukan_records, chukan_records.c.tenant == HOME) == 1
    assert run(HOME)["chukan_records"] == 1
    assert world.count("chukan", chukan_records) == 0
    assert world.count("chukan", chukan_retention_runs) == 4
    assert world.count("chukan", chukan_retention_runs, chukan_retention_runs.c.tenant == HOME) == 2


def test_a_query_that_arrives_before_the_persons_registration_waits_for_it(world: World) -> None:
    """The connector's registration and its query travel on different topics: either may arrive first."""
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    world.fukuhon(SAPPORO, "000000000000077", "R1", history(2025))
    query = world.query(HOME, "000000000000001", SAPPORO, ITEMS)
    assert responses(world, query.request_id) == []
    person_in(world, HOME, "000000000000001", samples.my_number())
    [answer] = responses(world, query.request_id)
    assert answer.outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY


def test_a_replayed_input_re_sends_its_outputs_instead_of_acting_again(world: World) -> None:
    """Why the effects are stored: a provision request cannot be acted on twice (its permit and record exist)."""
    from connectors.service import act_once
    from connectors.stores import chukan_effects

    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    world.fukuhon(HOME, "000000000000001", "R1", history(2025))
    captured: list[ProvisionRequest] = []
    world.bus.taps.append(
        lambda t, e: (
            captured.append(e)
            if t.template == catalog.PROVISION_REQUESTS.name and isinstance(e, ProvisionRequest)
            else None
        )
    )
    world.query(SAPPORO, "000000000000077", HOME, ITEMS)
    [request] = captured
    with world.engines["chukan"].begin() as conn:
        replayed = act_once(
            conn, chukan_effects, world.chukan, catalog.for_tenant(catalog.PROVISION_REQUESTS, request.tenant), request
        )
    [first] = [e for e in world.events(catalog.PROVISION_RESPONSES) if e.request_id == request.request_id]
    [(_, again)] = [(t, e) for t, e in replayed if t.template == catalog.PROVISION_RESPONSES.name]
    assert again == first
    # acting again instead: the permit is now used and the record exists; the replay could never re-send the answer
    with pytest.raises(sa_exc.IntegrityError), world.engines["chukan"].begin() as conn:
        world.chukan.handle(conn, catalog.for_tenant(catalog.PROVISION_REQUESTS, request.tenant), request)


def test_the_outcomes_reach_the_metrics_bundle(world: World) -> None:
    from prometheus_client import CollectorRegistry

    from connectors.observe import observe, refresh_held
    from monitoring.metrics import HubMetrics

    registry = CollectorRegistry()
    metrics = HubMetrics(registry, process="chukan")
    world.bus.taps.append(lambda t, e: observe(metrics, [(t, e)]))
    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number(), support=True)
    person_in(world, SAPPORO, "000000000000078", samples.my_number("98765432109"))
    person_in(world, HOME, "000000000000002", samples.my_number("98765432109"))
    world.query(HOME, "000000000000001", SAPPORO, ITEMS)  # held: support measure
    world.query(HOME, "000000000000002", SAPPORO, ITEMS)  # answered automatically
    world.query(HOME, "000000000000002", SAPPORO, ITEMS, info_name_code="TM00000000000140")  # not permitted
    refresh_held(metrics, world.engines["chukan"])

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("kenshin_hub_provisions_total", outcome="PROVIDED_AUTOMATICALLY") == 1
    assert value("kenshin_hub_provisions_total", outcome="HELD") == 1
    assert value("kenshin_hub_provision_holds_total", reason="PERSON_FLAG") == 1
    assert value("kenshin_hub_provision_refusals_total", reason="NOT_PERMITTED") == 1
    assert value("kenshin_hub_held_provisions", tenant=SAPPORO) == 1
