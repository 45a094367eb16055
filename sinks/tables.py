"""The SQL tables the sinks write, as SQLAlchemy Core ``Table`` objects.

These definitions mirror the Alembic migrations in :mod:`sinks.migrations` column for column (a unit test compares
them); the migrations create the tables, never ``metadata.create_all``. Enum values are stored as their symbol
strings, timestamps as UTC (``TIMESTAMP WITH TIME ZONE`` on PostgreSQL, ISO text in UTC on SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from hub.engine import store as engine_store


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware timestamp stored in UTC and always read back aware (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC timestamp column")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON everywhere, JSONB on PostgreSQL; Python ``None`` is SQL ``NULL`` (not the JSON ``null``)."""
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


metadata = sa.MetaData()

TENANT = sa.String(6)
ATENA_NO = sa.String(32)
KIND = sa.String(16)

residents = sa.Table(
    "residents",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    # 個人番号, sealed (hub.pii: AES-256-GCM, key id, tenant / column / 宛名番号 as associated data), and its keyed
    # lookup hash (HMAC-SHA256, hex): sinks.residents seals, looks up and opens; the clear value is never stored.
    sa.Column("my_number_enc", sa.String(128), nullable=True),
    sa.Column("my_number_hash", sa.String(64), nullable=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_kana", sa.Text, nullable=False),
    sa.Column("sex", sa.String(8), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("postcode", sa.String(8), nullable=True),  # 郵便番号 (NNN-NNNN) of the 住所; NULL: not known
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("resident_since", sa.Date, nullable=True),
    sa.Column("ceased_on", sa.Date, nullable=True),
    sa.Column("support_measure", sa.Boolean, nullable=False),
    sa.Column("household_no", sa.String(32), nullable=True),
    sa.Column("previous_municipality", TENANT, nullable=True),
    sa.Column("next_municipality", TENANT, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "atena_no", name="pk_residents"),
    sa.Index("ix_residents_my_number_hash", "tenant", "my_number_hash"),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    sa.Column("kind", KIND, primary_key=True),
    sa.Column("fiscal_year", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("sex", sa.String(8), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("reception_no", sa.String(64), nullable=False),
    sa.Column("exam_date", sa.Date, nullable=False),
    sa.Column("exam_age", sa.Integer, nullable=False),
    sa.Column("institution_code", sa.String(16), nullable=False),
    sa.Column("institution_name", sa.Text, nullable=False),
    sa.Column("setting", sa.String(16), nullable=False),
    sa.Column("follow_up_required", sa.Boolean, nullable=False),
    sa.Column("primary_findings", json_type(), nullable=False),
    sa.Column("follow_up", json_type(), nullable=True),
    sa.Column("followup_exam_date", sa.Date, nullable=True),
    sa.Column("followup_exam_age", sa.Integer, nullable=True),
    sa.Column("followup_judgement", sa.String(32), nullable=True),
    sa.Column("history_from", TENANT, nullable=True),
    sa.Column("source_event_id", sa.String(36), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("decided_by", sa.String(64), nullable=True),  # 職員ID of the latest staff decision behind it
    sa.Column("decision_reason", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("tenant", "atena_no", "kind", "fiscal_year", name="pk_ledger_entries"),
    sa.Index("ix_ledger_entries_fiscal_year_kind", "tenant", "fiscal_year", "kind"),
    sa.Index("ix_ledger_entries_reception_no", "tenant", "reception_no"),
)

ledger_versions = sa.Table(
    "ledger_versions",
    metadata,
    # Every version of every 台帳 entry, as it arrived (ledger_entries keeps the one that stands): the counter view
    # shows an entry's versions, withdrawals included. Deleted with the entry's person and period by retention.
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    sa.Column("kind", KIND, primary_key=True),
    sa.Column("fiscal_year", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("withdrawn", sa.Boolean, nullable=False),
    sa.Column("reception_no", sa.String(64), nullable=False),
    sa.Column("exam_date", sa.Date, nullable=False),
    sa.Column("institution_code", sa.String(16), nullable=False),
    sa.Column("follow_up_required", sa.Boolean, nullable=False),
    sa.Column("followup_judgement", sa.String(32), nullable=True),
    sa.Column("source_event_id", sa.String(36), nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("decided_by", sa.String(64), nullable=True),  # who caused this version (受理, 訂正, 取消) and why
    sa.Column("decision_reason", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("tenant", "atena_no", "kind", "fiscal_year", "version", name="pk_ledger_versions"),
)

screening_errors = sa.Table(
    "screening_errors",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("reception_no", sa.String(64), primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    sa.Column("kind", KIND, nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("mismatched_fields", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detected_at", UtcDateTime, nullable=False),
    sa.Column("resolved_at", UtcDateTime, nullable=True),
    sa.Column("resolved_by", sa.String(64), nullable=True),
    sa.Column("resolution", sa.Text, nullable=True),
    sa.Column("source_topic", sa.String(255), nullable=True),
    sa.Column("source_partition", sa.Integer, nullable=True),
    sa.Column("source_offset", sa.BigInteger, nullable=True),
    sa.Column("result_event_id", sa.String(36), nullable=False),
    # one row per 受付番号 and 宛名番号: a 受付番号 sent under two 宛名番号 has an error in each person's book (the
    # one it no longer stands under ends RESOLVED, processors.rules.receptions)
    sa.PrimaryKeyConstraint("tenant", "reception_no", "atena_no", name="pk_screening_errors"),
    sa.Index("ix_screening_errors_status", "tenant", "status", "detected_at"),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    sa.Column("kind", KIND, primary_key=True),
    sa.Column("fiscal_year", sa.Integer, primary_key=True),
    sa.Column("invitation_type", sa.String(16), primary_key=True),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("age_at_fiscal_year_end", sa.Integer, nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "atena_no", "kind", "fiscal_year", "invitation_type", name="pk_invitations"),
    sa.Index("ix_invitations_fiscal_year_kind", "tenant", "fiscal_year", "kind"),
)

# 繰越受診通知の申出 and the processors' decision on each (notice.decisions.v1): one row per request.
notice_decisions = sa.Table(
    "notice_decisions",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("request_event_id", sa.String(36), primary_key=True),
    sa.Column("atena_no", ATENA_NO, nullable=False),
    sa.Column("kind", KIND, nullable=False),
    sa.Column("fiscal_year", sa.Integer, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("issued", sa.Boolean, nullable=False),
    sa.Column("refusals", sa.String(256), nullable=False),  # comma-separated NoticeRefusal symbols ("" when issued)
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "request_event_id", name="pk_notice_decisions"),
    sa.Index("ix_notice_decisions_person", "tenant", "atena_no"),
)

# The 実施医療機関 changes staff recorded (hub.institutions.v1), every version: with institutions.toml, the registry
# the processors check results against (the processors keep their own copy). Reference data: not personal, kept.
institution_versions = sa.Table(
    "institution_versions",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("code", sa.String(10), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kinds", sa.String(128), nullable=False),  # comma-separated ScreeningKind values
    sa.Column("group_screening", sa.Boolean, nullable=False),
    sa.Column("follow_up", sa.Boolean, nullable=False),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_to", sa.Date, nullable=True),
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "event_id", name="pk_institution_versions"),
    sa.Index("ix_institution_versions_code", "tenant", "code"),
)

# The notices that went out (`notice mail`, hub/mailing.py): one row per notice, written by the staff tool with the
# batch that printed it; a notice is mailed once. Kept as long as its invitation (retention).
notice_mailings = sa.Table(
    "notice_mailings",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    sa.Column("kind", KIND, primary_key=True),
    sa.Column("fiscal_year", sa.Integer, primary_key=True),
    sa.Column("invitation_type", sa.String(16), primary_key=True),
    sa.Column("batch_id", sa.String(36), nullable=False),
    sa.Column("sent_to", sa.String(16), nullable=False),  # REGISTERED / DECIDED_REGISTERED / DECIDED_OTHER
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("mailed_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "atena_no", "kind", "fiscal_year", "invitation_type", name="pk_notice_mailings"),
    sa.Index("ix_notice_mailings_batch", "tenant", "batch_id"),
)

# Where a person under 支援措置 may be sent notices (`notice mail-decide`): REGISTERED (the registered address, by a
# staff decision), OTHER (the address given here) or WITHHOLD. Without a row, nothing is mailed to such a person.
mailing_decisions = sa.Table(
    "mailing_decisions",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("postcode", sa.String(8), nullable=True),
    sa.Column("address", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("decided_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "atena_no", name="pk_mailing_decisions"),
)

statistics = sa.Table(
    "statistics",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("fiscal_year", sa.Integer, primary_key=True),
    sa.Column("kind", KIND, primary_key=True),
    sa.Column("sex", sa.String(8), primary_key=True),
    sa.Column("age_band", sa.String(8), primary_key=True),
    sa.Column("targets", sa.Integer, nullable=False),
    sa.Column("attendees", sa.Integer, nullable=False),
    sa.Column("follow_up_required", sa.Integer, nullable=False),
    sa.Column("follow_up_attended", sa.Integer, nullable=False),
    sa.Column("cancer_found", sa.Integer, nullable=False),
    sa.Column("computed_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "fiscal_year", "kind", "sex", "age_band", name="pk_statistics"),
)

staff_accounts = sa.Table(
    "staff_accounts",
    metadata,
    sa.Column("staff_id", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("roles", sa.String(128), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False),
    sa.Column("locked", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),  # `staff disable` (admin)
    sa.PrimaryKeyConstraint("staff_id", name="pk_staff_accounts"),
)

staff_sessions = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("token_hash", name="pk_staff_sessions"),
    sa.ForeignKeyConstraint(["staff_id"], ["staff_accounts.staff_id"], name="fk_staff_sessions_staff_id"),
)

staff_operations = sa.Table(
    "staff_operations",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("tenant", TENANT, nullable=False),
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("operation", sa.String(32), nullable=False),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("performed_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("event_id", name="pk_staff_operations"),
    sa.Index("ix_staff_operations_staff_time", "tenant", "staff_id", "performed_at"),
)


# --- the 中間サーバーコネクタ (団体内統合宛名) and the provision flow, on the hub's side ----------------------------


def service_effects_table(meta: sa.MetaData) -> sa.Table:
    """Outputs of every input a service has acted on (``connectors.service``): a replay re-sends them, never re-acts."""
    return sa.Table(
        "service_effects",
        meta,
        sa.Column("service", sa.String(32), primary_key=True),
        sa.Column("input_id", sa.String(160), primary_key=True),
        sa.Column("outputs", sa.Text, nullable=False),
        sa.Column("acted_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("service", "input_id", name="pk_service_effects"),
    )


service_effects = service_effects_table(metadata)


def retention_runs_table(meta: sa.MetaData, name: str) -> sa.Table:
    """The retention runs over the store it is in (``hub.retention``): each store records its own, so no process
    writes another party's store to say it ran (the 中間サーバー's own runs: ``chukan_retention_runs``).
    """
    return sa.Table(
        name,
        meta,
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("ran_at", UtcDateTime, nullable=False),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("run_by", sa.String(64), nullable=False),  # a staff id, or schedule:<process>
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("counts", sa.Text, nullable=False),  # JSON: store -> table -> rows deleted
        sa.PrimaryKeyConstraint("run_id", name=f"pk_{name}"),
        sa.Index(f"ix_{name}_tenant", "tenant", "run_by", "ran_at"),
    )


retention_runs = retention_runs_table(metadata, "retention_runs")

integrated_atena = sa.Table(
    "integrated_atena",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    sa.Column("integrated_no", sa.String(15), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "atena_no", name="pk_integrated_atena"),
    sa.UniqueConstraint("tenant", "integrated_no", name="uq_integrated_atena_no"),
)

integrated_atena_seq = sa.Table(
    "integrated_atena_seq",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("last_no", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("tenant", name="pk_integrated_atena_seq"),
)

fukuhon_outbox = sa.Table(
    "fukuhon_outbox",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("integrated_no", sa.String(15), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("queued_at", UtcDateTime, nullable=False),
    sa.Column("exported_to", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("tenant", "record_id", "version", name="pk_fukuhon_outbox"),
    sa.Index("ix_fukuhon_outbox_status", "tenant", "status"),
)

connector_queries = sa.Table(
    "connector_queries",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("atena_no", ATENA_NO, nullable=False),
    sa.Column("provider", TENANT, nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("answered_at", UtcDateTime, nullable=True),
    sa.PrimaryKeyConstraint("tenant", "request_id", name="pk_connector_queries"),
)

ledger_history = sa.Table(
    "ledger_history",
    metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("atena_no", ATENA_NO, primary_key=True),
    sa.Column("from_tenant", TENANT, primary_key=True),
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kind", KIND, nullable=True),
    sa.Column("fiscal_year", sa.Integer, nullable=True),
    sa.Column("items", json_type(), nullable=False),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "atena_no", "from_tenant", "record_id", name="pk_ledger_history"),
)

provision_records = sa.Table(
    "provision_records",
    metadata,
    sa.Column("record_id", sa.String(36), primary_key=True),
    sa.Column("tenant", TENANT, nullable=False),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("side", sa.String(16), nullable=False),
    sa.Column("requester", TENANT, nullable=False),
    sa.Column("provider", TENANT, nullable=False),
    sa.Column("affair_code", sa.String(16), nullable=False),
    sa.Column("info_name_code", sa.String(16), nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("provided_at", UtcDateTime, nullable=True),
    sa.Column("non_disclosure", sa.Boolean, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("request_body", sa.Text, nullable=False),
    sa.Column("response_body", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("record_id", name="pk_provision_records"),
    sa.Index("ix_provision_records_tenant_time", "tenant", "requested_at"),
)

# The runtime's stored offsets and outbox (hub.engine.store), beside the data they are written with.
runtime_offsets, runtime_outbox = engine_store.define(metadata)

ALL_TABLES: tuple[sa.Table, ...] = tuple(metadata.tables.values())
