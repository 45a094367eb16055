"""The stores of the 中間サーバー and of the network simulator (SQLAlchemy Core tables; Alembic migrations).

The 中間サーバー is one platform shared by every municipality (DOMAIN.md): each table's key starts with the tenant's
団体コード and every read and write goes through a :class:`connectors.chukan.TenantStore` bound to one tenant, so
one municipality's rows are never visible to another's requests. The network's store is a database of its own.
"""

from __future__ import annotations

import sqlalchemy as sa

from hub.engine import store as engine_store
from sinks.tables import TENANT, UtcDateTime, retention_runs_table, service_effects_table

CHUKAN_MIGRATIONS = "connectors:migrations_chukan"
NETWORK_MIGRATIONS = "connectors:migrations_network"

INTEGRATED_NO = sa.String(15)
UUID_TEXT = sa.String(36)

chukan_metadata = sa.MetaData()

chukan_effects = service_effects_table(chukan_metadata)
chukan_runtime = engine_store.define(chukan_metadata)

chukan_persons = sa.Table(
    "chukan_persons",
    chukan_metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("integrated_no", INTEGRATED_NO, primary_key=True),
    sa.Column("person_token", sa.String(64), nullable=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_kana", sa.Text, nullable=False),
    sa.Column("sex", sa.String(8), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # DV等支援措置 from 住基: True, False, or NULL when unknown (never answered automatically: connectors.chukan)
    sa.Column("support_measure", sa.Boolean, nullable=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("fugo", sa.String(64), nullable=True),
    sa.Column("fugo_requested", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "integrated_no", name="pk_chukan_persons"),
    sa.UniqueConstraint("tenant", "fugo", name="uq_chukan_persons_fugo"),
)

chukan_fukuhon = sa.Table(
    "chukan_fukuhon",
    chukan_metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("event_id", UUID_TEXT, nullable=False),
    sa.Column("integrated_no", INTEGRATED_NO, nullable=False),
    sa.Column("info_name_code", sa.String(16), nullable=False),
    sa.Column("dataset_item_code", sa.String(32), nullable=False),
    sa.Column("record_key", sa.Text, nullable=False),
    sa.Column("parent_key", sa.Text, nullable=True),
    sa.Column("publication_start", sa.Date, nullable=False),
    sa.Column("publication_end", sa.Date, nullable=True),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("registered_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "record_id", "version", name="pk_chukan_fukuhon"),
    sa.Index("ix_chukan_fukuhon_person", "tenant", "integrated_no", "info_name_code"),
)

chukan_outgoing = sa.Table(
    "chukan_outgoing",
    chukan_metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("request_id", UUID_TEXT, primary_key=True),
    sa.Column("integrated_no", INTEGRATED_NO, nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "request_id", name="pk_chukan_outgoing"),
    sa.Index("ix_chukan_outgoing_waiting", "tenant", "integrated_no", "status"),
)

chukan_held = sa.Table(
    "chukan_held",
    chukan_metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("request_id", UUID_TEXT, primary_key=True),
    sa.Column("integrated_no", INTEGRATED_NO, nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("hold_reasons", sa.Text, nullable=False),
    sa.Column("flagged_items", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("held_at", UtcDateTime, nullable=False),
    sa.Column("decided_by", sa.String(64), nullable=True),
    sa.Column("decided_at", UtcDateTime, nullable=True),
    sa.Column("refusal_reason", sa.Text, nullable=True),
    sa.Column("outputs", sa.Text, nullable=True),
    sa.Column("hold_note", sa.Text, nullable=True),  # why, in words, for the reviewer (e.g. flag state unknown)
    sa.PrimaryKeyConstraint("tenant", "request_id", name="pk_chukan_held"),
    sa.Index("ix_chukan_held_status", "tenant", "status", "held_at"),
)

chukan_used_permits = sa.Table(
    "chukan_used_permits",
    chukan_metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("permit_id", UUID_TEXT, primary_key=True),
    sa.Column("request_id", UUID_TEXT, nullable=False),  # of the request that presented it first
    sa.Column("used_at", UtcDateTime, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=True),  # of that first presentation (NULL: used before 0003)
    sa.PrimaryKeyConstraint("tenant", "permit_id", name="pk_chukan_used_permits"),
)

chukan_records = sa.Table(
    "chukan_records",
    chukan_metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("record_id", UUID_TEXT, primary_key=True),
    sa.Column("request_id", UUID_TEXT, nullable=False),
    sa.Column("side", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "record_id", name="pk_chukan_records"),
    sa.Index("ix_chukan_records_request", "tenant", "request_id"),
)

chukan_retention_runs = sa.Table(
    "chukan_retention_runs",
    chukan_metadata,
    sa.Column("run_id", UUID_TEXT, primary_key=True),
    sa.Column("ran_at", UtcDateTime, nullable=False),
    sa.Column("records_before", UtcDateTime, nullable=False),
    sa.Column("fukuhon_ended_before", sa.Date, nullable=False),
    sa.Column("records_deleted", sa.Integer, nullable=False),
    sa.Column("fukuhon_deleted", sa.Integer, nullable=False),
    sa.Column("policy_version", sa.String(32), nullable=False),
    # since 0004 (hub.retention): the tenant the run acted on, who ran it (a staff id or "schedule:<process>"),
    # and its counts per store and table (JSON); NULL on runs recorded before
    sa.Column("tenant", TENANT, nullable=True),
    sa.Column("run_by", sa.String(64), nullable=True),
    sa.Column("counts", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("run_id", name="pk_chukan_retention_runs"),
    sa.Index("ix_chukan_retention_runs_tenant", "tenant", "run_by", "ran_at"),
)

# since 0005: the reviewers this 中間サーバー knows, per tenant (their public keys), and every review decision it
# received with what it did with it
chukan_reviewers = sa.Table(
    "chukan_reviewers",
    chukan_metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("staff_id", sa.String(64), primary_key=True),
    sa.Column("public_key", sa.String(64), nullable=False),  # Ed25519, raw 32 bytes, base64
    sa.Column("status", sa.String(16), nullable=False),  # ACTIVE | DISABLED
    sa.Column("enrolled_at", UtcDateTime, nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "staff_id", name="pk_chukan_reviewers"),
)

chukan_review_decisions = sa.Table(
    "chukan_review_decisions",
    chukan_metadata,
    sa.Column("tenant", TENANT, primary_key=True),
    sa.Column("event_id", UUID_TEXT, primary_key=True),
    sa.Column("request_id", UUID_TEXT, nullable=False),
    sa.Column("staff_id", sa.String(64), nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # ACCEPTED | REJECTED
    sa.Column("reason", sa.Text, nullable=True),  # why it was rejected
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant", "event_id", name="pk_chukan_review_decisions"),
    sa.Index("ix_chukan_review_decisions_request", "tenant", "request_id"),
)

network_metadata = sa.MetaData()

network_effects = service_effects_table(network_metadata)
network_retention_runs = retention_runs_table(network_metadata, "network_retention_runs")  # since 0003
network_runtime = engine_store.define(network_metadata)

network_fugo = sa.Table(
    "network_fugo",
    network_metadata,
    sa.Column("institution", TENANT, primary_key=True),
    sa.Column("fugo", sa.String(64), primary_key=True),
    sa.Column("person_token", sa.String(64), nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("institution", "fugo", name="pk_network_fugo"),
    sa.UniqueConstraint("institution", "person_token", name="uq_network_fugo_person"),
)

network_log = sa.Table(
    "network_log",
    network_metadata,
    sa.Column("request_id", UUID_TEXT, primary_key=True),
    sa.Column("requester", TENANT, nullable=False),
    sa.Column("provider", TENANT, nullable=False),
    sa.Column("info_name_code", sa.String(16), nullable=False),
    sa.Column("items", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("permit_id", UUID_TEXT, nullable=True),
    sa.Column("logged_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("request_id", name="pk_network_log"),
)
