"""Retention: delete what is past its period (``connectors/data/retention.toml``), for ONE tenant, in every store.

One function per store, each acting in ONE transaction of that store and returning the rows it deleted per table
(with ``dry_run``, the rows it would delete; nothing is written):

* :func:`retain_sinks` — the hub's database (``sinks/tables.py``): residents who moved out or died more than
  ``ceased_resident_years`` ago, with everything of theirs (ledger, history, errors, invitations, 繰越 requests,
  統合宛名番号, the connector's queued 副本 and queries); ledger entries and history older than
  ``ledger_fiscal_years`` fiscal years, invitations and 繰越受診通知の申出 older than ``invitation_fiscal_years``,
  errors resolved or withdrawn ``resolved_error_years`` ago (open errors stay), forwarded 副本 copies, the hub's
  情報提供等記録 and the connector's query log past ``provision_record_years``, 操作記録 past
  ``staff_operation_years``. ``statistics`` (counts, no person), ``staff_accounts`` / ``staff_sessions`` (no tenant)
  and ``integrated_atena_seq`` (a counter) are not personal data of the tenant's residents and are kept, as is
  ``institution_versions`` (the 実施医療機関 registry, reference data; also ``processor_institutions``);
* :func:`retain_processors` — the processors' store (``processors/store.py``): the state (sealed 住基 change log and
  ledger book) of persons whose log says they moved out or died more than ``ceased_resident_years`` ago;
* :func:`retain_chukan` — the 中間サーバー (``connectors/stores.py``): 情報提供等記録 past ``provision_record_years``
  and 副本 past their 公開終了日 (the behaviour of the first retention job, now for the one tenant), decided held
  provisions, answered outgoing queries, used permit ids, the reviewers' decisions as received past
  ``staff_operation_years`` (``chukan_reviewers``, the enrolled reviewers' keys, are accounts and kept), and persons
  registered as moved out or died more than ``ceased_resident_years`` ago with their 副本, decided holds and
  queries;
* :func:`retain_network` — the network simulator's store: the tenant's 符号 of persons its 中間サーバー no longer holds,
  and its log of the tenant's queries and provisions past ``provision_record_years`` (the period is the same for
  every party, so a line past it for this tenant is past it for the other party too).

Every store also loses, in the same transaction:

* ``runtime_outbox`` rows (the runtime's stored effects, ``hub/engine/store.py``). The runner deletes a row only in
  the next batch of its partition after Kafka has the offsets, so a quiet partition keeps its last rows forever.
  A row whose ``last_offset`` is below the group's offset committed in Kafka is deleted at once: its records were
  delivered (offsets are committed only after every record of the batch is acknowledged), and no replay can reach
  it (a replay starts at the committed offset). A row Kafka has no commit for is deleted once its inputs are older
  than ``outbox_uncommitted_days`` (by their Kafka timestamps): the runner produces a batch's records before it
  polls again and, on any failure, seeks back and re-sends them from the outbox before acting on anything newer,
  and a restarted or newly assigned worker replays from the committed offset in the same way. So a row this old has
  been delivered unless its partition has been unable to deliver for the whole period (the consumer-lag and
  liveness alerts fire long before); a replay of it would only re-send outputs already delivered, so nothing is
  lost by deleting it. The outbox carries no tenant: deleting delivered copies discloses and removes nothing of anyone;
* ``service_effects`` rows (the provision services' stored outputs per input, ``connectors/service.py``) older than
  ``service_effects_days`` whose outputs belong to the tenant. Rows without outputs (an input id only, no data) name
  no tenant and are left alone.

Compacted topics keep the latest value of a key forever: for every deleted row mirrored by one
(``residents.v1``, ``ledger.entries.v1``, ``screening.errors.v1``, ``chukan.held-provisions.v1``) the store's
result carries the key, and :func:`run_retention` produces a tombstone (the key, a null value) for each
(:func:`send_tombstones`) and waits for every delivery BEFORE the store's transaction commits: a failed delivery
rolls the deletion back, to be done again by the next run. Dead letters are kept only in their Kafka topics (there
is no SQL copy); their topics' retention is checked against ``dead_letter_days`` when ``retention.toml`` loads.

:func:`run_retention` runs the stores in order (sinks, processors, 中間サーバー, network); :func:`record_run` writes
the run to the store's own table (:data:`RUNS`; the 中間サーバー's is ``chukan_retention_runs``), never to another
party's; :class:`RetentionSchedule` runs it daily from a long-running process, for each tenant the process's store
holds (:class:`TenantSchedules`: every municipality for the 中間サーバー and the network).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy.engine import Connection, Engine

from connectors import stores as chukan_tables
from connectors.policy import Retention, default_policies, network_tenants
from hub.engine import store as engine_store
from hub.kafka import consumer_config
from hub.pii import PiiError, PiiKeys, default_keys
from hub.validation import JST, fiscal_year, is_valid_tenant_code
from processors import store as processor_tables
from processors.rules.steps import decode_log
from schemas.models import ErrorStatus, HoldStatus, ResidentStatus
from schemas.record import ModelError, now_utc
from sinks import tables as hub_tables
from topics import catalog
from topics.catalog import Topic

if TYPE_CHECKING:
    from hub.settings import Settings

log = logging.getLogger("kenshin_hub.retention")

Position = tuple[str, int]  # topic, partition
Tombstone = tuple[str, bytes]  # topic name, record key
SCHEDULE_PREFIX = "schedule:"
STORES = ("sinks", "processors", "chukan", "network")

# The table whose rows each compacted topic mirrors (same key fields): a deleted row's key gets a tombstone.
COMPACTED: Mapping[str, Topic] = {
    hub_tables.residents.name: catalog.RESIDENTS,
    hub_tables.ledger_entries.name: catalog.LEDGER_ENTRIES,
    hub_tables.screening_errors.name: catalog.SCREENING_ERRORS,
    chukan_tables.chukan_held.name: catalog.HELD_PROVISIONS,
}

_CHUNK = 200  # keys per DELETE … IN (composite keys: 5 parameters each at most)
_SCAN = 1_000  # processor states opened per page
_GONE = (ResidentStatus.MOVED_OUT.value, ResidentStatus.DECEASED.value)


class RetentionError(RuntimeError):
    """A retention run could not finish a store (its transaction was rolled back)."""


def _years(n: int) -> timedelta:
    return timedelta(days=366 * n)


@dataclass(frozen=True)
class Cutoffs:
    """What "past its period" means at ``now``: rows older than these (dates are JST) go."""

    now: datetime
    today: date
    records_before: datetime
    fukuhon_ended_before: date
    held_decided_before: datetime
    outgoing_before: datetime
    permits_before: datetime
    ceased_before: date  # 異動年月日 of a 転出 / 死亡
    ceased_registered_before: datetime  # the 中間サーバー's and the network's rows of such persons (timestamps)
    ledger_fiscal_year_from: int  # entries and history of earlier fiscal years go
    ledger_received_before: datetime  # history without a fiscal year: received before that year began
    invitation_fiscal_year_from: int
    errors_before: datetime
    fukuhon_outbox_before: datetime
    staff_operations_before: datetime
    outbox_inputs_before: datetime
    effects_before: datetime

    @classmethod
    def of(cls, policy: Retention, now: datetime) -> Cutoffs:
        if now.tzinfo is None:
            raise ValueError("retention needs an aware time")
        today = now.astimezone(JST).date()
        ledger_from = fiscal_year(today) - policy.ledger_fiscal_years
        return cls(
            now=now,
            today=today,
            records_before=now - _years(policy.provision_record_years),
            fukuhon_ended_before=today - timedelta(days=policy.fukuhon_days_after_publication_end),
            held_decided_before=now - timedelta(days=policy.held_decided_days),
            outgoing_before=now - timedelta(days=policy.outgoing_answered_days),
            permits_before=now - timedelta(days=policy.used_permit_days),
            ceased_before=today - _years(policy.ceased_resident_years),
            ceased_registered_before=now - _years(policy.ceased_resident_years),
            ledger_fiscal_year_from=ledger_from,
            ledger_received_before=datetime(ledger_from, 4, 1, tzinfo=JST).astimezone(UTC),
            invitation_fiscal_year_from=fiscal_year(today) - policy.invitation_fiscal_years,
            errors_before=now - _years(policy.resolved_error_years),
            fukuhon_outbox_before=now - timedelta(days=policy.fukuhon_outbox_sent_days),
            staff_operations_before=now - _years(policy.staff_operation_years),
            outbox_inputs_before=now - timedelta(days=policy.outbox_uncommitted_days),
            effects_before=now - timedelta(days=policy.service_effects_days),
        )


@dataclass
class StoreResult:
    """What retention did in one store: rows per table (every table it checked, 0 included), the tombstones its
    deletions call for, what it could not check, and (中間サーバー) the 符号 of the persons it deleted.
    """

    store: str
    counts: dict[str, int] = field(default_factory=dict)
    tombstones: list[Tombstone] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gone_fugo: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# --- Kafka: committed offsets and input ages (for the outbox), tombstones ----------------------------------------


class KafkaPositions(Protocol):
    """What the outbox retention asks Kafka."""

    def committed(self, group_id: str, positions: Sequence[Position]) -> dict[Position, int]:
        """The group's committed offset (the next to read) of each partition that has one."""

    def first_offsets_at(self, positions: Sequence[Position], when: datetime) -> dict[Position, int]:
        """Per partition, the first offset whose timestamp is at or after ``when`` (every earlier one is older)."""


class KafkaOffsets:
    """:class:`KafkaPositions` from the cluster: a consumer that never subscribes, so it joins no group."""

    def __init__(self, settings: Settings, timeout_s: float = 15.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s

    def _consumer(self, group_id: str) -> Consumer:
        return Consumer(consumer_config(self.settings, group_id))

    def committed(self, group_id: str, positions: Sequence[Position]) -> dict[Position, int]:
        consumer = self._consumer(group_id)
        try:
            found = consumer.committed([TopicPartition(t, p) for t, p in positions], timeout=self.timeout_s)
        finally:
            consumer.close()
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.error is None and tp.offset >= 0}

    def first_offsets_at(self, positions: Sequence[Position], when: datetime) -> dict[Position, int]:
        ms = int(when.timestamp() * 1000)
        consumer = self._consumer("kenshin-hub-retention")
        try:
            found = consumer.offsets_for_times([TopicPartition(t, p, ms) for t, p in positions], self.timeout_s)
            out: dict[Position, int] = {}
            for tp in found:
                if tp.error is not None:
                    continue
                if tp.offset >= 0:
                    out[(tp.topic, tp.partition)] = tp.offset
                else:  # no message that recent: every message of the partition is older
                    out[(tp.topic, tp.partition)] = consumer.get_watermark_offsets(tp, self.timeout_s)[1]
            return out
        finally:
            consumer.close()


DeliveryCallback = Callable[[KafkaError | None, Message], None]


class TombstoneProducer(Protocol):
    """The part of ``confluent_kafka.Producer`` that tombstones use."""

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> None: ...

    def poll(self, timeout: float = -1) -> int: ...

    def flush(self, timeout: float = -1) -> int: ...


def tombstone_key(topic: Topic, row: Mapping[str, Any]) -> bytes:
    """The record key of ``row`` on ``topic`` (its key fields joined by ``:``, as :meth:`Topic.key_of` makes it)."""
    return ":".join(str(row[name]) for name in topic.key_fields).encode()


def _compacted(name: str) -> bool:
    try:
        return catalog.by_name(name).cleanup_policy == "compact"
    except KeyError:
        return False


def send_tombstones(producer: TombstoneProducer, tombstones: Sequence[Tombstone], timeout_s: float = 30.0) -> int:
    """Produce a tombstone (key, null value) for each ``(topic, key)`` on its compacted topic and wait until the broker
    has acknowledged every one; :class:`RetentionError` if any is not. ``producer`` is made with the hub's
    :func:`hub.kafka.producer_config` (murmur2, like every producer of the hub, so a tombstone lands on the partition
    of the records it deletes). Returns the number sent.
    """
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.name())

    for topic, key in tombstones:
        if not _compacted(topic):
            raise ValueError(f"{topic} is not a compacted topic: a tombstone would delete nothing there")
        while True:
            try:
                producer.produce(topic, value=None, key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
    if not tombstones:
        return 0
    remaining = producer.flush(timeout_s)
    if remaining or failures:
        raise RetentionError(
            f"{remaining} tombstone(s) undelivered, errors: {sorted(set(failures)) or 'timeout'}: nothing deleted"
        )
    return len(tombstones)


# --- deleting by primary key in one transaction --------------------------------------------------------------------


class _Purge:
    """The deletions of one store's transaction, by primary key: a row matched by two rules is deleted (and counted)
    once, a dry run counts the same rows, and a deleted row mirrored by a compacted topic yields its tombstone.
    """

    def __init__(self, conn: Connection, result: StoreResult, dry_run: bool) -> None:
        self.conn = conn
        self.result = result
        self.dry_run = dry_run

    @staticmethod
    def _pk(table: sa.Table) -> list[sa.Column[Any]]:
        return list(table.primary_key.columns)

    def keys(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sa.select(*self._pk(table)).where(*where))]

    def keys_in(
        self, table: sa.Table, column: sa.Column[Any], values: Sequence[Any], *where: sa.ColumnElement[bool]
    ) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for chunk in engine_store.chunks(sorted(set(values)), _CHUNK):
            out += self.keys(table, column.in_(list(chunk)), *where)
        return out

    def remove(self, table: sa.Table, keys: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        unique = sorted(set(keys))
        pk = self._pk(table)
        if not self.dry_run:
            for chunk in engine_store.chunks(unique, _CHUNK):
                self.conn.execute(sa.delete(table).where(_key_in(pk, chunk)))
        self.result.counts[table.name] = self.result.counts.get(table.name, 0) + len(unique)
        topic = COMPACTED.get(table.name)
        if topic is not None:
            names = [c.name for c in pk]
            for k in unique:
                row = dict(zip(names, k, strict=True))
                on = catalog.own(topic, str(row["tenant"]))  # a held provision's is its tenant's own topic
                self.result.tombstones.append((on.name, tombstone_key(on, row)))
        return unique


def _key_in(pk: Sequence[sa.Column[Any]], keys: Sequence[tuple[Any, ...]]) -> sa.ColumnElement[bool]:
    if len(pk) == 1:
        return pk[0].in_([k[0] for k in keys])
    return sa.tuple_(*pk).in_(list(keys))


def _tenants_of(outputs: str) -> set[str]:
    try:
        items = json.loads(outputs)
    except ValueError:
        return set()
    found: set[str] = set()
    for item in items if isinstance(items, list) else ():
        value = item.get("value") if isinstance(item, dict) else None
        if isinstance(value, dict) and isinstance(value.get("tenant"), str):
            found.add(value["tenant"])
    return found


def _effects(p: _Purge, table: sa.Table, tenant: str, before: datetime) -> None:
    """``service_effects`` rows past the period whose outputs belong to ``tenant`` (a row also naming another tenant,
    e.g. an answer to the requesting municipality, is this tenant's act and past the period for both).
    """
    query = sa.select(table.c.service, table.c.input_id, table.c.outputs).where(table.c.acted_at < before)
    rows = p.conn.execute(query.execution_options(yield_per=_SCAN))  # read in pages: only the keys are kept
    p.remove(table, [(r.service, r.input_id) for r in rows if tenant in _tenants_of(r.outputs)])


OutboxLimits = dict[tuple[str, str, int], int]  # (group, topic, partition) -> rows with last_offset below it go


def _outbox_limits(
    engine: Engine, outbox: sa.Table, kafka: KafkaPositions | None, before: datetime, result: StoreResult
) -> OutboxLimits:
    """Asked before the store's transaction (no lock held while Kafka answers; offsets only grow)."""
    with engine.connect() as conn:
        present = [
            (str(g), str(t), int(p))
            for g, t, p in conn.execute(sa.select(outbox.c.group_id, outbox.c.topic, outbox.c.partition).distinct())
        ]
    if not present:
        return {}
    if kafka is None:
        result.notes.append(f"{outbox.name}: not checked (no Kafka to ask which offsets are committed)")
        return {}
    positions = sorted({(t, p) for _, t, p in present})
    try:
        aged = kafka.first_offsets_at(positions, before)
        committed: dict[tuple[str, str, int], int] = {}
        for group in sorted({g for g, _, _ in present}):
            mine = sorted({(t, p) for g, t, p in present if g == group})
            committed.update({(group, t, p): o for (t, p), o in kafka.committed(group, mine).items()})
    except KafkaException as exc:
        result.notes.append(f"{outbox.name}: not checked (Kafka: {type(exc).__name__})")
        return {}
    return {(g, t, p): max(committed.get((g, t, p), 0), aged.get((t, p), 0)) for g, t, p in present}


def _outbox(p: _Purge, outbox: sa.Table, limits: OutboxLimits) -> None:
    keys: list[tuple[Any, ...]] = []
    for (group, topic, partition), below in sorted(limits.items()):
        c = outbox.c
        keys += p.keys(outbox, c.group_id == group, c.topic == topic, c.partition == partition, c.last_offset < below)
    p.remove(outbox, keys)


BeforeCommit = Callable[[StoreResult], None]


def _transaction(
    engine: Engine,
    result: StoreResult,
    *,
    outbox: sa.Table,
    kafka: KafkaPositions | None,
    cut: Cutoffs,
    dry_run: bool,
    before_commit: BeforeCommit | None,
    body: Callable[[_Purge], None],
) -> StoreResult:
    limits = _outbox_limits(engine, outbox, kafka, cut.outbox_inputs_before, result)
    with engine.begin() as conn:
        purge = _Purge(conn, result, dry_run)
        body(purge)
        _outbox(purge, outbox, limits)
        if before_commit is not None and not dry_run:
            before_commit(result)  # tombstones: delivered before the deletion commits, or it is rolled back
    return result


def _check(tenant: str) -> None:
    if not is_valid_tenant_code(tenant):
        raise ValueError(f"{tenant!r} is not a 団体コード: retention acts on one tenant")


# --- the stores --------------------------------------------------------------------------------------------------


def retain_sinks(
    engine: Engine,
    tenant: str,
    policy: Retention,
    now: datetime,
    *,
    dry_run: bool = False,
    kafka: KafkaPositions | None = None,
    before_commit: BeforeCommit | None = None,
) -> StoreResult:
    """The hub's database (the sinks' and the connector's tables): see the module docstring."""
    _check(tenant)
    cut = Cutoffs.of(policy, now)
    t = hub_tables

    def body(p: _Purge) -> None:
        r = t.residents
        gone = p.keys(
            r,
            r.c.tenant == tenant,
            r.c.status.in_(_GONE),
            r.c.ceased_on.is_not(None),
            r.c.ceased_on < cut.ceased_before,
        )
        persons = [k[1] for k in gone]
        ia = t.integrated_atena
        integrated = [
            str(n)
            for chunk in engine_store.chunks(persons, _CHUNK)
            for (n,) in p.conn.execute(
                sa.select(ia.c.integrated_no).where(ia.c.tenant == tenant, ia.c.atena_no.in_(list(chunk)))
            )
        ]
        p.remove(r, gone)
        le, lv, lh = t.ledger_entries, t.ledger_versions, t.ledger_history
        se, inv = t.screening_errors, t.invitations
        closed = se.c.status.in_([ErrorStatus.RESOLVED.value, ErrorStatus.WITHDRAWN.value])
        resolved_long_ago = sa.or_(
            sa.and_(se.c.resolved_at.is_not(None), se.c.resolved_at < cut.errors_before),
            sa.and_(se.c.resolved_at.is_(None), se.c.detected_at < cut.errors_before),
        )
        old_history = sa.or_(
            lh.c.fiscal_year < cut.ledger_fiscal_year_from,
            sa.and_(lh.c.fiscal_year.is_(None), lh.c.received_at < cut.ledger_received_before),
        )
        cq, nd, nm, md = t.connector_queries, t.notice_decisions, t.notice_mailings, t.mailing_decisions
        periods: list[tuple[sa.Table, sa.ColumnElement[bool] | None]] = [
            (le, le.c.fiscal_year < cut.ledger_fiscal_year_from),
            (lv, lv.c.fiscal_year < cut.ledger_fiscal_year_from),
            (lh, old_history),
            (se, sa.and_(closed, resolved_long_ago)),
            (inv, inv.c.fiscal_year < cut.invitation_fiscal_year_from),
            (nd, nd.c.fiscal_year < cut.invitation_fiscal_year_from),  # a request is kept as long as its notice
            (nm, nm.c.fiscal_year < cut.invitation_fiscal_year_from),  # the mailing, as long as its notice
            (md, None),  # where a 支援措置 person's notices may go: kept while the person is
            (ia, None),
            (cq, cq.c.requested_at < cut.records_before),
        ]
        for table, period in periods:
            keys = p.keys_in(table, table.c.atena_no, persons, table.c.tenant == tenant)
            if period is not None:
                keys += p.keys(table, table.c.tenant == tenant, period)
            p.remove(table, keys)
        fo = t.fukuhon_outbox
        p.remove(
            fo,
            p.keys(fo, fo.c.tenant == tenant, fo.c.status != "PENDING", fo.c.queued_at < cut.fukuhon_outbox_before)
            + p.keys_in(fo, fo.c.integrated_no, integrated, fo.c.tenant == tenant),
        )
        pr = t.provision_records
        p.remove(pr, p.keys(pr, pr.c.tenant == tenant, pr.c.requested_at < cut.records_before))
        so = t.staff_operations
        p.remove(so, p.keys(so, so.c.tenant == tenant, so.c.performed_at < cut.staff_operations_before))
        _effects(p, t.service_effects, tenant, cut.effects_before)

    return _transaction(
        engine,
        StoreResult("sinks"),
        outbox=t.runtime_outbox,
        kafka=kafka,
        cut=cut,
        dry_run=dry_run,
        before_commit=before_commit,
        body=body,
    )


def retain_processors(
    engine: Engine,
    tenant: str,
    policy: Retention,
    now: datetime,
    *,
    dry_run: bool = False,
    kafka: KafkaPositions | None = None,
    before_commit: BeforeCommit | None = None,
    keys: PiiKeys | None = None,
) -> StoreResult:
    """The processors' store: the state of persons whose 住基 log ends in a 転出 or 死亡 dated before the period.

    The sealed logs are opened page by page outside the transaction (short reads, no lock held while decrypting);
    the transaction then deletes each such person only if their stored log is still the one that was judged (a
    person the processors changed meanwhile is judged again by the next run). A log that does not open is kept
    and counted in the notes.
    """
    _check(tenant)
    cut = Cutoffs.of(policy, now)
    pii = keys if keys is not None else default_keys()
    people = processor_tables.people
    judged: dict[str, str] = {}
    unreadable, after = 0, ""
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(people.c.key, people.c.log)
                .where(people.c.tenant == tenant, people.c.log.is_not(None), people.c.key > after)
                .order_by(people.c.key)
                .limit(_SCAN)
            ).all()
        for key, stored in rows:
            try:
                ceased = decode_log(processor_tables.open_log(stored, pii, tenant, key)).ceased_on()
            except (PiiError, ModelError, ValueError):
                unreadable += 1
                continue
            if ceased is not None and ceased < cut.ceased_before:  # a person kept minimal (no state) included
                judged[str(key)] = str(stored)
        if len(rows) < _SCAN:
            break
        after = str(rows[-1][0])
    result = StoreResult("processors")
    if unreadable:
        result.notes.append(f"{people.name}: {unreadable} change log(s) could not be opened and were kept")

    def body(p: _Purge) -> None:
        doomed: list[tuple[Any, ...]] = []
        for chunk in engine_store.chunks(sorted(judged), _CHUNK):
            query = sa.select(people.c.key, people.c.log).where(people.c.key.in_(list(chunk))).with_for_update()
            doomed += [(k,) for k, stored in p.conn.execute(query) if judged.get(k) == stored]
        p.remove(people, doomed)
        # the reception index's rows of those people (the 受付番号 they sent results under)
        rc = processor_tables.receptions
        atenas = [str(k).split(":", 1)[1] for (k,) in doomed]
        found: list[tuple[Any, ...]] = []
        for chunk in engine_store.chunks(atenas, _CHUNK):
            query = sa.select(rc.c.tenant, rc.c.reception_no, rc.c.atena_no).where(
                rc.c.tenant == tenant, rc.c.atena_no.in_(list(chunk))
            )
            found += [tuple(r) for r in p.conn.execute(query)]
        p.remove(rc, found)

    return _transaction(
        engine,
        result,
        outbox=processor_tables.runtime_outbox,
        kafka=kafka,
        cut=cut,
        dry_run=dry_run,
        before_commit=before_commit,
        body=body,
    )


def retain_chukan(
    engine: Engine,
    tenant: str,
    policy: Retention,
    now: datetime,
    *,
    dry_run: bool = False,
    kafka: KafkaPositions | None = None,
    before_commit: BeforeCommit | None = None,
) -> StoreResult:
    """The 中間サーバー's store, the tenant's rows only (every table is keyed by 団体コード first)."""
    _check(tenant)
    cut = Cutoffs.of(policy, now)
    return _transaction(
        engine,
        StoreResult("chukan"),
        outbox=chukan_tables.chukan_runtime[1],
        kafka=kafka,
        cut=cut,
        dry_run=dry_run,
        before_commit=before_commit,
        body=_chukan_rows(tenant, cut),
    )


def _chukan_rows(tenant: str, cut: Cutoffs) -> Callable[[_Purge], None]:
    s = chukan_tables

    def body(p: _Purge) -> None:
        pe = s.chukan_persons
        where_gone = (pe.c.tenant == tenant, pe.c.status.in_(_GONE), pe.c.updated_at < cut.ceased_registered_before)
        gone = p.conn.execute(sa.select(pe.c.integrated_no, pe.c.fugo).where(*where_gone)).all()
        persons = [str(r.integrated_no) for r in gone]
        p.result.gone_fugo |= {str(r.fugo) for r in gone if r.fugo}
        p.remove(pe, [(tenant, n) for n in persons])
        fu = s.chukan_fukuhon
        ended = sa.and_(fu.c.publication_end.is_not(None), fu.c.publication_end < cut.fukuhon_ended_before)
        p.remove(
            fu,
            p.keys(fu, fu.c.tenant == tenant, ended)
            + p.keys_in(fu, fu.c.integrated_no, persons, fu.c.tenant == tenant),
        )
        rec = s.chukan_records
        p.remove(rec, p.keys(rec, rec.c.tenant == tenant, rec.c.requested_at < cut.records_before))
        he = s.chukan_held
        decided = he.c.status != HoldStatus.HELD.value
        p.remove(
            he,
            p.keys(he, he.c.tenant == tenant, decided, he.c.decided_at < cut.held_decided_before)
            + p.keys_in(he, he.c.integrated_no, persons, he.c.tenant == tenant, decided),
        )
        og = s.chukan_outgoing
        answered = sa.and_(og.c.status == "ANSWERED", og.c.requested_at < cut.outgoing_before)
        p.remove(
            og,
            p.keys(og, og.c.tenant == tenant, answered)
            + p.keys_in(og, og.c.integrated_no, persons, og.c.tenant == tenant),
        )
        up = s.chukan_used_permits
        p.remove(up, p.keys(up, up.c.tenant == tenant, up.c.used_at < cut.permits_before))
        rd = s.chukan_review_decisions  # the reviewers' decisions as received: an operation record, kept as long
        p.remove(rd, p.keys(rd, rd.c.tenant == tenant, rd.c.received_at < cut.staff_operations_before))
        _effects(p, s.chukan_effects, tenant, cut.effects_before)

    return body


FugoLookup = Callable[[Sequence[str]], set[str]]  # of these 符号, those the 中間サーバー still holds


def chukan_fugo(engine: Engine, tenant: str) -> FugoLookup:
    """The 符号 the tenant's 中間サーバー holds, of those asked (for :func:`retain_network`)."""
    pe = chukan_tables.chukan_persons

    def held(fugo: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with engine.connect() as conn:
            for chunk in engine_store.chunks(sorted(set(fugo)), _CHUNK):
                query = sa.select(pe.c.fugo).where(pe.c.tenant == tenant, pe.c.fugo.in_(list(chunk)))
                found |= {str(f) for (f,) in conn.execute(query)}
        return found

    return held


def retain_network(
    engine: Engine,
    tenant: str,
    policy: Retention,
    now: datetime,
    *,
    dry_run: bool = False,
    kafka: KafkaPositions | None = None,
    before_commit: BeforeCommit | None = None,
    held_fugo: FugoLookup | None = None,
    gone_fugo: Iterable[str] = (),
) -> StoreResult:
    """The network simulator's store: the tenant's 符号 (issued longer ago than ``ceased_resident_years``) that its
    中間サーバー no longer holds (``held_fugo``; ``gone_fugo`` are being deleted there in this run), and the log lines
    where the tenant is the 照会者 or the 提供者, past ``provision_record_years``.
    """
    _check(tenant)
    cut = Cutoffs.of(policy, now)
    result = StoreResult("network")
    going = set(gone_fugo)
    if held_fugo is None:
        result.notes.append("network_fugo: not checked (no 中間サーバー store to tell which 符号 are still held)")

    def body(p: _Purge) -> None:
        nf, nl = chukan_tables.network_fugo, chukan_tables.network_log
        if held_fugo is not None:
            old = [
                str(f)
                for (f,) in p.conn.execute(
                    sa.select(nf.c.fugo).where(
                        nf.c.institution == tenant, nf.c.issued_at < cut.ceased_registered_before
                    )
                )
            ]
            held = held_fugo(old) - going if old else set()
            p.remove(nf, [(tenant, f) for f in old if f not in held])
        else:
            p.result.counts.setdefault(nf.name, 0)
        party = sa.or_(nl.c.requester == tenant, nl.c.provider == tenant)
        p.remove(nl, p.keys(nl, party, nl.c.logged_at < cut.records_before))
        _effects(p, chukan_tables.network_effects, tenant, cut.effects_before)

    return _transaction(
        engine,
        result,
        outbox=chukan_tables.network_runtime[1],
        kafka=kafka,
        cut=cut,
        dry_run=dry_run,
        before_commit=before_commit,
        body=body,
    )


# --- a run over every store ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionStores:
    """The stores a run acts on (None: not this run's). ``fugo_source`` is the 中間サーバー store the network's 符号 are
    checked against when ``chukan`` is not part of the run (default: ``chukan``).
    """

    sinks: Engine | None = None
    processors: Engine | None = None
    chukan: Engine | None = None
    network: Engine | None = None
    fugo_source: Engine | None = None


@dataclass
class RetentionReport:
    run_id: str
    tenant: str
    ran_at: datetime
    dry_run: bool
    policy_version: str
    cutoffs: Cutoffs
    results: list[StoreResult]
    tombstones_sent: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        return {r.store: dict(sorted(r.counts.items())) for r in self.results}

    def count(self, store: str, table: str) -> int:
        return next((r.counts.get(table, 0) for r in self.results if r.store == store), 0)

    @property
    def tables_checked(self) -> int:
        return sum(len(r.counts) for r in self.results)

    @property
    def tombstones(self) -> int:
        return sum(len(r.tombstones) for r in self.results)

    def detail(self, limit: int = 2_000) -> str:
        """One line for the staff operation record."""
        verb = "would delete" if self.dry_run else "deleted"
        parts = [f"{r.store}.{t}={n}" for r in self.results for t, n in sorted(r.counts.items()) if n]
        text = (
            f"run {self.run_id} tenant {self.tenant} policy {self.policy_version} {verb}: "
            f"{' '.join(parts) or 'nothing'}; tombstones {self.tombstones}; "
            f"{len(self.results)} store(s), {self.tables_checked} table(s) checked"
        )
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        out = [f"retention {self.run_id} for {self.tenant} (policy {self.policy_version}){' DRY RUN' * self.dry_run}"]
        for r in self.results:
            out.append(f"  {r.store}: {r.total} row(s) {verb}")
            out += [f"    {table:<28}{n:>8}" for table, n in sorted(r.counts.items())]
            out += [f"    note: {note}" for note in r.notes]
        sent = "would be sent" if self.dry_run else "sent"
        out.append(f"  tombstones {sent}: {self.tombstones}")
        out.append(f"  {len(self.results)} store(s), {self.tables_checked} table(s) checked")
        return out


def run_retention(
    stores: RetentionStores,
    tenant: str,
    *,
    policy: Retention | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    kafka: KafkaPositions | None = None,
    producer: TombstoneProducer | None = None,
    pii_keys: PiiKeys | None = None,
    delivery_timeout_s: float = 30.0,
) -> RetentionReport:
    """Retention for ``tenant`` in every store of ``stores``, each in its own transaction, in the order sinks,
    processors, 中間サーバー, network. A store's tombstones are delivered before its transaction commits; without a
    ``producer`` a store that needs tombstones is rolled back (:class:`RetentionError`). A store that fails stops
    the run: the stores before it keep their deletions (each run is complete on its own and the next one goes on).
    """
    _check(tenant)
    policy = policy if policy is not None else default_policies().retention
    now = now if now is not None else now_utc()
    report = RetentionReport(str(uuid.uuid4()), tenant, now, dry_run, policy.version, Cutoffs.of(policy, now), [])

    def deliver(result: StoreResult) -> None:
        if not result.tombstones:
            return
        if producer is None:
            raise RetentionError(f"{result.store}: {len(result.tombstones)} tombstone(s) to send and no producer")
        report.tombstones_sent += send_tombstones(producer, result.tombstones, delivery_timeout_s)

    common: dict[str, Any] = {"dry_run": dry_run, "kafka": kafka, "before_commit": deliver}
    if stores.sinks is not None:
        report.results.append(retain_sinks(stores.sinks, tenant, policy, now, **common))
    if stores.processors is not None:
        report.results.append(retain_processors(stores.processors, tenant, policy, now, keys=pii_keys, **common))
    gone: set[str] = set()
    if stores.chukan is not None:
        chukan = retain_chukan(stores.chukan, tenant, policy, now, **common)
        gone = chukan.gone_fugo
        report.results.append(chukan)
    if stores.network is not None:
        source = stores.fugo_source or stores.chukan
        held = chukan_fugo(source, tenant) if source is not None else None
        report.results.append(
            retain_network(stores.network, tenant, policy, now, held_fugo=held, gone_fugo=gone, **common)
        )
    return report


# Where each store records the runs over it (never in another party's store).
RUNS: Mapping[str, sa.Table] = {
    "sinks": hub_tables.retention_runs,
    "processors": processor_tables.retention_runs,
    "chukan": chukan_tables.chukan_retention_runs,
    "network": chukan_tables.network_retention_runs,
}


def record_run(
    engine: Engine, report: RetentionReport, run_by: str, table: sa.Table = chukan_tables.chukan_retention_runs
) -> None:
    """The run in ``table`` (:data:`RUNS`: the store's own): when, for which tenant, by whom, and every count (JSON:
    store -> table -> rows); ``chukan_retention_runs`` also keeps the periods and counts of the first job's two
    kinds. Dry runs are not recorded.
    """
    if report.dry_run:
        raise ValueError("a dry run deleted nothing: it is not a retention run")
    row: dict[str, Any] = {
        "run_id": report.run_id,
        "ran_at": report.ran_at,
        "policy_version": report.policy_version,
        "tenant": report.tenant,
        "run_by": run_by[:64],
        "counts": json.dumps(report.counts(), ensure_ascii=False, sort_keys=True),
    }
    if table is chukan_tables.chukan_retention_runs:
        row |= {
            "records_before": report.cutoffs.records_before,
            "fukuhon_ended_before": report.cutoffs.fukuhon_ended_before,
            "records_deleted": report.count("chukan", chukan_tables.chukan_records.name),
            "fukuhon_deleted": report.count("chukan", chukan_tables.chukan_fukuhon.name),
        }
    with engine.begin() as conn:
        conn.execute(sa.insert(table).values(**row))


def last_run(
    engine: Engine, tenant: str, run_by: str, table: sa.Table = chukan_tables.chukan_retention_runs
) -> datetime | None:
    t = table
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(sa.func.max(t.c.ran_at)).where(t.c.tenant == tenant, t.c.run_by == run_by)
        ).scalar_one_or_none()
    if value is None:
        return None
    if isinstance(value, str):  # an aggregate on SQLite comes back as text, not through the column's type
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"{t.name}.ran_at read as {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- the daily schedule ----------------------------------------------------------------------------------------------


class RetentionSchedule:
    """Daily retention of one process's store(s), for the process's tenant, called from its loop.

    :meth:`due` is true from ``retention_hour`` (JST) on a day without a run, and never within
    ``min_interval_hours`` of the last run; the last run is read from ``table``, the store's own (:data:`RUNS`;
    ``run_by`` is ``schedule:<name>``), so a restart does not run it again. :meth:`run` runs and records it.
    :meth:`tick` starts a due run in a background thread (the consume loop keeps turning, Kafka's poll interval is
    never exceeded) and :meth:`heartbeat` wraps a runner's heartbeat with it. A failed run is logged (error type
    only) and tried again after ``retry_after``.
    """

    def __init__(
        self,
        stores: RetentionStores,
        tenant: str,
        *,
        name: str,
        record: Engine,
        table: sa.Table = chukan_tables.chukan_retention_runs,
        policy: Retention | None = None,
        kafka: KafkaPositions | None = None,
        producer: Callable[[], TombstoneProducer] | None = None,
        pii_keys: PiiKeys | None = None,
        check_every_s: float = 60.0,
        retry_after: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        _check(tenant)
        self.stores = stores
        self.tenant = tenant
        self.run_by = f"{SCHEDULE_PREFIX}{name}"
        self.record = record
        self.table = table
        self.policy = policy if policy is not None else default_policies().retention
        self.kafka = kafka
        self.producer = producer
        self.pii_keys = pii_keys
        self.check_every_s = check_every_s
        self.retry_after = retry_after
        self.clock = clock
        self.last_report: RetentionReport | None = None
        self._last: datetime | None = None
        self._loaded = False
        self._not_before: datetime | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def last_run(self) -> datetime | None:
        if not self._loaded:
            self._last = last_run(self.record, self.tenant, self.run_by, self.table)
            self._loaded = True
        return self._last

    def due(self, now: datetime) -> bool:
        if now.astimezone(JST).hour < self.policy.retention_hour:
            return False
        if self._not_before is not None and now < self._not_before:
            return False
        last = self.last_run()
        if last is None:
            return True
        if now - last < timedelta(hours=self.policy.min_interval_hours):
            return False
        return last.astimezone(JST).date() < now.astimezone(JST).date()

    def run(self, now: datetime) -> RetentionReport:
        """Run retention now (due or not) and record it."""
        producer = self.producer() if self.producer is not None else None
        try:
            report = run_retention(
                self.stores,
                self.tenant,
                policy=self.policy,
                now=now,
                kafka=self.kafka,
                producer=producer,
                pii_keys=self.pii_keys,
            )
        finally:
            if producer is not None:
                producer.flush(30)
        record_run(self.record, report, self.run_by, self.table)
        self._last, self._loaded = now, True
        self.last_report = report
        log.info("retention %s (%s): %s", self.run_by, self.tenant, report.detail())
        return report

    def _run_logged(self, now: datetime) -> None:
        try:
            self.run(now)
        except Exception as exc:  # noqa: BLE001 - a failed run must not stop the process; it is tried again later
            self._not_before = now + self.retry_after
            log.warning(
                "retention %s (%s) failed: %s; next try after %s",
                self.run_by,
                self.tenant,
                type(exc).__name__,
                self._not_before,
            )

    def tick(self, now: datetime | None = None, *, background: bool = True) -> bool:
        """Start the run if it is due and none is running; whether one was started."""
        now = now if now is not None else self.clock()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            try:
                if not self.due(now):
                    return False
            except sa.exc.SQLAlchemyError as exc:
                log.warning("retention %s: the last run could not be read (%s)", self.run_by, type(exc).__name__)
                return False
            if not background:
                self._run_logged(now)
                return True
            self._thread = threading.Thread(target=self._run_logged, args=(now,), name="retention", daemon=True)
            self._thread.start()
            return True

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def heartbeat(self, beat: Callable[[], None] | None) -> Callable[[], None]:
        """``beat`` (a runner's heartbeat), plus :meth:`tick` at most every ``check_every_s``."""
        return _throttled(beat, self.tick, self.check_every_s)

    @classmethod
    def for_process(
        cls,
        settings: Settings,
        process: str,
        engine: Engine,
        tenant: str | None = None,
        fugo_source: Engine | None = None,
    ) -> RetentionSchedule:
        """The schedule of a long-running process over its own store ``engine``: ``sinks`` (the hub's database,
        which the connector shares: its schedule is the sinks'), ``processors``, ``chukan`` or ``network``. Runs
        are recorded in that store (:data:`RUNS`); tombstones go out with the process's producer configuration;
        committed offsets are read with its identity. The network's run reads (only) which 符号 the 中間サーバー
        still holds.
        """
        from confluent_kafka import Producer

        from hub.kafka import producer_config

        if process not in STORES:
            raise ValueError(f"no retention schedule for {process!r} (one of {', '.join(STORES)})")
        if process == "network" and fugo_source is None:
            fugo_source = _chukan_reader(settings)
        stores = RetentionStores(**{process: engine}, fugo_source=fugo_source)
        return cls(
            stores,
            tenant if tenant is not None else settings.tenant,
            name=process,
            record=engine,
            table=RUNS[process],
            kafka=KafkaOffsets(settings),
            producer=lambda: Producer(producer_config(settings)),
        )


def _chukan_reader(settings: Settings) -> Engine:
    """The 中間サーバー's store, which the network's run reads (only) to learn which 符号 are still held."""
    from connectors.runner import chukan_engine  # the runners import this module: imported when used

    return chukan_engine(settings)


def _throttled(beat: Callable[[], None] | None, tick: Callable[[], bool], every_s: float) -> Callable[[], None]:
    last = [float("-inf")]

    def turn() -> None:
        if beat is not None:
            beat()
        if time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            tick()

    return turn


SHARED = ("chukan", "network")  # the stores that hold every municipality's rows


def served_tenants(process: str, tenant: str) -> tuple[str, ...]:
    """The tenants a process's store holds rows of: every municipality of ``network.toml`` for the 中間サーバー and
    the network (one platform for all of them), the city's own (``tenant``) for the others.
    """
    if process in SHARED:
        return network_tenants()
    return (tenant,)


class TenantSchedules:
    """The daily runs of one store for each tenant it holds (:func:`served_tenants`), ticked in turn: at most one
    runs at a time, so the runs never contend for the store.
    """

    def __init__(self, schedules: Sequence[RetentionSchedule], check_every_s: float = 60.0) -> None:
        self.schedules = list(schedules)
        self.check_every_s = check_every_s

    @classmethod
    def for_process(cls, settings: Settings, process: str, engine: Engine) -> TenantSchedules:
        tenants = served_tenants(process, settings.tenant)
        source = _chukan_reader(settings) if process == "network" else None  # one engine for every tenant's run
        return cls([RetentionSchedule.for_process(settings, process, engine, t, source) for t in tenants])

    def tick(self, now: datetime | None = None, *, background: bool = True) -> bool:
        """Start the first due run, unless one is running; whether one was started."""
        if any(s.running() for s in self.schedules):
            return False
        return any(s.tick(now, background=background) for s in self.schedules)

    def join(self, timeout: float | None = None) -> None:
        for s in self.schedules:
            s.join(timeout)

    def heartbeat(self, beat: Callable[[], None] | None) -> Callable[[], None]:
        return _throttled(beat, self.tick, self.check_every_s)
