"""One valid example of every event type (shared by the unit and integration tiers)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from hub.validation import my_number_check_digit
from schemas import models as m

TENANT = "012041"  # 旭川市
NOW = datetime(2026, 5, 12, 9, 30, 15, 123000, tzinfo=UTC)


def my_number(body: str = "12345678901") -> str:
    return body + str(my_number_check_digit(body))


def person(**over: object) -> m.PersonIdentity:
    base: dict[str, object] = {
        "name": "旭川 花子",
        "name_kana": "アサヒカワ ハナコ",
        "sex": m.Sex.FEMALE,
        "birth_date": date(1976, 4, 1),
        "address": "北海道旭川市6条通9丁目46番地",
    }
    base.update(over)
    return m.PersonIdentity(**base)  # type: ignore[arg-type]


def header(source: str = "test") -> dict[str, object]:
    return {"event_id": uuid.uuid4(), "occurred_at": NOW, "tenant": TENANT, "source_system": source}


def primary(kind: m.ScreeningKind) -> m.PrimaryFindings:
    blocks: dict[m.ScreeningKind, dict[str, object]] = {
        m.ScreeningKind.STOMACH: {"stomach": m.StomachFindings(method=m.StomachMethod.ENDOSCOPY)},
        m.ScreeningKind.COLORECTAL: {"colorectal": m.ColorectalFindings(fobt_result=m.FobtResult.POSITIVE)},
        m.ScreeningKind.LUNG: {
            "lung": m.LungFindings(
                film_no="F-2026-0001",
                xray_result=m.LungXrayResult.E,
                sputum_findings="異型細胞",
                sputum_result=m.SputumResult.D,
            )
        },
        m.ScreeningKind.BREAST: {
            "breast": m.BreastFindings(
                mammo_site="右", mammo_result=m.MammoCategory.C3, hpv_result=m.HpvResult.NEGATIVE
            )
        },
        m.ScreeningKind.CERVICAL: {
            "cervical": m.CervicalFindings(
                cervical_smear="従来法",
                cervical_result=m.CervicalCytology.ASC_US,
                body_smear="擦過",
                body_result=m.BodyCytology.NEGATIVE,
            )
        },
        m.ScreeningKind.H_PYLORI: {"h_pylori": m.HPyloriFindings(test_result=m.HPyloriResult.POSITIVE)},
    }
    return m.PrimaryFindings(
        follow_up_required=kind is not m.ScreeningKind.H_PYLORI,
        other_findings="胃炎" if kind is m.ScreeningKind.STOMACH else None,
        benefit_status="市民税非課税世帯" if kind is m.ScreeningKind.LUNG else None,
        national_health_insurance=True,
        **blocks[kind],  # type: ignore[arg-type]
    )


def follow_up() -> m.FollowUpFindings:
    return m.FollowUpFindings(
        procedure="内視鏡下生検", judgement=m.FollowUpJudgement.CANCER, instructions="手術", other_findings=None
    )


def primary_result(
    kind: m.ScreeningKind = m.ScreeningKind.STOMACH, reception_no: str = "R2026-000001"
) -> m.ScreeningResult:
    return m.ScreeningResult(
        **header("institution-sim"),  # type: ignore[arg-type]
        reception_no=reception_no,
        kind=kind,
        stage=m.ResultStage.PRIMARY,
        atena_no="0000123456",
        subject=person(),
        institution_code="0112345678",
        institution_name="旭川市立総合病院",
        exam_date=date(2026, 5, 10),
        setting=m.ExamSetting.INDIVIDUAL,
        primary=primary(kind),
    )


def every_event() -> list[m.Event]:
    """One instance of each event type, exercising nested records, unions, arrays, maps and logical types."""
    h = header
    permit = m.ProvisionPermit(
        permit_id=uuid.uuid4(),
        request_id=uuid.uuid4(),
        requester="011002",
        provider=TENANT,
        info_name_code="TM00000000000139",
        items=("K001", "K002"),
        expires_at=NOW,
        signature="c2lnbmF0dXJl",
    )
    events: list[m.Event] = [
        m.HubCommand(
            **h("operator"),  # type: ignore[arg-type]
            command=m.CommandType.FISCAL_YEAR_START,
            fiscal_year=2026,
            partition=3,
        ),
        m.ResidentChange(
            **h("juki"),
            atena_no="0000123456",
            my_number=my_number(),  # type: ignore[arg-type]
            change_type=m.ResidentChangeType.MOVE_IN,
            change_date=date(2026, 4, 3),
            notified_date=date(2026, 4, 5),
            person=person(),
            household_no="H0001",
            previous_municipality="011002",
        ),
        primary_result(),
        m.InstitutionChange(
            **h("kenshin-hub.staff"),  # type: ignore[arg-type]
            code="0110100110",
            name="春光台検診クリニック",
            kinds=(m.ScreeningKind.LUNG, m.ScreeningKind.COLORECTAL),
            group=True,
            follow_up=False,
            valid_from=date(2026, 4, 1),
            valid_to=date(2027, 3, 31),
            staff_id="h001",
            reason="新規委託契約",
        ),
        m.ScreeningResult(
            **h("institution-sim"),
            reception_no="R2026-000002",  # type: ignore[arg-type]
            kind=m.ScreeningKind.STOMACH,
            stage=m.ResultStage.FOLLOW_UP,
            atena_no="0000123456",
            subject=person(),
            institution_code="0112345679",
            institution_name="旭川医科大学病院",
            exam_date=date(2026, 6, 1),
            follow_up=follow_up(),
            primary_reception_no="R2026-000001",
        ),
        m.ResidentState(
            **h("kenshin-hub.residents"),
            atena_no="0000123456",
            my_number=my_number(),  # type: ignore[arg-type]
            person=person(),
            status=m.ResidentStatus.RESIDENT,
            resident_since=date(2026, 4, 3),
            increase_reason=m.ResidentChangeType.MOVE_IN,
            previous_municipality="011002",
            support_measure=True,
            version=2,
            history=(
                m.ResidentHistoryItem(
                    event_id=uuid.uuid4(),
                    change_type=m.ResidentChangeType.MOVE_IN,
                    change_date=date(2026, 4, 3),
                    occurred_at=NOW,
                ),
            ),
        ),
        m.LedgerEntry(
            **h("kenshin-hub.ledger"),
            atena_no="0000123456",
            kind=m.ScreeningKind.STOMACH,  # type: ignore[arg-type]
            fiscal_year=2026,
            version=1,
            person=person(),
            reception_no="R2026-000001",
            exam_date=date(2026, 5, 10),
            exam_age=50,
            institution_code="0112345678",
            institution_name="旭川市立総合病院",
            setting=m.ExamSetting.INDIVIDUAL,
            primary=primary(m.ScreeningKind.STOMACH),
            follow_up=m.LedgerFollowUp(
                reception_no="R2026-000002",
                exam_date=date(2026, 6, 1),
                exam_age=50,
                institution_code="0112345679",
                institution_name="旭川医科大学病院",
                findings=follow_up(),
            ),
            history_from="011002",
            source_event_id=uuid.uuid4(),
        ),
        m.ScreeningError(
            **h("kenshin-hub.matching"),
            reception_no="R2026-000003",
            atena_no="0000999999",  # type: ignore[arg-type]
            kind=m.ScreeningKind.LUNG,
            stage=m.ResultStage.PRIMARY,
            reasons=(m.ErrorReason.KANA_MISMATCH, m.ErrorReason.BIRTH_DATE_MISMATCH),
            mismatched_fields=("name_kana", "birth_date"),
            status=m.ErrorStatus.OPEN,
            detected_at=NOW,
            source=m.SourcePointer(topic="institution.results.v1", partition=2, offset=41),
            result_event_id=uuid.uuid4(),
        ),
        m.Invitation(
            **h("kenshin-hub.invitations"),
            atena_no="0000123456",
            kind=m.ScreeningKind.BREAST,  # type: ignore[arg-type]
            fiscal_year=2026,
            invitation_type=m.InvitationType.CARRY_OVER,
            trigger=m.InvitationTrigger.FISCAL_YEAR_START,
            age_at_fiscal_year_end=51,
            person=person(),
        ),
        m.FukuhonRegistration(
            **h("kenshin-hub.fukuhon"),
            record_id="FK-0001",
            atena_no="0000123456",  # type: ignore[arg-type]
            integrated_atena_no="T000000001",
            info_name_code="TM00000000000139",
            dataset_item_code="DS139001",
            record_key="0000123456:STOMACH:2026",
            version=1,
            publication_start=date(2026, 5, 12),
            operation=m.FukuhonOperation.REGISTER,
            data={"受診日": "2026-05-10", "精密検査対象有無": "有"},
        ),
        m.ProvisionRequest(
            **h("network-sim"),
            request_id=permit.request_id,
            requester="011002",  # type: ignore[arg-type]
            provider=TENANT,
            affair_code="J139",
            info_name_code="TM00000000000139",
            items=("K001", "K002"),
            fugo="FUGO-abc",
            fiscal_year_from=2021,
            fiscal_year_to=2025,
            permit=permit,
            requested_at=NOW,
        ),
        m.ProvisionResponse(
            **h("chukan"),
            request_id=permit.request_id,
            requester="011002",  # type: ignore[arg-type]
            provider=TENANT,
            outcome=m.ProvisionOutcome.PROVIDED_AUTOMATICALLY,
            lines=(
                m.ResponseLine(
                    line_no=1,
                    status="00",
                    record_id="FK-0001",
                    items=(m.ResponseItem(item_code="K001", status="00", value="2026-05-10"),),
                ),
            ),
            responded_at=NOW,
        ),
        m.HeldProvision(
            **h("chukan"),
            request_id=uuid.uuid4(),
            requester="012025",
            provider=TENANT,  # type: ignore[arg-type]
            info_name_code="TM00000000000139",
            items=("K001",),
            hold_reasons=(m.HoldReason.PERSON_FLAG,),
            status=m.HoldStatus.HELD,
            held_at=NOW,
        ),
        m.ProvisionRecord(
            **h("chukan"),
            record_id=uuid.uuid4(),
            request_id=uuid.uuid4(),  # type: ignore[arg-type]
            side=m.RecordSide.PROVIDER,
            requester="012025",
            provider=TENANT,
            affair_code="J139",
            info_name_code="TM00000000000139",
            items=("K001",),
            requested_at=NOW,
            non_disclosure=False,
            outcome=m.ProvisionOutcome.REFUSED,
            request_body="{}",
            reason="支援措置対象者",
        ),
        m.StaffOperation(
            **h("chukan"),
            staff_id="staff-001",
            operation=m.StaffOperationType.LOGIN,  # type: ignore[arg-type]
            outcome=m.OperationOutcome.SUCCESS,
            performed_at=NOW,
        ),
        m.DeadLetter(
            **h("kenshin-hub.matching"),
            step="results.match",
            reason="not Avro",  # type: ignore[arg-type]
            error_type="SerializationError",
            source_topic="institution.results.v1",
            source_partition=1,
            source_offset=7,
            source_timestamp=NOW,
            original_key=b"012041:1",
            original_value=b"\x00garbage",
        ),
    ]
    return events


def ledger_entry(
    atena_no: str, kind: m.ScreeningKind, version: int = 1, judgement: m.FollowUpJudgement | None = None
) -> m.LedgerEntry:
    """A primary ledger entry of 2026 (with a follow-up when ``judgement`` is given)."""
    follow_up = None
    if judgement is not None:
        follow_up = m.LedgerFollowUp(
            reception_no=f"R-{atena_no}-{kind}-F",
            exam_date=date(2026, 7, 1),
            exam_age=50,
            institution_code="0112345679",
            institution_name="旭川医科大学病院",
            findings=m.FollowUpFindings(judgement=judgement, procedure="内視鏡下生検"),
        )
    return m.LedgerEntry(
        **header("kenshin-hub.ledger"),  # type: ignore[arg-type]
        atena_no=atena_no,
        kind=kind,
        fiscal_year=2026,
        version=version,
        person=person(),
        reception_no=f"R-{atena_no}-{kind}",
        exam_date=date(2026, 5, 10),
        exam_age=50,
        institution_code="0112345678",
        institution_name="旭川市立総合病院",
        setting=m.ExamSetting.INDIVIDUAL,
        primary=primary(kind),
        follow_up=follow_up,
        source_event_id=uuid.uuid4(),
    )
