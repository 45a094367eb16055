"""The faust-streaming processors: thin shells around :mod:`processors.rules`.

Three agents share one app, co-partitioned on ``tenant:宛名番号`` (6 partitions, murmur2 everywhere):

* ``residents.apply`` — 住基異動 → the person's change log (table ``persons``) → ``residents.v1``; a 転入 also
  yields the year's invitations;
* ``results.match`` — results → 突合 against the log and the person's ledger book (table ``books``) →
  ``ledger.entries.v1``, ``screening.errors.v1``, ``fukuhon.registrations.v1``;
* ``commands.apply`` — 年度開始 → 受診勧奨 / 繰越受診通知 for the residents of the command's partition.

Effectively once, designed around faust's bugs: the app runs *at least once* and owns its offset commits (see
:class:`Settler`): an offset is committed only after the producer has been flushed, so an event's outputs and its
table changelog entries are durable before its offset is. Every output is deterministic (ids derive from keys and
versions) and a replayed event re-emits the same records, so a replay after SIGKILL is harmless downstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import CollectorRegistry

from hub.kafka import partition_for
from hub.settings import Settings
from hub.validation import fiscal_year
from monitoring.metrics import DeadLetterReason, HubMetrics
from processors.rules.eligibility import load_rules
from processors.rules.institutions import load_institutions
from processors.rules.invitations import invitations_for
from processors.rules.ledger import Context, LedgerBook, decode_book, encode_book, load_fukuhon_policy, process_result
from processors.rules.residents import PersonLog
from schemas import models as m
from schemas.record import ModelError, now_utc
from schemas.serde import DecodeError, TopicSerde
from topics import catalog
from topics.catalog import Topic

log = logging.getLogger("kenshin_hub.processors")

APP_ID = catalog.PROCESSORS_APP_ID
SETTLE_EVERY = 200  # events between producer flushes (and acks)
SETTLE_INTERVAL_S = 0.5
GAP_TIMEOUT_S = 5.0  # a hole in the processed offsets older than this is read again
RETRIES = 8  # attempts for a failure that is not the data's fault (about 16 s in all)
TICK_INTERVAL_S = 1.0  # heartbeat (liveness) and readiness refresh


def _log_of(raw: Any) -> PersonLog:
    if not raw:
        return PersonLog()
    return PersonLog(tuple(m.ResidentChange.from_json(x) for x in raw))


def _encode_log(person_log: PersonLog) -> list[str]:
    return [c.to_json() for c in person_log.changes]


@dataclass
class Settler:
    """Commits what has been processed — contiguously, and only once everything it produced is delivered.

    faust-streaming drops a fetched message when its flow is suspended (rebalance, recovery) yet marks it read
    (``Consumer._drain_messages``: ``wait_first(callback(message), suspend_flow.wait())`` then
    ``set_read_offset``). With faust's own acks that leaves a gap its tracker can never commit past (the lag stalls);
    committing the highest processed offset instead loses the message (measured: 36 of 2,500 people across four
    kill -9 restarts, 3 of 10,000 at a plain start). So the agents never ack through faust, and this settler:

    * commits, per partition, only the contiguous run of processed offsets from the last commit, after a producer
      flush, so no offset is committed ahead of its effects (outputs and table changelog);
    * seeks a partition back to its first missing offset when a gap outlives ``GAP_TIMEOUT_S``: the dropped
      messages are read again (a replay is harmless: every output is deterministic and idempotent).
    """

    flush: Callable[[], Awaitable[None]]
    commit: Callable[[dict[Any, int]], Awaitable[bool]]
    committed: Callable[[Any], int | None]
    seek: Callable[[Any, int], Awaitable[None]]
    processed: dict[Any, set[int]] = field(default_factory=dict)  # tp -> offsets processed, not yet committed
    base: dict[Any, int] = field(default_factory=dict)  # tp -> next offset to commit
    gap_since: dict[Any, float] = field(default_factory=dict)
    since_settle: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def add(self, event: Any) -> None:
        message = event.message
        tp = message.tp
        if tp not in self.base:
            known = self.committed(tp)
            self.base[tp] = known if known is not None and known >= 0 else message.offset
        if message.offset >= self.base[tp]:
            self.processed.setdefault(tp, set()).add(message.offset)
        self.since_settle += 1
        if self.since_settle >= SETTLE_EVERY:
            await self.settle()

    async def settle(self) -> None:
        async with self.lock:
            self.since_settle = 0
            if not any(self.processed.values()):
                return
            await self.flush()
            offsets: dict[Any, int] = {}
            for tp, done in self.processed.items():
                start = base = self.base[tp]
                while base in done:
                    done.discard(base)
                    base += 1
                if base > start:
                    offsets[tp] = base
                self.base[tp] = base
                if done:
                    since = self.gap_since.setdefault(tp, time.monotonic())
                    if time.monotonic() - since > GAP_TIMEOUT_S:
                        log.warning(
                            "%s[%s]: offset %s was dropped by the consumer; reading again from there",
                            tp.topic,
                            tp.partition,
                            base,
                        )
                        self.gap_since.pop(tp, None)
                        done.clear()
                        await self.seek(tp, base)
                else:
                    self.gap_since.pop(tp, None)
            if offsets and not await self.commit(offsets):
                log.info("commit refused (partitions moved); the events will be processed again")


class Processors:
    """Builds the faust app and its agents for one deployment (no module-level app singleton).

    ``metrics`` receives the processing hooks (a private bundle when not given); ``heartbeat`` is called every
    second from the app's event loop, so a stuck loop stops beating.
    """

    def __init__(
        self,
        settings: Settings,
        registry: SchemaRegistryClient,
        *,
        app_id: str = APP_ID,
        replication_factor: int = 1,
        metrics: HubMetrics | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else HubMetrics(CollectorRegistry(), process="processors")
        self._heartbeat = heartbeat
        self._ready = False
        self.ctx = Context(load_rules(), load_institutions(), load_fukuhon_policy())
        self.serdes: dict[str, TopicSerde[Any]] = {t.name: TopicSerde(t, registry) for t in catalog.ALL_TOPICS}
        self.app = faust.App(
            app_id,
            broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap_servers.split(",")],
            store="memory://",
            processing_guarantee="at_least_once",
            topic_replication_factor=replication_factor,
            topic_partitions=catalog.RESIDENT_CHANGES.partitions,
            web_enabled=False,
            producer_acks=-1,
            broker_commit_interval=1.0,
            # A worker killed with SIGKILL leaves its group membership behind until the session times out; 10 s
            # (not faust's 60 s) lets its replacement take the partitions over quickly.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=2.0,
            stream_wait_empty=False,
            consumer_auto_offset_reset="earliest",
        )
        raw: dict[str, Any] = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
        }
        self.topics = {
            t.name: self.app.topic(t.name, partitions=t.partitions, internal=False, **raw) for t in catalog.ALL_TOPICS
        }
        self.persons = self.app.Table(
            "persons",
            default=list,
            partitions=catalog.RESIDENT_CHANGES.partitions,
            key_type=str,
        )
        self.years = self.app.Table("years", default=int, partitions=catalog.RESIDENT_CHANGES.partitions, key_type=str)
        self.books = self.app.Table("books", default=dict, partitions=catalog.RESIDENT_CHANGES.partitions, key_type=str)
        for table, spec in (
            (self.persons, catalog.PERSONS_STATE),
            (self.books, catalog.BOOKS_STATE),
            (self.years, catalog.YEARS_STATE),
        ):
            if table.changelog_topic.get_topic_name() != spec.name:
                raise RuntimeError(f"table changelog {table.changelog_topic.get_topic_name()} is not in the catalog")
        self.settler = Settler(self._flush, self._commit, self._committed, self._seek)
        self.app.agent(self.topics[catalog.RESIDENT_CHANGES.name], name="residents.apply")(self._residents)
        self.app.agent(self.topics[catalog.INSTITUTION_RESULTS.name], name="results.match")(self._results)
        self.app.agent(self.topics[catalog.HUB_COMMANDS.name], name="commands.apply")(self._commands)
        self.app.timer(SETTLE_INTERVAL_S)(self._settle_timer)
        self.app.timer(TICK_INTERVAL_S)(self._tick)

    async def _flush(self) -> None:
        await self.app.producer.flush()

    async def _commit(self, offsets: dict[Any, int]) -> bool:
        consumer: Any = self.app.consumer  # faust ThreadDelegateConsumer: commits these exact offsets
        return bool(await consumer._commit(offsets))

    def _committed(self, tp: Any) -> int | None:
        consumer: Any = self.app.consumer
        value = consumer._committed_offset.get(tp)
        return int(value) if value is not None else None

    async def _seek(self, tp: Any, offset: int) -> None:
        await self.app.consumer.seek(tp, offset)

    async def _settle_timer(self) -> None:
        await self.settler.settle()

    async def _tick(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat()
        app: Any = self.app
        try:
            assigned = bool(app.consumer.assignment())
        except Exception:  # noqa: BLE001 - the consumer is not started (yet, or any more): not ready
            assigned = False
        self._ready = assigned and not app.rebalancing and not getattr(app, "in_recovery", False)

    def ready(self) -> bool:
        """Partitions assigned, no rebalance and no table recovery under way (as of the last tick)."""
        return self._ready

    # -- plumbing -----------------------------------------------------------------------------------------------

    async def emit(self, topic: Topic, event: m.Event, step: str) -> None:
        serde = self.serdes[topic.name]
        await self.topics[topic.name].send(key=serde.key(event), value=serde.value(event))
        self.metrics.message_out(topic.name, step)

    async def dead_letter(self, source: Topic, step: str, event: Any, exc: BaseException) -> None:
        message = event.message
        # Our own errors are worded without personal data; others (library or bugs) are named by class only.
        ours = isinstance(exc, DecodeError | ModelError | ValueError)
        reason = str(exc) if ours else f"processing failed: {type(exc).__name__}"
        if isinstance(exc, DecodeError):
            category = DeadLetterReason.UNDECODABLE
        else:
            category = DeadLetterReason.INVALID if ours else DeadLetterReason.RETRIES_EXHAUSTED
        self.metrics.dead_letter(source.name, step, category)
        log.warning(
            "%s: dead-lettered %s[%s]@%s: %s",
            step,
            message.topic,
            message.partition,
            message.offset,
            reason[:300],
        )
        if source.dlq is None:
            return
        letter = m.DeadLetter(
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"dlq:{message.topic}:{message.partition}:{message.offset}"),
            occurred_at=now_utc(),
            tenant=self.settings.tenant,
            source_system=APP_ID,
            step=step,
            reason=reason[:500],
            error_type=type(exc).__name__,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            original_key=message.key,
            original_value=message.value,
        )
        await self.emit(source.dlq, letter, step)

    async def _each(self, stream: Any, source: Topic, step: str, handle: Callable[[Any, Any], Awaitable[None]]) -> None:
        manual = stream.noack()
        async for event in manual.events():
            started = time.perf_counter()
            self.metrics.message_in(source.name, step)
            await self._process(source, step, handle, event)
            self.metrics.processing_time(step, time.perf_counter() - started)
            await self.settler.add(event)

    async def _process(
        self, source: Topic, step: str, handle: Callable[[Any, Any], Awaitable[None]], event: Any
    ) -> None:
        """Handle one event; bad data goes to the DLQ at once, other failures are retried before they do."""
        try:
            decoded = self.serdes[source.name].decode(event.value, source.name)
        except DecodeError as exc:
            await self.dead_letter(source, step, event, exc)
            return
        delay = 0.2
        for attempt in range(1, RETRIES + 1):
            try:
                await handle(event, decoded)
                return
            except (ModelError, ValueError) as exc:  # the data itself is wrong: retrying cannot help
                await self.dead_letter(source, step, event, exc)
                return
            except Exception as exc:  # noqa: BLE001 - transient (metadata, broker) or a bug: retry, then DLQ
                if attempt == RETRIES:
                    await self.dead_letter(source, step, event, exc)
                    return
                log.warning("%s: attempt %s failed (%s), retrying", step, attempt, type(exc).__name__)
                self.metrics.retry(step)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- agents -------------------------------------------------------------------------------------------------

    async def _residents(self, stream: Any) -> None:
        await self._each(stream, catalog.RESIDENT_CHANGES, "residents.apply", self._apply_change)

    async def _apply_change(self, event: Any, change: m.ResidentChange) -> None:
        key = catalog.RESIDENT_CHANGES.key_of(change)
        person_log, new = _log_of(self.persons[key]).add(change)
        if new:
            self.persons[key] = _encode_log(person_log)
        state = person_log.state()
        if state is None:
            return
        await self.emit(catalog.RESIDENTS, state, "residents.apply")
        year = fiscal_year(change.change_date)
        started = self.years[f"{change.tenant}:{event.message.partition}"]
        # A 転入 during a fiscal year already started is invited at once; earlier ones were (or will be) covered
        # by the 年度開始 command of their year.
        if change.change_type is m.ResidentChangeType.MOVE_IN and started and year >= started:
            book = decode_book(self.books[key])
            for notice in invitations_for(
                state, book.entries, fiscal_year=year, trigger=m.InvitationTrigger.MOVE_IN, rules=self.ctx.rules
            ):
                await self.emit(catalog.INVITATIONS, notice, "residents.apply")

    async def _results(self, stream: Any) -> None:
        await self._each(stream, catalog.INSTITUTION_RESULTS, "results.match", self._match)

    async def _match(self, event: Any, result: m.ScreeningResult) -> None:
        key = catalog.INSTITUTION_RESULTS.key_of(result)
        raw_log = self.persons[key]
        person_log = _log_of(raw_log) if raw_log else None
        book: LedgerBook = decode_book(self.books[key])
        source = m.SourcePointer(
            topic=event.message.topic, partition=event.message.partition, offset=event.message.offset
        )
        new_book, outputs = process_result(book, result, person_log, self.ctx, source)
        if new_book != book:
            self.books[key] = encode_book(new_book)
        for output in outputs:
            await self.emit(_topic_for(output), output, "results.match")
            if isinstance(output, m.LedgerEntry):
                self.metrics.ledger_entry(output.kind, output.version)
            elif isinstance(output, m.ScreeningError) and output.status is m.ErrorStatus.OPEN:
                self.metrics.matching_error(output.kind, output.reasons)

    async def _commands(self, stream: Any) -> None:
        await self._each(stream, catalog.HUB_COMMANDS, "commands.apply", self._command)

    async def _command(self, event: Any, command: m.HubCommand) -> None:
        if command.command is not m.CommandType.FISCAL_YEAR_START:
            raise ValueError(f"unknown command {command.command}")
        partitions = catalog.RESIDENT_CHANGES.partitions
        year_key = f"{command.tenant}:{command.partition}"
        if command.fiscal_year > self.years[year_key]:
            self.years[year_key] = command.fiscal_year
        sent = 0
        for key, raw in list(self.persons.items()):
            if partition_for(key.encode(), partitions) != command.partition or not key.startswith(command.tenant):
                continue
            state = _log_of(raw).state()
            if state is None:
                continue
            book = decode_book(self.books[key])
            for notice in invitations_for(
                state,
                book.entries,
                fiscal_year=command.fiscal_year,
                trigger=m.InvitationTrigger.FISCAL_YEAR_START,
                rules=self.ctx.rules,
            ):
                await self.emit(catalog.INVITATIONS, notice, "commands.apply")
                sent += 1
        log.info(
            "commands.apply: fiscal year %s start, partition %s: %s notices",
            command.fiscal_year,
            command.partition,
            sent,
        )


INPUT_TOPICS: tuple[Topic, ...] = (catalog.RESIDENT_CHANGES, catalog.INSTITUTION_RESULTS, catalog.HUB_COMMANDS)

_OUTPUT_TOPICS: dict[type[m.Event], Topic] = {
    m.LedgerEntry: catalog.LEDGER_ENTRIES,
    m.ScreeningError: catalog.SCREENING_ERRORS,
    m.FukuhonRegistration: catalog.FUKUHON_REGISTRATIONS,
    m.Invitation: catalog.INVITATIONS,
    m.ResidentState: catalog.RESIDENTS,
}


def _topic_for(event: m.Event) -> Topic:
    return _OUTPUT_TOPICS[type(event)]
