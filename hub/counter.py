"""窓口: one person's screening record at the counter (the assessment's II.3 ⑤ 1, 受診希望者の対象要件を確認,
受診履歴の把握).

`kenshin-hub person find` looks residents up by name or kana and birth date; `kenshin-hub person show <宛名番号>`
shows one person from the hub's database:

* the resident (基本5情報, status, 支援措置 as a warning: nothing that reveals the address is to be told);
* this fiscal year's eligibility per kind (the rules of ``eligibility.toml``), with the reason when not eligible: the
  age or sex, not resident, already screened this year, or screened within the kind's interval. Screenings received
  from the previous municipality (転入 history, ``ledger_history``) count for the interval and are marked with their
  origin;
* the 台帳 across years, each entry with its versions (``ledger_versions``, withdrawals included);
* the history received from the previous municipality;
* open errors, and the invitations and notices sent.

Both need a login with the ``health`` role, and each lookup is a recorded staff operation (``SHOW`` with the
宛名番号, ``LIST`` with what was searched for: a name is not written to the operation log, only that a search by
name ran). Nothing here writes the hub's tables.
"""

from __future__ import annotations

import argparse
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.errors import CommandError
from hub.office import office
from hub.settings import Settings
from hub.validation import age_at_fiscal_year_end, fiscal_year
from processors.rules.eligibility import EligibilityRules, load_rules
from schemas.models import ErrorReason, ErrorStatus, ResidentStatus, ScreeningKind, Sex, StaffOperationType
from sinks.tables import (
    invitations,
    ledger_entries,
    ledger_history,
    ledger_versions,
    notice_decisions,
    notice_mailings,
    residents,
    screening_errors,
)

KIND_LABEL = {
    ScreeningKind.STOMACH: "胃がん",
    ScreeningKind.COLORECTAL: "大腸がん",
    ScreeningKind.LUNG: "肺がん",
    ScreeningKind.BREAST: "乳がん",
    ScreeningKind.CERVICAL: "子宮頸がん",
    ScreeningKind.H_PYLORI: "ピロリ菌検査",
}
SEX_LABEL = {Sex.MALE.value: "男性", Sex.FEMALE.value: "女性"}
FIND_LIMIT = 50


@dataclass(frozen=True)
class Eligibility:
    kind: ScreeningKind
    eligible: bool
    reason: str  # why not; when eligible, "" or a limit (only one method this year)


@dataclass(frozen=True)
class PersonView:
    fiscal_year: int
    resident: dict[str, Any]
    eligibility: list[Eligibility]
    ledger: list[dict[str, Any]]  # one per entry, newest fiscal year first, each with its "versions"
    history: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    invitations: list[dict[str, Any]]
    requests: list[dict[str, Any]]  # 繰越受診通知の申出 with the processors' decisions, newest first


def rows(conn: Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query)]


def await_rows(engine: Engine, query: sa.Select[Any], wait_s: float, poll_s: float = 0.2) -> list[dict[str, Any]]:
    """The rows of ``query`` once there are any (what a command sent has reached the hub's tables); [] when none
    came within ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        with engine.connect() as conn:
            found = rows(conn, query)
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(poll_s)


def eligibility(
    rules: EligibilityRules,
    resident: dict[str, Any],
    year: int,
    attended: dict[ScreeningKind, dict[int, str]],
) -> list[Eligibility]:
    """Per kind, whether the resident is a target in fiscal ``year``, and why not.

    ``attended`` gives, per kind, the fiscal years screened and where (``""``: this city, else the municipality the
    転入 history came from).
    """
    out: list[Eligibility] = []
    sex, birth = Sex(resident["sex"]), resident["birth_date"]
    age = age_at_fiscal_year_end(birth, year)
    for kind in ScreeningKind:
        rule = rules.rule(kind)
        reasons: list[str] = []
        if resident["status"] != ResidentStatus.RESIDENT.value:
            reasons.append(f"住民でない ({resident['status']}{_since(resident['ceased_on'])})")
        for r in rule.age_sex_reasons(sex, age):
            if r is ErrorReason.NOT_ELIGIBLE_SEX:
                reasons.append(f"性別 ({SEX_LABEL[rule.sex.value] if rule.sex else ''}のみ)")
            else:
                upper = f"{rule.max_age}歳以下" if rule.max_age is not None else ""
                reasons.append(f"年齢 (年度末 {age}歳; {rule.min_age}歳以上{upper})")
        years = attended.get(kind, {})
        note = ""
        if year in years:
            reasons.append(f"今年度受診済み{_origin(years[year])}")
        elif not rule.interval_met(year, years):
            last = max(y for y in years if y < year)
            why = f"{last}年度に受診{_origin(years[last])} ({rule.interval_years}年に1回)"
            methods = [
                method
                for method in rule.method_overrides
                if not rule.age_sex_reasons(sex, age, method) and rule.interval_met(year, years, method)
            ]
            if methods and not reasons:
                note = f"{'・'.join(methods)} のみ ({why})"  # 胃部X線 may be taken yearly
            else:
                reasons.append(why)
        out.append(Eligibility(kind, not reasons, "; ".join(reasons) or note))
    return out


def _since(day: date | None) -> str:
    return f", {day.isoformat()}" if day is not None else ""


def _origin(where: str) -> str:
    return f" (転入前 {where})" if where else ""


def person_view(conn: Connection, tenant: str, atena_no: str, year: int, rules: EligibilityRules) -> PersonView:
    """Everything the counter shows of one resident of ``tenant`` (a :class:`CommandError` if there is none)."""
    r = residents
    found = rows(conn, sa.select(r).where(r.c.tenant == tenant, r.c.atena_no == atena_no))
    if not found:
        raise CommandError(f"no resident {atena_no} in {tenant}")
    resident = {k: v for k, v in found[0].items() if k not in ("my_number_enc", "my_number_hash")}
    le, lv, lh = ledger_entries, ledger_versions, ledger_history
    mine = (le.c.tenant == tenant) & (le.c.atena_no == atena_no)
    ledger = rows(conn, sa.select(le).where(mine).order_by(le.c.fiscal_year.desc(), le.c.kind))
    versions = rows(
        conn,
        sa.select(lv)
        .where(lv.c.tenant == tenant, lv.c.atena_no == atena_no)
        .order_by(lv.c.fiscal_year.desc(), lv.c.kind, lv.c.version),
    )
    by_entry: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for v in versions:
        by_entry.setdefault((v["kind"], v["fiscal_year"]), []).append(v)
    standing = {(e["kind"], e["fiscal_year"]) for e in ledger}
    for e in ledger:
        e["versions"] = by_entry.get((e["kind"], e["fiscal_year"]), [])
    # an entry withdrawn since stands no more, but its versions are part of the record
    withdrawn: list[dict[str, Any]] = [
        {"kind": k, "fiscal_year": fy, "versions": vs}
        for (k, fy), vs in sorted(by_entry.items(), key=lambda item: (-item[0][1], item[0][0]))
        if (k, fy) not in standing
    ]
    history = rows(
        conn,
        sa.select(lh)
        .where(lh.c.tenant == tenant, lh.c.atena_no == atena_no)
        .order_by(lh.c.fiscal_year.desc(), lh.c.record_id),
    )
    se = screening_errors
    errors = rows(
        conn,
        sa.select(se)
        .where(se.c.tenant == tenant, se.c.atena_no == atena_no, se.c.status == ErrorStatus.OPEN.value)
        .order_by(se.c.detected_at),
    )
    inv, nm = invitations, notice_mailings
    mailed = sa.and_(nm.c.tenant == inv.c.tenant, nm.c.atena_no == inv.c.atena_no, nm.c.kind == inv.c.kind,
                     nm.c.fiscal_year == inv.c.fiscal_year, nm.c.invitation_type == inv.c.invitation_type)  # fmt: skip
    sent = rows(
        conn,
        sa.select(inv, nm.c.mailed_at, nm.c.sent_to)
        .select_from(inv.outerjoin(nm, mailed))
        .where(inv.c.tenant == tenant, inv.c.atena_no == atena_no)
        .order_by(inv.c.fiscal_year.desc(), inv.c.kind, inv.c.invitation_type),
    )
    nd = notice_decisions
    requests = rows(
        conn,
        sa.select(nd).where(nd.c.tenant == tenant, nd.c.atena_no == atena_no).order_by(nd.c.requested_at.desc()),
    )
    attended: dict[ScreeningKind, dict[int, str]] = {}
    for h in history:
        if h["kind"] is not None and h["fiscal_year"] is not None:
            attended.setdefault(ScreeningKind(h["kind"]), {})[h["fiscal_year"]] = h["from_tenant"]
    for e in ledger:  # this city's own screening wins over a history record of the same year
        attended.setdefault(ScreeningKind(e["kind"]), {})[e["fiscal_year"]] = e.get("history_from") or ""
    return PersonView(
        fiscal_year=year,
        resident=resident,
        eligibility=eligibility(rules, resident, year, attended),
        ledger=ledger + withdrawn,
        history=history,
        errors=errors,
        invitations=sent,
        requests=requests,
    )


def _kind(value: str | None) -> str:
    return _pad(KIND_LABEL[ScreeningKind(value)] if value else "-", 14)


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (a full-width character takes two)."""
    used = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(1, width - used)


def render(view: PersonView) -> str:
    p, year = view.resident, view.fiscal_year
    lines = [
        f"宛名番号 {p['atena_no']}  {p['name']} ({p['name_kana']})  {SEX_LABEL.get(p['sex'], p['sex'])}  "
        f"{p['birth_date'].isoformat()} ({year}年度末 {age_at_fiscal_year_end(p['birth_date'], year)}歳)",
        "  住所 " + (f"〒{p['postcode']} " if p.get("postcode") else "") + p["address"],
        f"  {p['status']}"
        + (f" {p['resident_since'].isoformat()} から" if p["resident_since"] else "")
        + (f"  転入前 {p['previous_municipality']}" if p["previous_municipality"] else "")
        + _since(p["ceased_on"]),
    ]
    if p["support_measure"]:
        lines.append("  ** 支援措置対象: 住所や居所を推測させることを伝えない、書面を登録住所へ送らない **")
    lines += ["", f"{year}年度の対象:"]
    for e in view.eligibility:
        verdict = ("対象" + (f": {e.reason}" if e.reason else "")) if e.eligible else f"対象外: {e.reason}"
        lines.append(f"  {_pad(KIND_LABEL[e.kind], 14)}{verdict}")
    lines += ["", "台帳:"] + ([] if view.ledger else ["  (なし)"])
    for entry in view.ledger:
        if "version" in entry:
            follow = f", 精検 {entry['followup_judgement']}" if entry["followup_judgement"] else ""
            lines.append(
                f"  {entry['fiscal_year']} {_kind(entry['kind'])} v{entry['version']} "
                f"{entry['exam_date'].isoformat()} "
                f"{entry['institution_code']} {entry['institution_name']} {entry['setting']}"
                f"{' 要精検' if entry['follow_up_required'] else ''}{follow}"
                + (f" (転入前 {entry['history_from']})" if entry["history_from"] else "")
            )
        else:
            lines.append(f"  {entry['fiscal_year']} {_kind(entry['kind'])} 取消")
        for v in entry["versions"]:
            mark = " 取消" if v["withdrawn"] else ""
            follow = f" 精検 {v['followup_judgement']}" if v["followup_judgement"] else ""
            by = f" [{v['decided_by']}: {v['decision_reason']}]" if v.get("decided_by") else ""
            lines.append(
                f"      v{v['version']} {v['recorded_at']:%Y-%m-%d %H:%M} 受付 {v['reception_no']} "
                f"{v['exam_date'].isoformat()} {v['institution_code']}{follow}{mark}{by}"
            )
    lines += _section(
        "転入前の受診履歴:",
        view.history,
        lambda h: (
            f"  {h['fiscal_year'] or '-'} {_kind(h['kind'])} from {h['from_tenant']} (記録 {h['record_id']}, "
            f"{h['received_at']:%Y-%m-%d} 受信)"
        ),
    )
    lines += _section(
        "未処理のエラー:",
        view.errors,
        lambda e: (
            f"  {e['reception_no']} {_kind(e['kind'])}{e['stage']} {e['reasons']} ({e['detected_at']:%Y-%m-%d} 検出)"
        ),
    )
    lines += _section(
        "勧奨・通知:",
        view.invitations,
        lambda i: (
            f"  {i['fiscal_year']} {_kind(i['kind'])} {i['invitation_type']} ({i['trigger']}, "
            f"{i['issued_at']:%Y-%m-%d}) "
            + (f"郵送 {i['mailed_at']:%Y-%m-%d} ({i['sent_to']})" if i["mailed_at"] else "未郵送")
        ),
    )
    lines += _section(
        "繰越受診通知の申出:",
        view.requests,
        lambda r: (
            f"  {r['fiscal_year']} {_kind(r['kind'])} {r['requested_at']:%Y-%m-%d} {r['channel']} "
            f"受付 {r['staff_id']}: " + ("発行" if r["issued"] else f"発行しない ({r['refusals']})")
        ),
    )
    return "\n".join(lines)


def _section(title: str, rows: list[dict[str, Any]], line: Callable[[dict[str, Any]], str]) -> list[str]:
    """A titled block of the view: one line per row, or (なし)."""
    return ["", title, *([line(r) for r in rows] or ["  (なし)"])]


def find(
    conn: Connection, tenant: str, *, name: str | None, kana: str | None, birth: date | None
) -> list[dict[str, Any]]:
    """Residents of ``tenant`` whose name or kana contains the text given, born on ``birth`` (when given)."""
    r = residents
    query = sa.select(r.c.atena_no, r.c.name, r.c.name_kana, r.c.sex, r.c.birth_date, r.c.status).where(
        r.c.tenant == tenant
    )
    if name:
        query = query.where(r.c.name.contains(name, autoescape=True))
    if kana:
        query = query.where(r.c.name_kana.contains(kana, autoescape=True))
    if birth is not None:
        query = query.where(r.c.birth_date == birth)
    return rows(conn, query.order_by(r.c.name_kana, r.c.atena_no).limit(FIND_LIMIT + 1))


def _searched(args: argparse.Namespace) -> str:
    """What a search looked for, as the operation log keeps it: which fields, never their values but the date."""
    parts = [f for f in ("name", "kana") if getattr(args, f)]
    if args.birth:
        parts.append(f"birth={args.birth.isoformat()}")
    return "person find " + " ".join(parts)


def cmd_person(settings: Settings, args: argparse.Namespace) -> int:
    from hub.review import staff_operation  # hub.review imports hub.office

    if args.action == "export":
        from hub.audit import cmd_person_export

        return cmd_person_export(settings, args)
    with office(settings) as o:
        if args.action == "find":
            if not (args.name or args.kana or args.birth):
                raise CommandError("person find needs --name, --kana or --birth")
            with staff_operation(o, "health", StaffOperationType.LIST, _searched(args)), o.engine.connect() as conn:
                found = find(conn, settings.tenant, name=args.name, kana=args.kana, birth=args.birth)
            for p in found[:FIND_LIMIT]:
                print(
                    f"{p['atena_no']:<14}{p['name']} ({p['name_kana']})  {SEX_LABEL.get(p['sex'], p['sex'])}  "
                    f"{p['birth_date'].isoformat()}  {p['status']}"
                )
            more = " (more: narrow the search)" if len(found) > FIND_LIMIT else ""
            print(f"({min(len(found), FIND_LIMIT)} shown){more}")
            return 0
        year = args.year if args.year is not None else fiscal_year(date.today())
        rules = load_rules()
        with staff_operation(o, "health", StaffOperationType.SHOW, f"person {args.atena_no}"):
            with o.engine.connect() as conn:
                view = person_view(conn, settings.tenant, args.atena_no, year, rules)
            print(render(view))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from hub.audit import add_person_export  # hub.audit reads through this module's rows

    person = sub.add_parser("person", help="窓口: one resident's record, eligibility and history (health role)")
    person_sub = person.add_subparsers(dest="action", required=True)
    show = person_sub.add_parser("show", help="one resident: eligibility this year, 台帳 with versions, history")
    show.add_argument("atena_no", help="宛名番号")
    show.add_argument("--year", type=int, default=None, help="fiscal year (default: the current one)")
    found = person_sub.add_parser("find", help="residents by name or kana (contains) and birth date")
    found.add_argument("--name", default=None)
    found.add_argument("--kana", default=None)
    found.add_argument("--birth", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    add_person_export(person_sub)
    person.set_defaults(func=cmd_person)
