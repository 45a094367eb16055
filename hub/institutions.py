"""実施医療機関 as managed reference data (I.2 ② (4)): register and modify, every change recorded (health role).

The registry is ``processors/rules/institutions.toml`` (in force from the start) and the changes staff record
since: each one version of an institution's registration (its kinds, 集団 or not, whether it is registered for 精検)
in force for exams from ``--from`` (to ``--to``). A change goes to the processors as an ``InstitutionChange`` on
``hub.institutions.v1``; they keep every version in their store and check each result against the registration in
force on its exam date. The sinks keep the versions too (``institution_versions``), which is what these commands
read.

* ``institution list [--on DATE]``: the registrations in force on a date (default today);
* ``institution show CODE``: every version of one institution, with who recorded it and why;
* ``institution register CODE --name N --kinds K … [--group] [--follow-up] --from DATE [--to DATE] --reason R``;
* ``institution modify CODE --from DATE [--name N] [--kinds K …] [--group yes|no] [--follow-up yes|no] [--to DATE]
  --reason R``: the version in force on ``--from`` with the given fields changed, from that date.

A result examined before a change reached the processors was checked against the registry as they knew it then: one
refused as UNKNOWN_INSTITUTION stays an error for staff (エラー処理); it is not matched again by itself.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import replace
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.counter import KIND_LABEL, await_rows
from hub.errors import CommandError
from hub.office import Office, office
from hub.settings import Settings
from processors.rules.institutions import Institution, InstitutionRegistry, load_institutions
from schemas.models import InstitutionChange, ScreeningKind, StaffOperationType
from schemas.record import ModelError, now_utc
from sinks.tables import institution_versions
from topics.catalog import INSTITUTION_CHANGES

SOURCE = "kenshin-hub.staff"
WAIT_S = 30.0


def registry(conn: Connection, tenant: str) -> tuple[InstitutionRegistry, dict[str, list[dict[str, object]]]]:
    """The registry as the sinks hold it for ``tenant`` (institutions.toml and the recorded changes, in the order
    recorded), and each code's recorded rows (who, why, when).
    """
    iv = institution_versions
    found = conn.execute(sa.select(iv).where(iv.c.tenant == tenant).order_by(iv.c.recorded_at, iv.c.event_id)).all()
    by_code: dict[str, list[dict[str, object]]] = {}
    for r in found:
        by_code.setdefault(r.code, []).append(dict(r._mapping))
    return load_institutions().with_stored(found), by_code


def describe(inst: Institution) -> str:
    kinds = "・".join(KIND_LABEL[k] for k in ScreeningKind if k in inst.kinds)
    flags = ("個別・集団" if inst.group else "個別") + (", 精検" if inst.follow_up else "")
    until = f"〜{inst.valid_to.isoformat()}" if inst.valid_to else "〜"
    since = "" if inst.valid_from == date.min else inst.valid_from.isoformat()
    return f"{inst.code}  {inst.name}  {kinds}  ({flags})  {since}{until}"


def _change(settings: Settings, code: str, inst: Institution, staff_id: str, reason: str) -> InstitutionChange:
    return InstitutionChange(
        event_id=uuid.uuid4(), occurred_at=now_utc(), tenant=settings.tenant, source_system=SOURCE, code=code,
        name=inst.name, kinds=tuple(k for k in ScreeningKind if k in inst.kinds), group=inst.group,
        follow_up=inst.follow_up, valid_from=inst.valid_from, valid_to=inst.valid_to, staff_id=staff_id, reason=reason,
    )  # fmt: skip


def send(o: Office, change: InstitutionChange) -> None:
    o.publish([(INSTITUTION_CHANGES, change)], "the institution change was not delivered to hub.institutions.v1")


def await_recorded(engine: Engine, change: InstitutionChange, wait_s: float) -> bool:
    iv = institution_versions
    query = sa.select(iv.c.event_id).where(iv.c.tenant == change.tenant, iv.c.event_id == str(change.event_id))
    return bool(await_rows(engine, query, wait_s, poll_s=0.25))


def _flag(text: str | None, current: bool) -> bool:
    if text is None:
        return current
    if text not in ("yes", "no"):
        raise CommandError("--group and --follow-up take yes or no")
    return text == "yes"


def cmd_institution(settings: Settings, args: argparse.Namespace) -> int:
    from hub.review import staff_operation  # hub.review imports hub.office

    tenant = settings.tenant
    with office(settings) as o:
        if args.action in ("list", "show"):
            target = f"institutions on {args.on}" if args.action == "list" else f"institution {args.code}"
            with staff_operation(o, "health", StaffOperationType.LIST, target), o.engine.connect() as conn:
                reg, recorded = registry(conn, tenant)
            if args.action == "list":
                day = date.fromisoformat(args.on) if args.on else date.today()
                shown = reg.in_force(tenant, day)
                for inst in shown:
                    print(describe(inst))
                print(f"({len(shown)} registered on {day.isoformat()})")
                return 0
            seed = reg.by_code.get(args.code)
            if seed is None and args.code not in recorded:
                raise CommandError(f"no institution {args.code}")
            if seed is not None:
                print(f"{describe(seed)}  [institutions.toml {reg.version}]")
            for row, version in zip(recorded.get(args.code, []), reg.changes.get((tenant, args.code), ()), strict=True):
                print(f"{describe(version)}  [recorded {row['recorded_at']:%Y-%m-%d %H:%M} by {row['staff_id']}: "
                      f"{row['reason']}]")  # fmt: skip
            return 0
        valid_from = date.fromisoformat(args.valid_from)
        valid_to = date.fromisoformat(args.valid_to) if args.valid_to else None
        target = f"institution {args.code} {args.action} from {valid_from.isoformat()}"
        with staff_operation(o, "health", StaffOperationType.INSTITUTION_CHANGE, target) as session:
            with o.engine.connect() as conn:
                reg, _ = registry(conn, tenant)
            current = reg.on(tenant, args.code, valid_from)
            if args.action == "register":
                if current is not None:
                    raise CommandError(f"{args.code} is registered on {valid_from}: use `institution modify`")
                if not args.name or not args.kinds:
                    raise CommandError("register needs --name and --kinds")
                kinds = frozenset(ScreeningKind(k) for k in args.kinds)
                group, follow_up = _flag(args.group, False), _flag(args.follow_up, False)
                inst = Institution(args.code, args.name, kinds, group, follow_up, valid_from, valid_to)
            else:
                if current is None:
                    raise CommandError(f"{args.code} is not registered on {valid_from}: use `institution register`")
                inst = replace(
                    current, name=args.name or current.name, valid_from=valid_from, valid_to=valid_to,
                    kinds=frozenset(ScreeningKind(k) for k in args.kinds) if args.kinds else current.kinds,
                    group=_flag(args.group, current.group), follow_up=_flag(args.follow_up, current.follow_up),
                )  # fmt: skip
            try:
                change = _change(settings, args.code, inst, session.staff_id, args.reason)
            except ModelError as exc:
                raise CommandError(str(exc)) from None
            send(o, change)
        recorded_in_time = await_recorded(o.engine, change, args.wait)
    done = {"register": "registered", "modify": "modified"}[args.action]
    print(f"{describe(inst)}: {done} (recorded as INSTITUTION_CHANGE, event {change.event_id})")
    if not recorded_in_time:
        print(f"  not in the hub's tables yet after {args.wait:.0f}s: the sinks record it when they reach it")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inst = sub.add_parser("institution", help="実施医療機関: list, show, register, modify (health role, recorded)")
    inst_sub = inst.add_subparsers(dest="action", required=True)
    lst = inst_sub.add_parser("list", help="the institutions registered on a date")
    lst.add_argument("--on", default=None, help="YYYY-MM-DD (default: today)")
    show = inst_sub.add_parser("show", help="every version of one institution, with who recorded it and why")
    show.add_argument("code", help="医療機関コード")
    kinds = [k.value for k in ScreeningKind]
    for name, doc in (("register", "register an institution from a date"),
                      ("modify", "change an institution's registration from a date")):  # fmt: skip
        p = inst_sub.add_parser(name, help=doc)
        p.add_argument("code", help="医療機関コード (10 digits)")
        p.add_argument("--name", default=None)
        p.add_argument("--kinds", nargs="+", choices=kinds, default=None)
        p.add_argument("--group", default=None, choices=["yes", "no"], help="also 集団 screenings")
        p.add_argument("--follow-up", default=None, choices=["yes", "no"], help="registered for 精密検査")
        p.add_argument("--from", dest="valid_from", required=True, help="in force for exams from YYYY-MM-DD")
        p.add_argument("--to", dest="valid_to", default=None, help="last exam date YYYY-MM-DD (deregistration)")
        p.add_argument("--reason", required=True, help="why (recorded with the change)")
        p.add_argument("--wait", type=float, default=WAIT_S, help="seconds to wait for the hub to record it")
    inst.set_defaults(func=cmd_institution)
