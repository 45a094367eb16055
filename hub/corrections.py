"""エラー処理 and 台帳訂正 as the health staff run them: decisions the processors apply (they own the 台帳).

* ``errors resolve <受付番号> --note N``: 処理済, the error is closed (its result stays out of the 台帳 while it fails);
* ``errors accept <受付番号> --reason R``: 受理, the result enters the 台帳 as sent, when every reason of its error may
  be accepted (``processors/rules/decisions.toml``; the others are fixed at their source: say which);
* ``errors correct <受付番号> --set FIELD=VALUE … --reason R``: 訂正, a corrected submission of the 受付番号 (a new
  台帳 version; a corrected 宛名番号 moves it to that person, and the error of the wrong one is resolved);
* ``ledger void <宛名番号> --kind K --year Y [--follow-up] --reason R``: 取消 of a wrong 台帳 entry (or of its 精検):
  its 受付番号's submissions so far count for nothing, and its 副本 is deleted at the 中間サーバー.

Each is a :class:`LedgerDecision` on ``hub.ledger-decisions.v1``, keyed by the person, with the staff id and the
reason; staff never write the processors' tables or their output topics. The command waits (bounded) for the
outcome to reach the hub's tables and prints it. Recorded as RESOLVE_ERROR, ACCEPT_RESULT, CORRECT_RESULT or
VOID_ENTRY with the 受付番号 (or the entry) as target.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import date
from typing import Any

import sqlalchemy as sa

from hub.counter import await_rows
from hub.errors import CommandError
from hub.office import Office, office
from hub.settings import Settings
from processors.rules.decisions import packaged_decisions
from schemas.models import (
    CORRECTABLE,
    ErrorReason,
    ErrorStatus,
    LedgerDecision,
    LedgerDecisionType,
    ScreeningKind,
    Sex,
    StaffOperationType,
)
from schemas.record import now_utc
from sinks.tables import ledger_entries, ledger_versions, screening_errors
from topics.catalog import LEDGER_DECISIONS

SOURCE = "kenshin-hub.staff"
WAIT_S = 30.0
OPERATION = {
    LedgerDecisionType.RESOLVE: StaffOperationType.RESOLVE_ERROR,
    LedgerDecisionType.ACCEPT: StaffOperationType.ACCEPT_RESULT,
    LedgerDecisionType.CORRECT: StaffOperationType.CORRECT_RESULT,
    LedgerDecisionType.VOID: StaffOperationType.VOID_ENTRY,
}


def parse_corrections(items: list[str]) -> dict[str, str]:
    """``FIELD=VALUE`` pairs, each field one of :data:`CORRECTABLE` and each value of its type (a CommandError)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in CORRECTABLE:
            raise CommandError(f"--set {item!r}: give FIELD=VALUE with FIELD one of {', '.join(CORRECTABLE)}")
        if name in out:
            raise CommandError(f"--set {name} is given twice")
        try:
            if name in ("exam_date", "subject.birth_date"):
                date.fromisoformat(value)
            elif name == "subject.sex":
                Sex(value)
        except ValueError:
            raise CommandError(f"--set {name}: {value!r} is not a valid value") from None
        if name == "atena_no" and not (value.isascii() and value.isdigit() and len(value) <= 32):
            raise CommandError(f"--set atena_no: {value!r} is not a 宛名番号")
        if name != "primary_reception_no" and not value.strip():
            raise CommandError(f"--set {name}: empty")
        out[name] = value
    if not out:
        raise CommandError("say what to correct: --set FIELD=VALUE")
    return out


def open_error(o: Office, reception_no: str, atena_no: str | None) -> dict[str, Any]:
    """The error of ``reception_no`` staff act on: the OPEN one (the 宛名番号 it was sent under, if two)."""
    se = screening_errors
    query = sa.select(se).where(se.c.tenant == o.settings.tenant, se.c.reception_no == reception_no)
    if atena_no is not None:
        query = query.where(se.c.atena_no == atena_no)
    with o.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    if not rows:
        raise CommandError(f"no screening error with 受付番号 {reception_no}")
    open_rows = [r for r in rows if r["status"] == ErrorStatus.OPEN.value]
    if not open_rows:
        raise CommandError(f"{reception_no} is already resolved")
    if len(open_rows) > 1:
        atenas = ", ".join(sorted(r["atena_no"] for r in open_rows))
        raise CommandError(f"{reception_no} has open errors under 宛名番号 {atenas}: say which with --atena-no")
    return open_rows[0]


def decision(
    tenant: str, kind: LedgerDecisionType, atena_no: str, reception_no: str, staff_id: str, reason: str, **more: Any
) -> LedgerDecision:
    return LedgerDecision(
        event_id=uuid.uuid4(),
        occurred_at=now_utc(),
        tenant=tenant,
        source_system=SOURCE,
        atena_no=atena_no,
        decision=kind,
        reception_no=reception_no,
        staff_id=staff_id,
        reason=reason,
        **more,
    )


def send(o: Office, d: LedgerDecision) -> None:
    o.publish(
        [(LEDGER_DECISIONS, d)], "the decision was not delivered to the broker; nothing was changed: send it again"
    )


def await_error(o: Office, d: LedgerDecision, wait_s: float) -> dict[str, Any] | None:
    """The error row of the decision's 受付番号 once the processors have settled it with this staff member."""
    se = screening_errors
    query = sa.select(se).where(
        se.c.tenant == d.tenant,
        se.c.reception_no == d.reception_no,
        se.c.status == ErrorStatus.RESOLVED.value,
        se.c.resolved_by == d.staff_id,
        se.c.resolved_at >= d.occurred_at,
    )
    found = await_rows(o.engine, query, wait_s)
    return found[0] if found else None


def await_entry(o: Office, atena_no: str, kind: str, d: LedgerDecision, wait_s: float) -> dict[str, Any] | None:
    """The latest 台帳 version of the person's ``kind`` that this staff member's decision (its reason) is behind."""
    lv = ledger_versions
    query = (
        sa.select(lv)
        .where(
            lv.c.tenant == d.tenant,
            lv.c.atena_no == atena_no,
            lv.c.kind == kind,
            lv.c.decided_by == d.staff_id,
            lv.c.decision_reason == d.reason,
        )
        .order_by(lv.c.version.desc())
        .limit(1)
    )
    found = await_rows(o.engine, query, wait_s)
    return found[0] if found else None


def entry_line(row: dict[str, Any]) -> str:
    what = "取消 (withdrawn)" if row["withdrawn"] else "stands"
    return (f"台帳 {row['atena_no']} {row['kind']} {row['fiscal_year']}年度 version {row['version']}: {what} "
            f"(受付番号 {row['reception_no']}, by {row['decided_by']}: {row['decision_reason']})")  # fmt: skip


def cmd_decide(settings: Settings, args: argparse.Namespace) -> int:
    """errors resolve | accept | correct."""
    from hub.review import staff_operation  # hub.review imports hub.office

    kind = {"resolve": LedgerDecisionType.RESOLVE, "accept": LedgerDecisionType.ACCEPT,
            "correct": LedgerDecisionType.CORRECT}[args.action]  # fmt: skip
    reason = args.note if kind is LedgerDecisionType.RESOLVE else args.reason
    corrections = parse_corrections(args.set) if kind is LedgerDecisionType.CORRECT else None
    target = args.reception_no
    with office(settings) as o:
        with staff_operation(o, "health", OPERATION[kind], target) as session:
            row = open_error(o, args.reception_no, args.atena_no)
            if kind is LedgerDecisionType.ACCEPT:
                reasons = [ErrorReason(r) for r in str(row["reasons"]).split(",") if r]
                rules = packaged_decisions()
                if not rules.accepts(reasons):
                    fixed = ", ".join(r.value for r in reasons if r not in rules.acceptable)
                    raise CommandError(f"{target} cannot be accepted: {fixed} must be fixed at its source "
                                       "(`errors correct`, `institution register|modify`, or the 住基)")  # fmt: skip
            d = decision(settings.tenant, kind, str(row["atena_no"]), target, session.staff_id, reason,
                         result_event_id=uuid.UUID(str(row["result_event_id"])), corrections=corrections)  # fmt: skip
            send(o, d)
        print(f"{target}: {kind.value} sent (decision {d.event_id})")
        settled = await_error(o, d, args.wait)
        moved = corrections is not None and corrections.get("atena_no", d.atena_no) != d.atena_no
        entry = None
        if kind is not LedgerDecisionType.RESOLVE and settled is not None:
            to = corrections["atena_no"] if moved and corrections else d.atena_no
            entry = await_entry(o, to, str(row["kind"]), d, args.wait)
    if settled is None:
        print(f"  not settled yet after {args.wait:.0f}s: the error still stands as the processors last saw it; "
              f"`kenshin-hub errors show {target}` shows it")  # fmt: skip
        return 0
    print(f"  error {target} (宛名番号 {settled['atena_no']}): RESOLVED — {settled['resolution']}")
    if entry is not None:
        print(f"  {entry_line(entry)}")
    return 0


def cmd_ledger(settings: Settings, args: argparse.Namespace) -> int:
    """ledger void."""
    from hub.review import staff_operation  # hub.review imports hub.office

    kind = ScreeningKind(args.kind)
    target = f"ledger {args.atena_no} {kind.value} {args.year}{' follow-up' if args.follow_up else ''}"
    le = ledger_entries
    with office(settings) as o:
        with staff_operation(o, "health", StaffOperationType.VOID_ENTRY, target) as session:
            with o.engine.connect() as conn:
                row = conn.execute(
                    sa.select(le.c.reception_no, le.c.follow_up, le.c.version).where(
                        le.c.tenant == settings.tenant,
                        le.c.atena_no == args.atena_no,
                        le.c.kind == kind.value,
                        le.c.fiscal_year == args.year,
                    )
                ).first()
            if row is None:
                raise CommandError(f"no 台帳 entry {args.atena_no} {kind.value} {args.year}")
            reception = str(row.reception_no)
            if args.follow_up:
                if not row.follow_up:
                    raise CommandError(f"{args.atena_no} {kind.value} {args.year} has no 精検")
                reception = str(row.follow_up["reception_no"])
            d = decision(settings.tenant, LedgerDecisionType.VOID, args.atena_no, reception, session.staff_id,
                         args.reason)  # fmt: skip
            send(o, d)
        print(f"{target}: 取消 sent (受付番号 {reception}, decision {d.event_id})")
        entry = await_entry(o, args.atena_no, kind.value, d, args.wait)
    if entry is None:
        print(f"  not applied yet after {args.wait:.0f}s: `kenshin-hub person show {args.atena_no}` shows it")
        return 0
    print(f"  {entry_line(entry)}")
    if entry["withdrawn"]:
        print("  副本: DELETE registered for the 中間サーバー")
    return 0


def add_error_parsers(errors_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("reception_no", help="受付番号")
        p.add_argument("--atena-no", default=None, help="宛名番号, when the 受付番号 has errors under two")
        p.add_argument("--wait", type=float, default=WAIT_S, help="seconds to wait for the processors")
        p.set_defaults(func=cmd_decide)

    resolve = errors_sub.add_parser("resolve", help="処理済: close an error (recorded with your staff id)")
    resolve.add_argument("--note", required=True, help="what was done (no personal data)")
    common(resolve)
    accept = errors_sub.add_parser("accept", help="受理: take the result into the 台帳 as sent, with a reason")
    accept.add_argument("--reason", required=True, help="why (no personal data)")
    common(accept)
    correct = errors_sub.add_parser("correct", help="訂正: correct the result's fields (a new 台帳 version)")
    correct.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                         help=f"a corrected field: {', '.join(CORRECTABLE)}")  # fmt: skip
    correct.add_argument("--reason", required=True, help="why (no personal data)")
    common(correct)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ledger = sub.add_parser("ledger", help="台帳訂正: void a wrong 台帳 entry (needs the health role)")
    ledger_sub = ledger.add_subparsers(dest="action", required=True)
    void = ledger_sub.add_parser("void", help="取消: take a wrong entry (or its 精検) out of the 台帳")
    void.add_argument("atena_no", help="宛名番号")
    void.add_argument("--kind", required=True, choices=[k.value for k in ScreeningKind])
    void.add_argument("--year", type=int, required=True, help="fiscal year of the entry")
    void.add_argument("--follow-up", action="store_true", help="void the entry's 精検 only")
    void.add_argument("--reason", required=True, help="why (no personal data)")
    void.add_argument("--wait", type=float, default=WAIT_S, help="seconds to wait for the processors")
    ledger.set_defaults(func=cmd_ledger)
