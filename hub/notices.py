"""繰越受診通知 on request (I.1 ② (2): 前年度に受診しなかった者が受診を希望する場合), as the health staff run it.

* ``notice request <宛名番号> --kind K --channel C [--year Y]`` (health role): staff record a resident's request,
  with how it reached the city (窓口, 電話, 郵送, 電子申請). It goes to the processors as a ``NoticeRequest`` on
  ``hub.notice-requests.v1``; they decide it from the person's book (:func:`processors.rules.invitations.
  notice_decision`): the 繰越受診通知 on ``invitations.v1``, or a refusal with its reasons, both on
  ``notice.decisions.v1``. The command waits (bounded) for the decision to reach the hub's database and prints it.
  Recorded as ``NOTICE_REQUEST`` with the person, kind and year as its target.
* ``notice candidates [--kind K] [--year Y]`` (health role): the residents who could ask, by the same rule, from the
  hub's tables (the 台帳 and the 転入前の受診履歴). Recorded as a ``LIST``.
"""

from __future__ import annotations

import argparse
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub import mailing
from hub.counter import KIND_LABEL, SEX_LABEL, await_rows
from hub.office import Office, office
from hub.settings import Settings
from hub.validation import age_at_fiscal_year_end, fiscal_year
from processors.rules.eligibility import EligibilityRules, load_rules
from processors.rules.invitations import carry_over_refusals
from schemas.models import (
    NoticeRequest,
    RequestChannel,
    ResidentStatus,
    ScreeningKind,
    Sex,
    StaffOperationType,
)
from schemas.record import now_utc
from sinks.tables import ledger_entries, ledger_history, notice_decisions, residents
from topics.catalog import NOTICE_REQUESTS

SOURCE = "kenshin-hub.staff"
WAIT_S = 30.0  # how long `notice request` waits for the decision to reach the database
CANDIDATES_SHOWN = 100
CHANNEL_LABEL = {
    RequestChannel.COUNTER: "窓口",
    RequestChannel.PHONE: "電話",
    RequestChannel.MAIL: "郵送",
    RequestChannel.ONLINE: "電子申請",
    RequestChannel.OTHER: "その他",
}


@dataclass(frozen=True)
class Candidate:
    atena_no: str
    name: str
    sex: str
    birth_date: date
    kind: ScreeningKind


def carry_over_kinds(rules: EligibilityRules) -> list[ScreeningKind]:
    """The kinds a 繰越受診通知 exists for (biennial, with 繰越 in ``eligibility.toml``)."""
    return [k for k, rule in rules.kinds.items() if rule.interval_years == 2 and rule.carry_over]


def candidates(
    conn: Connection, tenant: str, year: int, rules: EligibilityRules, kinds: list[ScreeningKind]
) -> list[Candidate]:
    """The residents of ``tenant`` who could ask for a 繰越受診通知 of ``kinds`` in ``year``, by 宛名番号."""
    le, lh, r = ledger_entries, ledger_history, residents
    wanted = [k.value for k in kinds]
    attended: dict[tuple[str, str], set[int]] = defaultdict(set)
    years = (year - 1, year)
    for atena, kind, fy in conn.execute(
        sa.select(le.c.atena_no, le.c.kind, le.c.fiscal_year).where(
            le.c.tenant == tenant, le.c.kind.in_(wanted), le.c.fiscal_year.in_(years)
        )
    ):
        attended[(atena, kind)].add(int(fy))
    for atena, kind, fy in conn.execute(
        sa.select(lh.c.atena_no, lh.c.kind, lh.c.fiscal_year).where(
            lh.c.tenant == tenant, lh.c.kind.in_(wanted), lh.c.fiscal_year.in_(years)
        )
    ):
        attended[(atena, kind)].add(int(fy))
    out: list[Candidate] = []
    query = (
        sa.select(r.c.atena_no, r.c.name, r.c.sex, r.c.birth_date)
        .where(r.c.tenant == tenant, r.c.status == ResidentStatus.RESIDENT.value)
        .order_by(r.c.atena_no)
    )
    for atena, name, sex, birth in conn.execute(query):
        for kind in kinds:
            seen = attended.get((atena, kind.value), set())
            if not carry_over_refusals(rules.rule(kind), Sex(sex), birth, True, year, seen):
                out.append(Candidate(atena, name, sex, birth, kind))
    return out


def new_request(
    tenant: str, atena_no: str, kind: ScreeningKind, year: int, channel: RequestChannel, staff_id: str
) -> NoticeRequest:
    return NoticeRequest(
        event_id=uuid.uuid4(),
        occurred_at=now_utc(),
        tenant=tenant,
        source_system=SOURCE,
        atena_no=atena_no,
        kind=kind,
        fiscal_year=year,
        channel=channel,
        staff_id=staff_id,
    )


def send_request(o: Office, request: NoticeRequest) -> None:
    """Publish ``request`` for the processors (a :class:`CommandError` when the broker did not take it)."""
    o.publish([(NOTICE_REQUESTS, request)], "the request was not delivered to the broker; record it again")


def await_decision(engine: Engine, request: NoticeRequest, wait_s: float) -> dict[str, Any] | None:
    """The decision on ``request`` once the sinks have written it; None if it is not there within ``wait_s``."""
    nd = notice_decisions
    query = sa.select(nd).where(nd.c.tenant == request.tenant, nd.c.request_event_id == str(request.event_id))
    found = await_rows(engine, query, wait_s)
    return found[0] if found else None


def describe_decision(decided: dict[str, Any]) -> str:
    if decided["issued"]:
        return "繰越受診通知を発行しました (invitations: CARRY_OVER, trigger REQUEST)"
    return f"発行しません: {decided['refusals']}"


def cmd_notice(settings: Settings, args: argparse.Namespace) -> int:
    from hub.review import staff_operation  # hub.review imports hub.office

    year = args.year if args.year is not None else fiscal_year(date.today())
    rules = load_rules()
    with office(settings) as o:
        if args.action == "candidates":
            kinds = [ScreeningKind(args.kind)] if args.kind else carry_over_kinds(rules)
            target = f"notice candidates {year} {','.join(k.value for k in kinds)}"
            with staff_operation(o, "health", StaffOperationType.LIST, target), o.engine.connect() as conn:
                found = candidates(conn, settings.tenant, year, rules, kinds)
            for c in found[: args.limit]:
                age = age_at_fiscal_year_end(c.birth_date, year)
                print(f"{c.atena_no:<14}{c.name}  {SEX_LABEL.get(c.sex, c.sex)}  {c.birth_date.isoformat()} "
                      f"({year}年度末 {age}歳)  {KIND_LABEL[c.kind]}")  # fmt: skip
            more = f" of {len(found)}" if len(found) > args.limit else ""
            print(
                f"({min(len(found), args.limit)} shown{more}: 前年度の対象で未受診; "
                f"{year}年度に申出があれば繰越受診通知)"
            )
            return 0
        kind, channel = ScreeningKind(args.kind), RequestChannel(args.channel)
        target = f"person {args.atena_no} {kind.value} {year}"
        with staff_operation(o, "health", StaffOperationType.NOTICE_REQUEST, target) as session:
            request = new_request(settings.tenant, args.atena_no, kind, year, channel, session.staff_id)
            send_request(o, request)
        print(f"{args.atena_no} {KIND_LABEL[kind]} {year}年度: 申出を受け付けました ({CHANNEL_LABEL[channel]}, "
              f"request {request.event_id})")  # fmt: skip
        decided = await_decision(o.engine, request, args.wait)
    if decided is None:
        print(f"  no decision yet after {args.wait:.0f}s: the processors decide it when they reach it; "
              f"`kenshin-hub person show {args.atena_no}` shows it")  # fmt: skip
        return 0
    print(f"  {describe_decision(decided)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notice = sub.add_parser("notice", help="繰越受診通知: record a resident's request; who could ask (health role)")
    notice_sub = notice.add_subparsers(dest="action", required=True)
    request = notice_sub.add_parser("request", help="a resident asks for a 繰越受診通知: the processors decide it")
    request.add_argument("atena_no", help="宛名番号")
    request.add_argument("--kind", required=True, choices=[k.value for k in ScreeningKind])
    request.add_argument("--channel", required=True, choices=[c.value for c in RequestChannel],
                         help="受付: COUNTER 窓口, PHONE 電話, MAIL 郵送, ONLINE 電子申請")  # fmt: skip
    request.add_argument("--year", type=int, default=None, help="fiscal year (default: the current one)")
    request.add_argument("--wait", type=float, default=WAIT_S, help="seconds to wait for the decision")
    listing = notice_sub.add_parser("candidates", help="residents who could ask for a 繰越受診通知 this year")
    listing.add_argument("--kind", default=None, choices=[k.value for k in ScreeningKind])
    listing.add_argument("--year", type=int, default=None, help="fiscal year (default: the current one)")
    listing.add_argument("--limit", type=int, default=CANDIDATES_SHOWN, help="how many to show")
    notice.set_defaults(func=cmd_notice)
    mailing.add_parsers(notice_sub)
