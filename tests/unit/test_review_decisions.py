"""Staff authority lives where the data lives: the 中間サーバー acts on a held provision only for a reviewer it
enrolled for that tenant, on a decision signed with that reviewer's key and unchanged on the way.

The decisions travel as events (``chukan.review-decisions.v1``) through the same :class:`~connectors.service.Bus`
as the rest of the provision flow; nothing here writes the 中間サーバー's tables but the 中間サーバー (and its
operator's enrolment).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors.chukan import DECISION_ACCEPTED, DECISION_REJECTED, REVIEWER_DISABLED, TenantStore
from connectors.keys import (
    UNSIGNED,
    public_key_text,
    review_message,
    reviewer_key,
    sign_review,
    valid_review_signature,
)
from connectors.stores import chukan_held, chukan_review_decisions
from connectors.world import REVIEWER, World
from hub.errors import CommandError
from hub.review import check_enrolled
from hub.settings import load_settings
from schemas.models import DeadLetter, ProvisionOutcome, ProvisionResponse, ReviewDecision, ReviewVerdict
from schemas.record import ModelError
from tests import samples
from tests.unit.test_provision import HOME, ITEMS, SAPPORO, T0, history, person_in
from topics import catalog

pytestmark = pytest.mark.unit


def held_requests(world: World, count: int) -> list[uuid.UUID]:
    """``count`` requests of HOME to 札幌, each held for a sensitive item (K007) of another person."""
    out = []
    for i in range(count):
        number = samples.my_number(f"{98765432100 + i}")
        person_in(world, HOME, f"00000000000010{i}", number)
        person_in(world, SAPPORO, f"00000000000020{i}", number)
        world.fukuhon(SAPPORO, f"00000000000020{i}", f"R{i}", {**history(2025), "K007": "CANCER"})
        out.append(world.query(HOME, f"00000000000010{i}", SAPPORO, (*ITEMS, "K007")).request_id)
    return out


def status(world: World, request_id: uuid.UUID) -> str:
    with world.engines["chukan"].connect() as conn:
        row = TenantStore(conn, SAPPORO).held(str(request_id))
    assert row is not None
    return str(row.status)


def answers(world: World, request_id: uuid.UUID) -> list[ProvisionResponse]:
    events = world.events(catalog.QUERY_ANSWERS)
    return [e for e in events if isinstance(e, ProvisionResponse) and e.request_id == request_id]


def received(world: World, decision: ReviewDecision) -> sa.Row[Any]:
    t = chukan_review_decisions
    with world.engines["chukan"].connect() as conn:
        return conn.execute(sa.select(t).where(t.c.event_id == str(decision.event_id))).one()


def letters(world: World) -> list[DeadLetter]:
    assert catalog.REVIEW_DECISIONS.dlq is not None
    return [e for e in world.events(catalog.REVIEW_DECISIONS.dlq) if isinstance(e, DeadLetter)]


def decision(world: World, request_id: uuid.UUID, key: Ed25519PrivateKey, **fields: Any) -> ReviewDecision:
    base: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": world.clock(),
        "tenant": SAPPORO,
        "source_system": "kenshin-hub.staff",
        "request_id": request_id,
        "staff_id": REVIEWER,
        "verdict": ReviewVerdict.APPROVE,
        "reason": None,
        "signature": UNSIGNED,
    }
    return sign_review(key, ReviewDecision(**{**base, **fields}))


def send(world: World, event: ReviewDecision) -> None:
    world.publish((catalog.for_tenant(catalog.REVIEW_DECISIONS, event.tenant), event))


def test_an_enrolled_reviewers_signed_decision_is_acted_on_once(world: World) -> None:
    [request] = held_requests(world, 1)
    sent = world.decide(SAPPORO, request, approve=True)
    assert status(world, request) == "APPROVED"
    [answer] = answers(world, request)
    assert answer.outcome is ProvisionOutcome.PROVIDED_AFTER_REVIEW
    row = received(world, sent)
    assert (row.outcome, row.staff_id, row.reason) == (DECISION_ACCEPTED, REVIEWER, None)
    with world.engines["chukan"].connect() as conn:
        decided_by = conn.execute(sa.select(chukan_held.c.decided_by)).scalar_one()
    assert decided_by == REVIEWER
    send(world, sent)  # the same decision delivered again (a replay): its stored effects, nothing new
    assert [a.event_id for a in answers(world, request)] == [answer.event_id] * 2
    assert letters(world) == []


TAMPERED: dict[str, Any] = {
    "event_id": uuid.uuid4(),
    "occurred_at": T0 + timedelta(seconds=1),
    "source_system": "kenshin-hub.other",
    "staff_id_case": None,  # the staff id of another enrolled reviewer: their key did not sign it
    "request_id": None,  # the other held request
    "verdict": None,  # an approval turned into a refusal (with a reason) and back
    "reason": "不適切",
}


@pytest.mark.parametrize("field", sorted(TAMPERED))
def test_a_decision_changed_in_any_field_after_signing_is_rejected_and_changes_nothing(
    world: World, field: str
) -> None:
    first, other = held_requests(world, 2)
    key = world.enrol(SAPPORO)
    world.enrol(SAPPORO, "reviewer2")
    refused = field == "reason"
    genuine = decision(world, first, key, **({"verdict": ReviewVerdict.REFUSE, "reason": "理由"} if refused else {}))
    assert valid_review_signature_of(world, genuine)
    if field == "staff_id_case":
        tampered = replace(genuine, staff_id="reviewer2")
    elif field == "request_id":
        tampered = replace(genuine, request_id=other)
    elif field == "verdict":
        tampered = replace(genuine, verdict=ReviewVerdict.REFUSE, reason="理由")
    else:
        tampered = replace(genuine, **{field: TAMPERED[field]})
    assert review_message(tampered) != review_message(genuine)
    send(world, tampered)
    assert (status(world, first), status(world, other)) == ("HELD", "HELD")
    assert answers(world, first) == answers(world, other) == []
    row = received(world, tampered)
    assert row.outcome == DECISION_REJECTED
    assert "signature does not verify" in row.reason
    [letter] = letters(world)
    assert letter.reason == row.reason
    assert letter.source_topic == catalog.for_tenant(catalog.REVIEW_DECISIONS, tampered.tenant).name


def valid_review_signature_of(world: World, event: ReviewDecision) -> bool:
    with world.engines["chukan"].connect() as conn:
        reviewer = TenantStore(conn, event.tenant).reviewer(event.staff_id)
    return reviewer is not None and valid_review_signature(reviewer.public_key, event)


def test_only_a_reviewer_the_server_enrolled_for_that_tenant_decides(world: World) -> None:
    [request] = held_requests(world, 1)
    stranger = decision(world, request, Ed25519PrivateKey.generate(), staff_id="intruder")
    send(world, stranger)
    world.enrol(SAPPORO)  # 札幌's reviewer1 …
    home_key = world.enrol(HOME)  # … and HOME's reviewer1, under the same staff id, with a genuine key of their own
    other_city = decision(world, request, home_key)
    send(world, other_city)
    forged_tenant = replace(decision(world, request, home_key, tenant=HOME), tenant=SAPPORO)
    send(world, forged_tenant)
    assert status(world, request) == "HELD"
    assert answers(world, request) == []
    reasons = [received(world, d).reason for d in (stranger, other_city, forged_tenant)]
    assert reasons[0] == f"intruder is not a reviewer of {SAPPORO} at this 中間サーバー"
    assert reasons[1] == reasons[2] == f"the decision's signature does not verify against reviewer {REVIEWER}'s key"
    assert all(received(world, d).outcome == DECISION_REJECTED for d in (stranger, other_city, forged_tenant))
    assert len(letters(world)) == 3


def test_a_disabled_reviewer_and_a_decided_request_are_refused(world: World) -> None:
    first, second = held_requests(world, 2)
    key = world.enrol(SAPPORO)
    world.decide(SAPPORO, first, approve=True)
    again = decision(world, first, key, verdict=ReviewVerdict.REFUSE, reason="再確認")
    send(world, again)
    assert received(world, again).reason == f"{first} was already decided (APPROVED by {REVIEWER})"
    with world.engines["chukan"].begin() as conn:
        assert TenantStore(conn, SAPPORO).set_reviewer_status(REVIEWER, REVIEWER_DISABLED, world.clock())
    late = decision(world, second, key)
    send(world, late)
    assert received(world, late).reason == f"reviewer {REVIEWER} of {SAPPORO} is disabled"
    assert status(world, second) == "HELD"
    assert [a.outcome for a in answers(world, first)] == [ProvisionOutcome.PROVIDED_AFTER_REVIEW]
    assert answers(world, second) == []


def test_the_model_refuses_a_decision_the_server_could_not_take() -> None:
    header: dict[str, Any] = {"event_id": uuid.uuid4(), "occurred_at": T0, "tenant": SAPPORO, "source_system": "s"}
    base: dict[str, Any] = {**header, "request_id": uuid.uuid4(), "staff_id": REVIEWER, "signature": "x"}
    with pytest.raises(ModelError, match="a refusal needs a reason"):
        ReviewDecision(**base, verdict=ReviewVerdict.REFUSE, reason="  ")
    with pytest.raises(ModelError, match="an approval carries no reason"):
        ReviewDecision(**base, verdict=ReviewVerdict.APPROVE, reason="ok")
    with pytest.raises(ModelError, match="unknown review verdict"):
        ReviewDecision(**base, verdict=ReviewVerdict.OTHER)
    with pytest.raises(ModelError, match="signed"):
        ReviewDecision(**{**base, "signature": ""}, verdict=ReviewVerdict.APPROVE)


def test_held_provisions_are_shown_only_to_a_reviewer_the_server_enrolled_with_this_key(
    world: World, tmp_path: Path
) -> None:
    settings = load_settings({"KENSHIN_STATE_DIR": str(tmp_path / "state"), "KENSHIN_TENANT": SAPPORO})
    engine = world.engines["chukan"]

    def refused() -> str:
        with pytest.raises(CommandError) as caught:
            check_enrolled(engine, settings, REVIEWER)
        return str(caught.value)

    assert "not an enrolled reviewer of 011002" in refused()  # no key here, none there
    key = reviewer_key(settings.state_dir, SAPPORO, REVIEWER, create=True)
    assert key is not None
    assert (settings.state_dir / "keys" / "reviewers" / f"{SAPPORO}-{REVIEWER}.pem").stat().st_mode & 0o777 == 0o600
    assert "not an enrolled reviewer" in refused()  # a key here, not enrolled there
    world.enrol(SAPPORO)  # the 中間サーバー enrolled another key under that staff id
    assert "not the one the 中間サーバー enrolled" in refused()
    with engine.begin() as conn:
        TenantStore(conn, SAPPORO).enrol_reviewer(REVIEWER, public_key_text(key.public_key()), world.clock())
    check_enrolled(engine, settings, REVIEWER)
    with engine.begin() as conn:
        TenantStore(conn, SAPPORO).set_reviewer_status(REVIEWER, REVIEWER_DISABLED, world.clock())
    assert "not an enrolled reviewer" in refused()
