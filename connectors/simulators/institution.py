"""Medical-institution simulator: one fiscal year of screening results for a simulated city, some of them dirty.

:func:`generate_results` lets the city's targets attend each kind with a realistic probability, at a registered
institution performing it, on a day they are residents; the subject is the person's 基本5情報 as registered on that
day. About 6 % of primary results need a 精密検査, most of which come back as a ``FOLLOW_UP`` result.

A share of the primary results is made dirty on purpose (:class:`ResultTruth`); the pipeline must turn each of them
into a screening error. About half of the ``KANA_TYPO`` and ``WRONG_BIRTH_DATE`` ones are re-submitted corrected at
the end: same ``reception_no`` and ``atena_no``, the right subject, a new ``event_id``. ``ResultPlan.truth`` keeps
the category of the first submission under its reception number; ``ResultPlan.corrections`` maps those reception
numbers to the corrected result; ``ResultPlan.event_truth`` gives every event's category by ``event_id``, the
re-submissions as ``CORRECTION``.
"""

from __future__ import annotations

import calendar
import enum
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import TypeVar

from connectors.simulators import names
from connectors.simulators.city import City, PersonRecord
from hub.validation import age_at_fiscal_year_end, fiscal_year_end, fiscal_year_start
from processors.rules.eligibility import EligibilityRules, load_rules
from processors.rules.institutions import Institution, InstitutionRegistry, load_institutions
from schemas.models import (
    BodyCytology,
    BreastFindings,
    CervicalCytology,
    CervicalFindings,
    ColorectalFindings,
    ErrorReason,
    ExamSetting,
    FobtResult,
    FollowUpFindings,
    FollowUpJudgement,
    HPyloriFindings,
    HPyloriResult,
    LungFindings,
    LungXrayResult,
    MammoCategory,
    PersonIdentity,
    PrimaryFindings,
    ResidentStatus,
    ResultStage,
    ScreeningKind,
    ScreeningResult,
    SputumResult,
    StomachFindings,
    StomachMethod,
)

RESULTS_NAMESPACE = uuid.UUID("9d3c1f7e-64b8-5a2d-8f41-2c7e0b5a9d63")
"""uuid5 namespace of the institution simulator's event ids (``f"{seed}:{size}:{fiscal_year}:{tenant}:{index}"``)."""
SOURCE_SYSTEM = "institution-sim"
REPORT_LAG = timedelta(days=7)  # occurred_at: the institution reports a week after the exam
UNREGISTERED: tuple[tuple[str, str], ...] = (("0119999999", "北星健診クリニック"), ("0110199990", "旭川駅前ヘルスケア"))

K = ScreeningKind
T = TypeVar("T")


class ResultTruth(enum.StrEnum):
    """What the simulator did with a result (the dirty ones must each become a screening error)."""

    CLEAN = "CLEAN"
    KANA_TYPO = "KANA_TYPO"
    WRONG_BIRTH_DATE = "WRONG_BIRTH_DATE"
    MOVED_OUT = "MOVED_OUT"
    INELIGIBLE_AGE = "INELIGIBLE_AGE"
    UNKNOWN_INSTITUTION = "UNKNOWN_INSTITUTION"
    FOLLOW_UP = "FOLLOW_UP"
    CORRECTION = "CORRECTION"


DIRTY: frozenset[ResultTruth] = frozenset(
    {
        ResultTruth.KANA_TYPO,
        ResultTruth.WRONG_BIRTH_DATE,
        ResultTruth.MOVED_OUT,
        ResultTruth.INELIGIBLE_AGE,
        ResultTruth.UNKNOWN_INSTITUTION,
    }
)
CORRECTABLE: frozenset[ResultTruth] = frozenset({ResultTruth.KANA_TYPO, ResultTruth.WRONG_BIRTH_DATE})

# Share of the targets attending each kind in the year.
ATTENDANCE: Mapping[ScreeningKind, float] = MappingProxyType(
    {K.STOMACH: 0.20, K.COLORECTAL: 0.25, K.LUNG: 0.22, K.BREAST: 0.25, K.CERVICAL: 0.20, K.H_PYLORI: 0.05}
)
FOLLOW_UP_ATTENDANCE = 0.7  # share of 要精検 who attend the 精密検査


@dataclass(frozen=True)
class ResultPlan:
    results: tuple[ScreeningResult, ...]  # in delivery order: by exam date, corrections last
    truth: Mapping[str, ResultTruth]  # reception_no -> category of its first submission
    corrections: Mapping[str, ScreeningResult]  # reception_no -> its corrected re-submission (also in results)
    event_truth: Mapping[uuid.UUID, ResultTruth]  # event_id -> category; the re-submissions are CORRECTION

    @property
    def dirty(self) -> frozenset[str]:
        """Reception numbers whose first submission must become a screening error."""
        return frozenset(r for r, t in self.truth.items() if t in DIRTY)


@dataclass
class _Exam:
    record: PersonRecord
    kind: ScreeningKind
    day: date
    institution: tuple[str, str]  # (code, name)
    subject: PersonIdentity
    truth: ResultTruth
    setting: ExamSetting | None = None
    primary: PrimaryFindings | None = None
    follow_up: FollowUpFindings | None = None
    parent: _Exam | None = None
    reception_no: str = ""


def _weighted(rng: random.Random, table: Sequence[tuple[T, float]]) -> T:
    return rng.choices([v for v, _ in table], [w for _, w in table])[0]


# --- findings ------------------------------------------------------------------------------------------------

_XRAY = ((LungXrayResult.A, 0.002), (LungXrayResult.B, 0.86), (LungXrayResult.C, 0.11),
         (LungXrayResult.D, 0.025), (LungXrayResult.E, 0.003))  # fmt: skip
_SPUTUM = ((SputumResult.A, 0.03), (SputumResult.B, 0.85), (SputumResult.C, 0.09), (SputumResult.D, 0.02),
           (SputumResult.E, 0.01))  # fmt: skip
_SPUTUM_TEXT = {SputumResult.A: "材料不適", SputumResult.B: "異常なし", SputumResult.C: "軽度異型扁平上皮細胞",
                SputumResult.D: "高度異型扁平上皮細胞", SputumResult.E: "悪性腫瘍細胞の疑い"}  # fmt: skip
_MAMMO = ((MammoCategory.C1, 0.78), (MammoCategory.C2, 0.14), (MammoCategory.C3, 0.055), (MammoCategory.C4, 0.012),
          (MammoCategory.C5, 0.003), (MammoCategory.N, 0.01))  # fmt: skip
_CERVICAL = ((CervicalCytology.NILM, 0.946), (CervicalCytology.ASC_US, 0.025), (CervicalCytology.LSIL, 0.012),
             (CervicalCytology.ASC_H, 0.005), (CervicalCytology.HSIL, 0.007), (CervicalCytology.AGC, 0.003),
             (CervicalCytology.SCC, 0.0007), (CervicalCytology.AIS, 0.0005),
             (CervicalCytology.ADENOCARCINOMA, 0.0003))  # fmt: skip
_H_PYLORI = ((HPyloriResult.NEGATIVE, 0.78), (HPyloriResult.POSITIVE, 0.2), (HPyloriResult.INDETERMINATE, 0.02))
_STOMACH_SEEN = ("慢性胃炎", "萎縮性胃炎", "胃底腺ポリープ", "胃潰瘍瘢痕")
_STOMACH_SUSPECT = ("胃潰瘍疑い", "胃ポリープ", "粘膜不整", "胃がん疑い")


def _primary_findings(
    rng: random.Random, kind: ScreeningKind, age: int, film_no: str, method: StomachMethod | None = None
) -> PrimaryFindings:
    required = False
    other: str | None = None
    block: dict[str, object] = {}
    if kind is K.STOMACH:
        if method is None:
            method = StomachMethod.ENDOSCOPY if rng.random() < 0.55 else StomachMethod.XRAY
        required = rng.random() < (0.07 if method is StomachMethod.XRAY else 0.045)
        if required:
            other = rng.choice(_STOMACH_SUSPECT)
        elif rng.random() < 0.3:
            other = rng.choice(_STOMACH_SEEN)
        block["stomach"] = StomachFindings(method=method)
    elif kind is K.COLORECTAL:
        fobt = FobtResult.POSITIVE if rng.random() < 0.065 else FobtResult.NEGATIVE
        required = fobt is FobtResult.POSITIVE
        block["colorectal"] = ColorectalFindings(fobt_result=fobt)
    elif kind is K.LUNG:
        xray = _weighted(rng, _XRAY)
        sputum = _weighted(rng, _SPUTUM) if age >= 50 and rng.random() < 0.08 else None  # 喀痰: heavy smokers
        required = xray in (LungXrayResult.D, LungXrayResult.E) or sputum in (SputumResult.D, SputumResult.E)
        other = "陳旧性炎症" if xray is LungXrayResult.C else None
        block["lung"] = LungFindings(
            film_no=film_no,
            xray_result=xray,
            sputum_findings=_SPUTUM_TEXT[sputum] if sputum is not None else None,
            sputum_result=sputum,
        )
    elif kind is K.BREAST:
        mammo = _weighted(rng, _MAMMO)
        required = mammo in (MammoCategory.C3, MammoCategory.C4, MammoCategory.C5)
        site = rng.choice(("右", "左")) if required else "両側"
        block["breast"] = BreastFindings(mammo_site=site, mammo_result=mammo)
    elif kind is K.CERVICAL:
        cytology = _weighted(rng, _CERVICAL)
        body = age >= 50 and rng.random() < 0.05  # 体部細胞診 for symptomatic older women
        body_result = (BodyCytology.SUSPICIOUS if rng.random() < 0.05 else BodyCytology.NEGATIVE) if body else None
        required = cytology is not CervicalCytology.NILM or body_result is BodyCytology.SUSPICIOUS
        block["cervical"] = CervicalFindings(
            cervical_smear="液状化検体法" if rng.random() < 0.3 else "従来法",
            cervical_result=cytology,
            body_smear="擦過" if body else None,
            body_result=body_result,
        )
    else:
        block["h_pylori"] = HPyloriFindings(test_result=_weighted(rng, _H_PYLORI))  # 除菌 referral, not 精検
    benefit = rng.random()
    return PrimaryFindings(
        follow_up_required=required,
        other_findings=other,
        benefit_status="生活保護受給" if benefit < 0.03 else "市民税非課税世帯" if benefit < 0.08 else None,
        national_health_insurance=age < 75 and rng.random() < (0.7 if age >= 65 else 0.25),
        **block,  # type: ignore[arg-type]
    )


_PROCEDURES = {
    K.STOMACH: ("内視鏡検査", "内視鏡下生検"),
    K.COLORECTAL: ("全大腸内視鏡検査", "内視鏡的ポリープ切除"),
    K.LUNG: ("胸部CT", "気管支鏡検査"),
    K.BREAST: ("超音波検査", "針生検"),
    K.CERVICAL: ("コルポスコピー", "コルポスコピー下生検"),
}
_NON_CANCER = {K.STOMACH: "胃潰瘍", K.COLORECTAL: "大腸腺腫", K.LUNG: "陳旧性肺結核", K.BREAST: "線維腺腫",
               K.CERVICAL: "子宮頸部異形成"}  # fmt: skip
_JUDGEMENTS = ((FollowUpJudgement.NO_ABNORMALITY, 0.38), (FollowUpJudgement.NON_CANCER_DISEASE, 0.46),
               (FollowUpJudgement.SUSPECTED_CANCER, 0.05), (FollowUpJudgement.CANCER, 0.04),
               (FollowUpJudgement.UNDETERMINED, 0.07))  # fmt: skip
_INSTRUCTIONS = {
    FollowUpJudgement.NO_ABNORMALITY: "次回検診",
    FollowUpJudgement.NON_CANCER_DISEASE: "経過観察",
    FollowUpJudgement.SUSPECTED_CANCER: "要再検査",
    FollowUpJudgement.CANCER: "手術",
    FollowUpJudgement.UNDETERMINED: "要再検査",
}


def _follow_up_findings(rng: random.Random, primary: _Exam) -> FollowUpFindings:
    judgement = _weighted(rng, _JUDGEMENTS)
    kind = primary.kind
    cervical: str | None = None
    if kind is K.CERVICAL:
        cervical = {FollowUpJudgement.CANCER: "扁平上皮癌", FollowUpJudgement.SUSPECTED_CANCER: "CIN3"}.get(
            judgement, rng.choice(("CIN1", "CIN2")) if judgement is FollowUpJudgement.NON_CANCER_DISEASE else "異常なし"
        )
    lung = primary.primary.lung if primary.primary is not None else None
    return FollowUpFindings(
        procedure=rng.choice(_PROCEDURES[kind]),
        sputum_method="喀痰細胞診再検" if lung is not None and lung.sputum_result is not None else None,
        judgement=judgement,
        instructions=_INSTRUCTIONS[judgement],
        other_findings=_NON_CANCER[kind] if judgement is FollowUpJudgement.NON_CANCER_DISEASE else None,
        cervical_result=cervical,
    )


# --- the generator -------------------------------------------------------------------------------------------


class _Generator:
    def __init__(self, city: City, seed: int, fy: int, rules: EligibilityRules, registry: InstitutionRegistry) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not cryptography
        self.city, self.seed, self.fy, self.rules = city, seed, fy, rules
        self.start, self.end = fiscal_year_start(fy), fiscal_year_end(fy)
        ordered = [registry.by_code[c] for c in sorted(registry.by_code)]
        self.primary_sites = {k: [i for i in ordered if k in i.kinds] for k in K}
        self.kinds = [k for k in K if self.primary_sites[k]]  # a kind no institution performs is never attended
        self.follow_up_sites = {k: [i for i in ordered if k in i.kinds and i.follow_up] for k in K}
        self.unregistered = [u for u in UNREGISTERED if u[0] not in registry.by_code]
        self.people = [city.residents[a] for a in sorted(city.residents)]
        self.films = 0

    def window(self, r: PersonRecord) -> tuple[date, date] | None:
        """First and last day in the year the person is a resident (None when never)."""
        lo = max(self.start, r.resident_since)
        hi = self.end if r.ceased_on is None else min(self.end, r.ceased_on - timedelta(days=1))
        return (lo, hi) if lo <= hi else None

    def exam_day(self, lo: date, hi: date) -> date:
        """A day in [lo, hi], preferring weekdays outside 年末年始."""
        day = lo
        for _ in range(6):
            day = lo + timedelta(days=self.rng.randrange((hi - lo).days + 1))
            if day.weekday() != 6 and not ((day.month, day.day) >= (12, 29) or (day.month, day.day) <= (1, 3)):
                break
        return day

    def primary(
        self, r: PersonRecord, kind: ScreeningKind, day: date, truth: ResultTruth, method: StomachMethod | None = None
    ) -> _Exam:
        inst = self.rng.choice(self.primary_sites[kind])
        group = inst.group and self.rng.random() < 0.6
        if kind is K.LUNG:
            self.films += 1
        age = age_at_fiscal_year_end(r.person.birth_date, self.fy)
        return _Exam(
            record=r,
            kind=kind,
            day=day,
            institution=(inst.code, inst.name),
            subject=r.identity_on(day),
            truth=truth,
            setting=ExamSetting.GROUP if group else ExamSetting.INDIVIDUAL,
            primary=_primary_findings(self.rng, kind, age, f"F{self.fy}-{self.films:06d}", method),
        )

    def attend(self) -> list[_Exam]:
        exams = []
        for r in self.people:
            span = self.window(r)
            if span is None:
                continue
            for kind in self.kinds:
                target = self.rules.rule(kind).is_target(r.person.sex, r.person.birth_date, self.fy)
                if target and self.rng.random() < ATTENDANCE[kind]:
                    exams.append(self.primary(r, kind, self.exam_day(*span), ResultTruth.CLEAN))
        return exams

    # -- dirty data -------------------------------------------------------------------------------------------

    def moved_out(self, taken: set[tuple[str, ScreeningKind]]) -> list[tuple[PersonRecord, list[ScreeningKind]]]:
        """People who moved out before the year's last day, with the kinds they are targets of (and did not take)."""
        out = []
        for r in self.people:
            if (
                r.status is ResidentStatus.MOVED_OUT
                and r.ceased_on is not None
                and self.start <= r.ceased_on < self.end
            ):
                kinds = [
                    k
                    for k in self.kinds
                    if (r.atena_no, k) not in taken
                    and self.rules.rule(k).is_target(r.person.sex, r.person.birth_date, self.fy)
                ]
                if kinds:
                    out.append((r, kinds))
        return out

    def too_young(self) -> list[tuple[PersonRecord, list[ScreeningKind]]]:
        """Residents aged 20+ who are too young for a kind of their sex (胃がん: even for 胃部X線 under 40)."""
        out = []
        for r in self.people:
            if self.window(r) is None:
                continue
            age = age_at_fiscal_year_end(r.person.birth_date, self.fy)
            kinds: list[ScreeningKind] = [
                k
                for k in (K.STOMACH, K.COLORECTAL, K.LUNG, K.BREAST)
                if age >= 20
                and k in self.kinds
                and self.rules.rule(k).age_sex_reasons(r.person.sex, age, StomachMethod.ENDOSCOPY.value)
                == [ErrorReason.NOT_ELIGIBLE_AGE]
            ]
            if kinds:
                out.append((r, kinds))
        return out

    def make_dirty(self, exams: list[_Exam], share: float) -> None:
        """Turn ``share`` of the primary results dirty, the categories taking turns."""
        n = min(len(exams), round(share * len(exams)))
        chosen = self.rng.sample(range(len(exams)), n)
        pools = {
            ResultTruth.MOVED_OUT: self.moved_out({(e.record.atena_no, e.kind) for e in exams}),
            ResultTruth.INELIGIBLE_AGE: self.too_young(),
        }
        for pool in pools.values():
            self.rng.shuffle(pool)
        categories = [ResultTruth.KANA_TYPO, ResultTruth.WRONG_BIRTH_DATE, ResultTruth.UNKNOWN_INSTITUTION]
        categories += [t for t, pool in pools.items() if pool]
        if not self.unregistered:
            categories.remove(ResultTruth.UNKNOWN_INSTITUTION)
        for i, index in enumerate(chosen):
            truth = categories[i % len(categories)]
            if truth in pools and not pools[truth]:
                truth = ResultTruth.KANA_TYPO  # that pool ran out
            exam = exams[index]
            if truth is ResultTruth.KANA_TYPO:
                exam.subject = replace(exam.subject, name_kana=self.kana_typo(exam.subject.name_kana))
            elif truth is ResultTruth.WRONG_BIRTH_DATE:
                exam.subject = replace(exam.subject, birth_date=self.shift(exam.subject.birth_date))
            elif truth is ResultTruth.UNKNOWN_INSTITUTION:
                exam.institution = self.rng.choice(self.unregistered)
                exam.setting = ExamSetting.INDIVIDUAL
            elif truth is ResultTruth.MOVED_OUT:
                r, kinds = pools[truth].pop()
                assert r.ceased_on is not None
                day = self.exam_day(r.ceased_on + timedelta(days=1), self.end)
                exams[index] = self.primary(r, self.rng.choice(kinds), day, truth)  # subject: the last registered
            else:
                r, kinds = pools[truth].pop()
                span = self.window(r)
                assert span is not None
                # 内視鏡 (50+): 胃部X線 would make 40–49 eligible
                day = self.exam_day(*span)
                exams[index] = self.primary(r, self.rng.choice(kinds), day, truth, StomachMethod.ENDOSCOPY)
            exams[index].truth = truth

    def kana_typo(self, kana: str) -> str:
        positions = [i for i, ch in enumerate(kana) if ch != names.NAME_SEPARATOR]
        i = self.rng.choice(positions)
        new = names.KANA_CONFUSIONS.get(kana[i]) or self.rng.choice([c for c in names.KATAKANA if c != kana[i]])
        return kana[:i] + new + kana[i + 1 :]

    def shift(self, birth: date) -> date:
        """A 生年月日 mistyped: a day, a month or a year off."""
        unit = self.rng.choice(("day", "month", "year"))
        sign = self.rng.choice((-1, 1))
        if unit == "day":
            return birth + timedelta(days=sign)
        if unit == "month":
            year, month = divmod(birth.year * 12 + birth.month - 1 + sign, 12)
            month += 1
        else:
            year, month = birth.year + sign, birth.month
        return date(year, month, min(birth.day, calendar.monthrange(year, month)[1]))

    # -- follow-ups -------------------------------------------------------------------------------------------

    def follow_ups(self, exams: list[_Exam]) -> list[_Exam]:
        out = []
        for e in exams:
            if e.truth is not ResultTruth.CLEAN or e.primary is None or not e.primary.follow_up_required:
                continue
            sites = self.follow_up_sites[e.kind]
            if e.kind is K.H_PYLORI or not sites or self.rng.random() >= FOLLOW_UP_ATTENDANCE:
                continue
            span = self.window(e.record)
            if span is None or span[1] < e.day + timedelta(days=2):
                continue
            day = min(e.day + timedelta(days=self.rng.randint(2, 60)), span[1])
            inst: Institution = self.rng.choice(sites)
            out.append(
                _Exam(
                    record=e.record,
                    kind=e.kind,
                    day=day,
                    institution=(inst.code, inst.name),
                    subject=e.record.identity_on(day),
                    truth=ResultTruth.FOLLOW_UP,
                    follow_up=_follow_up_findings(self.rng, e),
                    parent=e,
                )
            )
        return out

    # -- output -----------------------------------------------------------------------------------------------

    def office_ms(self) -> int:
        return self.rng.randrange(0, 8 * 3600 * 1000 + 15 * 60 * 1000)

    def result(self, index: int, e: _Exam, occurred_at: datetime, subject: PersonIdentity) -> ScreeningResult:
        return ScreeningResult(
            event_id=uuid.uuid5(
                RESULTS_NAMESPACE, f"{self.seed}:{self.city.size}:{self.fy}:{self.city.tenant}:{index}"
            ),
            occurred_at=occurred_at,
            tenant=self.city.tenant,
            source_system=SOURCE_SYSTEM,
            reception_no=e.reception_no,
            kind=e.kind,
            stage=ResultStage.PRIMARY if e.primary is not None else ResultStage.FOLLOW_UP,
            atena_no=e.record.atena_no,
            subject=subject,
            institution_code=e.institution[0],
            institution_name=e.institution[1],
            exam_date=e.day,
            setting=e.setting,
            primary=e.primary,
            follow_up=e.follow_up,
            primary_reception_no=e.parent.reception_no if e.parent is not None else None,
        )

    def build(self, exams: list[_Exam]) -> ResultPlan:
        timed = [(e.day, self.office_ms(), i, e) for i, e in enumerate(exams)]
        timed.sort(key=lambda t: (t[0], t[1], t[2]))
        results: list[ScreeningResult] = []
        truth: dict[str, ResultTruth] = {}
        event_truth: dict[uuid.UUID, ResultTruth] = {}
        last = datetime.combine(self.end, time(0), tzinfo=UTC)
        for n, (day, ms, _, e) in enumerate(timed, start=1):
            e.reception_no = f"R{self.fy}-{n:07d}"
            occurred = datetime.combine(day + REPORT_LAG, time(0), tzinfo=UTC) + timedelta(milliseconds=ms)
            results.append(self.result(len(results), e, occurred, e.subject))
            truth[e.reception_no] = e.truth
            event_truth[results[-1].event_id] = e.truth
            last = max(last, occurred)
        correctable = [e for _, _, _, e in timed if e.truth in CORRECTABLE]
        fixed = sorted(self.rng.sample(range(len(correctable)), (len(correctable) + 1) // 2))
        offsets = sorted(self.office_ms() for _ in fixed)
        corrections: dict[str, ScreeningResult] = {}
        for i, ms in zip(fixed, offsets, strict=True):
            e = correctable[i]
            occurred = datetime.combine(last.date() + timedelta(days=14), time(0), tzinfo=UTC)
            result = self.result(len(results), e, occurred + timedelta(milliseconds=ms), e.record.identity_on(e.day))
            results.append(result)
            corrections[e.reception_no] = result
            event_truth[result.event_id] = ResultTruth.CORRECTION
        return ResultPlan(
            results=tuple(results),
            truth=MappingProxyType(truth),
            corrections=MappingProxyType(corrections),
            event_truth=MappingProxyType(event_truth),
        )


def generate_results(
    city: City,
    *,
    seed: int,
    fiscal_year: int = 2025,
    dirty_share: float = 0.05,
    rules: EligibilityRules | None = None,
    institutions: InstitutionRegistry | None = None,
) -> ResultPlan:
    """Primary and follow-up results of ``city``'s residents for ``fiscal_year``, ``dirty_share`` of them dirty.

    ``fiscal_year`` must be the one the city was generated for; ``rules`` and ``institutions`` default to the
    packaged eligibility rules and registered institutions.
    """
    if not 0.0 <= dirty_share <= 1.0:
        raise ValueError("dirty_share must be between 0 and 1")
    if fiscal_year != city.fiscal_year:
        raise ValueError(f"the city was simulated for fiscal year {city.fiscal_year}, not {fiscal_year}")
    gen = _Generator(city, seed, fiscal_year, rules or load_rules(), institutions or load_institutions())
    exams = gen.attend()
    gen.make_dirty(exams, dirty_share)
    return gen.build(exams + gen.follow_ups(exams))
