"""開示請求 and the auditor's export (the assessment's III.8 and IV.1): files written 0600, each a recorded operation.

* `kenshin-hub person export <宛名番号> --out FILE`: everything the hub holds on one resident of this city, as one
  JSON document: the resident row (the 個人番号 opened, as the person may see it), the 台帳 and every version of it,
  errors, notices, the history received from the previous municipality, the 統合宛名番号, the 転入 queries, the
  情報提供等記録 whose request or answer names the person's 統合宛名番号, the staff operations that targeted them,
  and the processors' state of them (the 住基 change log opened, the ledger book).
* `kenshin-hub audit export --from DATE --to DATE --out FILE`: the operation log (``staff_operations``) and the
  情報提供等記録 (``provision_records``) of this city in ``[from, to)``, as JSON lines (one ``{"table", "row"}`` per
  line), oldest first.

Both need the ``admin`` role. Each is recorded (``DATA_EXPORT``, target ``person <宛名番号>`` or ``audit
<from>..<to>``) with its outcome and the file's SHA-256 and row count in the record's detail; the file is created
with ``O_EXCL`` (never overwritten) and mode 0600. Nothing is logged of its content.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.counter import rows
from hub.errors import CommandError
from hub.office import office
from hub.pii import default_keys
from hub.settings import Settings
from processors.runner import processors_engine
from processors.store import open_log, people
from schemas.models import StaffOperationType
from sinks.residents import readable_row
from sinks.tables import (
    connector_queries,
    integrated_atena,
    invitations,
    ledger_entries,
    ledger_history,
    ledger_versions,
    mailing_decisions,
    notice_decisions,
    notice_mailings,
    provision_records,
    residents,
    screening_errors,
    staff_operations,
)

FORMAT = "kenshin-hub-person-export/1"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _rows(conn: Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [{k: _jsonable(v) for k, v in r.items()} for r in rows(conn, query)]


def person_document(conn: Connection, processors: Connection | None, tenant: str, atena_no: str) -> dict[str, Any]:
    """Everything the hub's database (and, given ``processors``, the processors' store) holds on one resident.

    A person below target age has no ``residents`` row: the processors keep their minimal change log only, and
    that is what the document holds (``resident`` null).
    """
    keys = default_keys()
    r = residents
    key = f"{tenant}:{atena_no}"
    found = conn.execute(sa.select(r).where(r.c.tenant == tenant, r.c.atena_no == atena_no)).all()
    state = (
        processors.execute(sa.select(people.c.log, people.c.book).where(people.c.key == key)).one_or_none()
        if processors is not None
        else None
    )
    if not found and state is None:
        raise CommandError(f"no resident {atena_no} in {tenant}")
    resident = {k: _jsonable(v) for k, v in readable_row(dict(found[0]._mapping), keys).items()} if found else None

    def of(table: sa.Table, *order: sa.ColumnElement[Any]) -> list[dict[str, Any]]:
        return _rows(
            conn, sa.select(table).where(table.c.tenant == tenant, table.c.atena_no == atena_no).order_by(*order)
        )

    ia = integrated_atena
    numbers = [x["integrated_no"] for x in of(ia, ia.c.integrated_no)]
    pr = provision_records
    named = [pr.c.request_body.contains(f'"{n}"') | pr.c.response_body.contains(f'"{n}"') for n in numbers]
    records = (
        _rows(conn, sa.select(pr).where(pr.c.tenant == tenant, sa.or_(*named)).order_by(pr.c.requested_at))
        if named
        else []
    )
    so = staff_operations
    operations = _rows(
        conn,
        sa.select(so)
        .where(so.c.tenant == tenant, so.c.target.contains(atena_no, autoescape=True))
        .order_by(so.c.performed_at),
    )
    document: dict[str, Any] = {
        "format": FORMAT,
        "tenant": tenant,
        "atena_no": atena_no,
        "exported_at": datetime.now(UTC).isoformat(),
        "resident": resident,
        "ledger_entries": of(ledger_entries, ledger_entries.c.fiscal_year, ledger_entries.c.kind),
        "ledger_versions": of(
            ledger_versions, ledger_versions.c.fiscal_year, ledger_versions.c.kind, ledger_versions.c.version
        ),
        "screening_errors": of(screening_errors, screening_errors.c.detected_at),
        "invitations": of(invitations, invitations.c.fiscal_year, invitations.c.kind),
        "notice_decisions": of(notice_decisions, notice_decisions.c.requested_at),
        "notice_mailings": of(notice_mailings, notice_mailings.c.mailed_at, notice_mailings.c.kind),
        "mailing_decisions": of(mailing_decisions),
        "ledger_history": of(ledger_history, ledger_history.c.fiscal_year, ledger_history.c.record_id),
        "integrated_atena": of(ia, ia.c.integrated_no),
        "connector_queries": of(connector_queries, connector_queries.c.requested_at),
        "provision_records": records,
        "staff_operations": operations,
    }
    if processors is not None:
        log = open_log(state.log, keys, tenant, key) if state is not None else None
        document["processor_state"] = {
            "log": json.loads(log) if log else [],
            "book": json.loads(state.book) if state is not None and state.book else None,
        }
    return document


def write_private(path: Path, chunks: Iterable[str | bytes]) -> str:
    """Write ``chunks`` (text as UTF-8, or bytes) to a new file (0600, never overwriting one); the SHA-256 of what
    was written.
    """
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path} exists: an export never overwrites a file") from None
    except OSError as exc:
        raise CommandError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            data = chunk.encode() if isinstance(chunk, str) else chunk
            out.write(data)
            digest.update(data)
    return digest.hexdigest()


def digests_detail(digests: Mapping[str, str]) -> str:
    """The files of an operation as its record's detail: ``<name> sha256:<hex>`` each."""
    return " ".join(f"{name} sha256:{digest}" for name, digest in digests.items())


def audit_lines(conn: Connection, tenant: str, start: date, end: date) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """The operation log and the 情報提供等記録 of ``tenant`` in ``[start, end)`` (UTC days), each oldest first."""
    since, until = datetime.combine(start, time(0), UTC), datetime.combine(end, time(0), UTC)
    so, pr = staff_operations, provision_records
    for table, at in ((so, so.c.performed_at), (pr, pr.c.requested_at)):
        query = sa.select(table).where(table.c.tenant == tenant, at >= since, at < until).order_by(at)
        for row in _rows(conn, query):
            yield table.name, row


def cmd_person_export(settings: Settings, args: argparse.Namespace) -> int:
    from hub.review import staff_operation  # hub.review imports hub.office

    done: dict[str, str] = {}
    with office(settings) as o:
        target = f"person {args.atena_no}"
        with staff_operation(o, "admin", StaffOperationType.DATA_EXPORT, target, lambda: done.get("detail")):
            engine = processors_engine(settings)
            try:
                with o.engine.connect() as conn, engine.connect() as processors:
                    document = person_document(conn, processors, settings.tenant, args.atena_no)
            finally:
                engine.dispose()
            text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            done["detail"] = f"sha256 {write_private(args.out, [text])}"
    print(f"{args.out}: everything held on {args.atena_no} ({done['detail']}, mode 0600)")
    return 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from hub.review import staff_operation  # hub.review imports hub.office

    if args.to <= args.since:
        raise CommandError("--to must be after --from")
    done: dict[str, str] = {}
    with office(settings) as o:
        target = f"audit {args.since.isoformat()}..{args.to.isoformat()}"
        with staff_operation(o, "admin", StaffOperationType.DATA_EXPORT, target, lambda: done.get("detail")):
            counts: dict[str, int] = {}

            def lines() -> Iterable[str]:
                with o.engine.connect() as conn:
                    for table, row in audit_lines(conn, settings.tenant, args.since, args.to):
                        counts[table] = counts.get(table, 0) + 1
                        yield json.dumps({"table": table, "row": row}, ensure_ascii=False, sort_keys=True) + "\n"

            digest = write_private(args.out, lines())
            summary = ", ".join(f"{t} {n}" for t, n in sorted(counts.items())) or "no rows"
            done["detail"] = f"{summary}; sha256 {digest}"
    print(f"{args.out}: {done['detail']} (mode 0600)")
    return 0


def add_person_export(person_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = person_sub.add_parser(
        "export", help="開示請求: everything held on one resident, to a new 0600 file (admin)"
    )
    export.add_argument("atena_no", help="宛名番号")
    export.add_argument("--out", type=Path, required=True, help="the file to create (never overwritten)")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="監査: the operation log and 情報提供等記録 of a period (admin)")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    period = audit_sub.add_parser("export", help="[from, to) as JSON lines, to a new 0600 file")
    period.add_argument("--from", dest="since", type=date.fromisoformat, required=True, help="YYYY-MM-DD (UTC)")
    period.add_argument("--to", type=date.fromisoformat, required=True, help="YYYY-MM-DD, not included")
    period.add_argument("--out", type=Path, required=True, help="the file to create (never overwritten)")
    audit.set_defaults(func=cmd_audit)
