"""The 中間サーバー, simulated: one platform, one store per municipality (tenant).

Provider side: a provision request arriving from the network is answered from the 副本 only when its 提供許可証 is
genuine (the network's Ed25519 signature), bound to this very request, unexpired and unused, and when this server's
own copy of the 照会許可照会リスト permits it. The 自動応答不可フラグ (the person's DV等支援措置, or a sensitive item of
``sensitive_items.toml``) holds it for staff instead: :func:`decide` sends (approve) or refuses it.

* **The permit binds everything the answer depends on** (:func:`permit_mismatches`): request id, requester,
  provider (and this tenant), 事務コード, 特定個人情報名コード, the items in order, the fiscal-year range and the 符号
  (the permit carries its SHA-256 only). Any difference refuses the request; the provider's 情報提供等記録 names the
  fields that differ. The checks run in this order and the first failure is the reason: no permit, signature,
  binding, expiry, already used.
* **A permit is used by its first presentation, whatever the outcome** (answered, held, refused, error): the first
  request that presents a permit id consumes it (``chukan_used_permits``, with that outcome), and every later
  presentation is refused. That includes a first presentation that is a tampered copy or carries a bad signature:
  the genuine request arriving after it is refused as used. This fails safe (nothing is provided on a permit that
  was seen twice); the requester asks the network for a new permit with a new request. Permit ids are not
  secrets, so a party able to inject requests here can deny a request this way, never obtain data.
* **The person-level flag fails closed** (:meth:`ChukanServer.person_hold`): a provision is answered
  automatically only when this server holds the person's 住基 support-measure state and it says *not* under a
  support measure. A state that is unknown (``chukan_persons.support_measure`` NULL) holds the request for staff
  with the reason in words. The state becomes unknown when two registrations of the same 住基 version disagree on
  the flag (which one is current cannot be told; it stays unknown until a newer version arrives), and any row
  without a state is unknown. An older version never overwrites a newer one. There is no age limit: the connector
  registers a person on every 住基 change, so an old state of an unchanged resident is current; a state still in
  flight from 住基 cannot be seen here (that needs a watermark from the connector).

Requester side: a query from the municipality's connector goes into the network under the person's 符号 (waiting
for it when it is still being issued); the answer is recorded and handed back to the connector under the
統合宛名番号. Neither the 符号 nor the permit ever leaves towards the connector, and 情報提供等記録 carry no 符号.

Every request that reaches a side leaves exactly one 情報提供等記録 there (``chukan_records`` and the topic
``chukan.provision-records.v1``); a held request gets its record when it is decided.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from connectors.keys import PermitVerifier, fugo_digest, public_key_of, valid_review_signature
from connectors.network import MSG_NO_FUGO, derived_id, not_permitted
from connectors.policy import Policies
from connectors.service import Output, Position, decode_outputs, encode_outputs, rejection, sanitized_request
from connectors.stores import (
    chukan_fukuhon,
    chukan_held,
    chukan_outgoing,
    chukan_persons,
    chukan_records,
    chukan_review_decisions,
    chukan_reviewers,
    chukan_used_permits,
)
from hub.validation import fiscal_year
from schemas.models import (
    ChukanPerson,
    ChukanQuery,
    Event,
    FugoIssuance,
    FukuhonOperation,
    FukuhonRegistration,
    HeldProvision,
    HoldReason,
    HoldStatus,
    ProvisionOutcome,
    ProvisionPermit,
    ProvisionRecord,
    ProvisionRequest,
    ProvisionResponse,
    RecordSide,
    ResponseItem,
    ResponseLine,
    ReviewDecision,
    ReviewVerdict,
)
from schemas.record import now_utc
from sinks.db import upsert
from topics import catalog
from topics.catalog import Topic

SOURCE = "kenshin-hub.chukan"

MSG_DUPLICATE_RECORD = "レコード識別番号が既に存在しています"
MSG_NO_PERMIT = "提供許可証がありません"
MSG_BAD_SIGNATURE = "提供許可証の署名が検証できません"
MSG_PERMIT_MISMATCH = "提供許可証が照会内容と一致しません"
MSG_PERMIT_EXPIRED = "提供許可証の有効期限が切れています"
MSG_PERMIT_USED = "提供許可証は使用済みです"
MSG_UNKNOWN_FUGO = "符号に該当する者がありません"
MSG_NO_DATA = "該当する副本がありません"

REVIEWER_ACTIVE = "ACTIVE"
REVIEWER_DISABLED = "DISABLED"
DECISION_ACCEPTED = "ACCEPTED"
DECISION_REJECTED = "REJECTED"

NOTE_SUPPORT_MEASURE = "住基のDV等支援措置の対象者のため自動応答しません"
NOTE_FLAG_UNKNOWN = "自動応答不可フラグの状態が不明です（住基の支援措置の状態が確認できません）: 職員が確認します"

STATUS_OK = "OK"
STATUS_NO_DATA = "NO_DATA"

PERMIT_FAILURES = (MSG_NO_PERMIT, MSG_BAD_SIGNATURE, MSG_PERMIT_MISMATCH, MSG_PERMIT_EXPIRED, MSG_PERMIT_USED)


class Rejected(Exception):
    """An input the 中間サーバー refuses outright (it becomes a dead letter with this reason)."""


def permit_mismatches(permit: ProvisionPermit, request: ProvisionRequest, tenant: str) -> tuple[str, ...]:
    """The bound fields in which ``permit`` and the ``request`` that ``tenant`` received differ (Japanese names).

    A permit issued before the binding (no 事務コード or 符号 hash) differs in those fields: it binds nothing there.
    """
    wrong: list[str] = []
    if permit.request_id != request.request_id:
        wrong.append("照会要求ID")
    if permit.requester != request.requester:
        wrong.append("情報照会者")
    if permit.provider != request.provider or permit.provider != tenant:
        wrong.append("情報提供者")
    if permit.affair_code is None or permit.affair_code != request.affair_code:
        wrong.append("事務コード")
    if permit.info_name_code != request.info_name_code:
        wrong.append("特定個人情報名コード")
    if tuple(permit.items) != tuple(request.items):
        wrong.append("照会項目")
    if permit.fiscal_year_from != request.fiscal_year_from:
        wrong.append("対象年度(開始)")
    if permit.fiscal_year_to != request.fiscal_year_to:
        wrong.append("対象年度(終了)")
    bound = permit.fugo_sha256
    if bound is None or not hmac.compare_digest(bound.encode(), fugo_digest(request.fugo).encode()):
        wrong.append("符号")
    return tuple(wrong)


def _by_tenant(table: sa.Table, *columns: str) -> list[ColumnElement[bool]]:
    """``tenant = :w_tenant AND column = :w_column …``: the WHERE of a statement built once (see :class:`TenantStore`).

    The parameters are prefixed: SQLAlchemy keeps a column's own name for the SET clause of an UPDATE.
    """
    return [table.c[c] == sa.bindparam(f"w_{c}") for c in ("tenant", *columns)]


_p, _f, _o, _u, _h = chukan_persons, chukan_fukuhon, chukan_outgoing, chukan_used_permits, chukan_held
_PERSON = sa.select(_p).where(*_by_tenant(_p, "integrated_no"))
_PERSON_BY_FUGO = sa.select(_p).where(*_by_tenant(_p, "fugo"))
_FUKUHON = sa.select(_f).where(*_by_tenant(_f, "record_id", "version"))
_RECORD_COUNT = sa.select(sa.func.count()).where(*_by_tenant(_f, "record_id"))
_PERSON_FUKUHON = (
    sa.select(_f).where(*_by_tenant(_f, "integrated_no", "info_name_code")).order_by(_f.c.record_id, _f.c.version)
)
_OUTGOING = sa.select(_o).where(*_by_tenant(_o, "request_id"))
_SET_OUTGOING_STATUS = sa.update(_o).where(*_by_tenant(_o, "request_id")).values(status=sa.bindparam("status"))
_WAITING_FOR = (
    sa.select(_o)
    .where(*_by_tenant(_o, "integrated_no"), _o.c.status == "WAITING_FUGO")
    .order_by(_o.c.requested_at, _o.c.request_id)
)
_PERMIT_COUNT = sa.select(sa.func.count()).where(*_by_tenant(_u, "permit_id"))
_HELD = sa.select(_h).where(*_by_tenant(_h, "request_id"))
_INSERTS = {t: sa.insert(t) for t in (_p, _f, _o, _u, _h, chukan_records)}


class TenantStore:
    """The one municipality's part of the 中間サーバー's database: every statement is bound to its 団体コード.

    The statements a query or an answer runs are built once (module constants with bound parameters): building a
    SQLAlchemy statement and its cache key per message cost more CPU than running it.
    """

    def __init__(self, conn: Connection, tenant: str) -> None:
        self.conn = conn
        self.tenant = tenant

    def _rows(self, statement: sa.Executable, **params: Any) -> sa.CursorResult[Any]:
        return self.conn.execute(statement, {"w_tenant": self.tenant, **{f"w_{k}": v for k, v in params.items()}})

    def person(self, integrated_no: str) -> sa.Row[Any] | None:
        return self._rows(_PERSON, integrated_no=integrated_no).one_or_none()

    def person_by_fugo(self, fugo: str) -> sa.Row[Any] | None:
        return self._rows(_PERSON_BY_FUGO, fugo=fugo).one_or_none()

    def set_person(self, **values: Any) -> None:
        upsert(self.conn, chukan_persons, [{"tenant": self.tenant, **values}], ["tenant", "integrated_no"], "version")

    def update_person(self, integrated_no: str, **values: Any) -> None:
        t = chukan_persons
        self.conn.execute(
            sa.update(t).where(t.c.tenant == self.tenant, t.c.integrated_no == integrated_no).values(**values)
        )

    def fukuhon(self, record_id: str, version: int) -> sa.Row[Any] | None:
        return self._rows(_FUKUHON, record_id=record_id, version=version).one_or_none()

    def record_exists(self, record_id: str) -> bool:
        return bool(self._rows(_RECORD_COUNT, record_id=record_id).scalar_one())

    def current_fukuhon(self, integrated_no: str, info_name_code: str, on: date) -> list[sa.Row[Any]]:
        """The latest version of each 副本 of the person, published on ``on`` and not deleted."""
        rows = self._rows(_PERSON_FUKUHON, integrated_no=integrated_no, info_name_code=info_name_code).all()
        latest: dict[str, sa.Row[Any]] = {}
        for row in rows:
            latest[row.record_id] = row
        return [
            r
            for r in latest.values()
            if r.operation != FukuhonOperation.DELETE.value
            and r.publication_start <= on
            and (r.publication_end is None or on <= r.publication_end)
        ]

    def add(self, table: sa.Table, **values: Any) -> None:
        statement = _INSERTS.get(table)
        self.conn.execute(statement if statement is not None else sa.insert(table), {**values, "tenant": self.tenant})

    def outgoing(self, request_id: uuid.UUID) -> sa.Row[Any] | None:
        return self._rows(_OUTGOING, request_id=str(request_id)).one_or_none()

    def set_outgoing_status(self, request_id: str, status: str) -> None:
        self.conn.execute(_SET_OUTGOING_STATUS, {"w_tenant": self.tenant, "w_request_id": request_id, "status": status})

    def waiting_for(self, integrated_no: str) -> list[sa.Row[Any]]:
        return list(self._rows(_WAITING_FOR, integrated_no=integrated_no).all())

    def permit_used(self, permit_id: uuid.UUID) -> bool:
        return bool(self._rows(_PERMIT_COUNT, permit_id=str(permit_id)).scalar_one())

    def held(self, request_id: str) -> sa.Row[Any] | None:
        return self._rows(_HELD, request_id=request_id).one_or_none()

    def held_list(self, status: str | None = HoldStatus.HELD.value) -> list[sa.Row[Any]]:
        t = chukan_held
        query = sa.select(t).where(t.c.tenant == self.tenant)
        if status is not None:
            query = query.where(t.c.status == status)
        return list(self.conn.execute(query.order_by(t.c.held_at, t.c.request_id)).all())

    def decide_held(self, request_id: str, **values: Any) -> None:
        t = chukan_held
        self.conn.execute(sa.update(t).where(t.c.tenant == self.tenant, t.c.request_id == request_id).values(**values))

    # --- the reviewers it acts for (enrolled by this server's operator) and the decisions they sent -------------

    def reviewer(self, staff_id: str) -> sa.Row[Any] | None:
        t = chukan_reviewers
        return self.conn.execute(sa.select(t).where(t.c.tenant == self.tenant, t.c.staff_id == staff_id)).one_or_none()

    def reviewers(self) -> list[sa.Row[Any]]:
        t = chukan_reviewers
        return list(self.conn.execute(sa.select(t).where(t.c.tenant == self.tenant).order_by(t.c.staff_id)).all())

    def enrol_reviewer(self, staff_id: str, public_key: str, now: datetime) -> None:
        """Enrol (or re-key and re-activate) a reviewer of this tenant under ``public_key``."""
        public_key_of(public_key)  # ValueError unless it is an Ed25519 public key
        row = {"tenant": self.tenant, "staff_id": staff_id, "public_key": public_key, "status": REVIEWER_ACTIVE,
               "enrolled_at": now, "changed_at": now}  # fmt: skip
        upsert(self.conn, chukan_reviewers, [row], ["tenant", "staff_id"],
               assign=lambda t, _new: {"enrolled_at": t.c.enrolled_at})  # fmt: skip

    def set_reviewer_status(self, staff_id: str, status: str, now: datetime) -> bool:
        t = chukan_reviewers
        done = self.conn.execute(
            sa.update(t)
            .where(t.c.tenant == self.tenant, t.c.staff_id == staff_id)
            .values(status=status, changed_at=now)
        )
        return bool(done.rowcount)

    def review_decision(self, event_id: str) -> sa.Row[Any] | None:
        t = chukan_review_decisions
        return self.conn.execute(sa.select(t).where(t.c.tenant == self.tenant, t.c.event_id == event_id)).one_or_none()


class ChukanServer:
    """The 中間サーバー platform: every municipality of the network is a tenant with a store of its own."""

    name = "chukan"
    templates: tuple[Topic, ...] = (
        catalog.CHUKAN_PERSONS,
        catalog.CHUKAN_FUKUHON,
        catalog.CHUKAN_QUERIES,
        catalog.FUGO_ISSUED,
        catalog.PROVISION_REQUESTS,
        catalog.PROVISION_RESPONSES,
        catalog.REVIEW_DECISIONS,
    )

    def __init__(self, policies: Policies, verifier: PermitVerifier, clock: Callable[[], datetime] = now_utc) -> None:
        self.policies = policies
        self.verifier = verifier
        self.clock = clock
        self.position: Position | None = None  # of the input being handled, for dead letters
        # every tenant's own topics: the tenant of an input is the topic's, never the payload's
        self.inputs: tuple[Topic, ...] = tuple(
            catalog.for_tenant(t, code) for code in sorted(policies.network.bodies) for t in self.templates
        )

    def accepts(self, event: Event) -> bool:
        return self.policies.network.body(event.tenant) is not None

    def store(self, conn: Connection, tenant: str) -> TenantStore:
        return TenantStore(conn, tenant)

    def handle(self, conn: Connection, topic: Topic, event: Event) -> list[Output]:
        tenant, mismatch = catalog.tenant_check(topic, event)
        if mismatch is not None:
            return [self._dead_letter(topic, event, mismatch)]
        store = self.store(conn, tenant)
        try:
            if isinstance(event, ChukanPerson):
                return self._person(store, event)
            if isinstance(event, FugoIssuance):
                return self._fugo_issued(store, event)
            if isinstance(event, FukuhonRegistration):
                return self._fukuhon(store, event)
            if isinstance(event, ChukanQuery):
                return self._query(store, event)
            if isinstance(event, ProvisionRequest):
                return self._provision(store, event)
            if isinstance(event, ProvisionResponse):
                return self._answer(store, event)
            if isinstance(event, ReviewDecision):
                return self._review(store, event)
        except Rejected as exc:
            return [self._dead_letter(topic, event, str(exc))]
        raise TypeError(f"the 中間サーバー does not take {type(event).__name__}")

    def _dead_letter(self, topic: Topic, event: Event, reason: str) -> Output:
        return rejection(topic, event, reason, self.position, event_id=derived_id("chukan-dlq", event.event_id),
                         occurred_at=self.clock(), source=SOURCE, step="chukan.register")  # fmt: skip

    # --- persons and 符号 -------------------------------------------------------------------------------------

    def _person(self, store: TenantStore, person: ChukanPerson) -> list[Output]:
        current = store.person(person.integrated_atena_no)
        if current is not None and current.version > person.version:
            return []
        fugo = current.fugo if current is not None else None
        requested = bool(current.fugo_requested) if current is not None else False
        out: list[Output] = []
        if fugo is None and not requested and person.person_token:
            requested = True
            out.append(
                (
                    catalog.for_tenant(catalog.FUGO_REQUESTS, store.tenant),
                    FugoIssuance(
                        event_id=derived_id("fugo-request", store.tenant, person.integrated_atena_no),
                        occurred_at=self.clock(),
                        tenant=store.tenant,
                        source_system=SOURCE,
                        integrated_atena_no=person.integrated_atena_no,
                        person_token=person.person_token,
                    ),
                )
            )
        identity = person.person
        support: bool | None = person.support_measure
        if current is not None and current.version == person.version and current.support_measure is not support:
            support = None  # two states of one 住基 version disagree on the flag: unknown until a newer version
        waiting = store.waiting_for(person.integrated_atena_no)
        if fugo is not None:
            out += [self._send(store, ChukanQuery.from_json(row.query), fugo) for row in waiting]
        elif not requested:
            for row in waiting:
                out += self._fail_query(store, ChukanQuery.from_json(row.query), MSG_NO_FUGO)
        store.set_person(
            integrated_no=person.integrated_atena_no,
            person_token=person.person_token,
            name=identity.name,
            name_kana=identity.name_kana,
            sex=identity.sex.value,
            birth_date=identity.birth_date,
            address=identity.address,
            status=person.status.value,
            support_measure=support,
            version=person.version,
            fugo=fugo,
            fugo_requested=requested,
            updated_at=self.clock(),
        )
        return out

    def _fugo_issued(self, store: TenantStore, issued: FugoIssuance) -> list[Output]:
        if store.person(issued.integrated_atena_no) is None:
            return []
        if issued.fugo is None:
            store.update_person(issued.integrated_atena_no, fugo_requested=False)
            out: list[Output] = []
            for row in store.waiting_for(issued.integrated_atena_no):
                out += self._fail_query(store, ChukanQuery.from_json(row.query), MSG_NO_FUGO)
            return out
        store.update_person(issued.integrated_atena_no, fugo=issued.fugo)
        return [
            self._send(store, ChukanQuery.from_json(row.query), issued.fugo)
            for row in store.waiting_for(issued.integrated_atena_no)
        ]

    # --- 副本 ------------------------------------------------------------------------------------------------

    def _fukuhon(self, store: TenantStore, reg: FukuhonRegistration) -> list[Output]:
        if reg.integrated_atena_no is None:
            raise Rejected("副本に団体内統合宛名番号がありません")
        if reg.atena_no is not None:
            raise Rejected("副本に宛名番号が含まれています: 中間サーバーへは統合宛名番号だけを送ります")
        same = store.fukuhon(reg.record_id, reg.version)
        if same is not None:
            if same.event_id == str(reg.event_id):
                return []
            raise Rejected(MSG_DUPLICATE_RECORD)
        if reg.operation is FukuhonOperation.REGISTER and store.record_exists(reg.record_id):
            raise Rejected(MSG_DUPLICATE_RECORD)
        store.add(
            chukan_fukuhon,
            record_id=reg.record_id,
            version=reg.version,
            event_id=str(reg.event_id),
            integrated_no=reg.integrated_atena_no,
            info_name_code=reg.info_name_code,
            dataset_item_code=reg.dataset_item_code,
            record_key=reg.record_key,
            parent_key=reg.parent_key,
            publication_start=reg.publication_start,
            publication_end=reg.publication_end,
            operation=reg.operation.value,
            data=json.dumps(reg.data, ensure_ascii=False, sort_keys=True),
            registered_at=self.clock(),
        )
        return []

    # --- requester side ----------------------------------------------------------------------------------------

    def _query(self, store: TenantStore, query: ChukanQuery) -> list[Output]:
        """Send the query under the person's 符号; wait when the person or the 符号 is still on its way."""
        if store.outgoing(query.request_id) is not None:
            return []
        person = store.person(query.integrated_atena_no)
        store.add(
            chukan_outgoing,
            request_id=str(query.request_id),
            integrated_no=query.integrated_atena_no,
            query=query.to_json(),
            status="WAITING_FUGO",
            requested_at=query.requested_at,
        )
        if person is None or (not person.fugo and person.fugo_requested):
            return []  # the registration (a separate topic) or the 符号 arrives later: _person / _fugo_issued send it
        if not person.fugo:
            return self._fail_query(store, query, MSG_NO_FUGO)
        return [self._send(store, query, person.fugo)]

    def _send(self, store: TenantStore, query: ChukanQuery, fugo: str) -> Output:
        store.set_outgoing_status(str(query.request_id), "SENT")
        request = ProvisionRequest(
            event_id=derived_id("query", query.event_id),
            occurred_at=self.clock(),
            tenant=store.tenant,
            source_system=SOURCE,
            request_id=query.request_id,
            requester=store.tenant,
            provider=query.provider,
            affair_code=query.affair_code,
            info_name_code=query.info_name_code,
            items=query.items,
            fugo=fugo,
            fiscal_year_from=query.fiscal_year_from,
            fiscal_year_to=query.fiscal_year_to,
            requested_at=query.requested_at,
        )
        return (catalog.for_tenant(catalog.NETWORK_QUERIES, store.tenant), request)

    def _fail_query(self, store: TenantStore, query: ChukanQuery, message: str) -> list[Output]:
        """The query cannot leave (no 符号): answer the connector and record it on the requester side."""
        now = self.clock()
        store.set_outgoing_status(str(query.request_id), "ANSWERED")
        response = ProvisionResponse(
            event_id=derived_id("local-error", query.event_id),
            occurred_at=now,
            tenant=store.tenant,
            source_system=SOURCE,
            request_id=query.request_id,
            requester=store.tenant,
            provider=query.provider,
            outcome=ProvisionOutcome.ERROR,
            message=message,
            responded_at=now,
        )
        record = self._requester_record(store, query, response)
        answer = replace(response, integrated_atena_no=query.integrated_atena_no)
        return [record, (catalog.for_tenant(catalog.QUERY_ANSWERS, store.tenant), answer)]

    def _requester_record(self, store: TenantStore, query: ChukanQuery, response: ProvisionResponse) -> Output:
        """The requester's 情報提供等記録 of ``query`` and its answer."""
        return self._record(
            store,
            side=RecordSide.REQUESTER,
            request_event=query.event_id,
            request_id=query.request_id,
            requester=store.tenant,
            provider=query.provider,
            affair_code=query.affair_code,
            info_name_code=query.info_name_code,
            items=query.items,
            requested_at=query.requested_at,
            request_body=query.to_json(),
            response=response,
            non_disclosure=False,
        )

    def _answer(self, store: TenantStore, response: ProvisionResponse) -> list[Output]:
        outgoing = store.outgoing(response.request_id)
        if outgoing is None or outgoing.status == "ANSWERED":
            return []
        store.set_outgoing_status(outgoing.request_id, "ANSWERED")
        query = ChukanQuery.from_json(outgoing.query)
        record = self._requester_record(store, query, response)
        answer = replace(
            response,
            event_id=derived_id("answer", response.event_id),
            occurred_at=self.clock(),
            source_system=SOURCE,
            integrated_atena_no=outgoing.integrated_no,
        )
        return [record, (catalog.for_tenant(catalog.QUERY_ANSWERS, store.tenant), answer)]

    # --- provider side -----------------------------------------------------------------------------------------

    def permit_problem(self, store: TenantStore, request: ProvisionRequest) -> str | None:
        """Why the request's 提供許可証 is not acceptable, or ``None`` (the first failing check, in this order:
        present, signature, binding to this request and tenant, expiry, not used before).
        """
        permit = request.permit
        if permit is None:
            return MSG_NO_PERMIT
        if not self.verifier.valid_signature(permit):
            return MSG_BAD_SIGNATURE
        if permit_mismatches(permit, request, store.tenant):
            return MSG_PERMIT_MISMATCH
        if permit.expires_at <= self.clock():
            return MSG_PERMIT_EXPIRED
        if store.permit_used(permit.permit_id):
            return MSG_PERMIT_USED
        return None

    def _list_problem(self, request: ProvisionRequest) -> str | None:
        network = self.policies.network
        requester, provider = network.body(request.requester), network.body(request.provider)
        if requester is None or provider is None:
            return not_permitted(self.policies.permitted.info_name(request.info_name_code))
        entry = self.policies.permitted.match(
            requester.body_class, provider.body_class, request.affair_code, request.info_name_code, request.items
        )
        if entry is None:
            return not_permitted(self.policies.permitted.info_name(request.info_name_code))
        return None

    def _provision(self, store: TenantStore, request: ProvisionRequest) -> list[Output]:
        """Act on a provision request; its permit is used up by this presentation whatever the outcome."""
        permit = request.permit
        first_use = permit is not None and not store.permit_used(permit.permit_id)
        outputs, outcome = self._provide(store, request)
        if permit is not None and first_use:
            store.add(
                chukan_used_permits,
                permit_id=str(permit.permit_id),
                request_id=str(request.request_id),
                used_at=self.clock(),
                outcome=outcome.value,
            )
        return outputs

    def person_hold(self, person: sa.Row[Any]) -> str | None:
        """Why the person-level 自動応答不可フラグ holds a provision about ``person`` (in words), or ``None``.

        Fails closed: only a recorded 住基 state saying "not under a support measure" lets a provision through;
        a support measure, or an unknown state (NULL), holds it.
        """
        if "support_measure" not in self.policies.sensitive.person_flags:
            return None
        if person.support_measure is True:
            return NOTE_SUPPORT_MEASURE
        if person.support_measure is not False:
            return NOTE_FLAG_UNKNOWN
        return None

    def _provide(self, store: TenantStore, request: ProvisionRequest) -> tuple[list[Output], ProvisionOutcome]:
        problem = self.permit_problem(store, request)
        outcome = ProvisionOutcome.REFUSED
        detail = problem
        if problem == MSG_PERMIT_MISMATCH and request.permit is not None:
            detail = f"{problem}: {'、'.join(permit_mismatches(request.permit, request, store.tenant))}"
        if problem is None:
            problem = detail = self._list_problem(request)
        person = None
        if problem is None:
            person = store.person_by_fugo(request.fugo)
            if person is None:
                problem = detail = MSG_UNKNOWN_FUGO
                outcome = ProvisionOutcome.ERROR
        if problem is not None or person is None:
            replies = self._provider_reply(store, request, outcome, problem, (), non_disclosure=False, reason=detail)
            return replies, outcome
        reasons: list[HoldReason] = []
        notes: list[str] = []
        person_note = self.person_hold(person)
        if person_note is not None:
            reasons.append(HoldReason.PERSON_FLAG)
            notes.append(person_note)
        flagged = self.policies.sensitive.flagged(request.info_name_code, request.items)
        if flagged:
            reasons.append(HoldReason.ITEM_FLAG)
            notes += [f"{i}: {self.policies.sensitive.items[(request.info_name_code, i)]}" for i in flagged]
        if reasons:
            now = self.clock()
            held = HeldProvision(
                event_id=derived_id("held", request.event_id),
                occurred_at=now,
                tenant=store.tenant,
                source_system=SOURCE,
                request_id=request.request_id,
                requester=request.requester,
                provider=request.provider,
                info_name_code=request.info_name_code,
                items=request.items,
                hold_reasons=tuple(reasons),
                flagged_items=flagged,
                status=HoldStatus.HELD,
                held_at=now,
            )
            store.add(
                chukan_held,
                request_id=str(request.request_id),
                integrated_no=person.integrated_no,
                request=request.to_json(),
                hold_reasons=",".join(r.value for r in reasons),
                hold_note=" / ".join(notes),
                flagged_items=",".join(flagged),
                status=HoldStatus.HELD.value,
                held_at=now,
            )
            return [(catalog.for_tenant(catalog.HELD_PROVISIONS, store.tenant), held)], ProvisionOutcome.HELD
        lines = self.lines(store, person.integrated_no, request)
        replies = self._provider_reply(
            store, request, ProvisionOutcome.PROVIDED_AUTOMATICALLY, None, lines, non_disclosure=False
        )
        return replies, ProvisionOutcome.PROVIDED_AUTOMATICALLY

    def lines(self, store: TenantStore, integrated_no: str, request: ProvisionRequest) -> tuple[ResponseLine, ...]:
        """Per-line and per-item answers from the person's current 副本, within the requested fiscal years."""
        today = self.clock().date()
        fy_item = self.policies.permitted.fiscal_year_item(request.info_name_code)
        out: list[ResponseLine] = []
        for row in store.current_fukuhon(integrated_no, request.info_name_code, today):
            data: dict[str, str] = json.loads(row.data)
            fy = _fiscal_year_of(data, fy_item, row.publication_start)
            if request.fiscal_year_from is not None and fy < request.fiscal_year_from:
                continue
            if request.fiscal_year_to is not None and fy > request.fiscal_year_to:
                continue
            items = tuple(
                ResponseItem(item_code=i, status=STATUS_OK, value=data[i])
                if i in data
                else ResponseItem(item_code=i, status=STATUS_NO_DATA, message="該当なし")
                for i in request.items
            )
            out.append(ResponseLine(line_no=len(out) + 1, status=STATUS_OK, record_id=row.record_id, items=items))
        if not out:
            out.append(ResponseLine(line_no=1, status=STATUS_NO_DATA, message=MSG_NO_DATA))
        return tuple(out)

    def _provider_reply(
        self,
        store: TenantStore,
        request: ProvisionRequest,
        outcome: ProvisionOutcome,
        message: str | None,
        lines: Sequence[ResponseLine],
        *,
        non_disclosure: bool,
        reason: str | None = None,
    ) -> list[Output]:
        """The answer to the requester and the provider's 情報提供等記録 (``reason``: the record's, when it says
        more than the answer's ``message``).
        """
        now = self.clock()
        response = ProvisionResponse(
            event_id=derived_id("response", request.event_id),
            occurred_at=now,
            tenant=request.requester,
            source_system=SOURCE,
            request_id=request.request_id,
            requester=request.requester,
            provider=request.provider,
            outcome=outcome,
            message=message,
            lines=tuple(lines),
            responded_at=now,
        )
        record = self._record(
            store,
            side=RecordSide.PROVIDER,
            request_event=request.event_id,
            request_id=request.request_id,
            requester=request.requester,
            provider=request.provider,
            affair_code=request.affair_code,
            info_name_code=request.info_name_code,
            items=request.items,
            requested_at=request.requested_at,
            request_body=sanitized_request(request),
            response=response,
            non_disclosure=non_disclosure,
            reason=reason,
        )
        return [(catalog.for_tenant(catalog.PROVISION_RESPONSES, request.requester), response), record]

    def _review(self, store: TenantStore, decision: ReviewDecision) -> list[Output]:
        """A reviewer's signed decision (``chukan.review-decisions.v1``): acted on only when this server enrolled
        the staff id as an active reviewer of the decision's tenant and the signature verifies against that key
        (it covers every field: tenant, request, verdict and reason cannot be changed on the way), and only for a
        request still held. Every decision received is kept with its outcome; a rejected one is also dead-lettered
        with the reason, and changes nothing.
        """
        reviewer = store.reviewer(decision.staff_id)
        reason: str | None = None
        if reviewer is None:
            reason = f"{decision.staff_id} is not a reviewer of {store.tenant} at this 中間サーバー"
        elif reviewer.status != REVIEWER_ACTIVE:
            reason = f"reviewer {decision.staff_id} of {store.tenant} is {reviewer.status.lower()}"
        elif not valid_review_signature(reviewer.public_key, decision):
            reason = f"the decision's signature does not verify against reviewer {decision.staff_id}'s key"
        else:
            held = store.held(str(decision.request_id))
            if held is None:
                reason = f"no held provision {decision.request_id} for {store.tenant}"
            elif held.status != HoldStatus.HELD.value:
                reason = f"{decision.request_id} was already decided ({held.status} by {held.decided_by})"
        store.add(
            chukan_review_decisions,
            event_id=str(decision.event_id),
            request_id=str(decision.request_id),
            staff_id=decision.staff_id,
            verdict=decision.verdict.value,
            outcome=DECISION_REJECTED if reason else DECISION_ACCEPTED,
            reason=reason,
            received_at=self.clock(),
        )
        if reason is not None:
            return [self._dead_letter(catalog.for_tenant(catalog.REVIEW_DECISIONS, store.tenant), decision, reason)]
        approve = decision.verdict is ReviewVerdict.APPROVE
        return self.decide(store.conn, store.tenant, str(decision.request_id), decision.staff_id, approve,
                           decision.reason)  # fmt: skip

    def decide(
        self, conn: Connection, tenant: str, request_id: str, staff_id: str, approve: bool, reason: str | None
    ) -> list[Output]:
        """A reviewer's decision on a held provision: send it (approve) or refuse it with a reason.

        Deciding twice returns the first decision's outputs (so a send that failed can be repeated); deciding a
        request that is not held raises :class:`LookupError`.
        """
        store = self.store(conn, tenant)
        held = store.held(request_id)
        if held is None:
            raise LookupError(f"no held provision {request_id} for {tenant}")
        if held.status != HoldStatus.HELD.value:
            return decode_outputs(held.outputs)
        if not approve and not (reason and reason.strip()):
            raise ValueError("a refusal needs a reason")
        request = ProvisionRequest.from_json(held.request)
        person = store.person(held.integrated_no)
        undisclosed = person is None or person.support_measure is not False  # unknown state: 不開示 (fail closed)
        now = self.clock()
        if approve:
            lines = self.lines(store, held.integrated_no, request)
            outputs = self._provider_reply(
                store,
                request,
                ProvisionOutcome.PROVIDED_AFTER_REVIEW,
                None,
                lines,
                non_disclosure=undisclosed,
            )
        else:
            outputs = self._provider_reply(
                store,
                request,
                ProvisionOutcome.REFUSED,
                reason,
                (),
                non_disclosure=undisclosed,
            )
        status = HoldStatus.APPROVED if approve else HoldStatus.REFUSED
        decided = HeldProvision(
            event_id=derived_id("decided", request.event_id),
            occurred_at=now,
            tenant=tenant,
            source_system=SOURCE,
            request_id=request.request_id,
            requester=request.requester,
            provider=request.provider,
            info_name_code=request.info_name_code,
            items=request.items,
            hold_reasons=tuple(HoldReason(r) for r in held.hold_reasons.split(",") if r),
            flagged_items=tuple(i for i in held.flagged_items.split(",") if i),
            status=status,
            held_at=held.held_at,
            decided_by=staff_id,
            decided_at=now,
            refusal_reason=None if approve else reason,
        )
        outputs.append((catalog.for_tenant(catalog.HELD_PROVISIONS, tenant), decided))
        store.decide_held(
            request_id,
            status=status.value,
            decided_by=staff_id,
            decided_at=now,
            refusal_reason=None if approve else reason,
            outputs=encode_outputs(outputs),
        )
        return outputs

    # --- 情報提供等記録 ------------------------------------------------------------------------------------------

    def _record(
        self,
        store: TenantStore,
        *,
        side: RecordSide,
        request_event: uuid.UUID,
        request_id: uuid.UUID,
        requester: str,
        provider: str,
        affair_code: str,
        info_name_code: str,
        items: tuple[str, ...],
        requested_at: datetime,
        request_body: str,
        response: ProvisionResponse,
        non_disclosure: bool,
        reason: str | None = None,
    ) -> Output:
        provided = response.outcome in (ProvisionOutcome.PROVIDED_AUTOMATICALLY, ProvisionOutcome.PROVIDED_AFTER_REVIEW)
        record = ProvisionRecord(
            event_id=derived_id("record-event", side, request_event),
            occurred_at=self.clock(),
            tenant=store.tenant,
            source_system=SOURCE,
            record_id=derived_id("record", side, request_event),
            request_id=request_id,
            side=side,
            requester=requester,
            provider=provider,
            affair_code=affair_code,
            info_name_code=info_name_code,
            items=items,
            requested_at=requested_at,
            provided_at=response.responded_at if provided else None,
            non_disclosure=non_disclosure,
            outcome=response.outcome,
            request_body=request_body,
            response_body=response.to_json(),
            reason=reason if reason is not None else response.message,
        )
        store.add(
            chukan_records,
            record_id=str(record.record_id),
            request_id=str(request_id),
            side=side.value,
            outcome=response.outcome.value,
            requested_at=requested_at,
            body=record.to_json(),
        )
        return (catalog.for_tenant(catalog.PROVISION_RECORDS, store.tenant), record)


def _fiscal_year_of(data: dict[str, str], item: str | None, fallback: date) -> int:
    try:
        return int(data[item]) if item is not None else fiscal_year(fallback)
    except (KeyError, ValueError):
        return fiscal_year(fallback)
