"""The 中間サーバーコネクタ: the city's side of the provision flow (団体内統合宛名システム).

* assigns each 宛名番号 a 団体内統合宛名番号 (stable, never reused: a per-tenant sequence, never decremented);
* registers the person with the 中間サーバー (基本5情報 kept current from ``residents.v1``, the support-measure flag,
  and a keyed digest of the 個人番号 for the 符号) — the 個人番号 itself goes no further than here;
* forwards 副本 under the 統合宛名番号 (宛名番号 removed from the record id and key), or, offline, queues them for
  the offline linkage medium (:func:`export_offline`);
* queries the previous municipality when a resident moves in, and merges the answer into ``ledger_history``,
  marked with the municipality it came from.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from connectors.keys import person_token
from connectors.network import derived_id
from connectors.policy import PolicyError
from connectors.service import Output
from hub.pii import PiiKeys, default_keys, resident_number
from hub.validation import fiscal_year
from schemas.models import (
    ChukanPerson,
    ChukanQuery,
    Event,
    FukuhonRegistration,
    ProvisionResponse,
    ResidentChangeType,
    ResidentState,
    ResidentStatus,
    ScreeningHistory,
    ScreeningKind,
)
from schemas.record import now_utc
from sinks.db import insert_or_ignore, upsert
from sinks.tables import connector_queries, fukuhon_outbox, integrated_atena, integrated_atena_seq, ledger_history
from topics import catalog
from topics.catalog import Topic

SOURCE = "kenshin-hub.connector"
INTEGRATED_DIGITS = 15


@dataclass(frozen=True)
class MoveInQuery:
    affair_code: str
    info_name_code: str
    items: tuple[str, ...]
    fiscal_years: int
    recent_days: int


def load_move_in_query(path: Path | None = None) -> MoveInQuery:
    name = "connector.toml"
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path
            else resources.files("connectors.data").joinpath(name).read_text(encoding="utf-8")
        )
        q = tomllib.loads(text)["move_in_query"]
        items = tuple(q["items"])
        years, recent = int(q["fiscal_years"]), int(q["recent_days"])
        if not items or not all(isinstance(i, str) for i in items) or not 1 <= years <= 5 or recent < 1:
            raise ValueError("items must be a non-empty list of codes, fiscal_years 1..5 and recent_days >= 1")
        return MoveInQuery(str(q["affair_code"]), str(q["info_name_code"]), items, years, recent)
    except (OSError, KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{name}: {exc}") from exc


def integrated_no_for(conn: Connection, tenant: str, atena_no: str, now: datetime) -> str:
    """The person's 統合宛名番号, assigned on first sight from a per-tenant sequence (never reused)."""
    found = conn.execute(
        sa.select(integrated_atena.c.integrated_no).where(
            integrated_atena.c.tenant == tenant, integrated_atena.c.atena_no == atena_no
        )
    ).scalar_one_or_none()
    if found is not None:
        return str(found)
    seq = integrated_atena_seq
    last = conn.execute(sa.select(seq.c.last_no).where(seq.c.tenant == tenant)).scalar_one_or_none()
    if last is None:
        conn.execute(sa.insert(seq).values(tenant=tenant, last_no=1))
        number = 1
    else:
        number = int(last) + 1
        conn.execute(sa.update(seq).where(seq.c.tenant == tenant).values(last_no=number))
    integrated = f"{number:0{INTEGRATED_DIGITS}d}"
    conn.execute(sa.insert(integrated_atena).values(tenant=tenant, atena_no=atena_no, integrated_no=integrated,
                                                    created_at=now))  # fmt: skip
    return integrated


def rekey_fukuhon(reg: FukuhonRegistration, integrated: str) -> FukuhonRegistration:
    """The 副本 as the 中間サーバー may see it: 宛名番号 replaced by the 統合宛名番号 in its id and key."""
    atena = reg.atena_no or ""
    record_id, record_key = reg.record_id, reg.record_key
    if atena and atena in record_id:
        record_id = record_id.replace(atena, integrated, 1)
    if atena and record_key.startswith(f"{atena}:"):
        record_key = integrated + record_key[len(atena) :]
    if atena and (atena in record_id or atena in record_key or atena in (reg.parent_key or "")):
        raise ValueError("the 副本's id or keys still carry the 宛名番号")
    return replace(
        reg,
        event_id=derived_id("connector-fukuhon", reg.event_id),
        source_system=SOURCE,
        atena_no=None,
        integrated_atena_no=integrated,
        record_id=record_id,
        record_key=record_key,
    )


class Connector:
    name = "connector"

    def __init__(
        self,
        tenant: str,
        linkage_key: bytes,
        *,
        offline: bool = False,
        move_in: MoveInQuery | None = None,
        move_in_since: date | None = None,
        clock: Callable[[], datetime] = now_utc,
        pii: PiiKeys | None = None,
    ) -> None:
        self.tenant = tenant
        # the city's own topics, and its own tenant topics of the provision flow (its principal has no other's)
        self.inputs: tuple[Topic, ...] = (
            catalog.RESIDENTS,
            catalog.FUKUHON_REGISTRATIONS,
            catalog.for_tenant(catalog.QUERY_ANSWERS, tenant),
        )
        self.linkage_key = linkage_key
        self.pii = pii  # opens the residents' sealed 個人番号 (default: hub.pii.default_keys, the settings' key file)
        self.offline = offline
        self.move_in = move_in or load_move_in_query()
        self.move_in_since = move_in_since
        self.clock = clock

    def accepts(self, event: Event) -> bool:
        return event.tenant == self.tenant

    def handle(self, conn: Connection, topic: Topic, event: Event) -> list[Output]:
        if isinstance(event, ResidentState):
            return self._resident(conn, event)
        if isinstance(event, FukuhonRegistration):
            return self._fukuhon(conn, event)
        if isinstance(event, ProvisionResponse):
            return self._answer(conn, event)
        raise TypeError(f"the connector does not take {type(event).__name__}")

    def _my_number(self, state: ResidentState) -> str | None:
        if self.pii is None and state.my_number_sealed is not None:
            self.pii = default_keys()  # opened on first need: the connector's tests and tools run without a key file
        return resident_number(state, self.pii) if self.pii is not None else state.my_number

    def _resident(self, conn: Connection, state: ResidentState) -> list[Output]:
        now = self.clock()
        integrated = integrated_no_for(conn, self.tenant, state.atena_no, now)
        number = self._my_number(state)  # a sealed number that does not open raises PiiError: this event is refused
        token = person_token(self.linkage_key, number) if number else None
        out: list[Output] = [
            (
                catalog.for_tenant(catalog.CHUKAN_PERSONS, self.tenant),
                ChukanPerson(
                    event_id=derived_id("connector-person", state.event_id),
                    occurred_at=now,
                    tenant=self.tenant,
                    source_system=SOURCE,
                    integrated_atena_no=integrated,
                    person_token=token,
                    person=state.person,
                    status=state.status,
                    support_measure=state.support_measure,
                    version=state.version,
                ),
            )
        ]
        move_in = next((h for h in state.history if h.change_type is ResidentChangeType.MOVE_IN), None)
        if (
            move_in is not None
            and state.status is ResidentStatus.RESIDENT
            and state.previous_municipality
            and state.previous_municipality != self.tenant
            and self._recent(move_in.change_date)
        ):
            request_id = derived_id("move-in-query", self.tenant, state.atena_no, move_in.event_id)
            known = conn.execute(
                sa.select(sa.func.count()).where(
                    connector_queries.c.tenant == self.tenant, connector_queries.c.request_id == str(request_id)
                )
            ).scalar_one()
            if not known:
                conn.execute(
                    sa.insert(connector_queries).values(
                        tenant=self.tenant,
                        request_id=str(request_id),
                        atena_no=state.atena_no,
                        provider=state.previous_municipality,
                        requested_at=now,
                    )
                )
                fy = fiscal_year(move_in.change_date)
                out.append(
                    (
                        catalog.for_tenant(catalog.CHUKAN_QUERIES, self.tenant),
                        ChukanQuery(
                            event_id=derived_id("connector-query", request_id),
                            occurred_at=now,
                            tenant=self.tenant,
                            source_system=SOURCE,
                            request_id=request_id,
                            integrated_atena_no=integrated,
                            provider=state.previous_municipality,
                            affair_code=self.move_in.affair_code,
                            info_name_code=self.move_in.info_name_code,
                            items=self.move_in.items,
                            fiscal_year_from=fy - self.move_in.fiscal_years + 1,
                            fiscal_year_to=fy,
                            requested_at=now,
                        ),
                    )
                )
        return out

    def _recent(self, moved_in: date) -> bool:
        """Whether a 転入 is queried: on or after the cut-over date when one is set, else a recent one."""
        if self.move_in_since is not None:
            return moved_in >= self.move_in_since
        return (self.clock().date() - moved_in).days <= self.move_in.recent_days

    def _fukuhon(self, conn: Connection, reg: FukuhonRegistration) -> list[Output]:
        if reg.atena_no is None:
            raise ValueError("a 副本 from the health system must carry its 宛名番号")
        forwarded = rekey_fukuhon(reg, integrated_no_for(conn, self.tenant, reg.atena_no, self.clock()))
        insert_or_ignore(
            conn,
            fukuhon_outbox,
            [
                {
                    "tenant": self.tenant,
                    "record_id": forwarded.record_id,
                    "version": forwarded.version,
                    "integrated_no": forwarded.integrated_atena_no,
                    "payload": forwarded.to_json(),
                    "status": "PENDING" if self.offline else "FORWARDED",
                    "queued_at": self.clock(),
                }
            ],
            ["tenant", "record_id", "version"],
        )
        return [] if self.offline else [(catalog.for_tenant(catalog.CHUKAN_FUKUHON, self.tenant), forwarded)]

    def _answer(self, conn: Connection, answer: ProvisionResponse) -> list[Output]:
        q = connector_queries
        row = conn.execute(
            sa.select(q).where(q.c.tenant == self.tenant, q.c.request_id == str(answer.request_id))
        ).one_or_none()
        if row is None:
            return []
        now = self.clock()
        conn.execute(
            sa.update(q)
            .where(q.c.tenant == self.tenant, q.c.request_id == row.request_id)
            .values(outcome=answer.outcome.value, message=answer.message, answered_at=now)
        )
        rows: list[dict[str, Any]] = []
        for line in answer.lines:
            if line.record_id is None:
                continue
            items = {i.item_code: i.value for i in line.items if i.value is not None}
            fy = items.get("K002")
            rows.append(
                {
                    "tenant": self.tenant,
                    "atena_no": row.atena_no,
                    "from_tenant": answer.provider,
                    "record_id": line.record_id,
                    "version": 1,
                    "kind": items.get("K001"),
                    "fiscal_year": int(fy) if fy and fy.isdigit() else None,
                    "items": items,
                    "request_id": row.request_id,
                    "received_at": now,
                }
            )
        upsert(conn, ledger_history, rows, ["tenant", "atena_no", "from_tenant", "record_id"])
        return [(catalog.LEDGER_HISTORY, h) for h in (self._history(r, now) for r in rows) if h is not None]

    def _history(self, row: dict[str, Any], now: datetime) -> ScreeningHistory | None:
        """A screening of the answer as the processors take it (for the interval rule and the notices), when the
        record says which kind and fiscal year it was.
        """
        if row["kind"] not in ScreeningKind.__members__ or row["fiscal_year"] is None:
            return None
        ident = ("connector-history", self.tenant, row["atena_no"], row["from_tenant"], row["record_id"])
        return ScreeningHistory(
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, ":".join(ident)),
            occurred_at=now,
            tenant=self.tenant,
            source_system=SOURCE,
            atena_no=row["atena_no"],
            from_tenant=row["from_tenant"],
            record_id=row["record_id"],
            kind=ScreeningKind(row["kind"]),
            fiscal_year=row["fiscal_year"],
        )


def export_offline(engine: Engine, tenant: str, out: Path) -> tuple[int, str]:
    """Write the pending 副本 to the offline linkage medium (JSON lines) and mark them exported.

    Returns (count, sha256 of the file). The file carries 統合宛名番号 only; it is created with mode 0600 and never
    overwritten.
    """
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(fukuhon_outbox)
            .where(fukuhon_outbox.c.tenant == tenant, fukuhon_outbox.c.status == "PENDING")
            .order_by(fukuhon_outbox.c.queued_at, fukuhon_outbox.c.record_id, fukuhon_outbox.c.version)
        ).all()
        body = "".join(json.dumps(json.loads(r.payload), ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
        with open(out, "x", encoding="utf-8") as fh:
            out.chmod(0o600)
            fh.write(body)
        conn.execute(
            sa.update(fukuhon_outbox)
            .where(fukuhon_outbox.c.tenant == tenant, fukuhon_outbox.c.status == "PENDING")
            .values(status="EXPORTED", exported_to=str(out))
        )
    return len(rows), hashlib.sha256(body.encode()).hexdigest()


def read_offline(path: Path) -> list[FukuhonRegistration]:
    """The 副本 of an offline linkage medium (the 中間サーバー's side of the import)."""
    return [
        FukuhonRegistration.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
