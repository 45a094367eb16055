"""The topic catalog: every topic of the hub declared once.

Processors, connectors and sinks import these objects; no topic name is written anywhere else. Keys are UTF-8
strings made of the fields named in ``key_fields`` joined by ``:`` (tenant first, then the person or record key),
so every person's events land on one partition in order, and compaction sees stable bytes whatever the registry.
Values are Avro (Confluent wire format) of the topic's model; the subject is ``<topic>-value``.

Topics that carry one municipality's data on the provision flow (:data:`TENANT_SCOPED`) exist once per tenant,
named ``{団体コード}.{name}`` (:func:`for_tenant`), so that Kafka's ACLs, not the services' code, keep one
municipality's persons, queries, answers, holds and records from another's (topics/TENANCY.md). The constants below
are their templates: no process reads or writes a template itself. A tenant topic's subject is its template's (one
subject per schema, however many tenants).

Replication factor and min ISR are the production figures; ``topics apply`` lowers them to what a smaller
cluster can hold (the 1-node local stack) and says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from hub.validation import is_valid_tenant_code
from schemas import models
from schemas.models import Event

DAY_MS = 24 * 60 * 60 * 1000
FOREVER = -1
DLQ_RETENTION_MS = 90 * DAY_MS

CleanupPolicy = Literal["delete", "compact"]


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """What the cluster must hold for a topic: the part `topics apply` manages."""

    name: str
    key_fields: tuple[str, ...]
    partitions: int
    cleanup_policy: CleanupPolicy
    retention_ms: int
    doc: str
    replication_factor: int = 3
    min_insync_replicas: int = 2
    template: str | None = None  # a tenant topic's template (its name without the tenant prefix)

    @property
    def value_format(self) -> str:
        return "bytes"

    def configs(self) -> dict[str, str]:
        conf = {"cleanup.policy": self.cleanup_policy, "min.insync.replicas": str(self.min_insync_replicas)}
        if self.cleanup_policy == "delete":
            conf["retention.ms"] = str(self.retention_ms)
        return conf


@dataclass(frozen=True, kw_only=True)
class Topic(TopicSpec):
    """A topic of Avro events: its model, its subject in the registry, its dead-letter topic."""

    value_type: type[Event]
    dlq: Topic | None = None

    @property
    def value_subject(self) -> str:
        return f"{self.template or self.name}-value"

    @property
    def tenant(self) -> str | None:
        """The municipality a tenant topic belongs to (its name's prefix); None for the hub's own topics."""
        return self.name.split(".", 1)[0] if self.template is not None else None

    @property
    def value_format(self) -> str:
        return self.value_type.__name__

    def key_of(self, event: Event) -> str:
        """The record key of ``event`` on this topic (``tenant:atena_no`` and the like)."""
        parts = []
        for name in self.key_fields:
            value = getattr(event, name)
            if value is None:
                raise ValueError(f"{self.name}: key field {name} is empty")
            parts.append(str(value))
        return ":".join(parts)


def _dlq(source: str, partitions: int, doc: str | None = None) -> Topic:
    base = source.removesuffix(".v1")
    return Topic(
        name=f"{base}.dlq.v1",
        value_type=models.DeadLetter,
        key_fields=("tenant", "source_topic", "source_partition", "source_offset"),
        partitions=partitions,
        cleanup_policy="delete",
        retention_ms=DLQ_RETENTION_MS,
        doc=doc or f"dead letters of {source}: reason, source position and original bytes",
    )


def _input(
    name: str, value_type: type[Event], key: tuple[str, ...], partitions: int, retention_days: int, doc: str
) -> Topic:
    return Topic(
        name=name,
        value_type=value_type,
        key_fields=key,
        partitions=partitions,
        cleanup_policy="delete",
        retention_ms=retention_days * DAY_MS,
        doc=doc,
        dlq=_dlq(name, partitions),
    )


PERSON_KEY = ("tenant", "atena_no")

RESIDENT_CHANGES = _input(
    "juki.resident-changes.v1", models.ResidentChange, PERSON_KEY, 6, 400, "住基異動 events from the resident registry"
)
INSTITUTION_RESULTS = _input(
    "institution.results.v1",
    models.ScreeningResult,
    PERSON_KEY,
    6,
    400,
    "primary and follow-up results from medical institutions",
)
RESIDENTS = Topic(
    name="residents.v1",
    value_type=models.ResidentState,
    key_fields=PERSON_KEY,
    partitions=6,
    cleanup_policy="compact",
    retention_ms=FOREVER,
    doc="current resident state (compacted)",
)
LEDGER_ENTRIES = Topic(
    name="ledger.entries.v1",
    value_type=models.LedgerEntry,
    key_fields=("tenant", "atena_no", "kind", "fiscal_year"),
    partitions=6,
    cleanup_policy="compact",
    retention_ms=FOREVER,
    doc="the がん検診台帳: one entry per person × kind × fiscal year (compacted)",
)
SCREENING_ERRORS = Topic(
    name="screening.errors.v1",
    value_type=models.ScreeningError,
    key_fields=("tenant", "reception_no", "atena_no"),
    partitions=3,
    cleanup_policy="compact",
    retention_ms=FOREVER,
    doc="results that failed matching or validation, with reason codes; latest state per 受付番号 and 宛名番号 "
    "(a 受付番号 sent under two 宛名番号 has an error in each person's book)",
)
INVITATIONS = Topic(
    name="invitations.v1",
    value_type=models.Invitation,
    key_fields=PERSON_KEY,
    partitions=3,
    cleanup_policy="delete",
    retention_ms=400 * DAY_MS,
    doc="受診勧奨 and 繰越受診通知 to send",
)
FUKUHON_REGISTRATIONS = _input(
    "fukuhon.registrations.v1",
    models.FukuhonRegistration,
    PERSON_KEY,
    3,
    400,
    "副本 registrations for the 中間サーバーコネクタ (keyed by 宛名番号; the connector maps to 統合宛名番号)",
)
PROVISION_REQUESTS = _input(
    "network.provision-requests.v1",
    models.ProvisionRequest,
    ("provider",),
    3,
    30,
    "queries arriving from the national network, keyed by the providing tenant",
)
PROVISION_RESPONSES = _input(
    "network.provision-responses.v1",
    models.ProvisionResponse,
    ("requester",),
    3,
    30,
    "answers (automatic, after staff approval, or refusal), keyed by the requesting tenant",
)
HELD_PROVISIONS = Topic(
    name="chukan.held-provisions.v1",
    value_type=models.HeldProvision,
    key_fields=("tenant", "request_id"),
    partitions=3,
    cleanup_policy="compact",
    retention_ms=FOREVER,
    doc="provisions held by the 自動応答不可フラグ for staff review; latest state per request",
)
REVIEW_DECISIONS = _input(
    "chukan.review-decisions.v1",
    models.ReviewDecision,
    ("tenant", "request_id"),
    3,
    30,  # the transport: the 中間サーバー keeps every decision it received, with its outcome (chukan_review_decisions)
    "審査結果: reviewers' signed decisions on held provisions, for the 中間サーバー to verify and act on",
)
PROVISION_RECORDS = Topic(
    name="chukan.provision-records.v1",
    value_type=models.ProvisionRecord,
    key_fields=("tenant", "request_id"),
    partitions=3,
    cleanup_policy="delete",
    retention_ms=7 * 366 * DAY_MS,
    doc="情報提供等記録 (append-only; 7 years, the deletion job works in SQL)",
)
STAFF_OPERATIONS = Topic(
    name="chukan.staff-operations.v1",
    value_type=models.StaffOperation,
    key_fields=("tenant", "staff_id"),
    partitions=3,
    cleanup_policy="delete",
    retention_ms=7 * 366 * DAY_MS,
    doc="staff login, logout and every operation",
)

# --- the provision flow: connector <-> 中間サーバー <-> national network ---------------------------------------
INTEGRATED_KEY = ("tenant", "integrated_atena_no")

CHUKAN_PERSONS = _input(
    "chukan.persons.v1",
    models.ChukanPerson,
    INTEGRATED_KEY,
    3,
    400,
    "宛名 registrations from the 中間サーバーコネクタ to the 中間サーバー (統合宛名番号, 基本5情報; no 個人番号)",
)
CHUKAN_FUKUHON = _input(
    "chukan.fukuhon.v1",
    models.FukuhonRegistration,
    INTEGRATED_KEY,
    3,
    400,
    "副本 forwarded by the 中間サーバーコネクタ under the 統合宛名番号 (宛名番号 removed)",
)
CHUKAN_QUERIES = _input(
    "chukan.queries.v1",
    models.ChukanQuery,
    ("tenant", "request_id"),
    3,
    30,
    "情報照会 a municipality's connector asks its 中間サーバー to send",
)
QUERY_ANSWERS = _input(
    "chukan.query-answers.v1",
    models.ProvisionResponse,
    ("requester", "request_id"),
    3,
    30,
    "answers to a municipality's own queries, from its 中間サーバー to its connector (no 符号)",
)
FUGO_REQUESTS = _input(
    "network.fugo-requests.v1",
    models.FugoIssuance,
    INTEGRATED_KEY,
    3,
    30,
    "符号 requests from the 中間サーバー to the network (only these two parties read it)",
)
FUGO_ISSUED = _input(
    "network.fugo-issued.v1",
    models.FugoIssuance,
    INTEGRATED_KEY,
    3,
    30,
    "符号 issued by the network to the 中間サーバー (only these two parties read it)",
)
NETWORK_QUERIES = _input(
    "network.queries.v1",
    models.ProvisionRequest,
    ("requester",),
    3,
    30,
    "queries sent by a requester's 中間サーバー into the network (requester's 符号, no permit yet)",
)

LEDGER_HISTORY = _input(
    "ledger.history.v1",
    models.ScreeningHistory,
    PERSON_KEY,
    6,  # as many as the person-keyed inputs of the processors
    400,
    "転入前の受診履歴: screenings a resident had in their previous municipality, from its answer to the 転入 query "
    "(the connector to the processors: the interval rule and the notices count them)",
)

HUB_COMMANDS = Topic(
    name="hub.commands.v1",
    value_type=models.HubCommand,
    key_fields=("tenant", "partition"),
    partitions=6,  # as many as the person-keyed topics: each copy of a command acts on one partition
    cleanup_policy="delete",
    retention_ms=400 * DAY_MS,
    doc="operator commands to the processors (年度開始), one copy per partition",
)

NOTICE_REQUESTS = _input(
    "hub.notice-requests.v1",
    models.NoticeRequest,
    PERSON_KEY,
    6,  # co-partitioned with the person's other inputs: the processors decide from the person's book
    400,
    "繰越受診通知の申出 recorded by staff (the resident's request, with its 受付 channel) for the processors to decide",
)
INSTITUTION_CHANGES = _input(
    "hub.institutions.v1",
    models.InstitutionChange,
    ("tenant", "code"),
    1,  # reference data, a few changes a year: one partition keeps every institution's versions in order
    400,  # the transport, not the archive: the processors' and the sinks' stores keep every version
    "実施医療機関の登録・変更 recorded by staff: one version of an institution's registration, in force from its date",
)
LEDGER_DECISIONS = _input(
    "hub.ledger-decisions.v1",
    models.LedgerDecision,
    PERSON_KEY,
    6,  # co-partitioned with the person's other inputs: a decision acts on the person's book
    400,  # the transport, not the archive: the processors' books keep every decision
    "エラー処理・台帳訂正: staff decisions on a 受付番号 (accept, correct, resolve, void), and the processors' own "
    "SUPERSEDED when a later submission of a 受付番号 stands under another 宛名番号",
)
RECEPTION_CLAIMS = _input(
    "ledger.receptions.v1",
    models.ReceptionClaim,
    ("tenant", "reception_no"),
    6,
    30,  # the processors' reception index keeps what it needs; a claim is settled within seconds
    "受付番号の所在: each person's latest submission of a 受付番号, keyed by the 受付番号, so that the processors "
    "see every 宛名番号 it was sent under and tell the ones it no longer stands under",
)
NOTICE_DECISIONS = Topic(
    name="notice.decisions.v1",
    value_type=models.NoticeDecision,
    key_fields=PERSON_KEY,
    partitions=3,
    cleanup_policy="delete",
    retention_ms=400 * DAY_MS,
    doc="the processors' decision on each 繰越受診通知の申出: issued (the notice is on invitations.v1) or refused, why",
)

SINKS_DLQ = _dlq(
    "sinks.v1", 3, "dead letters of the SQL sinks (records of the hub's own topics that could not be written)"
)

PRIMARY_TOPICS: tuple[Topic, ...] = (
    HUB_COMMANDS,
    RESIDENT_CHANGES,
    INSTITUTION_RESULTS,
    RESIDENTS,
    LEDGER_ENTRIES,
    SCREENING_ERRORS,
    INVITATIONS,
    FUKUHON_REGISTRATIONS,
    PROVISION_REQUESTS,
    PROVISION_RESPONSES,
    HELD_PROVISIONS,
    REVIEW_DECISIONS,
    PROVISION_RECORDS,
    STAFF_OPERATIONS,
    CHUKAN_PERSONS,
    CHUKAN_FUKUHON,
    CHUKAN_QUERIES,
    QUERY_ANSWERS,
    FUGO_REQUESTS,
    FUGO_ISSUED,
    NETWORK_QUERIES,
    LEDGER_HISTORY,
    NOTICE_REQUESTS,
    NOTICE_DECISIONS,
    INSTITUTION_CHANGES,
    LEDGER_DECISIONS,
    RECEPTION_CLAIMS,
)

ALL_TOPICS: tuple[Topic, ...] = (
    PRIMARY_TOPICS + tuple(t.dlq for t in PRIMARY_TOPICS if t.dlq is not None) + (SINKS_DLQ,)
)


# The processors' consumer group (their state lives in their own SQL store, not in topics: processors/store.py).
PROCESSORS_APP_ID = "kenshin-hub-processors"

# --- tenant topics -------------------------------------------------------------------------------------------

TENANT_SCOPED: tuple[Topic, ...] = (
    CHUKAN_PERSONS,
    CHUKAN_FUKUHON,
    CHUKAN_QUERIES,
    QUERY_ANSWERS,
    HELD_PROVISIONS,
    REVIEW_DECISIONS,
    PROVISION_RECORDS,
    FUGO_REQUESTS,
    FUGO_ISSUED,
    NETWORK_QUERIES,
    PROVISION_REQUESTS,
    PROVISION_RESPONSES,
)
# One partition per tenant topic: a municipality's provision traffic is a few requests a minute, and 1,741 tenants
# times 24 topics must stay a partition count a cluster carries (topics/TENANCY.md has the figures).
TENANT_PARTITIONS = 1

_TEMPLATES: dict[str, Topic] = {
    t.name: t for t in TENANT_SCOPED + tuple(t.dlq for t in TENANT_SCOPED if t.dlq is not None)
}
_BY_NAME: dict[str, Topic] = {t.name: t for t in ALL_TOPICS}
_FOR_TENANT: dict[tuple[str, str], Topic] = {}

# The hub's own topics: one city's deployment (the tenant topics are created per municipality: cluster_topics).
CITY_TOPICS: tuple[Topic, ...] = tuple(t for t in ALL_TOPICS if t.name not in _TEMPLATES)


def for_tenant(topic: Topic, tenant: str) -> Topic:
    """``topic`` (a template of :data:`TENANT_SCOPED`, or its dead-letter topic) for the municipality ``tenant``."""
    made = _FOR_TENANT.get((topic.name, tenant))
    if made is not None:
        return made
    if _TEMPLATES.get(topic.name) is not topic:
        raise ValueError(f"{topic.name} is not a tenant topic")
    if not is_valid_tenant_code(tenant):
        raise ValueError(f"{tenant!r} is not a 団体コード")
    made = replace(
        topic,
        name=f"{tenant}.{topic.name}",
        template=topic.name,
        partitions=TENANT_PARTITIONS,
        dlq=for_tenant(topic.dlq, tenant) if topic.dlq is not None else None,
    )
    _FOR_TENANT[(topic.name, tenant)] = made
    return made


def own(topic: Topic, tenant: str) -> Topic:
    """``tenant``'s topic of ``topic``: its tenant topic when ``topic`` is a template, else ``topic`` itself."""
    return for_tenant(topic, tenant) if _TEMPLATES.get(topic.name) is topic else topic


def split_tenant(name: str) -> tuple[str | None, str]:
    """``(tenant, template)`` of a tenant topic's name; ``(None, name)`` for any other name."""
    head, _, rest = name.partition(".")
    if is_valid_tenant_code(head) and rest in _TEMPLATES:
        return head, rest
    return None, name


# The party whose topic a message of these templates is on, besides its ``tenant``: an answer's requester. (A
# request's provider is bound by its permit, which the provider's 中間サーバー checks against the topic's tenant and
# uses up whatever the outcome; a query's requester is checked by the network, which refuses the query.)
_PARTY: dict[str, str] = {PROVISION_RESPONSES.name: "requester"}
TENANT_MISMATCH = "TENANT_MISMATCH"


def tenant_check(topic: Topic, event: Event) -> tuple[str, str | None]:
    """The tenant ``event`` was read for (its topic's), and why the payload disagrees with it (None when it does
    not): its ``tenant`` and, for an answer, the requester whose topic it is on. The shared services act
    on the topic's tenant only, and dead-letter a message that names another.
    """
    tenant = topic.tenant
    if tenant is None:
        raise ValueError(f"{topic.name} is not a tenant topic")
    fields = ("tenant", _PARTY[topic.template]) if topic.template in _PARTY else ("tenant",)
    wrong = [f"{f} {getattr(event, f)}" for f in fields if getattr(event, f) != tenant]
    if not wrong:
        return tenant, None
    return tenant, f"{TENANT_MISMATCH}: read from {topic.name}, but the message names {', '.join(wrong)}"


def tenant_topics(tenant: str) -> tuple[Topic, ...]:
    """Every topic of one municipality, dead-letter topics included."""
    return tuple(for_tenant(t, tenant) for t in _TEMPLATES.values())


def cluster_topics(tenants: Iterable[str]) -> tuple[Topic, ...]:
    """What a cluster holds: the hub's own topics and the tenant topics of each municipality of ``tenants``."""
    out = list(CITY_TOPICS)
    for tenant in sorted(set(tenants)):
        out.extend(tenant_topics(tenant))
    return tuple(out)


def by_name(name: str) -> Topic:
    """The topic called ``name``: one of the catalog, or a tenant topic (``{団体コード}.{template}``)."""
    tenant, template = split_tenant(name)
    if tenant is not None:
        return for_tenant(_TEMPLATES[template], tenant)
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(name) from None
