"""Resident state from 住基異動: a pure, order-independent fold.

A person's state is the fold of all their changes sorted by (異動年月日, 発生日時, イベントID). Keeping the changes
(not only the state) makes the result independent of arrival order: a late, earlier-dated change is slotted in
and the state recomputed; a duplicate (same イベントID) changes nothing. The output state carries a deterministic
イベントID per version, so a replay re-emits byte-identical records.

A person who cannot yet be a screening target (below every kind's age for their sex: the assessment's
対象となる本人の範囲, and III.2 "対象者以外の情報や不必要な情報を入手できないようにする") is kept *minimal*: each of
their changes keeps its type, its dates and the :class:`~schemas.models.TargetBasis` (性別, 生年月日), nothing
else: no 基本5情報, no 個人番号, no 世帯番号, no 郵便番号, no municipalities (:meth:`PersonLog.minimised`). Such a
log folds to no state at all, so nothing about the person leaves the processors. When the person becomes a
target, the 住基 sends their full record (``TARGET_AGE_REACHED``, with the 支援措置 in force) and the fold goes on
from it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from schemas.models import (
    PersonIdentity,
    ResidentChange,
    ResidentChangeType,
    ResidentHistoryItem,
    ResidentState,
    ResidentStatus,
    Sex,
    TargetBasis,
)

STATE_NAMESPACE = uuid.UUID("6f1c1b2e-7d0a-4f5e-9a43-2b8f4c0d9e11")
SOURCE_SYSTEM = "kenshin-hub.residents"

_INCREASE = {ResidentChangeType.MOVE_IN, ResidentChangeType.BIRTH}
_DECREASE = {ResidentChangeType.MOVE_OUT: ResidentStatus.MOVED_OUT, ResidentChangeType.DEATH: ResidentStatus.DECEASED}


def order_key(change: ResidentChange) -> tuple[date, datetime, str]:
    return (change.change_date, change.occurred_at, str(change.event_id))


def basis_of(change: ResidentChange) -> TargetBasis | None:
    """性別 and 生年月日 as ``change`` states them (from its 基本5情報 or its minimal basis); None: it does not."""
    if change.person is not None:
        return TargetBasis(sex=change.person.sex, birth_date=change.person.birth_date)
    return change.basis


def _stated(change: ResidentChange) -> tuple[Sex, date] | None:
    """:func:`basis_of` as a plain pair (no model built: this runs for every 住基異動)."""
    stated = change.person if change.person is not None else change.basis
    return (stated.sex, stated.birth_date) if stated is not None else None


def reduced(change: ResidentChange, basis: TargetBasis) -> ResidentChange:
    """``change`` as kept for a person who cannot yet be a target: its type, its dates and ``basis``, nothing else."""
    return replace(
        change,
        my_number=None,
        person=None,
        basis=basis,
        household_no=None,
        previous_municipality=None,
        next_municipality=None,
        postcode=None,
        support_measure=None,
    )


def is_minimal(change: ResidentChange, basis: TargetBasis) -> bool:
    return change == reduced(change, basis)


@dataclass(frozen=True)
class PersonLog:
    """Every distinct change of one person, in fold order.

    The folds it answers (:meth:`state`, :meth:`identity_on`) are remembered on the instance: a log never changes
    (a new change makes a new log), and one event asks them again for every result of the person's book.
    """

    changes: tuple[ResidentChange, ...] = ()
    _folds: dict[date | None, ResidentState | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def add(self, change: ResidentChange) -> tuple[PersonLog, bool]:
        """The log with ``change`` added, and whether it was new (False for a duplicate イベントID)."""
        if any(c.event_id == change.event_id for c in self.changes):
            return self, False
        return PersonLog(tuple(sorted((*self.changes, change), key=order_key))), True

    def state(self) -> ResidentState | None:
        return self._fold_until(None)

    def basis(self) -> TargetBasis | None:
        """性別 and 生年月日 as the latest change (in fold order) that states them has them."""
        stated = self._stated()
        return TargetBasis(sex=stated[0], birth_date=stated[1]) if stated is not None else None

    def _stated(self) -> tuple[Sex, date] | None:
        for c in reversed(self.changes):
            stated = _stated(c)
            if stated is not None:
                return stated
        return None

    def minimised(self, in_scope: Callable[[Sex, date], bool]) -> tuple[PersonLog, int]:
        """The log as kept, and how many of its changes had to be reduced to get there.

        When the person's basis is out of scope (``in_scope`` false), every change is reduced to the minimal basis
        (:func:`reduced`); an in-scope person, or one whose basis is not known yet, is kept as is. The result
        depends only on the set of changes, not on their arrival order: reducing again changes nothing.
        """
        stated = self._stated()
        if stated is None or in_scope(*stated):
            return self, 0
        basis = TargetBasis(sex=stated[0], birth_date=stated[1])
        changes = tuple(reduced(c, basis) for c in self.changes)
        count = sum(1 for before, after in zip(self.changes, changes, strict=True) if before != after)
        return (PersonLog(changes), count) if count else (self, 0)

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

    def ceased_on(self) -> date | None:
        """The day the person stopped being a resident (転出 or 死亡 after their last 転入 / 出生); None: still one,
        or not known. Read from the changes' types and dates only, so it holds for a person kept minimal too.
        """
        ceased: date | None = None
        for c in self.changes:
            if c.change_type in _INCREASE:
                ceased = None
            elif c.change_type in _DECREASE:
                ceased = c.change_date
        return ceased

    def identity_on(self, day: date) -> PersonIdentity | None:
        """基本5情報 as registered at the end of ``day`` (None when not yet known)."""
        state = self._fold_until(day)
        return state.person if state else None

    def _fold_until(self, day: date | None) -> ResidentState | None:
        """The fold of the changes dated up to ``day`` (None: all of them), remembered."""
        if day is not None and (not self.changes or day >= self.changes[-1].change_date):
            day = None  # every change counts: the same fold as the whole log's
        try:
            return self._folds[day]
        except KeyError:
            folded = self._folds[day] = fold(c for c in self.changes if day is None or c.change_date <= day)
            return folded


def _apply(
    fields: dict[str, Any] | None, history: list[ResidentHistoryItem], c: ResidentChange
) -> dict[str, Any] | None:
    """One change applied to the fields of the state being folded (None: nothing known yet)."""
    if fields is None:
        if c.person is None and c.basis is None:
            return None  # nothing known yet: the change stays in the log and is folded once the person is
        fields = {
            "event_id": c.event_id,
            "occurred_at": c.occurred_at,
            "tenant": c.tenant,
            "source_system": SOURCE_SYSTEM,
            "atena_no": c.atena_no,
            "person": c.person,  # None while the person is kept minimal
            "status": ResidentStatus.RESIDENT,
            "support_measure": False,
            "version": 0,
        }
    t = c.change_type
    if c.person is not None:
        fields["person"] = c.person
        fields["postcode"] = c.postcode  # the 郵便番号 goes with the 住所 it came with (None: not known)
    if c.my_number is not None:
        fields["my_number"] = c.my_number
    if c.household_no is not None:
        fields["household_no"] = c.household_no
    if t in _INCREASE:
        fields.update(
            status=ResidentStatus.RESIDENT,
            resident_since=c.change_date,
            increase_reason=t,
            previous_municipality=c.previous_municipality,
            ceased_on=None,
            decrease_reason=None,
            next_municipality=None,
        )
    elif t in _DECREASE:
        fields.update(
            status=_DECREASE[t], ceased_on=c.change_date, decrease_reason=t, next_municipality=c.next_municipality
        )
    elif t is ResidentChangeType.SUPPORT_MEASURE_SET:
        fields["support_measure"] = True
    elif t is ResidentChangeType.SUPPORT_MEASURE_CLEARED:
        fields["support_measure"] = False
    if c.support_measure is not None:  # a full record (TARGET_AGE_REACHED) states the 支援措置 in force
        fields["support_measure"] = c.support_measure
    history.append(
        ResidentHistoryItem(event_id=c.event_id, change_type=t, change_date=c.change_date, occurred_at=c.occurred_at)
    )
    fields["occurred_at"] = max(fields["occurred_at"], c.occurred_at)
    fields["version"] += 1
    return fields


def fold(changes: Iterable[ResidentChange]) -> ResidentState | None:
    """The state the changes add up to, in fold order (None until a change names the person with the 基本5情報:
    a person kept minimal has no state).

    The state is built once, from the fields the changes left: each change was checked as it came in, and the
    state's own invariants are checked on the result.
    """
    fields: dict[str, Any] | None = None
    history: list[ResidentHistoryItem] = []
    for change in sorted(changes, key=order_key):
        fields = _apply(fields, history, change)
    if fields is None or fields["person"] is None:
        return None
    key = f"{fields['tenant']}:{fields['atena_no']}:{fields['version']}"
    fields["event_id"] = uuid.uuid5(STATE_NAMESPACE, key)
    return ResidentState(**fields, history=tuple(history))
