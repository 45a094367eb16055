"""Staff commands of the provision flow: review of held provisions, retention, the offline linkage medium.

`review list|show|approve|refuse` act on the provisions the 自動応答不可フラグ held for this city (the
``reviewer`` role); every call is recorded (staff id, time, operation, target: the request id) like any other
staff operation. `retention run` (``admin``) deletes 情報提供等記録 and 副本 past their periods and records that it
did. `connector export-offline` (``admin``) writes the pending 副本 to the offline linkage medium.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from connectors.chukan import ChukanServer, sanitized_request
from connectors.connector import export_offline, read_offline
from connectors.runner import chukan_engine, chukan_server
from connectors.service import Output
from hub.errors import CommandError
from hub.office import Office, office
from hub.settings import Settings
from schemas.models import Event, HoldStatus, ProvisionRequest, StaffOperationType
from schemas.record import now_utc
from schemas.serde import TopicSerde
from sinks.tables import provision_records
from topics import catalog


def produce(o: Office, outputs: Sequence[Output]) -> None:
    for topic, event in outputs:
        serde: TopicSerde[Event] = TopicSerde(topic, o.registry)
        o.producer.produce(topic.name, key=serde.key(event), value=serde.value(event))
    if o.producer.flush(30):
        raise CommandError("the answer could not be sent to the broker; run the same command again to re-send it")


def cmd_review(settings: Settings, args: argparse.Namespace) -> int:
    engine = chukan_engine(settings)
    server = chukan_server(settings)
    try:
        with office(settings) as o:
            if args.action == "list":
                o.current("reviewer", StaffOperationType.LIST, "held provisions")
                with engine.connect() as conn:
                    rows = server.store(conn, settings.tenant).held_list(None if args.all else HoldStatus.HELD.value)
                now = now_utc()
                print(f"{'request id':<38}{'照会者':<8}{'status':<10}{'held (h)':>9}  reasons / flagged items")
                for r in rows:
                    hours = (now - r.held_at) / timedelta(hours=1)
                    print(f"{r.request_id:<38}{json.loads(r.request)['requester']:<9}{r.status:<10}{hours:>9.1f}"
                          f"  {r.hold_reasons} {r.flagged_items}")  # fmt: skip
                print(f"({len(rows)} shown)")
                return 0
            target = args.request_id
            if args.action == "show":
                o.current("reviewer", StaffOperationType.SHOW, target)
                _show(server, engine, settings.tenant, target)
                return 0
            approve = args.action == "approve"
            operation = StaffOperationType.APPROVE if approve else StaffOperationType.REFUSE
            session = o.current("reviewer", operation, target)
            with engine.begin() as conn:
                try:
                    outputs = server.decide(conn, settings.tenant, target, session.staff_id, approve,
                                            None if approve else args.reason)  # fmt: skip
                except LookupError as exc:
                    raise CommandError(str(exc)) from None
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
            produce(o, outputs)
        print(f"{target}: {'approved and sent' if approve else 'refused'}")
        return 0
    finally:
        engine.dispose()


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


def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    engine = chukan_engine(settings)
    server = chukan_server(settings)
    try:
        with office(settings) as o:
            o.current("admin", StaffOperationType.RETENTION_PURGE, "retention run")
            with engine.begin() as conn:
                run = server.retention(conn)
            with o.engine.begin() as conn:
                hub_deleted = conn.execute(
                    sa.delete(provision_records).where(provision_records.c.requested_at < run["records_before"])
                ).rowcount
        print(f"retention {run['run_id']}: 情報提供等記録 before {run['records_before']:%Y-%m-%d} deleted: "
              f"{run['records_deleted']} (中間サーバー) + {hub_deleted} (hub); 副本 ended before "
              f"{run['fukuhon_ended_before']}: {run['fukuhon_deleted']}")  # fmt: skip
        return 0
    finally:
        engine.dispose()


def cmd_connector(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "import-offline":
        return _import_offline(settings, Path(args.file))
    with office(settings) as o:
        o.current("admin", StaffOperationType.OFFLINE_EXPORT, str(args.out))
        out = Path(args.out)
        if out.exists():
            raise CommandError(f"{out} exists: the offline medium is never overwritten")
        count, digest = export_offline(o.engine, settings.tenant, out)
    print(f"{count} 副本 written to {out} (sha256 {digest})")
    return 0


def _import_offline(settings: Settings, path: Path) -> int:
    """The 中間サーバー's side of the offline path: the medium's 副本 enter its intake topic, as if forwarded."""
    try:
        registrations = read_offline(path)
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: not an offline linkage medium ({exc})") from None
    with office(settings) as o:
        o.current("admin", StaffOperationType.OTHER, f"import-offline {path.name}")
        if any(r.atena_no is not None or r.integrated_atena_no is None for r in registrations):
            raise CommandError(f"{path}: a 副本 carries a 宛名番号 or no 統合宛名番号; nothing imported")
        produce(o, [(catalog.CHUKAN_FUKUHON, r) for r in registrations])
    print(f"{len(registrations)} 副本 from {path} handed to the 中間サーバー")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    review.set_defaults(func=cmd_review)

    retention = sub.add_parser("retention", help="delete 情報提供等記録 and 副本 past their periods (admin)")
    retention.add_argument("action", choices=["run"])
    retention.set_defaults(func=cmd_retention)

    connector = sub.add_parser("connector", help="中間サーバーコネクタ: the offline linkage medium (admin)")
    connector_sub = connector.add_subparsers(dest="action", required=True)
    export = connector_sub.add_parser("export-offline", help="write pending 副本 (offline mode) to a file")
    export.add_argument("--out", required=True)
    imp = connector_sub.add_parser("import-offline", help="the 中間サーバー's side: load an offline medium")
    imp.add_argument("file")
    connector.set_defaults(func=cmd_connector)
