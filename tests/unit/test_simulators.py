"""The upstream simulators: deterministic, realistic in size and shape, valid models, dirty data as declared."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from datetime import UTC, date, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from connectors.simulators import City, ResultPlan, ResultTruth, generate_city, generate_results, publish
from connectors.simulators.institution import DIRTY
from hub.validation import age_at_fiscal_year_end, is_valid_my_number, is_valid_tenant_code, legal_age
from processors.rules.eligibility import load_rules
from processors.rules.institutions import load_institutions
from processors.rules.residents import basis_of, is_minimal
from schemas import models as m
from schemas.serde import TopicSerde, registry_client
from topics.catalog import INSTITUTION_RESULTS, RESIDENT_CHANGES

pytestmark = pytest.mark.unit

SIZE = 2000
TENANT = "012041"
FY_START, FY_END = date(2025, 4, 1), date(2026, 3, 31)
CT = m.ResidentChangeType
T = ResultTruth


@pytest.fixture(scope="module")
def city() -> City:
    return generate_city(seed=7, size=SIZE)


@pytest.fixture(scope="module")
def plan(city: City) -> ResultPlan:
    return generate_results(city, seed=7, dirty_share=0.1)


# --- city ----------------------------------------------------------------------------------------------------


def test_city_is_deterministic(city: City) -> None:
    again = generate_city(seed=7, size=SIZE)
    assert again.events == city.events  # every field, event ids included
    assert dict(again.residents) == dict(city.residents)
    other = generate_city(seed=8, size=500)
    assert {e.event_id for e in other.events}.isdisjoint(e.event_id for e in city.events)
    assert [e.person for e in other.initial] != [e.person for e in city.initial]


def test_initial_population(city: City) -> None:
    assert len(city.initial) == SIZE
    assert [e.atena_no for e in city.initial] == [f"{i:010d}" for i in range(1, SIZE + 1)]
    for e in city.initial:
        assert e.change_type in (CT.MOVE_IN, CT.BIRTH)
        assert e.change_date < FY_START
        basis = basis_of(e)
        assert basis is not None
        if e.change_type is CT.BIRTH:
            assert e.change_date == basis.birth_date
            assert e.previous_municipality is None
        else:
            assert basis.birth_date < e.change_date
            if e.person is not None:  # below target age the registry does not say where from
                assert e.previous_municipality is not None
                assert is_valid_tenant_code(e.previous_municipality)
                assert e.previous_municipality != TENANT
    assert 0.2 < Counter(e.change_type for e in city.initial)[CT.BIRTH] / SIZE < 0.6


def test_age_pyramid_and_sex(city: City) -> None:
    bases = [b for b in map(basis_of, city.initial) if b is not None]
    assert len(bases) == SIZE
    ages = [legal_age(b.birth_date, FY_START) for b in bases]
    assert 0.28 <= sum(a >= 65 for a in ages) / SIZE <= 0.38
    assert 0.06 <= sum(a < 15 for a in ages) / SIZE <= 0.14
    assert max(ages) <= 105
    females = sum(b.sex is m.Sex.FEMALE for b in bases)
    assert 0.45 <= females / SIZE <= 0.56


def test_households(city: City) -> None:
    households: dict[str, list[m.PersonIdentity]] = defaultdict(list)
    for e in city.initial:  # the ground truth: what the registry holds, children included
        r = city.residents[e.atena_no]
        households[r.household_no].append(r.identity_on(FY_START - timedelta(days=1)))
    assert {len(v) for v in households.values()} <= {1, 2, 3, 4, 5}
    assert 1.7 <= SIZE / len(households) <= 2.8
    for members in households.values():
        assert len({p.address for p in members}) == 1
        assert len({p.name.split(" ")[0] for p in members}) == 1
        assert len({p.name_kana.split(" ")[0] for p in members}) == 1


def test_my_numbers_are_valid_unique_and_stable(city: City) -> None:
    numbers = [r.my_number for r in city.residents.values()]
    assert all(is_valid_my_number(n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
    for e in city.events:
        r = city.residents[e.atena_no]
        assert e.my_number == (r.my_number if r.in_scope else None)


def test_changes_shares_and_order(city: City) -> None:
    counts = Counter(e.change_type for e in city.changes)
    assert 0.02 * SIZE <= counts[CT.MOVE_IN] <= 0.045 * SIZE
    assert 0.015 * SIZE <= counts[CT.MOVE_OUT] <= 0.045 * SIZE
    assert 0.02 * SIZE <= counts[CT.MOVE_WITHIN] <= 0.06 * SIZE
    assert 0.005 * SIZE <= counts[CT.DEATH] <= 0.015 * SIZE
    assert 0.003 * SIZE <= counts[CT.BIRTH] <= 0.01 * SIZE
    assert 0.003 * SIZE <= counts[CT.NAME_CHANGE] <= 0.008 * SIZE
    assert 1 <= counts[CT.SUPPORT_MEASURE_CLEARED] < counts[CT.SUPPORT_MEASURE_SET]
    assert counts[CT.CORRECTION] >= 1
    days = [e.change_date for e in city.changes]
    assert days == sorted(days)
    assert days[0] >= FY_START
    assert days[-1] <= FY_END
    times = [e.occurred_at for e in city.changes]
    assert times == sorted(times)


def test_event_headers(city: City) -> None:
    ids = [e.event_id for e in city.events]
    assert len(set(ids)) == len(ids)
    for e in city.events:
        assert e.tenant == TENANT
        assert e.source_system == "juki-sim"
        assert e.occurred_at.tzinfo is UTC
        assert e.occurred_at.microsecond % 1000 == 0
        assert e.occurred_at.date() == e.change_date
        assert (e.household_no is not None) is city.residents[e.atena_no].in_scope


def test_changes_follow_the_rules(city: City) -> None:
    by_person: dict[str, list[m.ResidentChange]] = defaultdict(list)
    for e in city.events:
        by_person[e.atena_no].append(e)
    for atena_no, events in by_person.items():
        assert events[0].change_type in (CT.MOVE_IN, CT.BIRTH)
        assert all(e.change_type not in (CT.MOVE_IN, CT.BIRTH) for e in events[1:])
        ends = [i for i, e in enumerate(events) if e.change_type in (CT.MOVE_OUT, CT.DEATH)]
        assert ends in ([], [len(events) - 1]), atena_no  # nothing after 転出 or 死亡
        for e in events:
            basis = basis_of(e)
            assert basis is not None
            assert basis.birth_date <= e.change_date
        for e in events:
            if e.change_type is CT.MOVE_OUT and city.residents[atena_no].in_scope:
                assert e.next_municipality is not None
                assert is_valid_tenant_code(e.next_municipality)
    name_changes = [e for e in city.changes if e.change_type is CT.NAME_CHANGE]
    for e in (e for e in name_changes if city.residents[e.atena_no].in_scope):
        before = city.residents[e.atena_no].identity_on(e.change_date - timedelta(days=1))
        assert e.person is not None
        assert e.person.name.split(" ")[0] != before.name.split(" ")[0]


def test_ground_truth_matches_the_events(city: City) -> None:
    assert (
        len(city.residents)
        == SIZE
        + Counter(e.change_type for e in city.changes)[CT.MOVE_IN]
        + Counter(e.change_type for e in city.changes)[CT.BIRTH]
    )
    status: dict[str, m.ResidentStatus] = {}
    support: dict[str, bool] = defaultdict(bool)
    person: dict[str, m.PersonIdentity] = {}
    for e in city.events:
        assert (e.person is not None) is city.residents[e.atena_no].in_scope
        if e.person is not None:
            person[e.atena_no] = e.person
        if e.change_type is CT.MOVE_OUT:
            status[e.atena_no] = m.ResidentStatus.MOVED_OUT
        elif e.change_type is CT.DEATH:
            status[e.atena_no] = m.ResidentStatus.DECEASED
        elif e.change_type in (CT.SUPPORT_MEASURE_SET, CT.SUPPORT_MEASURE_CLEARED):
            support[e.atena_no] = e.change_type is CT.SUPPORT_MEASURE_SET
    for atena_no, r in city.residents.items():
        assert r.status is status.get(atena_no, m.ResidentStatus.RESIDENT)
        assert r.support_measure is support[atena_no]
        assert r.person == person[atena_no] if r.in_scope else atena_no not in person
        assert (r.ceased_on is None) is (r.status is m.ResidentStatus.RESIDENT)


def test_the_registry_sends_below_target_age_only_the_minimal_basis(city: City) -> None:
    """III.2: 対象者以外の情報や不必要な情報を入手できないようにする. The scope is eligibility.toml's youngest age per
    sex (20 for everyone while ピロリ takes men from 20); below it an event carries its type, dates and basis."""
    rules = load_rules()
    for e in city.events:
        r = city.residents[e.atena_no]
        age = age_at_fiscal_year_end(r.person.birth_date, 2025)
        assert r.in_scope is rules.can_be_target(r.person.sex, r.person.birth_date, 2025) is (age >= 20)
        basis = basis_of(e)
        assert basis is not None
        assert is_minimal(e, basis) is not r.in_scope
    minimal = {a for a, r in city.residents.items() if not r.in_scope}
    assert 0.1 * SIZE < len(minimal) < 0.3 * SIZE  # the city's under-20s (about 11 % are under 15)
    # 1 April 2026: the full record of each resident who becomes a possible target in the next fiscal year
    records = city.target_age_records(rules)
    assert records
    for c in records:
        r = city.residents[c.atena_no]
        assert c.atena_no in minimal
        assert r.status is m.ResidentStatus.RESIDENT
        assert age_at_fiscal_year_end(r.person.birth_date, 2026) == 20
        assert c.change_type is CT.TARGET_AGE_REACHED
        assert c.change_date == date(2026, 4, 1)
        assert (c.person, c.my_number, c.household_no, c.support_measure) == (
            r.person,
            r.my_number,
            r.household_no,
            r.support_measure,
        )
    turning = {
        a
        for a in minimal
        if city.residents[a].status is m.ResidentStatus.RESIDENT
        and age_at_fiscal_year_end(city.residents[a].person.birth_date, 2026) >= 20
    }
    assert {c.atena_no for c in records} == turning


def test_events_round_trip_through_avro(city: City, plan: ResultPlan) -> None:
    registry = registry_client({"url": "mock://simulators"})
    for topic in (RESIDENT_CHANGES, INSTITUTION_RESULTS):
        registry.register_schema(topic.value_subject, Schema(topic.value_type.schema_str(), "AVRO"))
    serde = TopicSerde(RESIDENT_CHANGES, registry)
    oldest = min(city.initial, key=lambda e: e.change_date)  # occurred_at decades before 1970
    for e in (oldest, *city.initial[:50], *city.changes[::5]):
        assert serde.decode(serde.value(e)) == e
    results = TopicSerde(INSTITUTION_RESULTS, registry)
    for r in plan.results[::20]:
        assert results.decode(results.value(r)) == r


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        generate_city(seed=1, size=0)
    with pytest.raises(ValueError, match="団体コード"):
        generate_city(seed=1, size=10, tenant="012040")


# --- results -------------------------------------------------------------------------------------------------


def test_results_are_deterministic(city: City, plan: ResultPlan) -> None:
    assert generate_results(city, seed=7, dirty_share=0.1) == plan
    other = generate_results(city, seed=8, dirty_share=0.1)
    assert other.results != plan.results
    assert {r.event_id for r in other.results}.isdisjoint(r.event_id for r in plan.results)


def test_results_headers_and_order(plan: ResultPlan) -> None:
    ids = [r.event_id for r in plan.results]
    assert len(set(ids)) == len(ids)
    assert set(plan.event_truth) == set(ids)
    first = [r for r in plan.results if plan.event_truth[r.event_id] is not T.CORRECTION]
    assert len({r.reception_no for r in first}) == len(first) == len(plan.truth)
    assert plan.results[len(first) :] == tuple(plan.corrections.values())  # corrections last
    assert [r.exam_date for r in first] == sorted(r.exam_date for r in first)
    assert [r.occurred_at for r in plan.results] == sorted(r.occurred_at for r in plan.results)
    for r in plan.results:
        assert r.tenant == TENANT
        assert r.source_system == "institution-sim"
        assert r.occurred_at.tzinfo is UTC
        assert r.occurred_at.microsecond % 1000 == 0
        assert r.reception_no.startswith("R2025-")
        assert len(r.reception_no) == 13


def test_clean_results_are_for_resident_targets(city: City, plan: ResultPlan) -> None:
    rules, registry = load_rules(), load_institutions()
    seen: set[tuple[str, m.ScreeningKind]] = set()
    for r in plan.results:
        if plan.event_truth[r.event_id] is not T.CLEAN:
            continue
        person = city.residents[r.atena_no]
        assert rules.rule(r.kind).is_target(person.person.sex, person.person.birth_date, 2025)
        assert person.resident_on(r.exam_date)
        assert FY_START <= r.exam_date <= FY_END
        assert r.subject == person.identity_on(r.exam_date)
        assert registry.performs(r.tenant, r.institution_code, r.kind, r.exam_date)
        inst = registry.by_code[r.institution_code]
        assert r.setting is m.ExamSetting.INDIVIDUAL or inst.group
        assert (r.atena_no, r.kind) not in seen  # at most once a year, whatever the interval
        seen.add((r.atena_no, r.kind))


def test_attendance_and_findings_are_realistic(city: City, plan: ResultPlan) -> None:
    primaries = [r for r in plan.results if r.stage is m.ResultStage.PRIMARY and r.primary is not None]
    kinds = Counter(r.kind for r in primaries)
    assert set(kinds) == set(m.ScreeningKind)
    assert kinds[m.ScreeningKind.H_PYLORI] < kinds[m.ScreeningKind.STOMACH] / 3
    assert 0.3 * SIZE <= len(primaries) <= 0.9 * SIZE
    clean = [r for r in primaries if plan.event_truth[r.event_id] is T.CLEAN]
    required = [r for r in clean if r.primary is not None and r.primary.follow_up_required]
    assert 0.03 <= len(required) / len(clean) <= 0.09
    for r in required:
        p = r.primary
        assert p is not None
        if p.colorectal:
            assert p.colorectal.fobt_result is m.FobtResult.POSITIVE
        if p.breast:
            assert p.breast.mammo_result in (m.MammoCategory.C3, m.MammoCategory.C4, m.MammoCategory.C5)
        if p.cervical:
            assert p.cervical.cervical_result is not m.CervicalCytology.NILM or p.cervical.body_result
        assert not p.h_pylori
    for r in clean:
        if r.primary is not None and r.primary.colorectal and not r.primary.follow_up_required:
            assert r.primary.colorectal.fobt_result is m.FobtResult.NEGATIVE


def test_dirty_share_and_categories(plan: ResultPlan) -> None:
    primaries = [r for r in plan.results if r.stage is m.ResultStage.PRIMARY]
    firsts = [r for r in primaries if plan.event_truth[r.event_id] is not T.CORRECTION]
    dirty = Counter(t for t in plan.truth.values() if t in DIRTY)
    assert abs(sum(dirty.values()) / len(firsts) - 0.1) < 0.005
    assert set(dirty) == set(DIRTY)
    assert max(dirty.values()) - min(dirty.values()) <= 1
    assert plan.dirty == {n for n, t in plan.truth.items() if t in DIRTY}


def test_default_dirty_share(city: City) -> None:
    plan = generate_results(city, seed=2)
    firsts = [r for r in plan.results if plan.event_truth[r.event_id] is not T.CORRECTION]
    primaries = [r for r in firsts if r.stage is m.ResultStage.PRIMARY]
    assert abs(len(plan.dirty) / len(primaries) - 0.05) < 0.005
    clean = generate_results(city, seed=2, dirty_share=0.0)
    assert not clean.dirty
    assert not clean.corrections


def test_each_dirty_result_is_wrong_in_its_own_way(city: City, plan: ResultPlan) -> None:
    rules, registry = load_rules(), load_institutions()
    for r in plan.results:
        truth = plan.event_truth[r.event_id]
        if truth not in DIRTY:
            continue
        person = city.residents[r.atena_no]
        right = person.identity_on(r.exam_date)
        assert r.stage is m.ResultStage.PRIMARY
        if truth is T.KANA_TYPO:
            assert r.subject.name_kana != right.name_kana
            assert len(r.subject.name_kana) == len(right.name_kana)
            assert sum(a != b for a, b in zip(r.subject.name_kana, right.name_kana, strict=True)) == 1
            assert m.PersonIdentity(**{**r.subject.to_dict(), "name_kana": right.name_kana}) == right  # type: ignore[arg-type]
        elif truth is T.WRONG_BIRTH_DATE:
            assert r.subject.birth_date != right.birth_date
            assert abs((r.subject.birth_date - right.birth_date).days) <= 366
            assert r.subject.name_kana == right.name_kana
            assert r.subject.name == right.name
        elif truth is T.MOVED_OUT:
            assert person.status is m.ResidentStatus.MOVED_OUT
            assert person.ceased_on is not None
            assert r.exam_date > person.ceased_on
            assert r.subject == right
            assert rules.rule(r.kind).is_target(right.sex, right.birth_date, 2025)
        elif truth is T.INELIGIBLE_AGE:
            assert person.resident_on(r.exam_date)
            assert r.subject == right
            method = r.primary.stomach.method.value if r.primary and r.primary.stomach else None
            age = age_at_fiscal_year_end(right.birth_date, 2025)
            assert rules.rule(r.kind).age_sex_reasons(right.sex, age, method) == [m.ErrorReason.NOT_ELIGIBLE_AGE]
        else:
            assert truth is T.UNKNOWN_INSTITUTION
            assert r.institution_code not in registry.by_code
            assert r.subject == right
            assert person.resident_on(r.exam_date)


def test_follow_ups_reference_a_clean_primary(city: City, plan: ResultPlan) -> None:
    registry = load_institutions()
    by_no = {r.reception_no: r for r in plan.results if plan.event_truth[r.event_id] is not T.CORRECTION}
    follow_ups = [r for r in plan.results if r.stage is m.ResultStage.FOLLOW_UP]
    assert follow_ups
    assert all(plan.truth[r.reception_no] is T.FOLLOW_UP for r in follow_ups)
    for r in follow_ups:
        assert r.primary_reception_no is not None
        primary = by_no[r.primary_reception_no]
        assert plan.truth[primary.reception_no] is T.CLEAN
        assert primary.primary is not None
        assert primary.primary.follow_up_required
        assert (primary.atena_no, primary.kind) == (r.atena_no, r.kind)
        assert r.kind is not m.ScreeningKind.H_PYLORI
        assert 2 <= (r.exam_date - primary.exam_date).days <= 60
        assert registry.by_code[r.institution_code].follow_up
        assert registry.performs(r.tenant, r.institution_code, r.kind, r.exam_date)
        assert r.subject == city.residents[r.atena_no].identity_on(r.exam_date)
        assert plan.results.index(primary) < plan.results.index(r)
    required = [
        r
        for r in by_no.values()
        if plan.truth[r.reception_no] is T.CLEAN and r.primary and r.primary.follow_up_required
    ]
    required = [r for r in required if r.kind is not m.ScreeningKind.H_PYLORI]
    assert 0.45 <= len(follow_ups) / len(required) <= 0.85
    judgements = Counter(r.follow_up.judgement for r in follow_ups if r.follow_up)
    assert judgements[m.FollowUpJudgement.CANCER] < len(follow_ups) * 0.15


def test_corrections_fix_a_dirty_result(city: City, plan: ResultPlan) -> None:
    correctable = [n for n, t in plan.truth.items() if t in (T.KANA_TYPO, T.WRONG_BIRTH_DATE)]
    assert plan.corrections
    assert abs(len(plan.corrections) - len(correctable) / 2) <= 1
    firsts = {r.reception_no: r for r in plan.results if plan.event_truth[r.event_id] is not T.CORRECTION}
    for reception_no, fixed in plan.corrections.items():
        assert plan.truth[reception_no] in (T.KANA_TYPO, T.WRONG_BIRTH_DATE)
        original = firsts[reception_no]
        assert plan.event_truth[fixed.event_id] is T.CORRECTION
        assert fixed.event_id != original.event_id
        assert fixed.atena_no == original.atena_no
        assert fixed.kind == original.kind
        assert fixed.exam_date == original.exam_date
        assert fixed.primary == original.primary
        assert fixed.subject == city.residents[fixed.atena_no].identity_on(fixed.exam_date) != original.subject
        assert fixed.occurred_at > original.occurred_at


def test_results_with_custom_registries(city: City) -> None:
    rules, registry = load_rules(), load_institutions()
    plan = generate_results(city, seed=5, dirty_share=0.0, rules=rules, institutions=registry)
    assert all(registry.performs(r.tenant, r.institution_code, r.kind, r.exam_date) for r in plan.results)
    with pytest.raises(ValueError, match="dirty_share"):
        generate_results(city, seed=5, dirty_share=1.5)
    with pytest.raises(ValueError, match="fiscal year 2025"):
        generate_results(city, seed=5, fiscal_year=2026)


def test_only_ineligible_age_results_are_for_non_targets(city: City, plan: ResultPlan) -> None:
    rules = load_rules()
    for r in plan.results:
        person = city.residents[r.atena_no].person
        target = rules.rule(r.kind).is_target(person.sex, person.birth_date, 2025)
        assert target is (plan.event_truth[r.event_id] is not T.INELIGIBLE_AGE)


# --- publish -------------------------------------------------------------------------------------------------


class FakeProducer:
    """Enough of confluent_kafka.Producer: queues messages, reports deliveries on poll/flush."""

    def __init__(self, *, full_every: int = 0, fail: set[int] | None = None, stuck: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.pending: list[tuple[int, Any]] = []
        self.polls = 0
        self.buffer_errors = 0
        self.full_every, self.fail, self.stuck = full_every, fail or set(), stuck
        self._attempts = 0

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, *, on_delivery: Any = None
    ) -> None:
        self._attempts += 1
        if self.full_every and self._attempts % self.full_every == 0:
            self.buffer_errors += 1
            raise BufferError("Local: Queue full")
        self.sent.append((topic, key, value))
        self.pending.append((len(self.sent) - 1, on_delivery))

    def _deliver(self) -> int:
        served = 0
        for index, callback in self.pending:
            callback("KafkaError{code=MSG_TIMED_OUT}" if index in self.fail else None, None)
            served += 1
        self.pending = []
        return served

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return self._deliver()

    def flush(self, timeout: float) -> int:
        self._deliver()
        return self.stuck


class FakeSerde:
    topic = RESIDENT_CHANGES

    def key(self, event: int) -> bytes:
        return f"{TENANT}:{event:010d}".encode()

    def value(self, event: int) -> bytes:
        return str(event).encode()


def test_publish_sends_everything_in_order() -> None:
    producer, out = FakeProducer(full_every=7), io.StringIO()
    assert publish(producer, FakeSerde(), range(2500), label="juki", out=out) == 2500
    assert [v for _, _, v in producer.sent] == [str(i).encode() for i in range(2500)]
    assert producer.sent[3] == (RESIDENT_CHANGES.name, b"012041:0000000003", b"3")
    assert producer.buffer_errors > 0
    assert producer.polls >= 25 + producer.buffer_errors
    text = out.getvalue()
    assert text.startswith("\rjuki [")
    assert text.endswith("2500/2500 100%\n")
    assert text.count("\r") <= 1 + 2500 // 100  # redrawn at most ~10 times a second, never per message


def test_publish_progress_only_when_asked_and_large() -> None:
    out = io.StringIO()
    publish(FakeProducer(), FakeSerde(), list(range(500)), out=out)
    publish(FakeProducer(), FakeSerde(), list(range(1500)), progress=False, out=out)
    assert out.getvalue() == ""


def test_publish_raises_on_failed_delivery() -> None:
    with pytest.raises(RuntimeError, match=r"1 of 10 messages .* failed"):
        publish(FakeProducer(fail={4}), FakeSerde(), range(10))


def test_publish_raises_when_flush_leaves_messages() -> None:
    with pytest.raises(RuntimeError, match=r"3 of 10 messages .* undelivered"):
        publish(FakeProducer(stuck=3), FakeSerde(), range(10), flush_timeout=0.01)


def test_publish_real_events_with_the_real_serde(city: City) -> None:
    registry = registry_client({"url": "mock://simulators-publish"})
    registry.register_schema(RESIDENT_CHANGES.value_subject, Schema(m.ResidentChange.schema_str(), "AVRO"))
    serde = TopicSerde(RESIDENT_CHANGES, registry)
    producer = FakeProducer()
    assert publish(producer, serde, city.changes[:20], progress=False) == 20
    assert [k for _, k, _ in producer.sent] == [f"{TENANT}:{e.atena_no}".encode() for e in city.changes[:20]]
