"""The business rules as pure functions: residents, matching, ledger, errors, invitations, 副本."""

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from processors.rules import steps
from processors.rules.eligibility import RulesError, load_rules, parse_rules
from processors.rules.institutions import load_institutions
from processors.rules.invitations import invitations_for, notice_decision
from processors.rules.ledger import (
    Context,
    LedgerBook,
    decode_book,
    encode_book,
    load_fukuhon_policy,
    process_result,
    published,
)
from processors.rules.matching import normalize_kana, normalize_text
from processors.rules.residents import PersonLog
from processors.rules.steps import (
    PersonState,
    apply_history,
    apply_result,
    decode_state_book,
    encode_state_book,
    year_start_notices,
)
from schemas import models as m
from tests import samples

pytestmark = pytest.mark.unit

RULES = load_rules()
CTX = Context(RULES, load_institutions(), load_fukuhon_policy())
INST = "0110100011"  # performs every kind (1次 only: not registered for 精検)
FOLLOW_INST = "0110100078"  # 旭川北総合病院: performs every kind and is registered for 精検


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
        institution_code=FOLLOW_INST,
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
        institution_code=FOLLOW_INST,
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


def test_invitations_by_age_and_parity_and_no_carry_over_at_the_year_start() -> None:
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
    # 51: the yearly kinds only. 繰越受診通知 is issued when the resident asks (I.1 ② (2)), never mailed at the
    # 年度開始, although she was due last year and did not attend.
    fifty_one = invitations_for(
        _state(date(1974, 6, 1)), [], fiscal_year=2025, trigger=m.InvitationTrigger.FISCAL_YEAR_START, rules=RULES
    )
    assert kinds(fifty_one) == {
        (m.ScreeningKind.COLORECTAL, m.InvitationType.INVITATION),
        (m.ScreeningKind.LUNG, m.InvitationType.INVITATION),
    }
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


ATENA_NO = "0000000001"  # the 宛名番号 of _state


def _request(kind: m.ScreeningKind, year: int = 2025, seq: int = 1) -> m.NoticeRequest:
    return m.NoticeRequest(
        event_id=uuid.UUID(int=7000 + seq),
        occurred_at=datetime(2025, 7, 1, 10, tzinfo=UTC),
        tenant=samples.TENANT,
        source_system="kenshin-hub.staff",
        atena_no=ATENA_NO,
        kind=kind,
        fiscal_year=year,
        channel=m.RequestChannel.COUNTER,
        staff_id="health-1",
    )


def _entry_of(kind: m.ScreeningKind, year: int) -> m.LedgerEntry:
    return dataclasses.replace(samples.ledger_entry(ATENA_NO, kind), fiscal_year=year)


R = m.NoticeRefusal


@pytest.mark.parametrize(
    ("birth", "kind", "entries", "elsewhere", "refusals"),
    [
        (date(1974, 6, 1), m.ScreeningKind.BREAST, [], [], []),  # 51, due at 50 last year, not screened: issued
        (date(1974, 6, 1), m.ScreeningKind.STOMACH, [], [], []),
        (date(1975, 6, 1), m.ScreeningKind.BREAST, [], [], [R.DUE_THIS_YEAR]),  # 50: the 受診勧奨 covers her
        (date(1974, 6, 1), m.ScreeningKind.COLORECTAL, [], [], [R.NO_CARRY_OVER_FOR_KIND]),  # yearly
        (date(1974, 6, 1), m.ScreeningKind.H_PYLORI, [], [], [R.NO_CARRY_OVER_FOR_KIND]),
        (date(1990, 6, 1), m.ScreeningKind.BREAST, [], [], [R.NOT_TARGET]),  # 35
        (date(1984, 6, 1), m.ScreeningKind.BREAST, [], [], []),  # 41: due at 40, her first year, last year
        (date(2004, 6, 1), m.ScreeningKind.CERVICAL, [], [], []),  # 21: due at 20 last year
        (date(1974, 6, 1), m.ScreeningKind.BREAST, [(m.ScreeningKind.BREAST, 2024)], [], [R.ATTENDED_LAST_YEAR]),
        (date(1974, 6, 1), m.ScreeningKind.BREAST, [(m.ScreeningKind.BREAST, 2025)], [], [R.ATTENDED_THIS_YEAR]),
        (date(1974, 6, 1), m.ScreeningKind.BREAST, [(m.ScreeningKind.LUNG, 2024)], [], []),  # another kind
        (date(1974, 6, 1), m.ScreeningKind.BREAST, [], [("BREAST", 2024, "012025")], [R.ATTENDED_LAST_YEAR]),
    ],
)
def test_a_carry_over_request_is_issued_or_refused_with_its_reasons(
    birth: date,
    kind: m.ScreeningKind,
    entries: list[tuple[m.ScreeningKind, int]],
    elsewhere: list[tuple[str, int, str]],
    refusals: list[m.NoticeRefusal],
) -> None:
    """The rule of I.1 ② (2): a biennial target in her off year who was due last year and attended neither last
    year nor this one (here or, by the 転入前の受診履歴, in the town she came from) gets the notice she asks for."""
    request = _request(kind)
    out = notice_decision(request, _state(birth), [_entry_of(k, y) for k, y in entries], elsewhere, RULES)
    decision = out[-1]
    assert isinstance(decision, m.NoticeDecision)
    assert (decision.issued, list(decision.refusals)) == (not refusals, refusals)
    assert (decision.request_event_id, decision.channel, decision.staff_id) == (request.event_id, request.channel,
                                                                                 "health-1")  # fmt: skip
    notices = [n for n in out if isinstance(n, m.Invitation)]
    if refusals:
        assert notices == []
    else:
        (notice,) = notices
        assert (notice.kind, notice.fiscal_year, notice.invitation_type, notice.trigger) == (
            kind, 2025, m.InvitationType.CARRY_OVER, m.InvitationTrigger.REQUEST
        )  # fmt: skip
    assert notice_decision(request, _state(birth), [_entry_of(k, y) for k, y in entries], elsewhere, RULES) == out


def test_a_carry_over_request_for_someone_unknown_or_gone_is_refused() -> None:
    request = _request(m.ScreeningKind.BREAST)
    (unknown,) = notice_decision(request, None, [], [], RULES)
    assert isinstance(unknown, m.NoticeDecision)
    assert unknown.refusals == (R.UNKNOWN_PERSON,)
    moved = dataclasses.replace(_state(date(1974, 6, 1)), status=m.ResidentStatus.MOVED_OUT)
    (gone,) = notice_decision(request, moved, [], [], RULES)
    assert isinstance(gone, m.NoticeDecision)
    assert gone.refusals == (R.NOT_RESIDENT,)
    # the processors' step: the person's state is not changed by a request
    state = steps.PersonState()
    assert [type(e) for e in steps.apply_notice_request(state, request, CTX)] == [m.NoticeDecision]


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
        institution_code=FOLLOW_INST,
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


# --- 精検: a 要精検 1次, an institution registered for 精検, the items of its kind (別添1) -------------------------

CLEAR = dataclasses.replace(
    samples.primary(m.ScreeningKind.COLORECTAL),
    follow_up_required=False,
    colorectal=m.ColorectalFindings(fobt_result=m.FobtResult.NEGATIVE),
)  # a 大腸 1次 that did not say 要精検


def seiken(
    reception: str = "R2",
    primary: str = "R1",
    *,
    kind: m.ScreeningKind = m.ScreeningKind.COLORECTAL,
    seq: int = 200,
    institution: str = FOLLOW_INST,
    findings: m.FollowUpFindings | None = None,
) -> m.ScreeningResult:
    """A 精検 result of ``kind`` following the 1次 ``primary``."""
    return dataclasses.replace(
        result(kind, seq=seq, reception=reception, day=date(2025, 7, 1)),
        stage=m.ResultStage.FOLLOW_UP,
        primary=None,
        setting=None,
        follow_up=findings or samples.follow_up(),
        primary_reception_no=primary,
        institution_code=institution,
    )


def _errors(book: LedgerBook) -> dict[str, tuple[m.ErrorStatus, tuple[m.ErrorReason, ...]]]:
    return {e.reception_no: (e.status, e.reasons) for e in book.errors}


def test_a_follow_up_whose_primary_did_not_say_yoseiken_is_an_error_in_either_order() -> None:
    primary, follow = result(primary=CLEAR), seiken()
    book, _ = run(LedgerBook(), primary)
    book, _ = run(book, follow)
    [entry] = book.entries
    assert entry.follow_up is None  # the 精検 does not attach to a 1次 that referred nobody
    assert _errors(book) == {"R2": (m.ErrorStatus.OPEN, (m.ErrorReason.FOLLOW_UP_WITHOUT_REFERRAL,))}
    assert book.waiting() == ()  # not 1次待ち: staff act
    # The 精検 first: it waits for its 1次 (1次待ち), then the 1次 arrives and it fails for want of a referral.
    early, _ = run(LedgerBook(), follow)
    assert _errors(early) == {"R2": (m.ErrorStatus.OPEN, (m.ErrorReason.NO_PRIMARY_FOR_FOLLOW_UP,))}
    assert early.waiting() == early.errors
    late, _ = run(early, primary)
    assert (late.entries, late.errors) == (book.entries, book.errors)
    # The institution corrects the 1次 to 要精検: the 精検 attaches and its error is withdrawn.
    fixed, out = run(late, result(seq=101))
    [entry] = fixed.entries
    assert entry.follow_up is not None
    assert entry.follow_up.reception_no == "R2"
    assert fixed.errors == ()
    assert any(isinstance(e, m.ScreeningError) and e.status is m.ErrorStatus.WITHDRAWN for e in map(published, out))


def test_a_follow_up_from_an_institution_not_registered_for_seiken_is_an_error() -> None:
    assert not CTX.institutions.by_code[INST].follow_up  # 旭川中央健診センター screens but does no 精検
    assert CTX.institutions.follows_up("012041", FOLLOW_INST, m.ScreeningKind.COLORECTAL, date(2025, 6, 1))
    book, _ = run(LedgerBook(), result())
    book, _ = run(book, seiken(institution=INST))
    [entry] = book.entries
    assert entry.follow_up is None
    assert _errors(book) == {"R2": (m.ErrorStatus.OPEN, (m.ErrorReason.INSTITUTION_NOT_FOR_FOLLOW_UP,))}
    # An unknown institution stays UNKNOWN_INSTITUTION (one reason, not two).
    _, out = run(book, seiken("R3", seq=201, institution="0119999999"))
    [error] = [e for e in out if isinstance(e, m.ScreeningError) and e.reception_no == "R3"]
    assert error.reasons == (m.ErrorReason.UNKNOWN_INSTITUTION,)


@pytest.mark.parametrize(
    ("kind", "items"),
    [
        (m.ScreeningKind.COLORECTAL, {"sputum_method": "喀痰細胞診再検"}),  # 喀痰: a 肺がん item
        (m.ScreeningKind.STOMACH, {"body_result": "陰性"}),  # 精検体部結果: a 子宮がん item
        (m.ScreeningKind.BREAST, {"cervical_result": "CIN1"}),  # 精検頸部結果: a 子宮がん item
        (m.ScreeningKind.LUNG, {"cervical_result": "CIN1", "body_result": "陰性"}),
    ],
)
def test_a_follow_up_carrying_items_of_another_kind_is_an_error(kind: m.ScreeningKind, items: dict[str, str]) -> None:
    findings = dataclasses.replace(samples.follow_up(), **items)  # type: ignore[arg-type]
    book, _ = run(LedgerBook(), result(kind))
    book, _ = run(book, seiken(kind=kind, findings=findings))
    [entry] = book.entries
    assert entry.follow_up is None
    assert _errors(book) == {"R2": (m.ErrorStatus.OPEN, (m.ErrorReason.ITEMS_NOT_OF_KIND,))}


def test_a_primary_carrying_items_its_kind_does_not_record_is_an_error() -> None:
    young = samples.person(birth_date=date(1990, 1, 1))  # 35: a ピロリ菌検査 target (20–39)
    log = log_of(change(m.ResidentChangeType.MOVE_IN, date(2020, 4, 1), 1, person=young))
    pylori = samples.primary(m.ScreeningKind.H_PYLORI)
    assert pylori.follow_up_required is False
    book, _ = run(LedgerBook(), result(m.ScreeningKind.H_PYLORI, subject=young), log)
    assert [e.kind for e in book.entries] == [m.ScreeningKind.H_PYLORI]
    assert book.errors == ()
    # 他所見名 is no item of ピロリ菌検査 (別添1)
    odd = result(m.ScreeningKind.H_PYLORI, subject=young, primary=dataclasses.replace(pylori, other_findings="胃炎"))
    book, _ = run(LedgerBook(), odd, log)
    assert book.entries == ()
    assert _errors(book) == {"R1": (m.ErrorStatus.OPEN, (m.ErrorReason.ITEMS_NOT_OF_KIND,))}


def test_h_pylori_has_no_yoseiken() -> None:
    young = samples.person(birth_date=date(1990, 1, 1))
    log = log_of(change(m.ResidentChangeType.MOVE_IN, date(2020, 4, 1), 1, person=young))
    referred = dataclasses.replace(samples.primary(m.ScreeningKind.H_PYLORI), follow_up_required=True)
    book, out = run(LedgerBook(), result(m.ScreeningKind.H_PYLORI, subject=young, primary=referred), log)
    assert book.entries == ()
    [error] = out
    assert isinstance(error, m.ScreeningError)
    assert error.reasons == (m.ErrorReason.NO_REFERRAL_FOR_KIND,)
    assert not CTX.items.kinds[m.ScreeningKind.H_PYLORI].referral


# The 精検 items each kind records (別添1), with the 1次 of samples.primary (要精検 for every kind with 精検).
_SEIKEN_OF_KIND = {
    m.ScreeningKind.STOMACH: {},
    m.ScreeningKind.COLORECTAL: {"other_findings": "大腸腺腫"},
    m.ScreeningKind.LUNG: {"sputum_method": "喀痰細胞診再検"},
    m.ScreeningKind.BREAST: {},
    m.ScreeningKind.CERVICAL: {"procedure": None, "body_result": "陰性", "cervical_result": "CIN1"},
}


@pytest.mark.parametrize("kind", list(_SEIKEN_OF_KIND))
def test_a_referred_primary_and_its_follow_up_from_a_seiken_institution_enter_the_ledger(
    kind: m.ScreeningKind,
) -> None:
    findings = dataclasses.replace(samples.follow_up(), **_SEIKEN_OF_KIND[kind])  # type: ignore[arg-type]
    primary, follow = result(kind), seiken(kind=kind, findings=findings)
    assert primary.primary is not None
    assert primary.primary.follow_up_required
    book, out = run(LedgerBook(), primary)
    book, out = run(book, follow)
    [entry] = book.entries
    assert entry.follow_up is not None
    assert (entry.follow_up.reception_no, entry.follow_up.institution_code) == ("R2", FOLLOW_INST)
    assert entry.follow_up.findings == findings
    assert book.errors == ()
    assert [type(e) for e in out] == [m.LedgerEntry, m.FukuhonRegistration]
    backwards, _ = run(run(LedgerBook(), follow)[0], primary)  # the 精検 first: the same book
    assert (backwards.entries, backwards.errors) == (book.entries, book.errors)


def test_item_rules_follow_betten_1() -> None:
    kinds = CTX.items.kinds
    assert {k for k, v in kinds.items() if "sputum_method" in v.follow_up} == {m.ScreeningKind.LUNG}
    assert {k for k, v in kinds.items() if v.follow_up & {"body_result", "cervical_result"}} == {
        m.ScreeningKind.CERVICAL
    }
    assert {k for k, v in kinds.items() if not v.referral} == {m.ScreeningKind.H_PYLORI}
    assert kinds[m.ScreeningKind.H_PYLORI].follow_up == frozenset()
    assert "other_findings" not in kinds[m.ScreeningKind.H_PYLORI].primary  # ピロリ: no 他所見名
    assert {"lung.sputum_findings", "lung.sputum_result"} <= kinds[m.ScreeningKind.LUNG].primary
    assert "breast.hpv_result" in kinds[m.ScreeningKind.BREAST].primary  # HPV結果, as 別添1 lists it for 乳がん


def test_item_and_institution_files_are_validated() -> None:
    from processors.rules.institutions import parse_institutions
    from processors.rules.items import load_items, parse_items

    kinds: list[dict[str, object]] = [
        {
            "kind": k.value,
            "referral": k is not m.ScreeningKind.H_PYLORI,
            "primary": sorted(CTX.items.kinds[k].primary),
            "follow_up": sorted(CTX.items.kinds[k].follow_up),
        }
        for k in m.ScreeningKind
    ]
    assert parse_items({"version": "x", "kinds": kinds}).kinds == load_items().kinds

    def broken(kind: m.ScreeningKind, **over: object) -> dict[str, object]:
        return {"version": "x", "kinds": [dict(raw, **over) if raw["kind"] == kind.value else raw for raw in kinds]}

    colorectal, pylori = m.ScreeningKind.COLORECTAL, m.ScreeningKind.H_PYLORI
    cases: list[tuple[dict[str, object], str]] = [
        ({"version": "x", "kinds": kinds[:-1]}, "no items for"),
        ({"version": "x", "kinds": [*kinds, kinds[0]]}, "declared twice"),
        (broken(colorectal, primary=[*CTX.items.kinds[colorectal].primary, "lung.sputum_result"]), "not an item"),
        (broken(colorectal, follow_up=["judgement", "sputum_methods"]), "not an item"),
        (broken(colorectal, follow_up=["procedure"]), "judgement"),
        (broken(colorectal, primary=["other_findings"]), "always carried"),
        (broken(colorectal, primary=["national_health_insurance"]), "always carried"),  # 便血液検査判定 missing
        (broken(pylori, follow_up=["judgement"]), "no 精検"),
        (broken(colorectal, referral="yes"), "referral"),
        (broken(colorectal, extra=1), "unknown keys"),
        ({"kinds": kinds}, "version"),
    ]
    for data, message in cases:
        with pytest.raises(RulesError, match=message):
            parse_items(data)
    code = "0110100011"
    inst: dict[str, object] = {"code": code, "name": "x", "kinds": ["STOMACH"]}
    with pytest.raises(RulesError, match="follow_up"):
        parse_institutions({"version": "x", "institutions": [dict(inst, follow_up="true")]})
    with pytest.raises(RulesError, match="group"):
        parse_institutions({"version": "x", "institutions": [dict(inst, group=1)]})
    plain = parse_institutions({"version": "x", "institutions": [inst]})
    assert not plain.follows_up("012041", code, m.ScreeningKind.STOMACH, date(2025, 6, 1))  # false by default


# --- 転入前の受診履歴 ----------------------------------------------------------------------------------------------


def history(kind: m.ScreeningKind, year: int, origin: str = "011002", record: str = "KH1") -> m.ScreeningHistory:
    return m.ScreeningHistory(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{year}:{origin}:{record}"),
        occurred_at=datetime(2025, 5, 1, tzinfo=UTC),
        tenant=samples.TENANT,
        source_system="kenshin-hub.connector",
        atena_no="0000000001",
        from_tenant=origin,
        record_id=record,
        kind=kind,
        fiscal_year=year,
    )


def test_a_screening_in_the_previous_town_counts_for_the_interval_whatever_the_order() -> None:
    breast = m.ScreeningKind.BREAST
    this_year = result(breast, day=date(2025, 6, 1))
    state = PersonState(log=log_of(MOVE_IN))
    # the history first: this year's biennial result is a second screening within the interval
    first, out = apply_history(state, history(breast, 2024), CTX)
    assert out == []
    first, out = apply_result(first, this_year, CTX, None)
    assert [type(e) for e in out] == [m.ScreeningError, m.ReceptionClaim]  # the claim: processors.rules.receptions
    assert out[0].reasons == (m.ErrorReason.INTERVAL_NOT_MET,)  # type: ignore[attr-defined]
    # the result first: its entry stands, then the history withdraws it and the same error stands
    later, out = apply_result(state, this_year, CTX, None)
    assert [e.kind for e in later.book.entries] == [breast]
    later, out = apply_history(later, history(breast, 2024), CTX)
    assert later.book.entries == ()
    assert {type(e).__name__ for e in out} >= {"EntryWithdrawn", "ScreeningError"}
    assert later.book.errors == first.book.errors
    # the same screening again (another delivery) changes nothing; another kind or a yearly kind is not concerned
    again, out = apply_history(later, history(breast, 2024), CTX)
    assert (again, out) == (later, [])
    yearly, out = apply_history(state, history(m.ScreeningKind.COLORECTAL, 2024), CTX)
    _, out = apply_result(yearly, result(m.ScreeningKind.COLORECTAL, day=date(2025, 6, 1)), CTX, None)
    assert [type(e) for e in out if isinstance(e, m.LedgerEntry | m.ScreeningError)] == [m.LedgerEntry]


def test_the_year_start_skips_a_kind_screened_last_year_in_the_previous_town() -> None:
    born = change(m.ResidentChangeType.MOVE_IN, date(2024, 4, 1), 1, person=samples.person(birth_date=date(1975, 6, 1)))
    state = PersonState(log=log_of(born))  # 50 at the end of fiscal 2025: a biennial target this year
    kinds = {n.kind for n in year_start_notices(state, 2025, CTX)}
    assert m.ScreeningKind.BREAST in kinds
    state, _ = apply_history(state, history(m.ScreeningKind.BREAST, 2024), CTX)
    kinds = {n.kind for n in year_start_notices(state, 2025, CTX)}
    assert m.ScreeningKind.BREAST not in kinds
    assert m.ScreeningKind.COLORECTAL in kinds


def test_the_book_keeps_its_history_when_stored() -> None:
    state, _ = apply_history(PersonState(log=log_of(MOVE_IN)), history(m.ScreeningKind.STOMACH, 2023, "012025"), CTX)
    stored = decode_state_book(encode_state_book(state.book))
    assert stored.elsewhere == (("STOMACH", 2023, "012025"),)
    assert stored == state.book
    assert decode_state_book(encode_state_book(LedgerBook())).elsewhere == ()
