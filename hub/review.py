"""Staff commands: review of held provisions, retention, the offline linkage medium, and account administration.

`review list|show|approve|refuse` act on the provisions the 自動応答不可フラグ held for this city (the
``reviewer`` role); every call is recorded (staff id, time, operation, target: the request id) like any other
staff operation. `retention run [--dry-run]` (``admin``) deletes, for this city's tenant and in the city's stores
(the hub's database, the processors'), what is past ``retention.toml``'s periods (:mod:`hub.retention`) and records
the counts; the 中間サーバー's and the network's stores are their operator's (`chukan retention run`). `connector
export-offline|import-offline` (``admin``) write and load the offline linkage medium.

Each of these runs inside :func:`staff_operation`, which records the operation *after* it, with its real outcome
(SUCCESS, or FAILED with the error); an attempt with no, an unknown or an expired session, or without the role, is
recorded DENIED and does nothing. `retention run` records the same way, with its counts in the SUCCESS record.

`staff init` creates the first admin of an empty database (recorded as INIT; refused once any account exists);
`staff list|unlock|disable|enable|role|set-password` are the admin's (recorded; `set-password` ends the account's
sessions); `staff password` changes one's own password with the old one (no admin needed).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import KafkaException, Producer

from connectors.chukan import (
    DECISION_ACCEPTED,
    REVIEWER_ACTIVE,
    REVIEWER_DISABLED,
    ChukanServer,
    TenantStore,
)
from connectors.connector import export_offline, read_offline
from connectors.keys import public_key_text, reviewer_key, signed_review
from connectors.runner import chukan_engine, chukan_server, network_engine
from connectors.service import Output, sanitized_request
from hub.errors import CommandError
from hub.kafka import producer_config
from hub.office import Office, office
from hub.retention import RUNS, KafkaOffsets, RetentionError, RetentionStores, record_run, run_retention
from hub.settings import Settings
from hub.staff import ROLES, Session, StaffError
from hub.validation import STAFF_ID_MAX, is_valid_staff_id, is_valid_tenant_code
from processors.runner import processors_engine
from schemas.models import (
    HoldStatus,
    OperationOutcome,
    ProvisionRequest,
    ReviewDecision,
    StaffOperationType,
)
from schemas.record import now_utc
from topics import catalog

STAFF_SOURCE = "kenshin-hub.staff"


def produce(o: Office, outputs: Sequence[Output]) -> None:
    o.publish(outputs, "the answer could not be sent to the broker; run the same command again to re-send it")


@contextmanager
def staff_operation(o: Office, role: str, operation: StaffOperationType, target: str | None = None,
                    detail: Callable[[], str | None] | None = None) -> Iterator[Session]:  # fmt: skip
    """The logged-in staff member, if they hold ``role``, for the work in the ``with`` block.

    Recorded after the block with its real outcome: SUCCESS, or FAILED with the error. No session, an unknown or an
    expired one, a locked or disabled account, or a missing role: recorded DENIED, and a :class:`CommandError`.
    """
    try:
        with o.staff.operation(o.token(), role, operation, target, detail) as session:
            yield session
    except StaffError as exc:
        raise CommandError(str(exc)) from None


def cmd_review(settings: Settings, args: argparse.Namespace) -> int:
    engine = chukan_engine(settings)
    server = chukan_server(settings)
    try:
        with office(settings) as o:
            if args.action == "list":
                with staff_operation(o, "reviewer", StaffOperationType.LIST, "held provisions") as session:
                    check_enrolled(engine, settings, session.staff_id)
                    with engine.connect() as conn:
                        status = None if args.all else HoldStatus.HELD.value
                        rows = server.store(conn, settings.tenant).held_list(status)
                    now = now_utc()
                    print(f"{'request id':<38}{'照会者':<8}{'status':<10}{'held (h)':>9}  reasons / flagged items")
                    for r in rows:
                        hours = (now - r.held_at) / timedelta(hours=1)
                        print(f"{r.request_id:<38}{json.loads(r.request)['requester']:<9}{r.status:<10}"
                              f"{hours:>9.1f}  {r.hold_reasons} {r.flagged_items}")  # fmt: skip
                    print(f"({len(rows)} shown)")
                return 0
            if args.action == "enrol":
                with staff_operation(o, "reviewer", StaffOperationType.OTHER, "review enrol") as session:
                    _enrol(settings, session.staff_id)
                return 0
            target = args.request_id
            if args.action == "show":
                with staff_operation(o, "reviewer", StaffOperationType.SHOW, target) as session:
                    check_enrolled(engine, settings, session.staff_id)
                    _show(server, engine, settings.tenant, target)
                return 0
            approve = args.action == "approve"
            operation = StaffOperationType.APPROVE if approve else StaffOperationType.REFUSE
            with staff_operation(o, "reviewer", operation, target) as session:
                decision = send_decision(o, session.staff_id, target, approve, None if approve else args.reason)
                decided = await_decision(engine, decision)
        print(f"{target}: {'approved and sent' if approve else 'refused'} by the 中間サーバー "
              f"(decision {decided.event_id})")  # fmt: skip
        return 0
    finally:
        engine.dispose()


DECISION_WAIT_S = 60.0


def _enrol(settings: Settings, staff_id: str) -> None:
    key = reviewer_key(settings.state_dir, settings.tenant, staff_id, create=True)
    assert key is not None
    public = public_key_text(key.public_key())
    print(f"reviewer key of {staff_id} for {settings.tenant}: {public}")
    print("the 中間サーバー acts on your decisions once its operator has enrolled this key:")
    print(f"  kenshin-hub chukan reviewer add {settings.tenant} {staff_id} {public}")


def check_enrolled(engine: sa.Engine, settings: Settings, staff_id: str) -> None:
    """Held provisions are shown only to a reviewer the 中間サーバー enrolled for this tenant, with the key held here.

    The city's staff database alone is not enough: an admin of any database (an empty one, `staff init`) could make
    a reviewer for any KENSHIN_TENANT. The enrolment is the 中間サーバー operator's, on its own store.
    """
    key = reviewer_key(settings.state_dir, settings.tenant, staff_id)
    with engine.connect() as conn:
        enrolled = TenantStore(conn, settings.tenant).reviewer(staff_id)
    if key is None or enrolled is None or enrolled.status != REVIEWER_ACTIVE:
        raise CommandError(f"{staff_id} is not an enrolled reviewer of {settings.tenant} at the 中間サーバー: run "
                           "`kenshin-hub review enrol` and have its operator enrol the key")  # fmt: skip
    if enrolled.public_key != public_key_text(key.public_key()):
        raise CommandError(f"the reviewer key of {staff_id} here is not the one the 中間サーバー enrolled")


def send_decision(o: Office, staff_id: str, request_id: str, approve: bool, reason: str | None) -> ReviewDecision:
    """The reviewer's decision, signed with their key, on its way to the 中間サーバー (which alone acts on it)."""
    settings = o.settings
    key = reviewer_key(settings.state_dir, settings.tenant, staff_id)
    if key is None:
        raise CommandError(f"{staff_id} has no reviewer key here: run `kenshin-hub review enrol`, then have the "
                           "中間サーバー's operator enrol it")  # fmt: skip
    try:
        decision = signed_review(key, tenant=settings.tenant, source_system=STAFF_SOURCE,
                                 request_id=uuid.UUID(request_id), staff_id=staff_id, approve=approve, reason=reason,
                                 now=now_utc())  # fmt: skip
    except ValueError as exc:  # a malformed request id, or a ModelError (a refusal without a reason)
        raise CommandError(f"not a decision the 中間サーバー could take: {exc}") from None
    o.publish([(catalog.for_tenant(catalog.REVIEW_DECISIONS, settings.tenant), decision)],
              "the decision could not be sent to the broker; run the same command again")  # fmt: skip
    return decision


def await_decision(engine: sa.Engine, decision: ReviewDecision, timeout_s: float = DECISION_WAIT_S) -> sa.Row[Any]:
    """What the 中間サーバー did with ``decision`` (bounded): its row, ACCEPTED; REJECTED is a :class:`CommandError`
    with the 中間サーバー's reason, and no answer within ``timeout_s`` one that says the decision is still queued.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            row = TenantStore(conn, decision.tenant).review_decision(str(decision.event_id))
        if row is not None:
            if row.outcome != DECISION_ACCEPTED:
                raise CommandError(f"the 中間サーバー refused the decision: {row.reason}")
            return row
        if time.monotonic() >= deadline:
            raise CommandError(f"the decision {decision.event_id} was sent, but the 中間サーバー has not taken it "
                               f"within {timeout_s:.0f}s (is `run chukan` running?); `review show` tells when it is "
                               "decided")  # fmt: skip
        time.sleep(0.2)


def cmd_chukan_reviewer(settings: Settings, args: argparse.Namespace) -> int:
    """`chukan reviewer add|disable|list`: the 中間サーバー operator's own enrolment of the reviewers it acts for.

    It runs where the 中間サーバー's store is, on that store alone (the city's staff database has no say in it): a
    reviewer's public key, bound to one 団体コード and staff id. Disabling a reviewer makes the 中間サーバー reject
    every later decision of theirs; re-adding one with a new key replaces the old key.
    """
    engine = chukan_engine(settings)
    try:
        with engine.begin() as conn:
            if args.action == "list":
                rows = TenantStore(conn, args.tenant).reviewers()
                for r in rows:
                    print(f"{r.staff_id:<20}{r.status:<10}{r.public_key}  enrolled {r.enrolled_at:%Y-%m-%d %H:%M} UTC")
                print(f"({len(rows)} reviewers of {args.tenant})")
                return 0
            store = TenantStore(conn, args.tenant)
            if args.action == "add":
                try:
                    _check_reviewer_id(args.tenant, args.staff_id)
                    store.enrol_reviewer(args.staff_id, args.public_key, now_utc())
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
                done = "enrolled"
            elif not store.set_reviewer_status(args.staff_id, REVIEWER_DISABLED, now_utc()):
                raise CommandError(f"{args.staff_id} is not a reviewer of {args.tenant}")
            else:
                done = "disabled"
    finally:
        engine.dispose()
    print(f"reviewer {args.staff_id} of {args.tenant} {done}")
    return 0


def _check_reviewer_id(tenant: str, staff_id: str) -> None:
    if not is_valid_tenant_code(tenant):
        raise ValueError(f"{tenant} is not a 団体コード")
    if not is_valid_staff_id(staff_id):
        raise ValueError(f"a staff id is 1 to {STAFF_ID_MAX} ASCII letters, digits, '-' and '_'")


def _show(server: ChukanServer, engine: sa.Engine, tenant: str, request_id: str) -> None:
    with engine.connect() as conn:
        store = server.store(conn, tenant)
        held = store.held(request_id)
        if held is None:
            raise CommandError(f"no held provision {request_id}")
        request = ProvisionRequest.from_json(held.request)
        lines = server.lines(store, held.integrated_no, request)
    print(json.dumps(json.loads(sanitized_request(request)), ensure_ascii=False, indent=2))
    print(f"status: {held.status}  held at: {held.held_at:%Y-%m-%d %H:%M} UTC  reasons: {held.hold_reasons}  "
          f"flagged items: {held.flagged_items or '-'}")  # fmt: skip
    print("content that approval would send:")
    for line in lines:
        items = ", ".join(f"{i.item_code}={i.value if i.value is not None else i.status}" for i in line.items)
        print(f"  line {line.line_no} {line.status} {line.record_id or ''} {line.message or ''} {items}")


def _retention_stores(settings: Settings, o: Office) -> tuple[RetentionStores, list[sa.Engine]]:
    """The city's own stores (the sinks' is the office's database); the engines this command opened.

    The 中間サーバー's and the network's stores are not the city's to write: they delete their expired rows
    themselves, daily for every municipality they hold (:class:`hub.retention.TenantSchedules`), and on demand by
    their operator (`chukan retention run`).
    """
    processors = processors_engine(settings)
    return RetentionStores(sinks=o.engine, processors=processors), [processors]


def _failure(exc: BaseException) -> str:
    """A FAILED record's detail, as :func:`staff_operation` writes it: the hub's own message or the error type."""
    if isinstance(exc, StaffError | CommandError | RetentionError):
        return str(exc)[:500]
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {type(exc).__name__}"


def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    """`retention run [--dry-run]` (admin): retention for this city's tenant (KENSHIN_TENANT) in the city's stores.

    Authorized and recorded as :func:`staff_operation` does (DENIED without a valid admin session, and no store is
    opened; FAILED with the error), except that the SUCCESS record carries the counts per store and table in its
    detail; a dry run deletes and sends nothing.
    """
    dry_run = bool(args.dry_run)
    operation = StaffOperationType.RETENTION_PURGE
    target = "retention run --dry-run" if dry_run else "retention run"
    with office(settings) as o:
        try:
            session = o.staff.session(o.token(), operation, target)  # no valid session: recorded DENIED
        except StaffError as exc:
            raise CommandError(str(exc)) from None
        if "admin" not in session.roles:
            o.staff.record(session.staff_id, operation, OperationOutcome.DENIED, target, "needs role admin")
            raise CommandError("this needs the admin role")
        opened: list[sa.Engine] = []
        try:
            stores, opened = _retention_stores(settings, o)
            report = run_retention(stores, settings.tenant, dry_run=dry_run, kafka=KafkaOffsets(o.settings),
                                   producer=o.producer, now=now_utc())  # fmt: skip
            if not dry_run:
                record_run(o.engine, report, session.staff_id, RUNS["sinks"])  # the city's run, in the city's store
        except BaseException as exc:
            o.staff.record(session.staff_id, operation, OperationOutcome.FAILED, target, _failure(exc))
            if isinstance(exc, RetentionError | KafkaException | sa.exc.SQLAlchemyError):
                raise CommandError(f"retention stopped: {_failure(exc)} (the stores before it are done)") from None
            raise
        finally:
            for engine in opened:
                engine.dispose()
        o.staff.record(session.staff_id, operation, OperationOutcome.SUCCESS, target, report.detail())
    print("\n".join(report.lines()))
    print("the 中間サーバー and the network delete their own expired rows (daily; on demand: their operator's "
          "`kenshin-hub chukan retention run <団体コード>`)")  # fmt: skip
    return 0


def cmd_chukan_retention(settings: Settings, args: argparse.Namespace) -> int:
    """`chukan retention run <団体コード> [--dry-run]`: the shared platform operator's on-demand run over its own
    stores, the 中間サーバー's and the network simulator's, for one municipality (the daily run does every one).

    Connects as the operator's tooling (``admin``): the held provisions' tombstones, and the committed offsets of
    both services' groups. A real run is recorded in ``chukan_retention_runs`` (``run_by`` ``operator``).
    """
    if not is_valid_tenant_code(args.tenant):
        raise CommandError(f"{args.tenant} is not a 団体コード")
    opened = [chukan_engine(settings), network_engine(settings)]
    chukan, network = opened
    producer = Producer(producer_config(settings))
    try:
        report = run_retention(RetentionStores(chukan=chukan, network=network), args.tenant, dry_run=args.dry_run,
                               kafka=KafkaOffsets(settings), producer=producer, now=now_utc())  # fmt: skip
        if not args.dry_run:
            record_run(chukan, report, OPERATOR)
    except (RetentionError, KafkaException, sa.exc.SQLAlchemyError) as exc:
        raise CommandError(f"retention stopped: {_failure(exc)} (the stores before it are done)") from None
    finally:
        producer.flush(30)
        for engine in opened:
            engine.dispose()
    print("\n".join(report.lines()))
    return 0


OPERATOR = "operator"


def cmd_connector(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "import-offline":
        return _import_offline(settings, Path(args.file))
    out = Path(args.out)
    with office(settings) as o, staff_operation(o, "admin", StaffOperationType.OFFLINE_EXPORT, str(args.out)):
        if out.exists():
            raise CommandError(f"{out} exists: the offline medium is never overwritten")
        count, digest = export_offline(o.engine, settings.tenant, out)
    print(f"{count} 副本 written to {out} (sha256 {digest})")
    return 0


def _import_offline(settings: Settings, path: Path) -> int:
    """The 中間サーバー's side of the offline path: the medium's 副本 enter its intake topic, as if forwarded."""
    with office(settings) as o, staff_operation(o, "admin", StaffOperationType.OTHER, f"import-offline {path.name}"):
        try:
            registrations = read_offline(path)
        except (OSError, ValueError) as exc:
            raise CommandError(f"{path}: not an offline linkage medium ({exc})") from None
        if any(r.atena_no is not None or r.integrated_atena_no is None for r in registrations):
            raise CommandError(f"{path}: a 副本 carries a 宛名番号 or no 統合宛名番号; nothing imported")
        others = sorted({r.tenant for r in registrations} - {settings.tenant})
        if others:
            raise CommandError(f"{path}: 副本 of another municipality ({', '.join(others)}), not of "
                               f"{settings.tenant}; nothing imported")  # fmt: skip
        fukuhon = catalog.for_tenant(catalog.CHUKAN_FUKUHON, settings.tenant)
        produce(o, [(fukuhon, r) for r in registrations])
    print(f"{len(registrations)} 副本 from {path} handed to the 中間サーバー")
    return 0


# --- staff accounts: init, and the admin's commands ----------------------------------------------------------


def _read_password(args: argparse.Namespace, prompt: str, *, confirm: bool = True) -> str:
    """One line of stdin with ``--password-stdin``; else typed (twice, when it sets a new password)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != password:
        raise CommandError("the two passwords differ; nothing done")
    return password


def _by(o: Office, operation: StaffOperationType, target: str | None) -> Session:
    try:
        return o.staff.session(o.token(), operation, target)
    except StaffError as exc:
        raise CommandError(str(exc)) from None


def cmd_staff_init(settings: Settings, args: argparse.Namespace) -> int:
    """`staff init`: the first admin of an empty database, recorded (INIT); refused once any account exists."""
    with office(settings) as o:
        password = _read_password(args, f"password for {args.staff_id}: ")
        try:
            o.staff.init_admin(args.staff_id, args.name, password)
        except StaffError as exc:
            raise CommandError(str(exc)) from None
    print(f"first admin {args.staff_id} created (recorded as INIT); log in with `kenshin-hub login {args.staff_id}`")
    return 0


def cmd_staff_admin(settings: Settings, args: argparse.Namespace) -> int:
    """`staff list|unlock|disable|enable|role|set-password`: an admin's, each recorded with its outcome."""
    action = args.action
    with office(settings) as o:
        try:
            if action == "list":
                accounts = o.staff.accounts(_by(o, StaffOperationType.LIST, "staff accounts"))
                print(f"{'staff id':<20}{'state':<10}{'failed':>7}  {'roles':<24}name")
                for a in accounts:
                    state = "disabled" if a.disabled else "locked" if a.locked else "active"
                    print(f"{a.staff_id:<20}{state:<10}{a.failed_logins:>7}  {','.join(sorted(a.roles)):<24}"
                          f"{a.display_name}")  # fmt: skip
                print(f"({len(accounts)} accounts)")
                return 0
            target = args.staff_id
            if action == "unlock":
                o.staff.unlock(_by(o, StaffOperationType.ACCOUNT_UNLOCK, target), target)
                done = "unlocked"
            elif action in ("disable", "enable"):
                disable = action == "disable"
                op = StaffOperationType.ACCOUNT_DISABLE if disable else StaffOperationType.ACCOUNT_ENABLE
                o.staff.set_disabled(_by(o, op, target), target, disable)
                done = f"{action}d"
            elif action == "role":
                o.staff.set_roles(_by(o, StaffOperationType.ROLE_CHANGE, target), target, set(args.role))
                done = f"now has the roles {', '.join(sorted(set(args.role)))}"
            else:
                by = _by(o, StaffOperationType.PASSWORD_CHANGE, target)
                password = _read_password(args, f"new password for {target}: ")
                o.staff.set_password(by, target, password)
                done = "has a new password (its sessions ended)"
        except StaffError as exc:
            raise CommandError(str(exc)) from None
    print(f"{target} {done}")
    return 0


def cmd_staff_password(settings: Settings, args: argparse.Namespace) -> int:
    """`staff password ID`: one's own password, with the old one (stdin: the old line, then the new line)."""
    old = _read_password(args, "current password: ", confirm=False)
    new = _read_password(args, "new password: ")
    with office(settings) as o:
        try:
            o.staff.change_password(args.staff_id, old, new)
        except StaffError as exc:
            raise CommandError(str(exc)) from None
    print(f"password of {args.staff_id} changed; its sessions ended (log in again)")
    return 0


def _staff_subparsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The sub-commands of `staff` (whose `staff add` lives in :mod:`hub.office`), created here if it is absent."""
    staff = sub.choices.get("staff")
    if staff is None:
        staff = sub.add_parser("staff", help="staff accounts")
        return staff.add_subparsers(dest="action", required=True)
    for action in staff._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return staff.add_subparsers(dest="action", required=True)


def add_staff_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    staff_sub = _staff_subparsers(sub)
    init = staff_sub.add_parser("init", help="the first admin of an empty database (recorded; refused afterwards)")
    init.add_argument("staff_id")
    init.add_argument("--name", required=True)
    init.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    init.set_defaults(func=cmd_staff_init)
    staff_sub.add_parser("list", help="accounts with their state (admin)").set_defaults(func=cmd_staff_admin)
    for name, text in (
        ("unlock", "lift the lock after failed logins (admin)"),
        ("disable", "end an account's sessions and refuse its logins (admin)"),
        ("enable", "let a disabled account log in again (admin)"),
    ):
        p = staff_sub.add_parser(name, help=text)
        p.add_argument("staff_id")
        p.set_defaults(func=cmd_staff_admin)
    role = staff_sub.add_parser("role", help="replace an account's roles (admin)")
    role.add_argument("staff_id")
    role.add_argument("--role", action="append", required=True, choices=sorted(ROLES))
    role.set_defaults(func=cmd_staff_admin)
    set_password = staff_sub.add_parser("set-password", help="set another account's password (admin)")
    set_password.add_argument("staff_id")
    set_password.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
    set_password.set_defaults(func=cmd_staff_admin)
    password = staff_sub.add_parser("password", help="change your own password (needs the old one)")
    password.add_argument("staff_id")
    password.add_argument("--password-stdin", action="store_true", help="stdin: the old password, then the new")
    password.set_defaults(func=cmd_staff_password)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_staff_parsers(sub)
    review = sub.add_parser("review", help="held provisions (自動応答不可フラグ): list, show, approve, refuse")
    review_sub = review.add_subparsers(dest="action", required=True)
    lst = review_sub.add_parser("list", help="provisions waiting for review, oldest first")
    lst.add_argument("--all", action="store_true", help="also the decided ones")
    show = review_sub.add_parser("show", help="a held request and the content approval would send")
    show.add_argument("request_id")
    approve = review_sub.add_parser("approve", help="re-checked: send the answer")
    approve.add_argument("request_id")
    refuse = review_sub.add_parser("refuse", help="refuse the provision, with a reason the requester receives")
    refuse.add_argument("request_id")
    refuse.add_argument("--reason", required=True)
    review_sub.add_parser("enrol", help="make your reviewer key (once) and print it for the 中間サーバー's operator")
    review.set_defaults(func=cmd_review)

    chukan = sub.add_parser("chukan", help="the 中間サーバー operator's commands, on its own store")
    chukan_sub = chukan.add_subparsers(dest="what", required=True)
    reviewer = chukan_sub.add_parser("reviewer", help="the reviewers whose signed decisions it acts on, per tenant")
    reviewer_sub = reviewer.add_subparsers(dest="action", required=True)
    add = reviewer_sub.add_parser("add", help="enrol (or re-key) a reviewer of a tenant")
    add.add_argument("tenant")
    add.add_argument("staff_id")
    add.add_argument("public_key", help="as `review enrol` printed it")
    disable = reviewer_sub.add_parser("disable", help="reject every later decision of a reviewer")
    disable.add_argument("tenant")
    disable.add_argument("staff_id")
    listed = reviewer_sub.add_parser("list", help="a tenant's reviewers")
    listed.add_argument("tenant")
    reviewer.set_defaults(func=cmd_chukan_reviewer)
    chukan_retention = chukan_sub.add_parser(
        "retention", help="delete one municipality's expired rows in the 中間サーバー's and the network's stores"
    )
    chukan_retention.add_argument("action", choices=["run"])
    chukan_retention.add_argument("tenant")
    chukan_retention.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")
    chukan_retention.set_defaults(func=cmd_chukan_retention)

    retention = sub.add_parser(
        "retention", help="delete what is past retention.toml's periods, this tenant's, in every store (admin)"
    )
    retention.add_argument("action", choices=["run"])
    retention.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")
    retention.set_defaults(func=cmd_retention)

    connector = sub.add_parser("connector", help="中間サーバーコネクタ: the offline linkage medium (admin)")
    connector_sub = connector.add_subparsers(dest="action", required=True)
    export = connector_sub.add_parser("export-offline", help="write pending 副本 (offline mode) to a file")
    export.add_argument("--out", required=True)
    imp = connector_sub.add_parser("import-offline", help="the 中間サーバー's side: load an offline medium")
    imp.add_argument("file")
    connector.set_defaults(func=cmd_connector)
