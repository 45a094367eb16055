"""Staff-facing commands: accounts, login/logout, エラー処理 (errors list/show; resolve, accept and correct are
:mod:`hub.corrections`) and statistics.

Every command here runs under a personal login (`kenshin-hub login`), checks the role it needs, and records the
operation (staff id, time, operation, target) to SQL and to the staff-operations topic: through
:func:`hub.review.staff_operation`, *after* the work, with its real outcome (SUCCESS, or FAILED with the error); an
attempt with no, an unknown or an expired session, or without the role, is recorded DENIED and does nothing.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Producer
from sqlalchemy.engine import Engine

from hub.errors import CommandError
from hub.kafka import producer_config
from hub.settings import Settings
from hub.staff import StaffError, StaffService
from processors.rules.eligibility import load_rules
from processors.rules.matching import WAITING_REASONS
from schemas.models import ErrorStatus, Event, StaffOperation, StaffOperationType
from schemas.record import now_utc
from schemas.serde import TopicSerde, registry_client
from sinks.db import make_engine, upgrade
from sinks.statistics import query_statistics, refresh_statistics
from sinks.tables import screening_errors, staff_operations
from topics.catalog import STAFF_OPERATIONS, Topic


class Office:
    """The database, the producer and the staff service, wired once for a command."""

    def __init__(self, settings: Settings) -> None:
        settings = settings.as_identity("staff")  # on a secured cluster, the staff tools' own principal
        self.settings = settings
        self.engine: Engine = make_engine(settings.database_url.reveal())
        upgrade(self.engine)
        self.registry = registry_client(settings.schema_registry_config())
        self.producer = Producer(producer_config(settings))
        self.staff = StaffService(self.engine, settings.tenant, self._record)

    def close(self) -> None:
        self.producer.flush(30)
        self.registry.close()
        self.engine.dispose()

    def _record(self, op: StaffOperation) -> None:
        """操作記録: SQL first (the audit trail must not depend on the broker), then the topic."""
        with self.engine.begin() as conn:
            conn.execute(
                staff_operations.insert().values(
                    event_id=str(op.event_id),
                    tenant=op.tenant,
                    staff_id=op.staff_id,
                    operation=op.operation.value,
                    target=op.target,
                    outcome=op.outcome.value,
                    detail=op.detail,
                    performed_at=op.performed_at,
                )
            )
        self.publish(
            [(STAFF_OPERATIONS, op)], "the staff operation could not be recorded on the staff-operations topic"
        )

    def publish(self, outputs: Iterable[tuple[Topic, Event]], failure: str) -> None:
        """Publish staff commands and records, and wait until the broker has them all; a :class:`CommandError`
        saying ``failure`` when it has not (nothing the command decided counts then: it is to be sent again).
        """
        for topic, event in outputs:
            serde: TopicSerde[Event] = TopicSerde(topic, self.registry)
            self.producer.produce(topic.name, key=serde.key(event), value=serde.value(event))
        if self.producer.flush(30):
            raise CommandError(failure)

    # -- sessions -------------------------------------------------------------------------------------------------

    def session_file(self) -> Path:
        return self.settings.state_dir / "session"

    def token(self) -> str:
        """The session token `login` stored; "" without a session file (an attempt is then recorded DENIED)."""
        try:
            return self.session_file().read_text().strip()
        except OSError:
            return ""


@contextmanager
def office(settings: Settings) -> Iterator[Office]:
    o = Office(settings)
    try:
        yield o
    finally:
        o.close()


def _password(args: argparse.Namespace, prompt: str) -> str:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(prompt)


# --- accounts and sessions ------------------------------------------------------------------------------------


def cmd_staff(settings: Settings, args: argparse.Namespace) -> int:
    """`staff add`: an admin creates a personal account (the first admin comes from `staff init`)."""
    with office(settings) as o:
        try:
            by = None
            if o.staff.has_accounts():  # no, an unknown or an expired session: recorded DENIED, no password asked
                by = o.staff.session(o.token(), StaffOperationType.ACCOUNT_CREATED, args.staff_id)
            password = _password(args, f"password for {args.staff_id}: ")
            # checks the admin role, records the real outcome (an empty database: DENIED, it needs `staff init`)
            o.staff.create_account(args.staff_id, args.name, set(args.role), password, by=by)
        except StaffError as exc:
            raise CommandError(str(exc)) from None
    print(f"account {args.staff_id} created with roles {', '.join(sorted(args.role))}")
    return 0


def cmd_login(settings: Settings, args: argparse.Namespace) -> int:
    staff_id = args.staff_id or input("staff id: ")
    password = _password(args, "password: ")
    with office(settings) as o:
        try:
            session = o.staff.login(staff_id, password)
        except StaffError as exc:
            raise CommandError(str(exc)) from None
        path = o.session_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(session.token)
    print(f"logged in as {session.staff_id} until {session.expires_at:%H:%M} UTC")
    return 0


def cmd_logout(settings: Settings, args: argparse.Namespace) -> int:
    with office(settings) as o:
        path = o.session_file()
        try:
            token = path.read_text().strip()
        except OSError:
            print("not logged in")
            return 0
        try:
            staff_id = o.staff.logout(token)
        except StaffError:
            staff_id = None
        path.unlink(missing_ok=True)
    print(f"logged out {staff_id}" if staff_id else "the session had already ended")
    return 0


# --- エラー処理 -----------------------------------------------------------------------------------------------


def _age_days(detected: datetime) -> int:
    return (now_utc() - detected).days


WAITING_LABEL = "住基/1次待ち"


def _status_label(status: str, reasons: str) -> str:
    """The status as staff read it: an OPEN error whose every reason only waits for data is 住基/1次待ち."""
    codes = {r for r in reasons.split(",") if r}
    if status == ErrorStatus.OPEN.value and codes and codes <= {r.value for r in WAITING_REASONS}:
        return WAITING_LABEL
    return status


def cmd_errors(settings: Settings, args: argparse.Namespace) -> int:
    from hub.review import staff_operation  # hub.review imports this module

    with office(settings) as o:
        if args.action == "list":
            with staff_operation(o, "health", StaffOperationType.LIST, f"errors status={args.status}"):
                query = sa.select(screening_errors).where(screening_errors.c.tenant == settings.tenant)
                if args.status != "ALL":
                    query = query.where(screening_errors.c.status == args.status)
                query = query.order_by(screening_errors.c.detected_at).limit(args.limit)
                with o.engine.connect() as conn:
                    rows = conn.execute(query).all()
                print(f"{'受付番号':<16}{'宛名番号':<12}{'kind':<11}{'stage':<10}{'status':<9}{'age(d)':>7}  reasons")
                for r in rows:
                    print(
                        f"{r.reception_no:<20}{r.atena_no:<16}{r.kind:<11}{r.stage:<10}"
                        f"{_status_label(r.status, r.reasons):<9}"
                        f"{_age_days(r.detected_at):>7}  {r.reasons}"
                    )
                print(f"({len(rows)} shown)")
            return 0
        target = args.reception_no
        if args.action == "show":
            with staff_operation(o, "health", StaffOperationType.SHOW, target):
                row = _error_row(o, target)
                for key, value in row._mapping.items():
                    print(f"{key:>18}: {value}")
                print(f"{'age (days)':>18}: {_age_days(row.detected_at)}")
            return 0
    raise CommandError(f"unknown action {args.action}")  # argparse allows only list and show here


def _error_row(o: Office, reception_no: str) -> sa.Row[tuple[object, ...]]:
    with o.engine.connect() as conn:
        row = conn.execute(
            sa.select(screening_errors).where(
                screening_errors.c.tenant == o.settings.tenant, screening_errors.c.reception_no == reception_no
            )
        ).first()
    if row is None:
        raise CommandError(f"no screening error with 受付番号 {reception_no}")
    return row


def print_statistics(engine: Engine, tenant: str, year: int) -> None:
    """Refresh the year's statistics table and print it, one line per kind (sexes and age bands summed)."""
    rules = load_rules()
    with engine.begin() as conn:
        refresh_statistics(conn, tenant, year, rules)
        rows = query_statistics(conn, tenant, year)
    totals: dict[str, list[int]] = {}
    for r in rows:
        t = totals.setdefault(r.kind, [0, 0, 0, 0, 0])
        for i, v in enumerate((r.targets, r.attendees, r.follow_up_required, r.follow_up_attended, r.cancer_found)):
            t[i] += v
    print(f"statistics {tenant} fiscal year {year} (table `statistics`: per kind × sex × 5-year age band)")
    print(f"  {'kind':<11}{'対象者':>8}{'受診者':>8}{'受診率':>8}{'要精検':>8}{'精検受診':>9}{'がん発見':>9}")
    for kind, (targets, attendees, required, attended, cancer) in totals.items():
        rate = f"{100 * attendees / targets:.1f}%" if targets else "-"
        print(f"  {kind:<11}{targets:>8}{attendees:>8}{rate:>8}{required:>8}{attended:>9}{cancer:>9}")
    print("  受診者: this city's screenings only (転入前の受診履歴 from a previous municipality are not counted here,")
    print("  though they count for eligibility and the notices)")


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from hub.review import staff_operation  # hub.review imports this module

    with office(settings) as o, staff_operation(o, "health", StaffOperationType.OTHER, f"report stats {args.year}"):
        print_statistics(o.engine, settings.tenant, args.year)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    staff = sub.add_parser("staff", help="staff accounts (the first account is an admin; then an admin login)")
    staff_sub = staff.add_subparsers(dest="action", required=True)
    add = staff_sub.add_parser("add", help="create a personal account")
    add.add_argument("staff_id")
    add.add_argument("--name", required=True)
    add.add_argument("--role", action="append", required=True, choices=["admin", "health", "reviewer"])
    add.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
    staff.set_defaults(func=cmd_staff)

    login = sub.add_parser("login", help="log in (a 30-minute session)")
    login.add_argument("staff_id", nargs="?")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.set_defaults(func=cmd_login)
    logout = sub.add_parser("logout", help="end the session")
    logout.set_defaults(func=cmd_logout)

    errors = sub.add_parser("errors", help="エラー処理: screening errors (needs the health role)")
    errors_sub = errors.add_subparsers(dest="action", required=True)
    lst = errors_sub.add_parser("list", help="errors with their age, oldest first")
    lst.add_argument("--status", choices=["OPEN", "RESOLVED", "ALL"], default="OPEN")
    lst.add_argument("--limit", type=int, default=100)
    show = errors_sub.add_parser("show", help="one error in full")
    show.add_argument("reception_no")
    errors.set_defaults(func=cmd_errors)
    from hub import corrections  # hub.corrections imports this module

    corrections.add_error_parsers(errors_sub)  # resolve, accept, correct: decisions for the processors

    report = sub.add_parser("report", help="reports (needs the health role)")
    report_sub = report.add_subparsers(dest="action", required=True)
    stats = report_sub.add_parser("stats", help="統計: targets, attendees, 要精検, 精検受診, がん発見 per kind")
    stats.add_argument("--year", type=int, required=True, help="fiscal year")
    report.set_defaults(func=cmd_report)
    from hub import reports  # hub.reports imports this module

    reports.add_parsers(report_sub)
