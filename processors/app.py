"""The processors as one handler of the hub's runtime: thin shells around :mod:`processors.rules.steps`.

Four inputs, co-partitioned on ``tenant:宛名番号`` (6 partitions, murmur2 everywhere):

* ``residents.apply`` — 住基異動 → the person's change log → ``residents.v1``; a 転入 in a started year also yields
  the year's invitations;
* ``results.match`` — results → 突合 against the log and the person's ledger book → ``ledger.entries.v1``,
  ``screening.errors.v1``, ``fukuhon.registrations.v1``;
* ``history.apply`` — 転入前の受診履歴 (from the connector) → the person's book: they count for the interval rule
  (a result within the interval is an error again) and the year's notices;
* ``commands.apply`` — 年度開始 → 受診勧奨 for the residents of the command's partition;
* ``notices.request`` — 繰越受診通知の申出 (recorded by staff) → the notice on ``invitations.v1`` and the decision on
  ``notice.decisions.v1``, or the decision refused with its reasons;
* ``decisions.apply`` — エラー処理 (staff: 受理, 訂正, 処理済, 取消) and SUPERSEDED (from the reception index) → the
  person's book: ledger, errors and 副本 as ``results.match`` emits them;
* ``receptions.index`` — where each person's latest submission of a 受付番号 is (``ledger.receptions.v1``, keyed by
  the 受付番号, not the person) → ``processor_receptions``, and SUPERSEDED to every 宛名番号 it no longer stands
  under (:mod:`processors.rules.receptions`).

Per batch, inside the runtime's transaction: lock the batch's partitions (``processor_years``), load the batch's
people in one query, run the steps in offset order, write the changed people back in one upsert. The runtime stores
the outputs in its outbox in the same transaction, delivers them, then commits the offsets: effectively once.
A person's 住基 change log carries the 個人番号: it is stored sealed (:func:`processors.store.seal_log`,
:mod:`hub.pii`) and opened when loaded.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.engine.handler import Delivery, Handler, Outcome, Output, Refusal
from hub.pii import PiiKeys, default_keys, seal_resident_number
from monitoring.metrics import DeadLetterReason, HubMetrics
from processors.rules.eligibility import load_rules
from processors.rules.institutions import encode_kinds, load_institutions
from processors.rules.ledger import BookChanges, Context, load_fukuhon_policy, published
from processors.rules.receptions import index
from processors.rules.steps import (
    PersonState,
    apply_change,
    apply_decision,
    apply_history,
    apply_notice_request,
    apply_result,
    changes,
    decode_log,
    decode_state_book,
    encode_log,
    encode_state_book,
    year_start_notices,
)
from processors.store import (
    PROCESSORS_MIGRATIONS,
    institution_versions,
    open_log,
    people,
    receptions,
    seal_log,
    years,
)
from schemas import models as m
from schemas.record import ModelError
from sinks.db import insert_or_ignore, require_head, upsert
from topics import catalog
from topics.catalog import Topic

log = logging.getLogger("kenshin_hub.processors")

APP_ID = catalog.PROCESSORS_APP_ID
INPUT_TOPICS: tuple[Topic, ...] = (
    catalog.RESIDENT_CHANGES,
    catalog.INSTITUTION_RESULTS,
    catalog.LEDGER_HISTORY,
    catalog.HUB_COMMANDS,
    catalog.NOTICE_REQUESTS,
    catalog.INSTITUTION_CHANGES,
    catalog.LEDGER_DECISIONS,
    catalog.RECEPTION_CLAIMS,
)
STEPS = {
    catalog.RESIDENT_CHANGES.name: "residents.apply",
    catalog.INSTITUTION_RESULTS.name: "results.match",
    catalog.LEDGER_HISTORY.name: "history.apply",
    catalog.HUB_COMMANDS.name: "commands.apply",
    catalog.NOTICE_REQUESTS.name: "notices.request",
    catalog.INSTITUTION_CHANGES.name: "institutions.apply",
    catalog.LEDGER_DECISIONS.name: "decisions.apply",
    catalog.RECEPTION_CLAIMS.name: "receptions.index",
}
_OUTPUT_TOPICS: dict[type[m.Event], Topic] = {
    m.LedgerEntry: catalog.LEDGER_ENTRIES,
    m.ScreeningError: catalog.SCREENING_ERRORS,
    m.FukuhonRegistration: catalog.FUKUHON_REGISTRATIONS,
    m.Invitation: catalog.INVITATIONS,
    m.ResidentState: catalog.RESIDENTS,
    m.NoticeDecision: catalog.NOTICE_DECISIONS,
    m.LedgerDecision: catalog.LEDGER_DECISIONS,
    m.ReceptionClaim: catalog.RECEPTION_CLAIMS,
}
_CHUNK = 500  # keys per SELECT … IN
# People whose decoded state is kept between batches (_Decoded): the people of about the last two batches (the
# runtime's default batch is 2,000), which is where a person's events meet again (a 1次 and its 精検, a 転入 and its
# history, the slices of a 年度開始). Larger is not better: with 20,000 a 200k city ran 14 % slower (probably the
# cyclic GC walking every cached object) at twice the RSS; only a city that fits whole gained (BENCHMARKS.md).
DECODED_PEOPLE = 4_000
COMMAND_SLICE = 2_000  # residents per slice of a 年度開始 (the rest follows in a continuation command)


def topic_for(event: m.Event) -> Topic:
    """The topic of a rules output (a withdrawal goes where its entry or error goes)."""
    return _OUTPUT_TOPICS[type(published(event))]


def output_for(event: m.Event) -> Output:
    """A rules output as it is published: ``EntryWithdrawn`` / ``ErrorWithdrawn`` as their entry / error marked
    withdrawn (``LedgerEntry.withdrawn``, ``ErrorStatus.WITHDRAWN``), on that record's topic.
    """
    record = published(event)
    return _OUTPUT_TOPICS[type(record)], record


def _sealed(output: Output, keys: PiiKeys) -> Output:
    """An output as it leaves the processors: a resident's 個人番号 sealed (:func:`hub.pii.seal_resident_number`)."""
    topic, record = output
    if isinstance(record, m.ResidentState):
        return topic, seal_resident_number(record, keys)
    return output


class _Produced(list[Output]):
    """One delivery's outputs, with what its step changed in the person's book (counted once committed)."""

    def __init__(self, outputs: Iterable[Output], changed: BookChanges) -> None:
        super().__init__(outputs)
        self.changed = changed


# HubMetrics.ledger_entry labels version 1 NEW and any other UPDATED; versions count inputs now, so the
# processors pass these instead of the entry's version.
_NEW, _UPDATED = 1, 2


@dataclass
class _Person:
    """A person of the batch: the state acted on, and the state and texts as they stand in the store.

    ``stored`` is the state ``log_text`` / ``book_text`` (the columns, the log sealed) decode to. A half of the
    state that a step did not replace is written back as the text it was read as: a result changes the book only,
    a 住基 change the log (and the book only when matching again changes it).
    """

    key: str
    state: PersonState
    partition: int
    tenant: str
    dirty: bool = False
    stored: PersonState | None = None
    log_text: str | None = None
    book_text: str | None = None


class _Decoded(OrderedDict[str, tuple[str | None, str | None, PersonState, int]]):
    """The states last read or written, with the texts they were stored as; least recently used first, bounded.

    A state is taken from here only when the row now holds exactly those texts (the sealed log's nonce makes each
    write's text unique), so a batch rolled back, a partition that another worker moved on, or a store changed
    behind the process's back is decoded from the row again: the store stays the only truth.
    """

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound

    def get_state(self, key: str, log_text: str | None, book_text: str | None) -> PersonState | None:
        hit = self.get(key)
        if hit is None or hit[0] != log_text or hit[1] != book_text:
            return None
        self.move_to_end(key)
        return hit[2]

    def put(self, key: str, log_text: str | None, book_text: str | None, state: PersonState, partition: int) -> None:
        self[key] = (log_text, book_text, state, partition)
        self.move_to_end(key)
        while len(self) > self.bound:
            self.popitem(last=False)


@dataclass
class _Index:
    """The reception index rows of a batch's 受付番号 (read in one query per tenant), changed in memory as the
    batch's claims arrive in offset order, and the changed rows written back in one statement.
    """

    claims: dict[tuple[str, str], dict[str, m.ReceptionClaim]]
    changed: dict[tuple[str, str, str], m.ReceptionClaim] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection, deliveries: Sequence[Delivery]) -> _Index:
        first: dict[tuple[str, str], m.ReceptionClaim] = {}  # a claim of each 受付番号, as the rows' template
        for d in deliveries:
            if isinstance(d.event, m.ReceptionClaim):
                first.setdefault((d.event.tenant, d.event.reception_no), d.event)
        claims: dict[tuple[str, str], dict[str, m.ReceptionClaim]] = {key: {} for key in first}
        rc = receptions
        for tenant in sorted({t for t, _ in first}):
            numbers = sorted(r for t, r in first if t == tenant)
            for i in range(0, len(numbers), _CHUNK):
                query = sa.select(rc).where(rc.c.tenant == tenant, rc.c.reception_no.in_(numbers[i : i + _CHUNK]))
                for r in conn.execute(query):
                    claims[(tenant, r.reception_no)][r.atena_no] = replace(
                        first[(tenant, r.reception_no)],
                        atena_no=r.atena_no,
                        submitted_at=r.submitted_at,
                        result_event_id=uuid.UUID(r.result_event_id),
                        staff_id=r.staff_id,
                    )
        return cls(claims)

    def claim(self, claim: m.ReceptionClaim) -> list[Output]:
        """The reception index: keep the person's latest claim of the 受付番号; SUPERSEDED to whom it left."""
        held = self.claims[(claim.tenant, claim.reception_no)]
        kept, decisions = index(held, claim)
        if kept is not None:
            held[kept.atena_no] = kept
            self.changed[(kept.tenant, kept.reception_no, kept.atena_no)] = kept
        return [(catalog.LEDGER_DECISIONS, d) for d in decisions]

    def store(self, conn: Connection) -> None:
        if not self.changed:
            return
        rows = [
            {"tenant": c.tenant, "reception_no": c.reception_no, "atena_no": c.atena_no,
             "submitted_at": c.submitted_at, "result_event_id": str(c.result_event_id), "staff_id": c.staff_id}
            for _, c in sorted(self.changed.items())
        ]  # fmt: skip
        upsert(conn, receptions, rows, ["tenant", "reception_no", "atena_no"])


class Processors(Handler):
    """The processors' handler: 住基 → residents, 突合 → ledger / errors / 副本, invitations, 年度開始."""

    name = "processors"
    topics = INPUT_TOPICS

    def __init__(self, metrics: HubMetrics, ctx: Context | None = None, *, pii: PiiKeys | None = None) -> None:
        self.metrics = metrics
        self.ctx = ctx if ctx is not None else Context(load_rules(), load_institutions(), load_fukuhon_policy())
        self.pii = pii  # the keys of the sealed change logs (default: hub.pii.default_keys, the settings' key file)
        self._decoded = _Decoded(DECODED_PEOPLE)
        self._seed = self.ctx.institutions  # institutions.toml; the recorded changes are added from the store
        self._registry_mark: tuple[int, int] | None = None

    def setup(self, engine: Engine) -> None:
        require_head(engine, PROCESSORS_MIGRATIONS)
        self._pii()  # the key file is opened (or created) before the first batch

    def _pii(self) -> PiiKeys:
        if self.pii is None:
            self.pii = default_keys()
        return self.pii

    def steps(self, topic: Topic) -> tuple[str, ...]:
        return (STEPS[topic.name],)

    def output_step(self, topic: Topic) -> str:
        return STEPS[topic.name]

    def decode_step(self, topic: Topic) -> str:
        return STEPS[topic.name]

    # --- the batch -------------------------------------------------------------------------------------------

    def handle(self, conn: Connection, deliveries: Sequence[Delivery]) -> list[Outcome]:
        self._refresh_institutions(conn)  # another worker may have stored a change since the last batch
        started = self._lock_partitions(conn, deliveries)
        persons = self._load(conn, deliveries)
        index = _Index.load(conn, deliveries)
        outcomes: list[Outcome] = []
        for d in deliveries:
            step = STEPS[d.topic.name]
            began = time.perf_counter()
            try:
                outcomes.append(self._one(conn, d, persons, started, index))
            except (ModelError, ValueError) as exc:  # the data itself is wrong: its state is left as it was
                outcomes.append(Refusal(step, str(exc)[:300], exc, DeadLetterReason.INVALID))
            self.metrics.processing_time(step, time.perf_counter() - began)
        self._store(conn, persons.values())
        index.store(conn)
        return outcomes

    def _one(
        self,
        conn: Connection,
        d: Delivery,
        persons: dict[str, _Person],
        started: dict[tuple[str, int], int],
        receptions: _Index,
    ) -> list[Output]:
        event = d.event
        if isinstance(event, m.HubCommand):
            return self._command(conn, event, persons, started)
        if isinstance(event, m.InstitutionChange):
            self._record_institution(conn, event)
            return []
        if isinstance(event, m.ReceptionClaim):
            return receptions.claim(event)
        key = d.topic.key_of(event)
        person = persons.get(key)
        if person is None:
            person = persons[key] = _Person(key, PersonState(), d.partition, event.tenant)
        if isinstance(event, m.ResidentChange):
            year = started.get((event.tenant, d.partition), 0)
            state, out = apply_change(person.state, event, self.ctx, started_year=year)
        elif isinstance(event, m.ScreeningResult):
            source = m.SourcePointer(topic=d.topic.name, partition=d.partition, offset=d.offset)
            state, out = apply_result(person.state, event, self.ctx, source)
        elif isinstance(event, m.ScreeningHistory):
            state, out = apply_history(person.state, event, self.ctx)
        elif isinstance(event, m.LedgerDecision):
            state, out = apply_decision(person.state, event, self.ctx)
        elif isinstance(event, m.NoticeRequest):
            state, out = person.state, apply_notice_request(person.state, event, self.ctx)
        else:
            raise ValueError(f"{type(event).__name__} is not a processor input")
        changed = BookChanges() if state.book is person.state.book else changes(person.state, state)
        if state != person.state:
            person.state, person.dirty = state, True
        keys = self._pii()
        return _Produced((_sealed(output_for(e), keys) for e in out), changed)

    def _command(
        self, conn: Connection, command: m.HubCommand, persons: dict[str, _Person], started: dict[tuple[str, int], int]
    ) -> list[Output]:
        if command.command is not m.CommandType.FISCAL_YEAR_START:
            raise ValueError(f"unknown command {command.command}")
        where = (command.tenant, command.partition)
        if command.fiscal_year > started.get(where, 0):
            started[where] = command.fiscal_year
            conn.execute(
                sa.update(years)
                .where(years.c.tenant == command.tenant, years.c.partition == command.partition)
                .values(fiscal_year=command.fiscal_year)
            )
        # The partition's people as of now (what this batch changed so far is written first), one slice of them in
        # key order: a continuation command carries on after the slice, so memory stays bounded however large the
        # partition is (the continuation is an output like any other: stored, delivered, then the offset moves).
        self._store(conn, persons.values())
        query = sa.select(people.c.key, people.c.log, people.c.book).where(
            people.c.tenant == command.tenant, people.c.partition == command.partition
        )
        if command.after_key is not None:
            query = query.where(people.c.key > command.after_key)
        rows = conn.execute(query.order_by(people.c.key).limit(COMMAND_SLICE)).all()
        out: list[Output] = []
        for key, log_text, book_text in rows:
            known = persons.get(key)
            if known is not None:
                state = known.state
            else:
                state = self._state(command.tenant, key, command.partition, log_text, book_text)
            out.extend((catalog.INVITATIONS, n) for n in year_start_notices(state, command.fiscal_year, self.ctx))
        if len(rows) == COMMAND_SLICE:
            last = str(rows[-1][0])
            ident = f"fy-start:{command.tenant}:{command.fiscal_year}:{command.partition}:after:{last}"
            more = replace(
                command, event_id=uuid.uuid5(uuid.NAMESPACE_URL, ident), source_system=APP_ID, after_key=last
            )
            out.append((catalog.HUB_COMMANDS, more))
        log.info(
            "commands.apply: fiscal year %s start, partition %s: %s notices",
            command.fiscal_year,
            command.partition,
            len(out),
        )
        return out

    # --- state -----------------------------------------------------------------------------------------------

    def _lock_partitions(self, conn: Connection, deliveries: Sequence[Delivery]) -> dict[tuple[str, int], int]:
        """Lock the (tenant, partition) rows the batch acts on; their started fiscal years."""
        wanted = sorted({_where(d) for d in deliveries if not isinstance(d.event, m.ReceptionClaim)})
        insert_or_ignore(
            conn, years, [{"tenant": t, "partition": p, "fiscal_year": 0} for t, p in wanted], ["tenant", "partition"]
        )
        started: dict[tuple[str, int], int] = {}
        for tenant in sorted({t for t, _ in wanted}):
            parts = [p for t, p in wanted if t == tenant]
            query = (
                sa.select(years.c.partition, years.c.fiscal_year)
                .where(years.c.tenant == tenant, years.c.partition.in_(parts))
                .order_by(years.c.partition)
                .with_for_update()
            )
            started.update({(tenant, int(p)): int(y) for p, y in conn.execute(query)})
        return started

    # --- the 実施医療機関 registry -------------------------------------------------------------------------------

    def _record_institution(self, conn: Connection, change: m.InstitutionChange) -> None:
        """A recorded change kept (once: a redelivered one is already there), and in force for the next result."""
        iv = institution_versions
        known = conn.execute(sa.select(iv.c.seq).where(iv.c.event_id == str(change.event_id))).first()
        if known is None:
            conn.execute(iv.insert().values(
                event_id=str(change.event_id), tenant=change.tenant, code=change.code, name=change.name,
                kinds=encode_kinds(change.kinds), group_screening=change.group,
                follow_up=change.follow_up, valid_from=change.valid_from, valid_to=change.valid_to,
            ))  # fmt: skip
        self._refresh_institutions(conn)

    def _refresh_institutions(self, conn: Connection) -> None:
        """The registry the results are checked against: institutions.toml and every stored change, reread only
        when the store holds other changes than last time (one small query a batch).
        """
        iv = institution_versions
        mark = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(iv.c.seq), 0))).one()
        if (int(mark[0]), int(mark[1])) == self._registry_mark:
            return
        registry = self._seed.with_stored(conn.execute(sa.select(iv).order_by(iv.c.seq)))
        self.ctx = replace(self.ctx, institutions=registry)
        self._registry_mark = (int(mark[0]), int(mark[1]))

    def _load(self, conn: Connection, deliveries: Sequence[Delivery]) -> dict[str, _Person]:
        keys = sorted({d.topic.key_of(d.event) for d in deliveries
                       if not isinstance(d.event, _NOT_PERSONS)})  # fmt: skip
        persons: dict[str, _Person] = {}
        for i in range(0, len(keys), _CHUNK):
            query = sa.select(people.c.key, people.c.tenant, people.c.partition, people.c.log, people.c.book).where(
                people.c.key.in_(keys[i : i + _CHUNK])
            )
            for key, tenant, partition, log_text, book_text in conn.execute(query):
                state = self._state(tenant, key, int(partition), log_text, book_text)
                persons[key] = _Person(key, state, int(partition), tenant, False, state, log_text, book_text)
        return persons

    def _state(self, tenant: str, key: str, partition: int, log_text: str | None, book_text: str | None) -> PersonState:
        """The state a row's texts stand for: the one decoded or written last when the row still holds its texts."""
        state = self._decoded.get_state(key, log_text, book_text)
        if state is None:
            opened = open_log(log_text, self._pii(), tenant, key)
            state = PersonState(decode_log(opened), decode_state_book(book_text))
            self._decoded.put(key, log_text, book_text, state, partition)
        return state

    def _store(self, conn: Connection, persons: Iterable[_Person]) -> None:
        rows = []
        pii = self._pii()
        for p in persons:
            if not p.dirty:
                continue
            stored = p.stored
            if stored is None or p.state.log is not stored.log:
                p.log_text = seal_log(encode_log(p.state.log), pii, p.tenant, p.key)
            if stored is None or p.state.book is not stored.book:
                p.book_text = encode_state_book(p.state.book)
            rows.append(
                {"key": p.key, "tenant": p.tenant, "partition": p.partition, "log": p.log_text, "book": p.book_text}
            )
            p.stored, p.dirty = p.state, False
            self._decoded.put(p.key, p.log_text, p.book_text, p.state, p.partition)
        upsert(conn, people, rows, ["key"])

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Another worker acts on these partitions now: the states decoded for them are let go.

        They would not be taken anyway once that worker writes their rows; this frees the memory.
        """
        gone = {p for topic, p in partitions if topic in STEPS}
        for key in [k for k, (*_texts, partition) in self._decoded.items() if partition in gone]:
            del self._decoded[key]

    def committed(self, deliveries: Sequence[Delivery], outcomes: Sequence[Outcome]) -> None:
        """Count what the batch changed, not the records it emitted (re-emissions, versions that only count inputs):
        a NEW entry once per person × kind × fiscal year that first stands, UPDATED per change of what an entry
        says (or an entry standing again after a withdrawal), a matching error once per error newly OPEN (and the
        reasons a standing error newly has).
        """
        for outcome in outcomes:
            if not isinstance(outcome, _Produced):
                continue  # a refusal, or a command's notices
            changed = outcome.changed
            for entry in changed.new_entries:
                self.metrics.ledger_entry(entry.kind, _NEW)
            for entry in changed.updated_entries:
                self.metrics.ledger_entry(entry.kind, _UPDATED)
            for error in changed.opened_errors:
                self.metrics.matching_error(error.kind, error.reasons)


_NOT_PERSONS = (m.HubCommand, m.InstitutionChange, m.ReceptionClaim)  # inputs not keyed by a person


def _where(d: Delivery) -> tuple[str, int]:
    event = d.event
    if isinstance(event, m.HubCommand):
        return (event.tenant, event.partition)
    return (event.tenant, d.partition)
