"""Benchmark of the serde: messages per second, confluent-kafka's Avro wrappers against :mod:`schemas.serde`.

One message is one encode (event -> wire bytes) plus one decode (wire bytes -> event), on the same records, with
confluent-kafka's in-process mock registry (so no network time is measured). The records are a realistic mix of
the busiest topics (住基異動, results of every kind, resident states, ledger entries, invitations, errors, 副本),
built here with varied values. ``python -m schemas.bench [n]`` prints the figures.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from hub.validation import my_number_check_digit
from schemas import models as m
from schemas.record import AvroRecord
from schemas.serde import TopicSerde, registry_client
from topics.catalog import ALL_TOPICS, Topic

TENANT = "012041"
_FAMILY = (
    ("旭川", "アサヒカワ"),
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
)
_GIVEN = (
    ("花子", "ハナコ"),
    ("太郎", "タロウ"),
    ("陽子", "ヨウコ"),
    ("一郎", "イチロウ"),
    ("美咲", "ミサキ"),
    ("健太", "ケンタ"),
    ("由美", "ユミ"),
    ("翔", "ショウ"),
    ("さくら", "サクラ"),
    ("大輔", "ダイスケ"),
)


class _Maker:
    """Varied, valid events from one seeded random source."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - synthetic test data, not secrets
        self.now = datetime(2026, 5, 12, 9, 30, 15, 123000, tzinfo=UTC)

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def at(self) -> datetime:
        return self.now - timedelta(milliseconds=self.rng.randrange(10**10))

    def day(self, start: date = date(2025, 4, 1), span: int = 365) -> date:
        return start + timedelta(days=self.rng.randrange(span))

    def atena(self) -> str:
        return f"{self.rng.randrange(1, 10**7):010d}"

    def my_number(self) -> str:
        body = f"{self.rng.randrange(10**11):011d}"
        return body + str(my_number_check_digit(body))

    def person(self) -> m.PersonIdentity:
        (family, family_kana), (given, given_kana) = self.rng.choice(_FAMILY), self.rng.choice(_GIVEN)
        r = self.rng
        return m.PersonIdentity(
            name=f"{family} {given}",
            name_kana=f"{family_kana} {given_kana}",
            sex=r.choice(list(m.Sex)),
            birth_date=self.day(date(1936, 1, 1), 365 * 60),
            address=f"北海道旭川市{r.randrange(1, 10)}条通{r.randrange(1, 25)}丁目{r.randrange(1, 99)}番地",
        )

    def header(self, source: str) -> dict[str, Any]:
        return {"event_id": self.uuid(), "occurred_at": self.at(), "tenant": TENANT, "source_system": source}

    def primary(self, kind: m.ScreeningKind) -> m.PrimaryFindings:
        r = self.rng
        makers: dict[m.ScreeningKind, Callable[[], AvroRecord]] = {
            m.ScreeningKind.STOMACH: lambda: m.StomachFindings(method=r.choice(list(m.StomachMethod))),
            m.ScreeningKind.COLORECTAL: lambda: m.ColorectalFindings(fobt_result=r.choice(list(m.FobtResult))),
            m.ScreeningKind.LUNG: lambda: m.LungFindings(
                film_no=f"F-2025-{r.randrange(10**4):04d}",
                xray_result=r.choice(list(m.LungXrayResult)),
                sputum_result=r.choice([None, *m.SputumResult]),
            ),
            m.ScreeningKind.BREAST: lambda: m.BreastFindings(
                mammo_site=r.choice(["右", "左", "両側"]), mammo_result=r.choice(list(m.MammoCategory))
            ),
            m.ScreeningKind.CERVICAL: lambda: m.CervicalFindings(
                cervical_smear="液状化検体法", cervical_result=r.choice(list(m.CervicalCytology))
            ),
            m.ScreeningKind.H_PYLORI: lambda: m.HPyloriFindings(test_result=r.choice(list(m.HPyloriResult))),
        }
        blocks: dict[str, Any] = {kind.block: makers[kind]()}
        return m.PrimaryFindings(
            follow_up_required=r.random() < 0.1,
            other_findings=r.choice([None, None, "胃炎", "ポリープ"]),
            national_health_insurance=r.random() < 0.3,
            **blocks,
        )

    def follow_up(self) -> m.FollowUpFindings:
        return m.FollowUpFindings(
            procedure=self.rng.choice(["内視鏡下生検", "CT", "細胞診"]),
            judgement=self.rng.choice(list(m.FollowUpJudgement)),
            instructions=self.rng.choice([None, "経過観察", "手術"]),
        )

    def resident_change(self) -> m.ResidentChange:
        kind = self.rng.choice([m.ResidentChangeType.MOVE_IN, m.ResidentChangeType.MOVE_WITHIN])
        return m.ResidentChange(
            **self.header("juki"),
            atena_no=self.atena(),
            my_number=self.my_number(),
            change_type=kind,
            change_date=self.day(),
            notified_date=self.day(),
            person=self.person(),
            household_no=f"H{self.rng.randrange(10**6):06d}",
            previous_municipality="011002" if kind is m.ResidentChangeType.MOVE_IN else None,
        )

    def result(self, follow_up: bool) -> m.ScreeningResult:
        kinds = [k for k in m.ScreeningKind if not (follow_up and k is m.ScreeningKind.H_PYLORI)]
        kind = self.rng.choice(kinds)
        common: dict[str, Any] = {
            **self.header("institution-sim"),
            "reception_no": f"R2025-{self.rng.randrange(10**6):06d}",
            "kind": kind,
            "atena_no": self.atena(),
            "subject": self.person(),
            "institution_code": f"0112{self.rng.randrange(10**6):06d}",
            "institution_name": self.rng.choice(["旭川市立総合病院", "旭川医科大学病院", "旭川赤十字病院"]),
            "exam_date": self.day(),
        }
        if follow_up:
            return m.ScreeningResult(
                **common,
                stage=m.ResultStage.FOLLOW_UP,
                follow_up=self.follow_up(),
                primary_reception_no=f"R2025-{self.rng.randrange(10**6):06d}",
            )
        return m.ScreeningResult(
            **common,
            stage=m.ResultStage.PRIMARY,
            setting=self.rng.choice(list(m.ExamSetting)),
            primary=self.primary(kind),
        )

    def resident_state(self) -> m.ResidentState:
        history = tuple(
            m.ResidentHistoryItem(
                event_id=self.uuid(),
                change_type=self.rng.choice(list(m.ResidentChangeType)),
                change_date=self.day(),
                occurred_at=self.at(),
            )
            for _ in range(self.rng.randrange(1, 4))
        )
        return m.ResidentState(
            **self.header("kenshin-hub.residents"),
            atena_no=self.atena(),
            my_number=self.my_number(),
            person=self.person(),
            status=m.ResidentStatus.RESIDENT,
            resident_since=self.day(date(1990, 1, 1), 365 * 30),
            increase_reason=m.ResidentChangeType.BIRTH,
            support_measure=self.rng.random() < 0.01,
            version=len(history),
            history=history,
        )

    def ledger_entry(self) -> m.LedgerEntry:
        kind = self.rng.choice([k for k in m.ScreeningKind if k is not m.ScreeningKind.H_PYLORI])
        follow_up = None
        if self.rng.random() < 0.2:
            follow_up = m.LedgerFollowUp(
                reception_no=f"R2025-{self.rng.randrange(10**6):06d}",
                exam_date=self.day(),
                exam_age=self.rng.randrange(40, 90),
                institution_code="0112345679",
                institution_name="旭川医科大学病院",
                findings=self.follow_up(),
            )
        return m.LedgerEntry(
            **self.header("kenshin-hub.ledger"),
            atena_no=self.atena(),
            kind=kind,
            fiscal_year=2025,
            version=1 + int(follow_up is not None),
            person=self.person(),
            reception_no=f"R2025-{self.rng.randrange(10**6):06d}",
            exam_date=self.day(),
            exam_age=self.rng.randrange(40, 90),
            institution_code="0112345678",
            institution_name="旭川市立総合病院",
            setting=self.rng.choice(list(m.ExamSetting)),
            primary=self.primary(kind),
            follow_up=follow_up,
            source_event_id=self.uuid(),
        )

    def invitation(self) -> m.Invitation:
        return m.Invitation(
            **self.header("kenshin-hub.invitations"),
            atena_no=self.atena(),
            kind=self.rng.choice(list(m.ScreeningKind)),
            fiscal_year=2025,
            invitation_type=self.rng.choice(list(m.InvitationType)),
            trigger=m.InvitationTrigger.FISCAL_YEAR_START,
            age_at_fiscal_year_end=self.rng.randrange(20, 90),
            person=self.person(),
        )

    def screening_error(self) -> m.ScreeningError:
        reasons = tuple(self.rng.sample(list(m.ErrorReason), self.rng.randrange(1, 3)))
        return m.ScreeningError(
            **self.header("kenshin-hub.matching"),
            reception_no=f"R2025-{self.rng.randrange(10**6):06d}",
            atena_no=self.atena(),
            kind=self.rng.choice(list(m.ScreeningKind)),
            stage=m.ResultStage.PRIMARY,
            reasons=reasons,
            mismatched_fields=("name_kana",),
            status=m.ErrorStatus.OPEN,
            detected_at=self.at(),
            source=m.SourcePointer(topic="institution.results.v1", partition=self.rng.randrange(6), offset=41),
            result_event_id=self.uuid(),
        )

    def fukuhon(self) -> m.FukuhonRegistration:
        atena = self.atena()
        return m.FukuhonRegistration(
            **self.header("kenshin-hub.fukuhon"),
            record_id=f"FK-{self.rng.randrange(10**8):08d}",
            atena_no=atena,
            integrated_atena_no=f"T{self.rng.randrange(10**9):09d}",
            info_name_code="TM00000000000139",
            dataset_item_code="DS139001",
            record_key=f"{atena}:STOMACH:2025",
            version=1,
            publication_start=self.day(),
            operation=m.FukuhonOperation.REGISTER,
            data={"受診日": self.day().isoformat(), "精密検査対象有無": self.rng.choice(["有", "無"])},
        )


_MIX: tuple[tuple[float, Callable[[_Maker], m.Event]], ...] = (
    (0.30, _Maker.resident_change),
    (0.25, lambda mk: mk.result(follow_up=False)),
    (0.05, lambda mk: mk.result(follow_up=True)),
    (0.15, _Maker.resident_state),
    (0.12, _Maker.ledger_entry),
    (0.06, _Maker.invitation),
    (0.04, _Maker.screening_error),
    (0.03, _Maker.fukuhon),
)


def sample_events(n: int, seed: int = 7) -> list[m.Event]:
    """``n`` valid events in the proportions of a screening year's traffic (deterministic for a seed)."""
    maker = _Maker(seed)
    weights = [w for w, _ in _MIX]
    makers = [f for _, f in _MIX]
    return [maker.rng.choices(makers, weights)[0](maker) for _ in range(n)]


class ConfluentSerde:
    """The serde as it was: confluent-kafka's ``AvroSerializer``/``AvroDeserializer`` around the models."""

    def __init__(self, topic: Topic, registry: SchemaRegistryClient) -> None:
        model = topic.value_type
        schema = Schema(model.schema_str(), schema_type="AVRO")
        self.ctx = SerializationContext(topic.name, MessageField.VALUE)
        self._ser = AvroSerializer(
            registry,
            schema,
            to_dict=lambda event, _ctx: event.to_dict(),
            conf={"auto.register.schemas": False, "normalize.schemas": False},
        )
        self._de = AvroDeserializer(registry, schema.schema_str, from_dict=lambda data, _ctx: model.from_dict(data))

    def value(self, event: m.Event) -> bytes:
        return self._ser(event, self.ctx)  # type: ignore[no-any-return]

    def decode(self, payload: bytes) -> m.Event:
        return self._de(payload, self.ctx)  # type: ignore[no-any-return]


def _registry() -> SchemaRegistryClient:
    registry = registry_client({"url": "mock://bench"})
    for topic in ALL_TOPICS:
        registry.register_schema(topic.value_subject, Schema(topic.value_type.schema_str(), "AVRO"))
    return registry


def _time(serdes: Sequence[Any], events: Sequence[m.Event]) -> tuple[float, float]:
    """Seconds to encode every event, then to decode every payload (each with the serde of its topic)."""
    started = time.perf_counter()
    payloads = [s.value(e) for s, e in zip(serdes, events, strict=True)]
    encoded = time.perf_counter()
    for s, p in zip(serdes, payloads, strict=True):
        s.decode(p)
    return encoded - started, time.perf_counter() - encoded


def serde_benchmark(n: int = 20000, events: Sequence[m.Event] | None = None, rounds: int = 3) -> dict[str, float]:
    """Messages per second (encode + decode) of confluent-kafka's wrappers and of the hub's serde; best of ``rounds``.

    ``events`` default to :func:`sample_events` (``n`` of them). The figures: ``*_encode_per_s``,
    ``*_decode_per_s``, ``*_msgs_per_s`` (one encode plus one decode) for ``confluent`` and ``kenshin``, and
    ``speedup`` (kenshin msgs/s over confluent msgs/s).
    """
    records = list(events) if events is not None else sample_events(n)
    if not records:
        raise ValueError("no events to benchmark")
    registry = _registry()
    by_type = {t.value_type: t for t in ALL_TOPICS}
    topics = [by_type[type(e)] for e in records]
    confluent = {t.name: ConfluentSerde(t, registry) for t in set(topics)}
    kenshin: dict[str, TopicSerde[m.Event]] = {t.name: TopicSerde(t, registry) for t in set(topics)}
    impls: dict[str, list[Any]] = {
        "confluent": [confluent[t.name] for t in topics],
        "kenshin": [kenshin[t.name] for t in topics],
    }
    for serdes in impls.values():  # warm up: registry lookups, parsed schemas; and check they agree
        for s, e in zip(serdes[:200], records[:200], strict=False):
            if s.decode(s.value(e)) != e:
                raise AssertionError(f"{type(s).__name__} does not round-trip {type(e).__name__}")
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in impls}
    for _ in range(max(1, rounds)):  # interleaved, so that a busy moment of the machine hits both alike
        for name, serdes in impls.items():
            timings[name].append(_time(serdes, records))
    figures: dict[str, float] = {}
    for name, runs in timings.items():
        best = min(runs, key=sum)
        figures[f"{name}_encode_per_s"] = len(records) / best[0]
        figures[f"{name}_decode_per_s"] = len(records) / best[1]
        figures[f"{name}_msgs_per_s"] = len(records) / sum(best)
    figures["speedup"] = figures["kenshin_msgs_per_s"] / figures["confluent_msgs_per_s"]
    return figures


def format_figures(figures: dict[str, float], n: int, rounds: int = 3) -> str:
    lines = [f"serde benchmark: {n} messages, each encoded and decoded; mock registry; best of {rounds} rounds"]
    for name in ("confluent", "kenshin"):
        lines.append(
            f"  {name:<10} {figures[f'{name}_msgs_per_s']:>9,.0f} msgs/s"
            f"  (encode {figures[f'{name}_encode_per_s']:>9,.0f}/s, decode {figures[f'{name}_decode_per_s']:>9,.0f}/s,"
            f" {1e6 / figures[f'{name}_msgs_per_s']:.1f} µs/msg)"
        )
    lines.append(f"  speedup    {figures['speedup']:.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    n = int(args[0]) if args else 20000
    print(format_figures(serde_benchmark(n), n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
