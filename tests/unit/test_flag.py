"""The 自動応答不可フラグ fails closed (issue 9, item 5): an unknown support-measure state is held, never answered.

The 中間サーバー answers a provision automatically only when it holds the person's 住基 support-measure state and that
state says "not under a support measure". Two registrations of one 住基 version that disagree on the flag make it
unknown (which one is current cannot be told) until a newer version arrives; a row without a state is unknown too.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from connectors.stores import chukan_held, chukan_persons
from connectors.world import World
from schemas.models import HeldProvision, HoldReason, ProvisionOutcome, ProvisionRecord, ProvisionResponse, RecordSide
from tests import samples
from topics import catalog

pytestmark = pytest.mark.unit

HOME, SAPPORO = "012041", "011002"
ITEMS = ("K001", "K002", "K003")
MINE, THEIRS = "000000000000001", "000000000000077"


def setup_person(world: World, *, support: bool = False, version: int = 1) -> None:
    """The person is a resident of HOME (the provider) with one 副本, and known in 札幌 (the requester)."""
    number = samples.my_number()
    world.register(HOME, MINE, number, samples.person(), support_measure=support, version=version)
    world.register(SAPPORO, THEIRS, number, samples.person())
    world.fukuhon(HOME, MINE, "R1", {"K001": "STOMACH", "K002": "2025", "K003": "2025-06-01"})


def ask(world: World) -> uuid.UUID:
    return world.query(SAPPORO, THEIRS, HOME, ITEMS).request_id


def answers(world: World, request_id: uuid.UUID) -> list[ProvisionResponse]:
    return [
        e
        for e in world.events(catalog.PROVISION_RESPONSES)
        if isinstance(e, ProvisionResponse) and e.request_id == request_id
    ]


def holds(world: World, request_id: uuid.UUID) -> list[HeldProvision]:
    return [
        e for e in world.events(catalog.HELD_PROVISIONS) if isinstance(e, HeldProvision) and e.request_id == request_id
    ]


def stored_flag(world: World) -> bool | None:
    t = chukan_persons
    with world.engines["chukan"].connect() as conn:
        value = conn.execute(
            sa.select(t.c.support_measure).where(t.c.tenant == HOME, t.c.integrated_no == MINE)
        ).scalar_one()
    return None if value is None else bool(value)


def test_a_person_not_under_a_support_measure_is_answered_automatically(world: World) -> None:
    setup_person(world)
    request_id = ask(world)
    [answer] = answers(world, request_id)
    assert answer.outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY
    assert holds(world, request_id) == []


def test_registrations_of_one_version_that_disagree_on_the_flag_hold_the_request(world: World) -> None:
    """Fails on the code before issue 9: the later registration (flag cleared) won and the person was answered."""
    setup_person(world, support=True)
    world.register(HOME, MINE, samples.my_number(), samples.person(), support_measure=False, version=1)
    request_id = ask(world)
    assert answers(world, request_id) == []  # never answered automatically
    [held] = holds(world, request_id)
    assert held.hold_reasons == (HoldReason.PERSON_FLAG,)
    assert stored_flag(world) is None  # unknown


def test_a_person_without_a_recorded_flag_state_is_held_with_the_reason_in_words(world: World) -> None:
    """Fails on the code before issue 9: the store could not record an unknown state, and the check read it as
    "not flagged"."""
    from connectors.chukan import NOTE_FLAG_UNKNOWN

    setup_person(world)
    with world.engines["chukan"].begin() as conn:
        conn.execute(sa.update(chukan_persons).where(chukan_persons.c.tenant == HOME).values(support_measure=None))
    request_id = ask(world)
    assert answers(world, request_id) == []
    [held] = holds(world, request_id)
    assert held.hold_reasons == (HoldReason.PERSON_FLAG,)
    with world.engines["chukan"].connect() as conn:
        note = conn.execute(sa.select(chukan_held.c.hold_note).where(chukan_held.c.tenant == HOME)).scalar_one()
    assert note == NOTE_FLAG_UNKNOWN
    # staff decide; an approval of an unknown state is recorded as 不開示 (fail closed)
    world.decide(HOME, request_id, approve=True)
    [answer] = answers(world, request_id)
    assert answer.outcome is ProvisionOutcome.PROVIDED_AFTER_REVIEW
    [record] = [
        e
        for e in world.events(catalog.PROVISION_RECORDS)
        if isinstance(e, ProvisionRecord) and e.request_id == request_id and e.side is RecordSide.PROVIDER
    ]
    assert record.non_disclosure is True


def test_a_newer_version_makes_the_state_known_again_and_an_older_one_changes_nothing(world: World) -> None:
    setup_person(world, support=True, version=2)
    world.register(HOME, MINE, samples.my_number(), samples.person(), support_measure=False, version=2)
    assert stored_flag(world) is None
    world.register(HOME, MINE, samples.my_number(), samples.person(), support_measure=True, version=1)  # older
    assert stored_flag(world) is None
    world.register(HOME, MINE, samples.my_number(), samples.person(), support_measure=False, version=3)
    assert stored_flag(world) is False
    [answer] = answers(world, ask(world))
    assert answer.outcome is ProvisionOutcome.PROVIDED_AUTOMATICALLY
    world.register(HOME, MINE, samples.my_number(), samples.person(), support_measure=False, version=3)  # again
    assert stored_flag(world) is False  # a redelivery that agrees keeps the state known


def test_a_support_measure_holds_and_its_note_says_so(world: World) -> None:
    from connectors.chukan import NOTE_SUPPORT_MEASURE

    setup_person(world, support=True)
    request_id = ask(world)
    assert answers(world, request_id) == []
    assert holds(world, request_id)[0].hold_reasons == (HoldReason.PERSON_FLAG,)
    with world.engines["chukan"].connect() as conn:
        note = conn.execute(sa.select(chukan_held.c.hold_note).where(chukan_held.c.tenant == HOME)).scalar_one()
    assert note == NOTE_SUPPORT_MEASURE


def test_person_hold_only_lets_an_explicit_false_through(world: World) -> None:
    from types import SimpleNamespace

    from connectors.chukan import NOTE_FLAG_UNKNOWN, NOTE_SUPPORT_MEASURE

    def hold(value: object) -> str | None:
        return world.chukan.person_hold(SimpleNamespace(support_measure=value))  # type: ignore[arg-type]

    assert hold(False) is None
    assert hold(True) == NOTE_SUPPORT_MEASURE
    for unknown in (None, 0, 1, "", "false"):
        assert hold(unknown) in (NOTE_FLAG_UNKNOWN, NOTE_SUPPORT_MEASURE)
    assert hold(None) == NOTE_FLAG_UNKNOWN
