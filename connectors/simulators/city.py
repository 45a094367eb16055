"""住基 simulator: a deterministic city population and one fiscal year of 住民基本台帳 changes.

:func:`generate_city` builds households of a regional city (about a third aged 65+), emits one ``MOVE_IN`` or
``BIRTH`` event per person as the population at the start of the fiscal year, then simulates the year's 転入, 転出,
転居, 死亡, 出生, 氏名変更, 支援措置 and 職権修正 in chronological order. ``City.residents`` is the ground truth the
pipeline is checked against. Everything derives from ``random.Random(seed)``: same arguments, same events and ids.

The simulated registry keeps the hub's intake contract (the assessment's III.2: 対象者以外の情報や不必要な情報を入手
できないようにする). For a person who can be a screening target in the fiscal year (``eligibility.toml``: old
enough for some kind, for their sex), every event carries ``my_number``, ``household_no``, ``postcode`` and
``person`` (the 基本5情報 after the change; for 転出 and 死亡 the last ones registered in the city). For anyone
younger it carries only the change's type and dates and the :class:`~schemas.models.TargetBasis` (性別, 生年月日).
:meth:`City.target_age_records` is what the registry sends at the start of the next fiscal year: the full record
(``TARGET_AGE_REACHED``) of each resident who becomes a target in it.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any

from connectors.simulators import names
from hub.validation import fiscal_year_end, fiscal_year_start, is_valid_tenant_code, legal_age, my_number_check_digit
from processors.rules.eligibility import EligibilityRules, load_rules
from processors.rules.residents import basis_of, reduced
from schemas.models import PersonIdentity, ResidentChange, ResidentChangeType, ResidentStatus, Sex

CITY_NAMESPACE = uuid.UUID("5b0f3a4e-2a51-5c33-9e0c-6b1d2f6a0412")
"""uuid5 namespace of the 住基 simulator's event ids (``f"{seed}:{size}:{fiscal_year}:{tenant}:{index}"``)."""
SOURCE_SYSTEM = "juki-sim"

CT = ResidentChangeType

# Age of household heads at the start of the year: (min, max, weight). Tuned so the population as a whole has
# about 33 % aged 65+ and 11 % under 15, like 旭川市.
_HEAD_AGES: tuple[tuple[int, int, float], ...] = (
    (20, 29, 7.0), (30, 39, 10.5), (40, 49, 12.5), (50, 59, 12.0), (60, 64, 7.0),
    (65, 69, 7.5), (70, 74, 8.5), (75, 79, 7.0), (80, 84, 5.5), (85, 89, 3.8), (90, 94, 1.7), (95, 102, 0.4),
)  # fmt: skip
# Household size by the head's age: (max age of the head, weights of sizes 1..5).
_HOUSEHOLD_SIZES: tuple[tuple[int, tuple[float, ...]], ...] = (
    (34, (0.55, 0.20, 0.14, 0.09, 0.02)),
    (59, (0.30, 0.24, 0.20, 0.19, 0.07)),
    (74, (0.32, 0.53, 0.11, 0.03, 0.01)),
    (200, (0.50, 0.44, 0.06, 0.0, 0.0)),
)
_NATIVE_HOUSEHOLDS = 0.35  # households whose members were all born in the city
_MOVER_SIZES = (0.58, 0.24, 0.11, 0.07)  # household sizes 1..4 of 転入 during the year

# Yearly counts as shares of the initial population.
_SHARES: dict[str, float] = {
    "move_in": 0.03,
    "move_out": 0.03,
    "move_within": 0.04,
    "death": 0.01,
    "birth": 0.006,
    "name_change": 0.005,
    "support_set": 0.002,
    "correction": 0.002,
}


@dataclass(frozen=True)
class PersonRecord:
    """Ground truth of one person after the year (what the residents processor should end up with)."""

    atena_no: str
    my_number: str
    person: PersonIdentity  # final 基本5情報
    household_no: str
    status: ResidentStatus
    resident_since: date
    ceased_on: date | None
    support_measure: bool
    increase_reason: ResidentChangeType
    decrease_reason: ResidentChangeType | None
    previous_municipality: str | None
    next_municipality: str | None
    identities: tuple[tuple[date, PersonIdentity], ...]  # (valid from, 基本5情報), chronological
    in_scope: bool  # a possible target in the fiscal year: the registry sent the full record

    def identity_on(self, day: date) -> PersonIdentity:
        """The 基本5情報 registered on ``day`` (the first ones before the person was registered)."""
        current = self.identities[0][1]
        for since, identity in self.identities:
            if since > day:
                break
            current = identity
        return current

    def resident_on(self, day: date) -> bool:
        return self.resident_since <= day and (self.ceased_on is None or day < self.ceased_on)


@dataclass(frozen=True)
class City:
    seed: int
    size: int
    tenant: str
    fiscal_year: int
    initial: tuple[ResidentChange, ...]  # population at the start of the fiscal year, one event per person
    changes: tuple[ResidentChange, ...]  # the year's changes, chronological
    residents: Mapping[str, PersonRecord]  # 宛名番号 -> ground truth

    @property
    def events(self) -> tuple[ResidentChange, ...]:
        """Everything to publish, in order: the initial population, then the year's changes."""
        return self.initial + self.changes

    def target_age_records(self, rules: EligibilityRules | None = None) -> tuple[ResidentChange, ...]:
        """対象年齢到達: the full records the registry sends on 1 April of the next fiscal year, one for each person
        still resident at the end of this one who was kept minimal and becomes a possible target in the next.
        """
        rules = rules if rules is not None else load_rules()
        day = fiscal_year_start(self.fiscal_year + 1)
        out = []
        for r in self.residents.values():
            if r.in_scope or r.status is not ResidentStatus.RESIDENT:
                continue
            if not rules.can_be_target(r.person.sex, r.person.birth_date, self.fiscal_year + 1):
                continue
            out.append(
                ResidentChange(
                    event_id=uuid.uuid5(CITY_NAMESPACE, f"{self.seed}:{self.size}:{self.tenant}:target:{r.atena_no}"),
                    occurred_at=datetime.combine(day, time(0), tzinfo=UTC),
                    tenant=self.tenant,
                    source_system=SOURCE_SYSTEM,
                    atena_no=r.atena_no,
                    my_number=r.my_number,
                    change_type=CT.TARGET_AGE_REACHED,
                    change_date=day,
                    notified_date=day,
                    person=r.person,
                    household_no=r.household_no,
                    postcode=names.postcode(r.person.address),
                    support_measure=r.support_measure,
                )
            )
        return tuple(sorted(out, key=lambda c: c.atena_no))


# --- internal state ------------------------------------------------------------------------------------------


@dataclass
class _Person:
    atena_no: str
    my_number: str
    family: str
    family_kana: str
    given: names.GivenName
    given_kana: str
    sex: Sex
    birth: date
    address: str
    household_no: str
    resident_since: date
    increase_reason: ResidentChangeType
    previous_municipality: str | None = None
    status: ResidentStatus = ResidentStatus.RESIDENT
    ceased_on: date | None = None
    decrease_reason: ResidentChangeType | None = None
    next_municipality: str | None = None
    support: bool = False
    identities: list[tuple[date, PersonIdentity]] = field(default_factory=list)

    def identity(self) -> PersonIdentity:
        sep = names.NAME_SEPARATOR
        return PersonIdentity(
            name=f"{self.family}{sep}{self.given.kanji}",
            name_kana=f"{self.family_kana}{sep}{self.given_kana}",
            sex=self.sex,
            birth_date=self.birth,
            address=self.address,
        )

    def record(self, since: date) -> PersonIdentity:
        """Snapshot the current 基本5情報 as valid from ``since``."""
        identity = self.identity()
        self.identities.append((since, identity))
        return identity


class _Pool:
    """The current residents, for O(1) random choice and removal."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._pos: dict[str, int] = {}

    def add(self, atena_no: str) -> None:
        self._pos[atena_no] = len(self.items)
        self.items.append(atena_no)

    def remove(self, atena_no: str) -> None:
        i = self._pos.pop(atena_no)
        last = self.items.pop()
        if last != atena_no:
            self.items[i] = last
            self._pos[last] = i


class _Builder:
    def __init__(self, seed: int, size: int, tenant: str, fy: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not cryptography
        self.seed, self.size, self.tenant, self.fy = seed, size, tenant, fy
        self.start, self.end = fiscal_year_start(fy), fiscal_year_end(fy)
        self.people: dict[str, _Person] = {}
        self.households: dict[str, list[str]] = {}
        self.pool = _Pool()
        self.my_numbers: set[str] = set()
        self.specs: list[dict[str, Any]] = []  # the year's changes without their header, chronological
        municipalities = [m for m in names.OTHER_MUNICIPALITIES if m[0] != tenant]
        self._muni_codes = [m[0] for m in municipalities]
        self._muni_weights = [m[2] for m in municipalities]
        self._addr_weights = [p.weight for p in names.ADDRESS_PATTERNS]
        self.plan: list[tuple[date, int, str, int, str]] = []  # (day, seq, action, count or flag, 宛名番号)
        self.rules = load_rules()  # who can be a target this year: the intake contract's scope
        self._seq = 0
        self.day = self.start

    # -- drawing ----------------------------------------------------------------------------------------------

    def my_number(self) -> str:
        while True:
            body = f"{self.rng.randrange(10**11):011d}"
            value = body + str(my_number_check_digit(body))
            if value not in self.my_numbers:
                self.my_numbers.add(value)
                return value

    def municipality(self) -> str:
        return self.rng.choices(self._muni_codes, self._muni_weights)[0]

    def address(self) -> str:
        p = self.rng.choices(names.ADDRESS_PATTERNS, self._addr_weights)[0]
        r = self.rng.randint
        return p.template.format(jo=r(*p.jo), chome=r(*p.chome), ban=r(*p.ban), go=r(*p.go))

    def given_name(self, sex: Sex, birth: date) -> names.GivenName:
        era = "old" if birth.year < 1960 else "mid" if birth.year < 1990 else "new"
        pool = names.MALE_GIVEN_NAMES if sex is Sex.MALE else names.FEMALE_GIVEN_NAMES
        return self.rng.choice([g for g in pool if g.era == era])

    def birth_for_age(self, age: int, on: date) -> date:
        """A birth date of someone aged about ``age`` on ``on`` (always before ``on``)."""
        return on - timedelta(days=int(age * 365.2425) + self.rng.randrange(1, 365))

    def sex(self) -> Sex:
        return Sex.MALE if self.rng.random() < 0.5 else Sex.FEMALE

    def day_in_year(self) -> date:
        return self.start + timedelta(days=self.rng.randrange((self.end - self.start).days + 1))

    # -- people -----------------------------------------------------------------------------------------------

    def new_person(
        self, family: tuple[str, str], sex: Sex, birth: date, address: str, household_no: str, **extra: Any
    ) -> _Person:
        atena_no = f"{len(self.people) + 1:010d}"
        given = self.given_name(sex, birth)
        p = _Person(
            atena_no=atena_no,
            my_number=self.my_number(),
            family=family[0],
            family_kana=family[1],
            given=given,
            given_kana=given.kana,
            sex=sex,
            birth=birth,
            address=address,
            household_no=household_no,
            **extra,
        )
        self.people[atena_no] = p
        self.households.setdefault(household_no, []).append(atena_no)
        return p

    def household_ages(self, head_age: int, n: int, spouse: bool = True) -> list[int]:
        """Ages of ``n`` members: the head, a spouse of about the same age, then children."""
        ages = [head_age]
        if n >= 2 and spouse:
            ages.append(max(18, head_age + self.rng.randint(-4, 4)))
        parent = min(ages)
        while len(ages) < n:
            if parent >= 60:
                ages.append(max(18, parent - self.rng.randint(25, 38)))
            elif parent >= 22:
                ages.append(max(0, parent - self.rng.randint(22, min(42, parent))))
            else:
                ages.append(self.rng.randint(0, 3))
        return ages

    def member_sexes(self, n: int, single_elder: bool) -> list[Sex]:
        head = Sex.FEMALE if single_elder and self.rng.random() < 0.7 else self.sex()
        sexes = [head]
        if n >= 2:
            sexes.append(Sex.FEMALE if head is Sex.MALE else Sex.MALE)
        sexes.extend(self.sex() for _ in range(n - 2))
        return sexes

    def populate(self) -> None:
        """The population on the first day of the fiscal year: exactly ``size`` people in households."""
        head_bands = [(lo, hi) for lo, hi, _ in _HEAD_AGES]
        head_weights = [w for _, _, w in _HEAD_AGES]
        while len(self.people) < self.size:
            lo, hi = self.rng.choices(head_bands, head_weights)[0]
            head_age = self.rng.randint(lo, hi)
            size_weights = next(w for max_age, w in _HOUSEHOLD_SIZES if head_age <= max_age)
            n = min(self.rng.choices(range(1, 6), size_weights)[0], self.size - len(self.people))
            ages = self.household_ages(head_age, n)
            sexes = self.member_sexes(n, single_elder=n == 1 and head_age >= 75)
            births = [self.birth_for_age(a, self.start) for a in ages]
            household_no = f"H{len(self.households) + 1:08d}"
            family = self.rng.choice(names.FAMILY_NAMES)
            address = self.address()
            native = self.rng.random() < _NATIVE_HOUSEHOLDS
            since: date | None = None
            previous: str | None = None
            if not native:
                earliest = max(births[0] + timedelta(days=18 * 365), self.start - timedelta(days=60 * 365))
                span = (self.start - earliest).days
                since = earliest + timedelta(days=self.rng.randrange(span)) if span > 1 else self.start - timedelta(1)
                previous = self.municipality()
            for sex, birth in zip(sexes, births, strict=True):
                moved_in = since is not None and birth < since
                self.new_person(
                    family,
                    sex,
                    birth,
                    address,
                    household_no,
                    resident_since=since if moved_in and since is not None else birth,
                    increase_reason=CT.MOVE_IN if moved_in else CT.BIRTH,
                    previous_municipality=previous if moved_in else None,
                )
        for p in self.people.values():
            p.record(p.resident_since)
            self.pool.add(p.atena_no)

    # -- the year ---------------------------------------------------------------------------------------------

    def emit(self, p: _Person, change_type: ResidentChangeType, day: date, notified: date | None, **extra: Any) -> None:
        # the changes that (first) register or alter the 基本5情報 snapshot them; the others carry the last ones
        identity = p.record(day) if change_type in ResidentChange.NEEDS_PERSON else p.identities[-1][1]
        self.specs.append(
            {
                "atena_no": p.atena_no,
                "my_number": p.my_number,
                "change_type": change_type,
                "change_date": day,
                "notified_date": notified,
                "person": identity,
                "household_no": p.household_no,
                "postcode": names.postcode(identity.address),
                **extra,
            }
        )

    def pick(self, accept: Callable[[_Person], bool], tries: int = 400) -> _Person | None:
        """A random current resident for whom ``accept(person)`` holds (None when none is found)."""
        for _ in range(tries):
            if not self.pool.items:
                return None
            p = self.people[self.pool.items[self.rng.randrange(len(self.pool.items))]]
            if accept(p):
                return p
        return None

    def cease(self, p: _Person, day: date, reason: ResidentChangeType, next_municipality: str | None) -> None:
        p.status = ResidentStatus.MOVED_OUT if reason is CT.MOVE_OUT else ResidentStatus.DECEASED
        p.ceased_on, p.decrease_reason, p.next_municipality = day, reason, next_municipality
        self.pool.remove(p.atena_no)
        self.emit(
            p, reason, day, self.notified(day, -14 if reason is CT.MOVE_OUT else 7), next_municipality=next_municipality
        )

    def notified(self, day: date, within: int) -> date:
        """届出年月日: up to ``within`` days after the change (before it when negative, as for 転出届)."""
        offset = self.rng.randint(min(0, within), max(0, within))
        return day + timedelta(days=offset)

    def resident_household(self, p: _Person) -> list[_Person]:
        return [
            self.people[a]
            for a in self.households[p.household_no]
            if self.people[a].status is ResidentStatus.RESIDENT and self.people[a].resident_since < self.day
        ]

    def simulate(self) -> None:
        counts = {k: round(self.size * share) for k, share in _SHARES.items()}
        if self.size >= 100:
            counts["support_set"] = max(1, counts["support_set"])
            counts["correction"] = max(1, counts["correction"])
        sizes = [len(members) for members in self.households.values()]
        mean_household = sum(n * n for n in sizes) / max(1, sum(sizes))  # as seen from a random resident
        arrived = 0
        while arrived < counts["move_in"]:
            n = self.rng.choices(range(1, 5), _MOVER_SIZES)[0]
            self.schedule(self.day_in_year(), "move_in", n)
            arrived += n
        for _ in range(round(counts["move_out"] / (0.5 + 0.5 * mean_household))):
            self.schedule(self.day_in_year(), "move_out")
        for _ in range(round(counts["move_within"] / mean_household)):
            self.schedule(self.day_in_year(), "move_within")
        for action in ("death", "birth", "name_change", "correction"):
            for _ in range(counts[action]):
                self.schedule(self.day_in_year(), action)
        support_days = sorted(self.day_in_year() for _ in range(counts["support_set"]))
        for i, day in enumerate(support_days):  # the earliest third are cleared later in the year
            self.schedule(day, "support_set", 1 if i < (len(support_days) + 2) // 3 else 0)
        handlers: dict[str, Callable[[int, str], None]] = {
            "move_in": self._move_in,
            "move_out": self._move_out,
            "move_within": self._move_within,
            "death": self._death,
            "birth": self._birth,
            "name_change": self._name_change,
            "correction": self._correction,
            "support_set": self._support_set,
            "support_clear": self._support_clear,
        }
        heapq.heapify(self.plan)
        while self.plan:
            self.day, _, action, n, atena_no = heapq.heappop(self.plan)
            handlers[action](n, atena_no)

    def schedule(self, day: date, action: str, n: int = 0, atena_no: str = "") -> None:
        heapq.heappush(self.plan, (day, self._seq, action, n, atena_no))
        self._seq += 1

    def _move_in(self, n: int, _atena_no: str) -> None:
        day = self.day
        head_age = self.rng.randint(19, 39) if self.rng.random() < 0.7 else self.rng.randint(40, 79)
        ages = self.household_ages(head_age, n, spouse=n >= 2 and self.rng.random() < 0.8)
        sexes = self.member_sexes(n, single_elder=False)
        household_no = f"H{len(self.households) + 1:08d}"
        family, address, previous = self.rng.choice(names.FAMILY_NAMES), self.address(), self.municipality()
        notified = self.notified(day, 14)
        for age, sex in zip(ages, sexes, strict=True):
            p = self.new_person(
                family,
                sex,
                self.birth_for_age(age, day),
                address,
                household_no,
                resident_since=day,
                increase_reason=CT.MOVE_IN,
                previous_municipality=previous,
            )
            self.pool.add(p.atena_no)
            self.emit(p, CT.MOVE_IN, day, notified, previous_municipality=previous)

    def _move_out(self, _n: int, _atena_no: str) -> None:
        p = self.pick(lambda q: q.resident_since < self.day)
        if p is None:
            return
        leaving = self.resident_household(p) if self.rng.random() < 0.5 else [p]
        destination = self.municipality()
        for q in leaving:
            self.cease(q, self.day, CT.MOVE_OUT, destination)

    def _move_within(self, _n: int, _atena_no: str) -> None:
        p = self.pick(lambda q: q.resident_since < self.day)
        if p is None:
            return
        address, notified = self.address(), self.notified(self.day, 14)
        for q in self.resident_household(p):
            q.address = address
            self.emit(q, CT.MOVE_WITHIN, self.day, notified)

    def _death(self, _n: int, _atena_no: str) -> None:
        def frail(q: _Person) -> bool:
            age = legal_age(q.birth, self.day)
            weight = 0.005 if age < 40 else 0.03 if age < 65 else 0.12 if age < 75 else 0.35 if age < 85 else 1.0
            return q.resident_since < self.day and self.rng.random() < weight

        p = self.pick(frail, tries=5000)
        if p is not None:
            self.cease(p, self.day, CT.DEATH, None)

    def _birth(self, _n: int, _atena_no: str) -> None:
        mother = self.pick(
            lambda q: q.sex is Sex.FEMALE and 20 <= legal_age(q.birth, self.day) <= 44 and q.resident_since < self.day
        )
        if mother is None:
            return
        baby = self.new_person(
            (mother.family, mother.family_kana),
            self.sex(),
            self.day,
            mother.address,
            mother.household_no,
            resident_since=self.day,
            increase_reason=CT.BIRTH,
        )
        self.pool.add(baby.atena_no)
        self.emit(baby, CT.BIRTH, self.day, self.notified(self.day, 14))

    def _name_change(self, _n: int, _atena_no: str) -> None:
        sex = Sex.FEMALE if self.rng.random() < 0.8 else Sex.MALE
        p = self.pick(lambda q: q.sex is sex and 18 <= legal_age(q.birth, self.day) <= 45)
        if p is None:
            return
        family = self.rng.choice([f for f in names.FAMILY_NAMES if f[0] != p.family])
        p.family, p.family_kana = family
        self.emit(p, CT.NAME_CHANGE, self.day, self.day)

    def _correction(self, _n: int, _atena_no: str) -> None:
        p = self.pick(lambda q: q.family in names.FAMILY_NAME_VARIANTS or bool(q.given.alt_kana))
        if p is None:
            return
        if p.family in names.FAMILY_NAME_VARIANTS and (not p.given.alt_kana or self.rng.random() < 0.5):
            p.family = names.FAMILY_NAME_VARIANTS[p.family]
        else:
            p.given_kana = p.given.alt_kana if p.given_kana == p.given.kana else p.given.kana
        self.emit(p, CT.CORRECTION, self.day, None)

    def _support_set(self, clear: int, _atena_no: str) -> None:
        p = self.pick(lambda q: not q.support and legal_age(q.birth, self.day) >= 18)
        if p is None:
            return
        p.support = True
        self.emit(p, CT.SUPPORT_MEASURE_SET, self.day, self.day)
        left = (self.end - self.day).days
        if clear and left >= 30:
            self.schedule(
                self.day + timedelta(days=self.rng.randint(30, min(240, left))), "support_clear", 0, p.atena_no
            )

    def _support_clear(self, _n: int, atena_no: str) -> None:
        p = self.people[atena_no]
        if p.status is ResidentStatus.RESIDENT and p.support:
            p.support = False
            self.emit(p, CT.SUPPORT_MEASURE_CLEARED, self.day, self.day)

    # -- output -----------------------------------------------------------------------------------------------

    def header(self, index: int, day: date, offset_ms: int) -> dict[str, Any]:
        return {
            "event_id": uuid.uuid5(CITY_NAMESPACE, f"{self.seed}:{self.size}:{self.fy}:{self.tenant}:{index}"),
            "occurred_at": datetime.combine(day, time(0), tzinfo=UTC) + timedelta(milliseconds=offset_ms),
            "tenant": self.tenant,
            "source_system": SOURCE_SYSTEM,
        }

    def office_ms(self) -> int:
        """A time of day within 08:30–17:15 JST (23:30 the day before … 08:15 UTC, kept on the same UTC day)."""
        return self.rng.randrange(0, 8 * 3600 * 1000 + 15 * 60 * 1000)

    def in_scope(self, atena_no: str) -> bool:
        p = self.people[atena_no]
        return self.rules.can_be_target(p.sex, p.birth, self.fy)

    def sent(self, change: ResidentChange) -> ResidentChange:
        """``change`` as the registry sends it under the intake contract (minimal below the scope)."""
        basis = basis_of(change)
        if basis is None or self.in_scope(change.atena_no):
            return change
        return reduced(change, basis)

    def initial_events(self, people: Sequence[_Person]) -> list[ResidentChange]:
        events = []
        for i, p in enumerate(people):
            day = p.resident_since
            events.append(
                self.sent(
                    ResidentChange(
                        **self.header(i, day, self.office_ms()),
                        atena_no=p.atena_no,
                        my_number=p.my_number,
                        change_type=p.increase_reason,
                        change_date=day,
                        notified_date=min(self.notified(day, 14), self.start - timedelta(days=1)),
                        person=p.identities[0][1],
                        household_no=p.household_no,
                        previous_municipality=p.previous_municipality,
                        postcode=names.postcode(p.identities[0][1].address),
                    )
                )
            )
        return events

    def change_events(self, first_index: int) -> list[ResidentChange]:
        offsets = [self.office_ms() for _ in self.specs]
        events: list[ResidentChange] = []
        i = 0
        while i < len(self.specs):  # sort the times of day within each date, so occurred_at is chronological too
            j = i
            while j < len(self.specs) and self.specs[j]["change_date"] == self.specs[i]["change_date"]:
                j += 1
            for k, offset in zip(range(i, j), sorted(offsets[i:j]), strict=True):
                spec = self.specs[k]
                header = self.header(first_index + k, spec["change_date"], offset)
                events.append(self.sent(ResidentChange(**header, **spec)))
            i = j
        return events


def generate_city(*, seed: int, size: int, tenant: str = "012041", fiscal_year: int = 2025) -> City:
    """A city of ``size`` residents at the start of ``fiscal_year`` and its changes during that year."""
    if size < 1:
        raise ValueError("size must be at least 1")
    if not is_valid_tenant_code(tenant):
        raise ValueError("tenant is not a valid 団体コード")
    b = _Builder(seed, size, tenant, fiscal_year)
    b.populate()
    initial_people = list(b.people.values())
    b.simulate()
    initial = b.initial_events(initial_people)
    changes = b.change_events(len(initial))
    residents = {
        p.atena_no: PersonRecord(
            atena_no=p.atena_no,
            my_number=p.my_number,
            person=p.identities[-1][1],
            household_no=p.household_no,
            status=p.status,
            resident_since=p.resident_since,
            ceased_on=p.ceased_on,
            support_measure=p.support,
            increase_reason=p.increase_reason,
            decrease_reason=p.decrease_reason,
            previous_municipality=p.previous_municipality,
            next_municipality=p.next_municipality,
            identities=tuple(p.identities),
            in_scope=b.in_scope(p.atena_no),
        )
        for p in b.people.values()
    }
    return City(
        seed=seed,
        size=size,
        tenant=tenant,
        fiscal_year=fiscal_year,
        initial=tuple(initial),
        changes=tuple(changes),
        residents=MappingProxyType(residents),
    )
