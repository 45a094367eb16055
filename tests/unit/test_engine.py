"""The runtime's pure parts: the outbox framing, the dead-letter builder's size guard, the retry policy."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.engine import deadletter, store
from hub.engine.retry import Backoff, DeliveryFailed, StaleOffsets, is_transient
from schemas.serde import DecodeError, RegistryUnavailable

pytestmark = pytest.mark.unit

records = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2**62),
        st.text(min_size=1, max_size=40),
        st.binary(max_size=64),
        st.binary(max_size=2048),
    ),
    max_size=20,
)


@given(records)
@settings(max_examples=200, deadline=None)
def test_the_outbox_framing_gives_back_exactly_what_was_packed(recs: list[tuple[int, str, bytes, bytes]]) -> None:
    assert store.unpack(store.pack(recs)) == recs


def test_a_truncated_outbox_blob_is_refused_not_misread() -> None:
    blob = store.pack([(3, "t", b"k", b"value"), (4, "u", b"", b"v")])
    for cut in (1, 2, 17, len(blob) - 1):
        with pytest.raises(ValueError, match="truncated"):
            store.unpack(blob[:cut])


def test_every_store_declares_the_runtime_tables_once() -> None:
    meta = sa.MetaData()
    offsets, outbox = store.define(meta)
    assert [c.name for c in offsets.primary_key.columns] == ["group_id", "topic", "partition"]
    assert [c.name for c in outbox.primary_key.columns] == ["group_id", "topic", "partition", "first_offset"]
    assert "topic_id" in offsets.c


def _letter(value: bytes, max_bytes: int = 10_000) -> object:
    return deadletter.build(
        group_id="g",
        source_system="test",
        default_tenant="012041",
        step="decode",
        reason="not a valid X",
        exc=DecodeError("x"),
        topic="t",
        partition=1,
        offset=7,
        key=b"011002:42",
        value=value,
        timestamp_ms=1_700_000_000_000,
        max_bytes=max_bytes,
    )


def test_a_dead_letter_keeps_the_original_bytes_and_its_position() -> None:
    letter = _letter(b"\x00\x01abc")
    assert letter.original_value == b"\x00\x01abc"  # type: ignore[attr-defined]
    assert letter.original_key == b"011002:42"  # type: ignore[attr-defined]
    assert letter.tenant == "011002"  # type: ignore[attr-defined]
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("t", 1, 7)  # type: ignore[attr-defined]


def test_a_dead_letter_of_a_message_near_the_size_limit_still_fits_and_says_what_was_cut() -> None:
    value = bytes(range(256)) * 39  # 9,984 bytes: under a 10,000-byte limit, but not with an envelope
    letter = _letter(value)
    assert len(letter.original_value) == deadletter.KEPT_HEAD  # type: ignore[attr-defined]
    assert hashlib.sha256(value).hexdigest() in letter.reason  # type: ignore[attr-defined]
    assert str(len(value)) in letter.reason  # type: ignore[attr-defined]
    same = _letter(value)
    assert same.event_id == letter.event_id  # type: ignore[attr-defined]  # a replay re-sends the same letter


def test_outages_are_transient_and_bad_data_is_not() -> None:
    assert is_transient(RegistryUnavailable("registry down"))
    assert is_transient(StaleOffsets("moved"))
    assert is_transient(DeliveryFailed("timeout"))
    assert is_transient(KafkaException(KafkaError(KafkaError._TRANSPORT)))
    assert is_transient(sa_exc.OperationalError("x", None, ValueError("database is locked")))
    assert not is_transient(DecodeError("not Avro"))
    assert not is_transient(sa_exc.IntegrityError("x", None, ValueError("duplicate")))


def test_the_back_off_doubles_up_to_its_ceiling_and_resets() -> None:
    b = Backoff(0.5, 4.0)
    assert [b.failed() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert 0 < b.wait_s() <= 4.0
    b.succeeded()
    assert (b.failures, b.wait_s()) == (0, 0.0)


def test_an_oversized_key_is_cut_and_the_letter_says_so_after_a_long_reason() -> None:
    key = b"012041:" + b"9" * 5000
    letter = deadletter.build(
        group_id="g",
        source_system="test",
        default_tenant="012041",
        step="decode",
        reason="x" * 5000,
        exc=DecodeError("x"),
        topic="t",
        partition=0,
        offset=1,
        key=key,
        value=b"v",
        timestamp_ms=None,
        max_bytes=1_000_000,
    )
    assert letter.original_key == key[: deadletter.KEPT_HEAD]
    assert hashlib.sha256(key).hexdigest() in letter.reason  # the note survives however long the reason was
    assert letter.reason.startswith("x" * deadletter.MAX_REASON + " [original key of 5007 bytes")


def test_a_tombstone_on_a_compacted_topic_is_passed_over_and_a_null_value_elsewhere_is_a_dead_letter() -> None:
    """Retention's tombstones (null values on compacted topics) are not bad data; a null on another topic is."""
    from confluent_kafka import Message
    from prometheus_client import CollectorRegistry

    from hub.engine.handler import Handler
    from hub.engine.runner import Runner
    from hub.settings import Settings as HubSettings
    from monitoring.metrics import HubMetrics
    from schemas.serde import registry_client
    from topics.catalog import INSTITUTION_RESULTS, RESIDENTS

    class Nothing(Handler):
        name = "test"
        topics = (RESIDENTS, INSTITUTION_RESULTS)

        def handle(self, conn: object, deliveries: object) -> list[object]:  # type: ignore[override]
            raise AssertionError("decoding alone")

    runner = object.__new__(Runner)  # only what _decode uses, without a broker
    runner.handler = Nothing()
    runner._topics = {t.name: t for t in (RESIDENTS, INSTITUTION_RESULTS)}
    runner.metrics = HubMetrics(CollectorRegistry(), process="sinks")
    runner._serdes = {}
    runner._registry = registry_client({"url": "mock://tombstones"})
    runner.group_id, runner.source_system, runner.max_message_bytes = "g", "kenshin-hub.test", 1_000_000
    runner.settings = HubSettings()
    assert RESIDENTS.cleanup_policy == "compact"
    assert INSTITUTION_RESULTS.cleanup_policy == "delete"
    tombstone = Message(topic=RESIDENTS.name, partition=0, offset=7, key=b"012041:1", value=None)
    null = Message(topic=INSTITUTION_RESULTS.name, partition=1, offset=9, key=b"012041:1", value=None)
    passed, lettered = runner._decode([tombstone, null])
    assert (passed.delivery, passed.letter, passed.offset) == (None, None, 7)
    assert lettered.delivery is None
    assert lettered.letter is not None
    assert "empty message value" in lettered.letter.reason


# --- a batch in flight: its offsets are committed only after its outputs are acknowledged -------------------------


class _Producer:
    """Records what is produced; ``flush`` reports every delivery (failed when ``fail``)."""

    def __init__(self) -> None:
        self.fail = False
        self.pending: list[object] = []
        self.produced: list[tuple[str, bytes | None]] = []

    def produce(self, topic: str, *, key: bytes | None, value: bytes | None, on_delivery: object) -> None:
        self.produced.append((topic, key))
        self.pending.append(on_delivery)

    def flush(self, _timeout: float = -1) -> int:
        error = KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail else None
        for callback in self.pending:
            callback(error, None)  # type: ignore[operator]
        self.pending.clear()
        return 0


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.seeks: list[tuple[str, int, int]] = []

    def commit(self, *, offsets: list[object], asynchronous: bool) -> list[object]:
        self.commits.append(([(tp.topic, tp.partition, tp.offset) for tp in offsets], asynchronous))  # type: ignore[attr-defined]
        return offsets

    def seek(self, tp: object) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))  # type: ignore[attr-defined]


def _pipelined_runner() -> tuple[object, _Producer, _Consumer, list[int]]:
    from prometheus_client import CollectorRegistry

    from hub.engine.handler import Handler
    from hub.engine.runner import Runner
    from monitoring.metrics import HubMetrics
    from topics.catalog import INSTITUTION_RESULTS

    told: list[int] = []

    class Counting(Handler):
        name = "test"
        topics = (INSTITUTION_RESULTS,)

        def handle(self, conn: object, deliveries: object) -> list[object]:  # type: ignore[override]
            raise AssertionError("not called here")

        def committed(self, deliveries: object, outcomes: object) -> None:  # type: ignore[override]
            told.append(len(deliveries))  # type: ignore[arg-type]

    runner = object.__new__(Runner)  # only what delivery and commits use, without a broker
    producer, consumer = _Producer(), _Consumer()
    runner.handler = Counting()
    runner.metrics = HubMetrics(CollectorRegistry(), process="sinks")
    runner.group_id, runner.delivery_timeout_s, runner.isolate_after = "g", 5.0, 3
    runner._producer, runner._consumer = producer, consumer
    runner._inflight, runner._requested, runner._undelivered, runner._cleanup = None, {}, [], {}
    runner._assignment = {(INSTITUTION_RESULTS.name, 0), (INSTITUTION_RESULTS.name, 1)}
    runner._backoff = Backoff(0.0, 0.0)
    runner._isolate = False
    return runner, producer, consumer, told


def _batch(offsets: list[tuple[int, int]]) -> tuple[list[object], list[object]]:
    from confluent_kafka import Message

    from hub.engine.handler import Delivery
    from hub.engine.runner import _Item
    from topics.catalog import INSTITUTION_RESULTS, LEDGER_ENTRIES

    msgs, items = [], []
    for partition, offset in offsets:
        msg = Message(topic=INSTITUTION_RESULTS.name, partition=partition, offset=offset, key=b"k", value=b"v")
        item = _Item(msg, INSTITUTION_RESULTS, partition, offset)
        item.delivery = Delivery(INSTITUTION_RESULTS, partition, offset, b"k", None)  # type: ignore[arg-type]
        item.outcome = []
        item.records = [(LEDGER_ENTRIES.name, b"k", f"{partition}:{offset}".encode())]
        msgs.append(msg)
        items.append(item)
    return msgs, items


def test_a_batch_in_flight_is_committed_only_after_its_outputs_are_acknowledged() -> None:
    from topics.catalog import INSTITUTION_RESULTS

    runner, producer, consumer, told = _pipelined_runner()
    msgs, items = _batch([(0, 10), (0, 11), (1, 4)])
    runner._produce(msgs, items)  # type: ignore[attr-defined]
    assert len(producer.produced) == 3
    assert consumer.commits == []  # produced, not acknowledged: nothing committed, the handler not told
    assert told == []
    assert runner._settle() is True  # type: ignore[attr-defined]
    name = INSTITUTION_RESULTS.name
    assert consumer.commits == [([(name, 0, 12), (name, 1, 5)], True)]
    assert told == [3]
    # the outbox rows go only once librdkafka confirms the commit
    assert runner._cleanup == {}  # type: ignore[attr-defined]
    runner._on_commit(None, [_tp(name, 0, 12)])  # type: ignore[attr-defined]
    assert runner._cleanup == {(name, 0): 12}  # type: ignore[attr-defined]
    # closing (or a rebalance) commits what is not confirmed yet, synchronously
    runner._settle(final=True)  # type: ignore[attr-defined]
    assert consumer.commits[-1] == ([(name, 1, 5)], False)
    assert runner._cleanup == {(name, 0): 12, (name, 1): 5}  # type: ignore[attr-defined]


def test_a_batch_whose_outputs_fail_is_read_again_with_the_next_one() -> None:
    from topics.catalog import INSTITUTION_RESULTS

    runner, producer, consumer, told = _pipelined_runner()
    first, first_items = _batch([(0, 10), (0, 11)])
    runner._produce(first, first_items)  # type: ignore[attr-defined]
    producer.fail = True
    second, _ = _batch([(0, 12), (1, 4)])
    with pytest.raises(DeliveryFailed):
        runner._settle()  # type: ignore[attr-defined]
    runner._on_failure(second, DeliveryFailed("the first batch's outputs"))  # type: ignore[attr-defined]
    name = INSTITUTION_RESULTS.name
    assert consumer.commits == []  # nothing of either batch committed
    assert told == []
    assert sorted(consumer.seeks) == [(name, 0, 10), (name, 1, 4)]  # both read again, from the first's start
    assert runner._undelivered == []  # type: ignore[attr-defined]


def _tp(topic: str, partition: int, offset: int) -> object:
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, partition, offset)


def test_a_failed_commit_is_made_again_when_the_runner_is_idle() -> None:
    # The stall of test_scale: a commit refused during a rebalance (ILLEGAL_GENERATION) was only logged, the
    # consumer's position had moved on, so nothing committed those offsets again and the group lagged for ever.
    from topics.catalog import INSTITUTION_RESULTS

    runner, _producer, consumer, _told = _pipelined_runner()
    runner._last_commit_at = 0.0  # type: ignore[attr-defined]
    msgs, items = _batch([(0, 10), (1, 4)])
    runner._produce(msgs, items)  # type: ignore[attr-defined]
    runner._settle()  # type: ignore[attr-defined]
    name = INSTITUTION_RESULTS.name
    runner._on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION), [_tp(name, 0, 11), _tp(name, 1, 5)])  # type: ignore[attr-defined]
    assert runner._cleanup == {}  # type: ignore[attr-defined]
    runner._last_commit_at = 0.0  # type: ignore[attr-defined]  # long enough ago
    assert runner._recommit() is True  # type: ignore[attr-defined]
    assert consumer.commits[-1] == ([(name, 0, 11), (name, 1, 5)], True)
    runner._on_commit(None, [_tp(name, 0, 11), _tp(name, 1, 5)])  # type: ignore[attr-defined]
    assert runner._requested == {}  # type: ignore[attr-defined]
    assert runner._recommit() is False  # type: ignore[attr-defined]  # nothing left to commit


def test_a_refused_synchronous_commit_is_kept_to_be_made_again() -> None:
    # At a rebalance or on close the commit is synchronous; one that fails must not forget the positions, or the
    # partitions kept after the rebalance would lag for ever (the stall above, by another road).
    from topics.catalog import INSTITUTION_RESULTS

    runner, _producer, consumer, _told = _pipelined_runner()
    name = INSTITUTION_RESULTS.name

    def refuse(*, offsets: list[object], asynchronous: bool) -> list[object]:
        raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))

    msgs, items = _batch([(0, 10), (1, 4)])
    runner._produce(msgs, items)  # type: ignore[attr-defined]
    consumer.commit = refuse  # type: ignore[method-assign]
    assert runner._settle(final=True) is False  # type: ignore[attr-defined]
    assert runner._requested == {(name, 0): 11, (name, 1): 5}  # type: ignore[attr-defined]
    del consumer.commit  # the recorder again
    runner._last_commit_at = 0.0  # type: ignore[attr-defined]
    assert runner._recommit() is True  # type: ignore[attr-defined]
    assert consumer.commits[-1] == ([(name, 0, 11), (name, 1, 5)], True)
