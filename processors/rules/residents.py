"""Resident state from 住基異動: a pure, order-independent fold.

A person's state is the fold of all their changes sorted by (異動年月日, 発生日時, イベントID). Keeping the changes
(not only the state) makes the result independent of arrival order: a late, earlier-dated change is slotted in
and the state recomputed; a duplicate (same イベントID) changes nothing. The output state carries a deterministic
イベントID per version, so a replay re-emits byte-identical records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime

from schemas.models import (
    PersonIdentity,
    ResidentChange,
    ResidentChangeType,
    ResidentHistoryItem,
    ResidentState,
    ResidentStatus,
)

STATE_NAMESPACE = uuid.UUID("6f1c1b2e-7d0a-4f5e-9a43-2b8f4c0d9e11")
SOURCE_SYSTEM = "kenshin-hub.residents"

_INCREASE = {ResidentChangeType.MOVE_IN, ResidentChangeType.BIRTH}
_DECREASE = {ResidentChangeType.MOVE_OUT: ResidentStatus.MOVED_OUT, ResidentChangeType.DEATH: ResidentStatus.DECEASED}


def order_key(change: ResidentChange) -> tuple[date, datetime, str]:
    return (change.change_date, change.occurred_at, str(change.event_id))


@dataclass(frozen=True)
class PersonLog:
    """Every distinct change of one person, in fold order."""

    changes: tuple[ResidentChange, ...] = ()

    def add(self, change: ResidentChange) -> tuple[PersonLog, bool]:
        """The log with ``change`` added, and whether it was new (False for a duplicate イベントID)."""
        if any(c.event_id == change.event_id for c in self.changes):
            return self, False
        return PersonLog(tuple(sorted((*self.changes, change), key=order_key))), True

    def state(self) -> ResidentState | None:
        return fold(self.changes)

    def resident_on(self, day: date) -> bool:
        """Was the person a resident on ``day``? Walks every period (a person may leave and come back)."""
        resident = False
        for c in self.changes:
            if c.change_date > day:
                break
            if c.change_type in _INCREASE:
                resident = True
            elif c.change_type in _DECREASE:
                resident = False  # from the day of 転出 or 死亡
        return resident

    def identity_on(self, day: date) -> PersonIdentity | None:
        """基本5情報 as registered at the end of ``day`` (None when not yet known)."""
        state = fold(c for c in self.changes if c.change_date <= day)
        return state.person if state else None


def _apply(state: ResidentState | None, c: ResidentChange) -> ResidentState | None:
    if state is None:
        if c.person is None:
            return None  # nothing known yet: the change stays in the log and is folded once the person is
        state = ResidentState(
            event_id=c.event_id,
            occurred_at=c.occurred_at,
            tenant=c.tenant,
            source_system=SOURCE_SYSTEM,
            atena_no=c.atena_no,
            person=c.person,
            status=ResidentStatus.RESIDENT,
            support_measure=False,
            version=0,
        )
    t = c.change_type
    updates: dict[str, object] = {}
    if c.person is not None:
        updates["person"] = c.person
    if c.my_number is not None:
        updates["my_number"] = c.my_number
    if c.household_no is not None:
        updates["household_no"] = c.household_no
    if t in _INCREASE:
        updates.update(
            status=ResidentStatus.RESIDENT,
            resident_since=c.change_date,
            increase_reason=t,
            previous_municipality=c.previous_municipality,
            ceased_on=None,
            decrease_reason=None,
            next_municipality=None,
        )
    elif t in _DECREASE:
        updates.update(
            status=_DECREASE[t], ceased_on=c.change_date, decrease_reason=t, next_municipality=c.next_municipality
        )
    elif t is ResidentChangeType.SUPPORT_MEASURE_SET:
        updates["support_measure"] = True
    elif t is ResidentChangeType.SUPPORT_MEASURE_CLEARED:
        updates["support_measure"] = False
    item = ResidentHistoryItem(event_id=c.event_id, change_type=t, change_date=c.change_date, occurred_at=c.occurred_at)
    return replace(
        state,
        **updates,  # type: ignore[arg-type]
        occurred_at=max(state.occurred_at, c.occurred_at),
        version=state.version + 1,
        history=(*state.history, item),
    )


def fold(changes: Iterable[ResidentChange]) -> ResidentState | None:
    state: ResidentState | None = None
    for change in sorted(changes, key=order_key):
        state = _apply(state, change)
    if state is None:
        return None
    key = f"{state.tenant}:{state.atena_no}:{state.version}"
    return replace(state, event_id=uuid.uuid5(STATE_NAMESPACE, key))
