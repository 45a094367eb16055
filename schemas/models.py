"""Typed models of every event of the topic catalog, one per ``.avsc`` in ``schemas/avro``.

Field names and order follow the ``.avsc`` files; the Japanese term of each field is in the schema's ``doc``.
Invariants that Avro cannot express (check digits, a primary result carrying exactly the block of its kind) are
checked in ``__post_init__`` and raise :class:`~schemas.record.ModelError`.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import ClassVar

from hub.validation import is_valid_my_number, is_valid_postcode, is_valid_tenant_code
from schemas.record import AvroRecord, ModelError

# --- enums ---------------------------------------------------------------------------------------------------


class Sex(enum.StrEnum):
    MALE = "MALE"
    FEMALE = "FEMALE"


class ScreeningKind(enum.StrEnum):
    STOMACH = "STOMACH"
    COLORECTAL = "COLORECTAL"
    LUNG = "LUNG"
    BREAST = "BREAST"
    CERVICAL = "CERVICAL"
    H_PYLORI = "H_PYLORI"

    @property
    def block(self) -> str:
        """Name of the kind-specific block of :class:`PrimaryFindings`."""
        return self.value.lower()


class ResultStage(enum.StrEnum):
    PRIMARY = "PRIMARY"
    FOLLOW_UP = "FOLLOW_UP"


class ExamSetting(enum.StrEnum):
    INDIVIDUAL = "INDIVIDUAL"
    GROUP = "GROUP"


class StomachMethod(enum.StrEnum):
    XRAY = "XRAY"
    ENDOSCOPY = "ENDOSCOPY"


class FobtResult(enum.StrEnum):
    NEGATIVE = "NEGATIVE"
    POSITIVE = "POSITIVE"


class LungXrayResult(enum.StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"


class SputumResult(enum.StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"


class MammoCategory(enum.StrEnum):
    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    C4 = "C4"
    C5 = "C5"
    N = "N"


class HpvResult(enum.StrEnum):
    NEGATIVE = "NEGATIVE"
    POSITIVE = "POSITIVE"


class CervicalCytology(enum.StrEnum):
    NILM = "NILM"
    ASC_US = "ASC_US"
    ASC_H = "ASC_H"
    LSIL = "LSIL"
    HSIL = "HSIL"
    SCC = "SCC"
    AGC = "AGC"
    AIS = "AIS"
    ADENOCARCINOMA = "ADENOCARCINOMA"
    OTHER = "OTHER"


class BodyCytology(enum.StrEnum):
    NEGATIVE = "NEGATIVE"
    SUSPICIOUS = "SUSPICIOUS"
    POSITIVE = "POSITIVE"


class HPyloriResult(enum.StrEnum):
    NEGATIVE = "NEGATIVE"
    POSITIVE = "POSITIVE"
    INDETERMINATE = "INDETERMINATE"


class FollowUpJudgement(enum.StrEnum):
    NO_ABNORMALITY = "NO_ABNORMALITY"
    CANCER = "CANCER"
    SUSPECTED_CANCER = "SUSPECTED_CANCER"
    NON_CANCER_DISEASE = "NON_CANCER_DISEASE"
    UNDETERMINED = "UNDETERMINED"


class ResidentChangeType(enum.StrEnum):
    MOVE_IN = "MOVE_IN"
    MOVE_WITHIN = "MOVE_WITHIN"
    MOVE_OUT = "MOVE_OUT"
    BIRTH = "BIRTH"
    DEATH = "DEATH"
    NAME_CHANGE = "NAME_CHANGE"
    CORRECTION = "CORRECTION"
    HOUSEHOLD_CHANGE = "HOUSEHOLD_CHANGE"
    SUPPORT_MEASURE_SET = "SUPPORT_MEASURE_SET"
    SUPPORT_MEASURE_CLEARED = "SUPPORT_MEASURE_CLEARED"
    TARGET_AGE_REACHED = "TARGET_AGE_REACHED"


class ResidentStatus(enum.StrEnum):
    RESIDENT = "RESIDENT"
    MOVED_OUT = "MOVED_OUT"
    DECEASED = "DECEASED"


class ErrorReason(enum.StrEnum):
    UNKNOWN_PERSON = "UNKNOWN_PERSON"
    NOT_RESIDENT_ON_EXAM_DATE = "NOT_RESIDENT_ON_EXAM_DATE"
    NAME_MISMATCH = "NAME_MISMATCH"
    KANA_MISMATCH = "KANA_MISMATCH"
    BIRTH_DATE_MISMATCH = "BIRTH_DATE_MISMATCH"
    SEX_MISMATCH = "SEX_MISMATCH"
    ADDRESS_MISMATCH = "ADDRESS_MISMATCH"
    NOT_ELIGIBLE_AGE = "NOT_ELIGIBLE_AGE"
    NOT_ELIGIBLE_SEX = "NOT_ELIGIBLE_SEX"
    INTERVAL_NOT_MET = "INTERVAL_NOT_MET"
    UNKNOWN_INSTITUTION = "UNKNOWN_INSTITUTION"
    NO_PRIMARY_FOR_FOLLOW_UP = "NO_PRIMARY_FOR_FOLLOW_UP"
    INVALID_RESULT = "INVALID_RESULT"
    FOLLOW_UP_WITHOUT_REFERRAL = "FOLLOW_UP_WITHOUT_REFERRAL"  # 精検 of a 1次 that did not say 要精検
    INSTITUTION_NOT_FOR_FOLLOW_UP = "INSTITUTION_NOT_FOR_FOLLOW_UP"  # 精検 from an institution not registered for 精検
    ITEMS_NOT_OF_KIND = "ITEMS_NOT_OF_KIND"  # items its kind does not record (別添1, processors/rules/items.toml)
    NO_REFERRAL_FOR_KIND = "NO_REFERRAL_FOR_KIND"  # 要精検 or a 精検 for a kind without 精検 (ピロリ菌検査)


class ErrorStatus(enum.StrEnum):
    OPEN = "OPEN"
    RESOLVED = "RESOLVED"
    WITHDRAWN = "WITHDRAWN"  # 取消: the error no longer stands (the errors sink deletes its row)


class InvitationType(enum.StrEnum):
    INVITATION = "INVITATION"
    CARRY_OVER = "CARRY_OVER"


class InvitationTrigger(enum.StrEnum):
    FISCAL_YEAR_START = "FISCAL_YEAR_START"
    MOVE_IN = "MOVE_IN"
    AGE_THRESHOLD = "AGE_THRESHOLD"
    REQUEST = "REQUEST"  # 繰越受診通知, issued when the resident asks (not at the 年度開始)


class RequestChannel(enum.StrEnum):
    COUNTER = "COUNTER"  # 窓口
    PHONE = "PHONE"  # 電話
    MAIL = "MAIL"  # 郵送
    ONLINE = "ONLINE"  # 電子申請
    OTHER = "OTHER"


class NoticeRefusal(enum.StrEnum):
    UNKNOWN_PERSON = "UNKNOWN_PERSON"  # 住基 does not know the 宛名番号
    NOT_RESIDENT = "NOT_RESIDENT"
    NO_CARRY_OVER_FOR_KIND = "NO_CARRY_OVER_FOR_KIND"  # not a biennial kind with 繰越 (eligibility.toml)
    NOT_TARGET = "NOT_TARGET"  # not of the kind's age or sex this year
    DUE_THIS_YEAR = "DUE_THIS_YEAR"  # this is the person's regular year: the 受診勧奨 covers it
    ATTENDED_LAST_YEAR = "ATTENDED_LAST_YEAR"
    ATTENDED_THIS_YEAR = "ATTENDED_THIS_YEAR"
    OTHER = "OTHER"


class FukuhonOperation(enum.StrEnum):
    REGISTER = "REGISTER"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


class ProvisionOutcome(enum.StrEnum):
    PROVIDED_AUTOMATICALLY = "PROVIDED_AUTOMATICALLY"
    PROVIDED_AFTER_REVIEW = "PROVIDED_AFTER_REVIEW"
    HELD = "HELD"
    REFUSED = "REFUSED"
    ERROR = "ERROR"


class HoldReason(enum.StrEnum):
    PERSON_FLAG = "PERSON_FLAG"
    ITEM_FLAG = "ITEM_FLAG"


class HoldStatus(enum.StrEnum):
    HELD = "HELD"
    APPROVED = "APPROVED"
    REFUSED = "REFUSED"


class RecordSide(enum.StrEnum):
    REQUESTER = "REQUESTER"
    PROVIDER = "PROVIDER"


class StaffOperationType(enum.StrEnum):
    LOGIN = "LOGIN"
    LOGIN_FAILED = "LOGIN_FAILED"
    LOGOUT = "LOGOUT"
    LIST = "LIST"
    SHOW = "SHOW"
    APPROVE = "APPROVE"
    REFUSE = "REFUSE"
    RESOLVE_ERROR = "RESOLVE_ERROR"
    ACCOUNT_CREATED = "ACCOUNT_CREATED"
    OTHER = "OTHER"
    RETENTION_PURGE = "RETENTION_PURGE"
    OFFLINE_EXPORT = "OFFLINE_EXPORT"
    INIT = "INIT"
    ACCOUNT_UNLOCK = "ACCOUNT_UNLOCK"
    ACCOUNT_DISABLE = "ACCOUNT_DISABLE"
    ACCOUNT_ENABLE = "ACCOUNT_ENABLE"
    ROLE_CHANGE = "ROLE_CHANGE"
    PASSWORD_CHANGE = "PASSWORD_CHANGE"  # noqa: S105 - an operation's name, not a password
    FISCAL_YEAR_START = "FISCAL_YEAR_START"
    DATA_EXPORT = "DATA_EXPORT"  # 開示請求 (one person) or an auditor's export (a period), to a 0600 file
    NOTICE_REQUEST = "NOTICE_REQUEST"  # 繰越受診通知の申出, recorded by staff for the processors to decide
    NOTICE_MAILING = "NOTICE_MAILING"  # one batch of notices printed for the post (mailing list and letters)
    MAILING_DECISION = "MAILING_DECISION"  # where a 支援措置 person's notices may be sent
    INSTITUTION_CHANGE = "INSTITUTION_CHANGE"  # 実施医療機関の登録・変更
    ACCEPT_RESULT = "ACCEPT_RESULT"  # エラー処理: a result taken into the 台帳 despite its errors, with a reason
    CORRECT_RESULT = "CORRECT_RESULT"  # エラー処理: a result's fields corrected (a new submission of its 受付番号)
    VOID_ENTRY = "VOID_ENTRY"  # 台帳訂正: a wrong 台帳 entry voided (取消)


class OperationOutcome(enum.StrEnum):
    SUCCESS = "SUCCESS"
    DENIED = "DENIED"
    FAILED = "FAILED"


# --- shared records -----------------------------------------------------------------------------------------


def _check_tenant(value: str | None, what: str) -> None:
    if value is not None and not is_valid_tenant_code(value):
        raise ModelError(f"{what} is not a valid 団体コード")


def _check_postcode(value: str | None) -> None:
    if value is not None and not is_valid_postcode(value):
        raise ModelError("postcode (郵便番号) is not NNN-NNNN")


@dataclass(frozen=True, kw_only=True)
class Event(AvroRecord):
    """The header every event carries."""

    event_id: uuid.UUID
    occurred_at: datetime
    tenant: str
    source_system: str

    def __post_init__(self) -> None:
        _check_tenant(self.tenant, "tenant")
        if self.occurred_at.tzinfo is None:
            raise ModelError("occurred_at must be timezone-aware")
        if not self.source_system:
            raise ModelError("source_system is empty")


@dataclass(frozen=True, kw_only=True)
class PersonIdentity(AvroRecord):
    name: str
    name_kana: str
    sex: Sex
    birth_date: date
    address: str


@dataclass(frozen=True, kw_only=True)
class TargetBasis(AvroRecord):
    """対象外者の最小情報: all a 住基異動 carries for a person who cannot yet be a screening target."""

    sex: Sex
    birth_date: date


@dataclass(frozen=True, kw_only=True)
class StomachFindings(AvroRecord):
    method: StomachMethod


@dataclass(frozen=True, kw_only=True)
class ColorectalFindings(AvroRecord):
    fobt_result: FobtResult


@dataclass(frozen=True, kw_only=True)
class LungFindings(AvroRecord):
    film_no: str
    xray_result: LungXrayResult
    sputum_findings: str | None = None
    sputum_result: SputumResult | None = None


@dataclass(frozen=True, kw_only=True)
class BreastFindings(AvroRecord):
    mammo_site: str
    mammo_result: MammoCategory
    hpv_result: HpvResult | None = None


@dataclass(frozen=True, kw_only=True)
class CervicalFindings(AvroRecord):
    cervical_smear: str
    cervical_result: CervicalCytology
    body_smear: str | None = None
    body_result: BodyCytology | None = None


@dataclass(frozen=True, kw_only=True)
class HPyloriFindings(AvroRecord):
    test_result: HPyloriResult


_KIND_BLOCKS = tuple(k.block for k in ScreeningKind)  # PrimaryFindings' blocks in kind order (checked per result)


@dataclass(frozen=True, kw_only=True)
class PrimaryFindings(AvroRecord):
    follow_up_required: bool
    other_findings: str | None = None
    benefit_status: str | None = None
    national_health_insurance: bool
    stomach: StomachFindings | None = None
    colorectal: ColorectalFindings | None = None
    lung: LungFindings | None = None
    breast: BreastFindings | None = None
    cervical: CervicalFindings | None = None
    h_pylori: HPyloriFindings | None = None

    def blocks(self) -> list[str]:
        """Names of the kind-specific blocks that are present."""
        return [block for block in _KIND_BLOCKS if getattr(self, block) is not None]

    def check_kind(self, kind: ScreeningKind) -> None:
        if self.blocks() != [kind.block]:
            raise ModelError(f"a {kind} primary result must carry exactly the '{kind.block}' block")


@dataclass(frozen=True, kw_only=True)
class FollowUpFindings(AvroRecord):
    procedure: str | None = None
    sputum_method: str | None = None
    judgement: FollowUpJudgement
    instructions: str | None = None
    other_findings: str | None = None
    body_result: str | None = None
    cervical_result: str | None = None


# --- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ResidentChange(Event):
    SCHEMA_FILE: ClassVar[str] = "resident_change.avsc"
    NEEDS_PERSON: ClassVar[frozenset[ResidentChangeType]] = frozenset(
        {
            ResidentChangeType.MOVE_IN,
            ResidentChangeType.BIRTH,
            ResidentChangeType.MOVE_WITHIN,
            ResidentChangeType.NAME_CHANGE,
            ResidentChangeType.CORRECTION,
            ResidentChangeType.TARGET_AGE_REACHED,
        }
    )

    atena_no: str
    my_number: str | None = None
    change_type: ResidentChangeType
    change_date: date
    notified_date: date | None = None
    person: PersonIdentity | None = None
    household_no: str | None = None
    previous_municipality: str | None = None
    next_municipality: str | None = None
    postcode: str | None = None  # 郵便番号 of the 住所 the change carries
    basis: TargetBasis | None = None  # instead of person, for a person who cannot yet be a target
    support_measure: bool | None = None  # 支援措置 in force as of this record (TARGET_AGE_REACHED)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.atena_no:
            raise ModelError("atena_no is empty")
        if self.my_number is not None and not is_valid_my_number(self.my_number):
            raise ModelError("my_number is not a valid 個人番号 (12 digits with check digit)")
        if self.change_type in self.NEEDS_PERSON and self.person is None and self.basis is None:
            raise ModelError(f"a {self.change_type} change must carry the person's 基本5情報 (or the minimal basis)")
        full = self.basis is None
        if self.change_type is ResidentChangeType.TARGET_AGE_REACHED and full and self.support_measure is None:
            raise ModelError("a TARGET_AGE_REACHED record must state the 支援措置 in force (support_measure)")
        if self.person is not None and self.basis is not None:
            raise ModelError("a change carries either the 基本5情報 or the minimal basis, not both")
        _check_tenant(self.previous_municipality, "previous_municipality")
        _check_tenant(self.next_municipality, "next_municipality")
        _check_postcode(self.postcode)


@dataclass(frozen=True, kw_only=True)
class ScreeningResult(Event):
    SCHEMA_FILE: ClassVar[str] = "screening_result.avsc"

    reception_no: str
    kind: ScreeningKind
    stage: ResultStage
    atena_no: str
    subject: PersonIdentity
    institution_code: str
    institution_name: str
    exam_date: date
    setting: ExamSetting | None = None
    primary: PrimaryFindings | None = None
    follow_up: FollowUpFindings | None = None
    primary_reception_no: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.reception_no:
            raise ModelError("reception_no (受付番号) is empty")
        if self.stage is ResultStage.PRIMARY:
            if self.primary is None or self.follow_up is not None or self.setting is None:
                raise ModelError("a PRIMARY result carries 'primary' and 'setting' and no 'follow_up'")
            self.primary.check_kind(self.kind)
        else:
            if self.follow_up is None or self.primary is not None:
                raise ModelError("a FOLLOW_UP result carries 'follow_up' and no 'primary'")
            if self.kind is ScreeningKind.H_PYLORI:
                raise ModelError("ピロリ菌検査 has no follow-up (精検)")


@dataclass(frozen=True, kw_only=True)
class ResidentHistoryItem(AvroRecord):
    event_id: uuid.UUID
    change_type: ResidentChangeType
    change_date: date
    occurred_at: datetime


@dataclass(frozen=True, kw_only=True)
class ResidentState(Event):
    SCHEMA_FILE: ClassVar[str] = "resident_state.avsc"

    atena_no: str
    my_number: str | None = None  # in clear: only records written before the processors sealed it (below)
    my_number_sealed: str | None = None  # hub.pii.seal_resident_number: what the processors publish
    person: PersonIdentity
    status: ResidentStatus
    resident_since: date | None = None
    ceased_on: date | None = None
    increase_reason: ResidentChangeType | None = None
    decrease_reason: ResidentChangeType | None = None
    previous_municipality: str | None = None
    next_municipality: str | None = None
    household_no: str | None = None
    support_measure: bool
    version: int
    history: tuple[ResidentHistoryItem, ...] = ()
    postcode: str | None = None  # 郵便番号 of the 住所 (from the last change carrying the 基本5情報)

    def __post_init__(self) -> None:
        super().__post_init__()
        # The same invariants as the changes it folds: a record on residents.v1 is checked like one on the 住基 topic.
        if self.my_number is not None and not is_valid_my_number(self.my_number):
            raise ModelError("my_number is not a valid 個人番号 (12 digits with check digit)")
        if self.my_number_sealed is not None:
            if self.my_number is not None:
                raise ModelError("a ResidentState carries its 個人番号 sealed or in clear, not both")
            if not self.my_number_sealed.startswith("pii1."):
                raise ModelError("my_number_sealed is not a sealed value (pii1.<key id>.<data>)")
        _check_tenant(self.previous_municipality, "previous_municipality")
        _check_tenant(self.next_municipality, "next_municipality")
        _check_postcode(self.postcode)


@dataclass(frozen=True, kw_only=True)
class LedgerFollowUp(AvroRecord):
    reception_no: str
    exam_date: date
    exam_age: int
    institution_code: str
    institution_name: str
    findings: FollowUpFindings


@dataclass(frozen=True, kw_only=True)
class LedgerEntry(Event):
    SCHEMA_FILE: ClassVar[str] = "ledger_entry.avsc"

    atena_no: str
    kind: ScreeningKind
    fiscal_year: int
    version: int
    person: PersonIdentity
    reception_no: str
    exam_date: date
    exam_age: int
    institution_code: str
    institution_name: str
    setting: ExamSetting
    primary: PrimaryFindings
    follow_up: LedgerFollowUp | None = None
    history_from: str | None = None
    source_event_id: uuid.UUID
    decided_by: str | None = None  # 職員ID of the latest staff decision behind this version (受理, 訂正, 取消)
    decision_reason: str | None = None
    withdrawn: bool = False  # 取消: the entry no longer stands (the ledger sink deletes its row)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.primary.check_kind(self.kind)
        _check_tenant(self.history_from, "history_from")
        if self.version < 1:
            raise ModelError("version starts at 1")


@dataclass(frozen=True, kw_only=True)
class SourcePointer(AvroRecord):
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, kw_only=True)
class ScreeningError(Event):
    SCHEMA_FILE: ClassVar[str] = "screening_error.avsc"

    reception_no: str
    atena_no: str
    kind: ScreeningKind
    stage: ResultStage
    reasons: tuple[ErrorReason, ...]
    mismatched_fields: tuple[str, ...] = ()
    status: ErrorStatus
    detected_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    source: SourcePointer | None = None
    result_event_id: uuid.UUID

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.reasons:
            raise ModelError("a screening error needs at least one reason")


@dataclass(frozen=True, kw_only=True)
class Invitation(Event):
    SCHEMA_FILE: ClassVar[str] = "invitation.avsc"

    atena_no: str
    kind: ScreeningKind
    fiscal_year: int
    invitation_type: InvitationType
    trigger: InvitationTrigger
    age_at_fiscal_year_end: int
    person: PersonIdentity


@dataclass(frozen=True, kw_only=True)
class FukuhonRegistration(Event):
    SCHEMA_FILE: ClassVar[str] = "fukuhon_registration.avsc"

    record_id: str
    atena_no: str | None = None
    integrated_atena_no: str | None = None
    info_name_code: str
    dataset_item_code: str
    record_key: str
    parent_key: str | None = None
    version: int
    publication_start: date
    publication_end: date | None = None
    operation: FukuhonOperation
    data: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        code = self.info_name_code
        if not (len(code) == 16 and code.startswith("TM") and code[2:].isdigit()):
            raise ModelError("info_name_code (特定個人情報名コード) must be 'TM' + 14 digits")
        if self.publication_end is not None and self.publication_end < self.publication_start:
            raise ModelError("publication_end is before publication_start")


@dataclass(frozen=True, kw_only=True)
class ProvisionPermit(AvroRecord):
    """提供許可証: the network's signature binds every field (``connectors.keys``); the 符号 only as its SHA-256.

    The fields added with the binding (``affair_code``, the fiscal years, ``fugo_sha256``) are optional so that
    records written before it still decode (BACKWARD); a 中間サーバー refuses a permit whose binding is missing.
    """

    permit_id: uuid.UUID
    request_id: uuid.UUID
    requester: str
    provider: str
    affair_code: str | None = None
    info_name_code: str
    items: tuple[str, ...]
    fiscal_year_from: int | None = None
    fiscal_year_to: int | None = None
    fugo_sha256: str | None = None
    expires_at: datetime
    signature: str


@dataclass(frozen=True, kw_only=True)
class ProvisionRequest(Event):
    SCHEMA_FILE: ClassVar[str] = "provision_request.avsc"

    request_id: uuid.UUID
    requester: str
    provider: str
    affair_code: str
    info_name_code: str
    items: tuple[str, ...]
    fugo: str
    fiscal_year_from: int | None = None
    fiscal_year_to: int | None = None
    permit: ProvisionPermit | None = None
    requested_at: datetime

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tenant(self.requester, "requester")
        _check_tenant(self.provider, "provider")


@dataclass(frozen=True, kw_only=True)
class ResponseItem(AvroRecord):
    item_code: str
    status: str
    message: str | None = None
    value: str | None = None


@dataclass(frozen=True, kw_only=True)
class ResponseLine(AvroRecord):
    line_no: int
    status: str
    message: str | None = None
    record_id: str | None = None
    items: tuple[ResponseItem, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProvisionResponse(Event):
    SCHEMA_FILE: ClassVar[str] = "provision_response.avsc"

    request_id: uuid.UUID
    requester: str
    provider: str
    outcome: ProvisionOutcome
    message: str | None = None
    lines: tuple[ResponseLine, ...] = ()
    responded_at: datetime
    integrated_atena_no: str | None = None


@dataclass(frozen=True, kw_only=True)
class HeldProvision(Event):
    SCHEMA_FILE: ClassVar[str] = "held_provision.avsc"

    request_id: uuid.UUID
    requester: str
    provider: str
    info_name_code: str
    items: tuple[str, ...]
    hold_reasons: tuple[HoldReason, ...]
    flagged_items: tuple[str, ...] = ()
    status: HoldStatus
    held_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    refusal_reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProvisionRecord(Event):
    SCHEMA_FILE: ClassVar[str] = "provision_record.avsc"

    record_id: uuid.UUID
    request_id: uuid.UUID
    side: RecordSide
    requester: str
    provider: str
    affair_code: str
    info_name_code: str
    items: tuple[str, ...]
    requested_at: datetime
    provided_at: datetime | None = None
    non_disclosure: bool
    outcome: ProvisionOutcome
    request_body: str
    response_body: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class StaffOperation(Event):
    SCHEMA_FILE: ClassVar[str] = "staff_operation.avsc"

    staff_id: str
    operation: StaffOperationType
    target: str | None = None
    outcome: OperationOutcome
    detail: str | None = None
    performed_at: datetime


@dataclass(frozen=True, kw_only=True)
class DeadLetter(Event):
    SCHEMA_FILE: ClassVar[str] = "dead_letter.avsc"

    step: str
    reason: str
    error_type: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp: datetime | None = None
    original_key: bytes | None = None
    original_value: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class ChukanPerson(Event):
    SCHEMA_FILE: ClassVar[str] = "chukan_person.avsc"

    integrated_atena_no: str
    person_token: str | None = None
    person: PersonIdentity
    status: ResidentStatus
    support_measure: bool
    version: int


@dataclass(frozen=True, kw_only=True)
class ChukanQuery(Event):
    SCHEMA_FILE: ClassVar[str] = "chukan_query.avsc"

    request_id: uuid.UUID
    integrated_atena_no: str
    provider: str
    affair_code: str
    info_name_code: str
    items: tuple[str, ...]
    fiscal_year_from: int | None = None
    fiscal_year_to: int | None = None
    requested_at: datetime

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tenant(self.provider, "provider")


@dataclass(frozen=True, kw_only=True)
class FugoIssuance(Event):
    SCHEMA_FILE: ClassVar[str] = "fugo_issuance.avsc"

    integrated_atena_no: str
    person_token: str | None = None
    fugo: str | None = None
    error: str | None = None


class CommandType(enum.StrEnum):
    FISCAL_YEAR_START = "FISCAL_YEAR_START"
    OTHER = "OTHER"


@dataclass(frozen=True, kw_only=True)
class HubCommand(Event):
    SCHEMA_FILE: ClassVar[str] = "hub_command.avsc"

    command: CommandType
    fiscal_year: int
    partition: int
    after_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class NoticeRequest(Event):
    SCHEMA_FILE: ClassVar[str] = "notice_request.avsc"

    atena_no: str
    kind: ScreeningKind
    fiscal_year: int
    channel: RequestChannel
    staff_id: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.atena_no or not self.staff_id:
            raise ModelError("a notice request needs its 宛名番号 and the staff member who recorded it")
        if not 1900 <= self.fiscal_year <= 2200:
            raise ModelError("fiscal_year is out of range")


@dataclass(frozen=True, kw_only=True)
class NoticeDecision(Event):
    SCHEMA_FILE: ClassVar[str] = "notice_decision.avsc"

    request_event_id: uuid.UUID
    atena_no: str
    kind: ScreeningKind
    fiscal_year: int
    channel: RequestChannel
    staff_id: str
    issued: bool
    refusals: tuple[NoticeRefusal, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.issued == bool(self.refusals):
            raise ModelError("a notice decision is issued without reasons, or refused with them")


@dataclass(frozen=True, kw_only=True)
class ScreeningHistory(Event):
    SCHEMA_FILE: ClassVar[str] = "screening_history.avsc"

    atena_no: str
    from_tenant: str
    record_id: str
    kind: ScreeningKind
    fiscal_year: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.atena_no or not self.record_id:
            raise ModelError("a screening history record needs its 宛名番号 and record id")
        _check_tenant(self.from_tenant, "from_tenant")
        if not 1900 <= self.fiscal_year <= 2200:
            raise ModelError("fiscal_year is out of range")


@dataclass(frozen=True, kw_only=True)
class InstitutionChange(Event):
    """実施医療機関の登録・変更 (I.2 ② (4)): one version of an institution's registration, in force for exams from
    ``valid_from`` to ``valid_to`` (open-ended when None). A later version with the same or a later ``valid_from``
    supersedes it from its own ``valid_from``; one that ends (``valid_to``) deregisters the institution after it.
    """

    SCHEMA_FILE: ClassVar[str] = "institution_change.avsc"

    code: str
    name: str
    kinds: tuple[ScreeningKind, ...]
    group: bool
    follow_up: bool
    valid_from: date
    valid_to: date | None = None
    staff_id: str
    reason: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.code) != 10 or not self.code.isascii() or not self.code.isdigit():
            raise ModelError("code must be a 10-digit 医療機関コード")
        if not self.name.strip():
            raise ModelError("name (医療機関名) is empty")
        if not self.kinds or len(set(self.kinds)) != len(self.kinds):
            raise ModelError("kinds must name each 検診種別 once, and at least one")
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ModelError("valid_to is before valid_from")
        if not self.staff_id or not self.reason.strip():
            raise ModelError("an institution change needs the staff member who recorded it and the reason")


class LedgerDecisionType(enum.StrEnum):
    ACCEPT = "ACCEPT"  # 受理: the submission enters the 台帳 despite the errors staff may accept (decisions.toml)
    CORRECT = "CORRECT"  # 訂正: a corrected submission of the 受付番号 (``result``), under its own 宛名番号
    RESOLVE = "RESOLVE"  # 処理済: the error is closed; the submission stays out of the 台帳
    VOID = "VOID"  # 取消: the submission's 台帳 entry (or 精検) is taken out of the 台帳
    SUPERSEDED = "SUPERSEDED"  # the matching's: a later submission of the 受付番号 stands under another 宛名番号
    OTHER = "OTHER"


STAFF_DECISIONS = frozenset({LedgerDecisionType.ACCEPT, LedgerDecisionType.CORRECT, LedgerDecisionType.RESOLVE,
                             LedgerDecisionType.VOID})  # fmt: skip


# The fields of a result staff may correct (エラー処理), as ``LedgerDecision.corrections`` names them.
CORRECTABLE = (
    "atena_no",
    "exam_date",
    "institution_code",
    "subject.name",
    "subject.name_kana",
    "subject.birth_date",
    "subject.sex",
    "subject.address",
    "primary_reception_no",
)


@dataclass(frozen=True, kw_only=True)
class LedgerDecision(Event):
    SCHEMA_FILE: ClassVar[str] = "ledger_decision.avsc"

    atena_no: str
    decision: LedgerDecisionType
    reception_no: str
    result_event_id: uuid.UUID | None = None
    result: ScreeningResult | None = None
    corrections: dict[str, str] | None = None
    superseded_at: datetime | None = None
    superseded_by: str | None = None
    staff_id: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.atena_no or not self.reception_no:
            raise ModelError("a ledger decision names its 宛名番号 and 受付番号")
        d = self.decision
        if d is LedgerDecisionType.OTHER:
            raise ModelError("unknown ledger decision")
        if d in STAFF_DECISIONS and (not self.staff_id or not (self.reason or "").strip()):
            raise ModelError("a staff decision needs the staff member who decided and the reason")
        if d is LedgerDecisionType.CORRECT:
            r = self.result
            if (r is None) == (self.corrections is None):
                raise ModelError("a correction carries either the corrected fields or the corrected result")
            if r is not None and (r.tenant, r.atena_no, r.reception_no) != (
                self.tenant,
                self.atena_no,
                self.reception_no,
            ):
                raise ModelError("a correction's result has the decision's 団体コード, 宛名番号 and 受付番号")
            if self.corrections is not None:
                if not self.corrections or self.result_event_id is None:
                    raise ModelError("a correction names the submission it corrects and at least one field")
                unknown = sorted(set(self.corrections) - set(CORRECTABLE))
                if unknown:
                    raise ModelError(f"fields that cannot be corrected: {', '.join(unknown)}")
        elif self.result is not None or self.corrections is not None:
            raise ModelError("only a correction carries a result or corrected fields")
        if d not in (LedgerDecisionType.CORRECT, LedgerDecisionType.VOID) and self.result_event_id is None:
            raise ModelError(f"{d.value} names the submission it decides on (result_event_id)")
        if d is LedgerDecisionType.SUPERSEDED:
            if self.superseded_at is None or not self.superseded_by or self.superseded_by == self.atena_no:
                raise ModelError("SUPERSEDED names when and under which other 宛名番号 the 受付番号 stands")
            if self.superseded_at.tzinfo is None:
                raise ModelError("superseded_at must be timezone-aware")


@dataclass(frozen=True, kw_only=True)
class ReceptionClaim(Event):
    SCHEMA_FILE: ClassVar[str] = "reception_claim.avsc"

    reception_no: str
    atena_no: str
    submitted_at: datetime
    result_event_id: uuid.UUID
    staff_id: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.reception_no or not self.atena_no:
            raise ModelError("a reception claim names its 受付番号 and 宛名番号")
        if self.submitted_at.tzinfo is None:
            raise ModelError("submitted_at must be timezone-aware")


class ReviewVerdict(enum.StrEnum):
    APPROVE = "APPROVE"  # 提供: the held provision is sent
    REFUSE = "REFUSE"  # 不提供: refused, with a reason
    OTHER = "OTHER"


@dataclass(frozen=True, kw_only=True)
class ReviewDecision(Event):
    """審査結果: a reviewer's decision on a held provision, signed with the reviewer's key (connectors.keys).

    The 中間サーバー acts on it only when the signature verifies against the key it enrolled for that staff id and
    tenant; the signature covers every other field, so none can be changed on the way.
    """

    SCHEMA_FILE: ClassVar[str] = "review_decision.avsc"

    request_id: uuid.UUID
    staff_id: str
    verdict: ReviewVerdict
    reason: str | None = None
    signature: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.staff_id:
            raise ModelError("a review decision names its reviewer")
        if self.verdict is ReviewVerdict.OTHER:
            raise ModelError("unknown review verdict")
        if self.verdict is ReviewVerdict.REFUSE and not (self.reason or "").strip():
            raise ModelError("a refusal needs a reason")
        if self.verdict is ReviewVerdict.APPROVE and self.reason is not None:
            raise ModelError("an approval carries no reason")
        if not self.signature:
            raise ModelError("a review decision is signed")


EVENT_TYPES: tuple[type[Event], ...] = (
    HubCommand,
    NoticeRequest,
    InstitutionChange,
    NoticeDecision,
    ResidentChange,
    ScreeningResult,
    ResidentState,
    LedgerEntry,
    ScreeningError,
    Invitation,
    FukuhonRegistration,
    ProvisionRequest,
    ProvisionResponse,
    HeldProvision,
    ProvisionRecord,
    StaffOperation,
    DeadLetter,
    ChukanPerson,
    ChukanQuery,
    FugoIssuance,
    ScreeningHistory,
    LedgerDecision,
    ReceptionClaim,
    ReviewDecision,
)
