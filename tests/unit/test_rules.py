"""The business rules as pure functions: residents, matching, ledger, errors, invitations, 副本."""

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from processors.rules.eligibility import RulesError, load_rules, parse_rules
from processors.rules.institutions import load_institutions
from processors.rules.invitations import invitations_for
from processors.rules.ledger import Context, LedgerBook, decode_book, encode_book, load_fukuhon_policy, process_result
from processors.rules.matching import normalize_kana, normalize_text
from processors.rules.residents import PersonLog
from schemas import models as m
from tests import samples

pytestmark = pytest.mark.unit

RULES = load_rules()
CTX = Context(RULES, load_institutions(), load_fukuhon_policy())
INST = "0110100011"  # performs every kind


def change(kind: m.ResidentChangeType, day: date, seq: int, **over: object) -> m.ResidentChange:
    base: dict[str, object] = {
        "event_id": uuid.UUID(int=seq),
        "occurred_at": datetime(day.year, day.month, day.day, 9, tzinfo=UTC) + timedelta(seconds=seq),
        "tenant": samples.TENANT,
        "source_system": "juki",
        "atena_no": "0000000001",
        "change_type": kind,
        "change_date": day,
    }
    if kind in m.ResidentChange.NEEDS_PERSON:
        base["person"] = samples.person(birth_date=date(1970, 6, 1))
    base.update(over)
    return m.ResidentChange(**base)  # type: ignore[arg-type]


def log_of(*changes: m.ResidentChange) -> PersonLog:
    log = PersonLog()
    for c in changes:
        log, _ = log.add(c)
    return log


MOVE_IN = change(
    m.ResidentChangeType.MOVE_IN, date(2020, 4, 1), 1, previous_municipality="011002", my_number=samples.my_number()
)


def result(
    kind: m.ScreeningKind = m.ScreeningKind.COLORECTAL,
    *,
    day: date = date(2025, 6, 10),
    seq: int = 100,
    reception: str = "R1",
    **over: object,
) -> m.ScreeningResult:
    base = samples.primary_result(kind, reception_no=reception)
    fields: dict[str, object] = {
        "event_id": uuid.UUID(int=seq),
        "exam_date": day,
        "atena_no": "0000000001",
        "institution_code": INST,
        "subject": samples.person(birth_date=date(1970, 6, 1)),
    }
    fields.update(over)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


# --- residents -------------------------------------------------------------------------------------------------


def test_fold_is_order_independent_and_ignores_duplicates() -> None:
    moved = change(
        m.ResidentChangeType.MOVE_WITHIN,
        date(2022, 1, 5),
        2,
        person=samples.person(birth_date=date(1970, 6, 1), address="北海道旭川市神楽1条1丁目1番1号"),
    )
    flagged = change(m.ResidentChangeType.SUPPORT_MEASURE_SET, date(2023, 3, 1), 3)
    forward = log_of(MOVE_IN, moved, flagged, moved)
    backward = log_of(flagged, moved, MOVE_IN)
    assert forward.state() == backward.state()
    state = forward.state()
    assert state is not None
    assert state.version == 3
    assert state.support_measure
    assert state.person.address.startswith("北海道旭川市神楽")
    assert state.my_number == samples.my_number()
    _, new = forward.add(moved)
    assert not new


def test_move_out_death_and_return() -> None:
    out = change(m.ResidentChangeType.MOVE_OUT, date(2024, 7, 1), 2, next_municipality="012025")
    log = log_of(MOVE_IN, out)
    state = log.state()
    assert state is not None
    assert state.status is m.ResidentStatus.MOVED_OUT
    assert state.ceased_on == date(2024, 7, 1)
    assert log.resident_on(date(2024, 6, 30))
    assert not log.resident_on(date(2024, 7, 1))
    back = log_of(MOVE_IN, out, change(m.ResidentChangeType.MOVE_IN, date(2025, 1, 1), 3))
    assert back.resident_on(date(2024, 6, 1))  # the first period still counts
    assert not back.resident_on(date(2024, 12, 1))
    assert back.resident_on(date(2025, 2, 1))


def test_a_change_before_the_person_is_known_waits_in_the_log() -> None:
    death = change(m.ResidentChangeType.DEATH, date(2025, 1, 1), 2)
    assert log_of(death).state() is None
    state = log_of(death, MOVE_IN).state()
    assert state is not None
    assert state.status is m.ResidentStatus.DECEASED


# --- matching and the ledger -------------------------------------------------------------------------------------


def test_kana_and_name_normalisation() -> None:
    assert normalize_kana("あさひかわ　はなこ") == normalize_kana("ｱｻﾋｶﾜ ﾊﾅｺ") == "アサヒカワハナコ"
    assert normalize_text("旭川　花子") == "旭川花子"


def run(book: LedgerBook, r: m.ScreeningResult, log: PersonLog | None = None) -> tuple[LedgerBook, list[m.Event]]:
    return process_result(book, r, log if log is not None else log_of(MOVE_IN), CTX, None)


def test_a_clean_result_makes_one_entry_and_a_redelivery_changes_nothing() -> None:
    r = result(subject=samples.person(birth_date=date(1970, 6, 1), name_kana="あさひかわ はなこ"))
    book, out = run(LedgerBook(), r)
    entries = [e for e in out if isinstance(e, m.LedgerEntry)]
    assert len(entries) == 1
    assert entries[0].exam_age == 55
    assert entries[0].fiscal_year == 2025
    assert any(isinstance(e, m.FukuhonRegistration) for e in out)
    again, replayed = run(book, r)
    assert again == book
    assert replayed == entries  # the same record, byte for byte


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        (
            {"subject": samples.person(birth_date=date(1970, 6, 1), name_kana="アサヒカワ ハナユ")},
            m.ErrorReason.KANA_MISMATCH,
        ),
        ({"subject": samples.person(birth_date=date(1970, 6, 2))}, m.ErrorReason.BIRTH_DATE_MISMATCH),
        ({"institution_code": "0119999999"}, m.ErrorReason.UNKNOWN_INSTITUTION),
        ({"atena_no": "0000000001", "day": date(2019, 5, 1)}, m.ErrorReason.NOT_RESIDENT_ON_EXAM_DATE),
    ],
)
def test_dirty_results_become_errors_and_leave_the_ledger_alone(over: dict[str, object], reason: m.ErrorReason) -> None:
    day = over.pop("day", date(2025, 6, 10))
    book, out = run(LedgerBook(), result(day=day, **over))  # type: ignore[arg-type]
    assert book.entries == ()
    [error] = out
    assert isinstance(error, m.ScreeningError)
    assert reason in error.reasons
    assert error.status is m.ErrorStatus.OPEN


def test_unknown_person_and_ineligible_age() -> None:
    _, out = process_result(LedgerBook(), result(), None, CTX, None)
    assert out[0].reasons == (m.ErrorReason.UNKNOWN_PERSON,)  # type: ignore[attr-defined]
    young = change(
        m.ResidentChangeType.MOVE_IN, date(2020, 4, 1), 1, person=samples.person(birth_date=date(1990, 1, 1))
    )
    _, out = run(LedgerBook(), result(subject=samples.person(birth_date=date(1990, 1, 1))), log_of(young))
    assert out[0].reasons == (m.ErrorReason.NOT_ELIGIBLE_AGE,)  # type: ignore[attr-defined]


def test_a_corrected_resubmission_clears_the_error_and_makes_the_entry() -> None:
    bad = result(subject=samples.person(birth_date=date(1970, 6, 2)))
    book, _ = run(LedgerBook(), bad)
    fixed = result(seq=101)
    book, out = run(book, fixed)
    resolved = [e for e in out if isinstance(e, m.ScreeningError)]
    assert [e.status for e in resolved] == [m.ErrorStatus.RESOLVED]
    assert resolved[0].resolved_by == "resubmission"
    assert len(book.entries) == 1


def test_a_correction_makes_a_new_version_and_a_follow_up_attaches() -> None:
    book, _ = run(LedgerBook(), result())
    corrected = result(
        seq=101, primary=dataclasses.replace(samples.primary(m.ScreeningKind.COLORECTAL), other_findings="痔核")
    )
    book, out = run(book, corrected)
    [entry] = [e for e in out if isinstance(e, m.LedgerEntry)]
    assert entry.version == 2
    follow = dataclasses.replace(
        result(seq=102, reception="R2", day=date(2025, 7, 1)),
        stage=m.ResultStage.FOLLOW_UP,
        primary=None,
        setting=None,
        follow_up=samples.follow_up(),
        primary_reception_no="R1",
    )
    book, out = run(book, follow)
    [entry] = [e for e in out if isinstance(e, m.LedgerEntry)]
    assert entry.version == 3
    assert entry.follow_up is not None
    assert entry.follow_up.exam_age == 55
    [fukuhon] = [e for e in out if isinstance(e, m.FukuhonRegistration)]
    assert fukuhon.operation is m.FukuhonOperation.UPDATE
    assert fukuhon.data["K007"] == "CANCER"
    assert decode_book(encode_book(book)) == book


def test_follow_up_without_primary_and_interval() -> None:
    follow = dataclasses.replace(
        result(reception="R9"),
        stage=m.ResultStage.FOLLOW_UP,
        primary=None,
        setting=None,
        follow_up=samples.follow_up(),
        primary_reception_no="R404",
    )
    _, out = run(LedgerBook(), follow)
    assert out[0].reasons == (m.ErrorReason.NO_PRIMARY_FOR_FOLLOW_UP,)  # type: ignore[attr-defined]
    breast = m.ScreeningKind.BREAST
    book, _ = run(LedgerBook(), result(breast, day=date(2024, 6, 1)))
    _, out = run(book, result(breast, day=date(2025, 6, 1), seq=7, reception="R7"))
    assert out[0].reasons == (m.ErrorReason.INTERVAL_NOT_MET,)  # type: ignore[attr-defined]


# --- invitations -------------------------------------------------------------------------------------------------


def _state(birth: date, sex: m.Sex = m.Sex.FEMALE) -> m.ResidentState:
    mi = change(m.ResidentChangeType.MOVE_IN, date(2020, 4, 1), 1, person=samples.person(birth_date=birth, sex=sex))
    state = log_of(mi).state()
    assert state is not None
    return state


def test_invitations_by_age_and_parity_with_carry_over() -> None:
    kinds = lambda notices: {(n.kind, n.invitation_type) for n in notices}  # noqa: E731
    # 50 at the end of fiscal 2025 (born 1975-06-01): every kind of her age; biennial ones at even distance.
    fifty = invitations_for(
        _state(date(1975, 6, 1)), [], fiscal_year=2025, trigger=m.InvitationTrigger.FISCAL_YEAR_START, rules=RULES
    )
    assert kinds(fifty) == {
        (m.ScreeningKind.STOMACH, m.InvitationType.INVITATION),
        (m.ScreeningKind.COLORECTAL, m.InvitationType.INVITATION),
        (m.ScreeningKind.LUNG, m.InvitationType.INVITATION),
        (m.ScreeningKind.BREAST, m.InvitationType.INVITATION),
        (m.ScreeningKind.CERVICAL, m.InvitationType.INVITATION),
    }
    # 51: last year's biennial targets who did not attend get 繰越受診通知.
    fifty_one = invitations_for(
        _state(date(1974, 6, 1)), [], fiscal_year=2025, trigger=m.InvitationTrigger.FISCAL_YEAR_START, rules=RULES
    )
    assert (m.ScreeningKind.BREAST, m.InvitationType.CARRY_OVER) in kinds(fifty_one)
    assert (m.ScreeningKind.STOMACH, m.InvitationType.CARRY_OVER) in kinds(fifty_one)
    # A man of 39 is nobody's target.
    assert (
        invitations_for(
            _state(date(1986, 6, 1), m.Sex.MALE),
            [],
            fiscal_year=2025,
            trigger=m.InvitationTrigger.FISCAL_YEAR_START,
            rules=RULES,
        )
        == []
    )


def test_nobody_who_moved_out_is_invited() -> None:
    moved = dataclasses.replace(_state(date(1975, 6, 1)), status=m.ResidentStatus.MOVED_OUT)
    assert invitations_for(moved, [], fiscal_year=2025, trigger=m.InvitationTrigger.MOVE_IN, rules=RULES) == []


def test_rules_files_are_validated() -> None:
    with pytest.raises(RulesError, match="unknown kind"):
        parse_rules({"version": "x", "age_basis": "fiscal_year_end", "kinds": [{"kind": "SKIN"}]})
    with pytest.raises(RulesError, match="no rule for"):
        parse_rules({"version": "x", "age_basis": "fiscal_year_end", "kinds": []})
    with pytest.raises(RulesError, match="age_basis"):
        parse_rules({"version": "x", "age_basis": "birthday"})


def test_a_book_stored_before_books_kept_their_results_is_read_and_keeps_its_entries() -> None:
    book, _ = run(LedgerBook(), result())
    bad = result(seq=7, reception="R7", subject=samples.person(birth_date=date(1970, 6, 2)))
    book, _ = run(book, bad)
    stored = {k: v for k, v in encode_book(book).items() if k in ("entries", "seen", "errors")}  # the first form
    old = decode_book(stored)
    assert (old.entries, old.errors) == (book.entries, book.errors)
    assert all(r.trusted for r in old.results)
    again, out = process_result(old, result(), log_of(MOVE_IN), CTX, None)  # a redelivery: nothing new
    assert (again.entries, again.errors) == (book.entries, book.errors)
    assert [type(e) for e in out] == [m.LedgerEntry]
    follow = dataclasses.replace(
        result(seq=102, reception="R2", day=date(2025, 7, 1)),
        stage=m.ResultStage.FOLLOW_UP,
        primary=None,
        setting=None,
        follow_up=samples.follow_up(),
        primary_reception_no="R1",
    )
    after, out = process_result(old, follow, log_of(MOVE_IN), CTX, None)
    [entry] = [e for e in out if isinstance(e, m.LedgerEntry)]
    assert entry.follow_up is not None
    assert entry.version > book.entries[0].version  # the sink takes it
    assert after.error("R7") == book.error("R7")  # an error of a result the old book did not keep stays
    assert decode_book(encode_book(after)) == after


def test_staff_see_errors_that_only_wait_for_data_as_waiting() -> None:
    from hub.office import WAITING_LABEL, _status_label
    from processors.rules.matching import WAITING_REASONS

    assert {r.value for r in WAITING_REASONS} == {
        "UNKNOWN_PERSON",
        "NOT_RESIDENT_ON_EXAM_DATE",
        "NO_PRIMARY_FOR_FOLLOW_UP",
    }
    assert _status_label("OPEN", "UNKNOWN_PERSON") == WAITING_LABEL == "住基/1次待ち"
    assert _status_label("OPEN", "NOT_RESIDENT_ON_EXAM_DATE,NO_PRIMARY_FOR_FOLLOW_UP") == WAITING_LABEL
    assert _status_label("OPEN", "UNKNOWN_PERSON,KANA_MISMATCH") == "OPEN"  # a real disagreement: staff act
    assert _status_label("RESOLVED", "UNKNOWN_PERSON") == "RESOLVED"
    assert _status_label("OPEN", "") == "OPEN"


def test_stomach_targets_start_at_40_as_the_city_sets_them() -> None:
    """The city's assessment (II.2 ③): 胃がん 40歳以上, whatever the method; the national guideline's 内視鏡 50 does not
    apply. Endoscopy stays biennial, X-ray yearly."""
    rule = RULES.kinds[m.ScreeningKind.STOMACH]
    assert rule.for_method(None) == (40, 2)
    assert rule.for_method(m.StomachMethod.ENDOSCOPY.value) == (40, 2)
    assert rule.for_method(m.StomachMethod.XRAY.value) == (40, 1)
    # A 45-year-old's gastric endoscopy enters the 台帳 (it was NOT_ELIGIBLE_AGE with a minimum of 50).
    born = date(1980, 6, 1)  # 45 at the end of fiscal 2025
    person = samples.person(birth_date=born)
    resident = change(m.ResidentChangeType.MOVE_IN, date(2020, 4, 1), 1, person=person)
    endoscopy = result(m.ScreeningKind.STOMACH, subject=person)
    assert endoscopy.primary is not None
    assert endoscopy.primary.stomach is not None
    assert endoscopy.primary.stomach.method is m.StomachMethod.ENDOSCOPY
    book, out = run(LedgerBook(), endoscopy, log_of(resident))
    assert [type(o) for o in out if isinstance(o, m.ScreeningError)] == []
    assert [e.kind for e in book.entries] == [m.ScreeningKind.STOMACH]
    # 40 and 42 are invited to the biennial 胃がん (節目 by parity from 40); 41 is not.
    invited = {
        age: (m.ScreeningKind.STOMACH, m.InvitationType.INVITATION)
        in {
            (n.kind, n.invitation_type)
            for n in invitations_for(
                _state(date(2025 - age, 6, 1), m.Sex.MALE),
                [],
                fiscal_year=2025,
                trigger=m.InvitationTrigger.FISCAL_YEAR_START,
                rules=RULES,
            )
        }
        for age in (40, 41, 42)
    }
    assert invited == {40: True, 41: False, 42: True}
