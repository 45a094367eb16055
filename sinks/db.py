"""Engines, migrations and the one upsert helper of the sinks (SQLite by default, PostgreSQL supported).

* :func:`make_engine` builds an engine from a URL: SQLite gets WAL, foreign keys, a busy timeout and
  ``BEGIN IMMEDIATE`` transactions; PostgreSQL goes through psycopg 3 (``postgresql+psycopg://``).
* :func:`upgrade` runs the Alembic migrations of :mod:`sinks.migrations` to head, without an ``alembic.ini``.
  Tables come from migrations only; :func:`require_head` refuses to write to a database that is behind.
* :func:`upsert` is ``INSERT … ON CONFLICT DO UPDATE`` for both dialects, optionally guarded by a version column so
  that a replayed older record never overwrites a newer one; :func:`insert_or_ignore` is ``ON CONFLICT DO NOTHING``.

Engines are created with ``hide_parameters=True``: SQL errors never carry row values (personal data) into logs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement

if TYPE_CHECKING:
    from hub.pii import PiiKeys

SQLITE_BUSY_TIMEOUT_MS = 30_000
# pg_advisory_xact_lock key that serialises concurrent `upgrade` runs on one PostgreSQL database ("kenshin" in hex).
_MIGRATION_LOCK_KEY = 0x6B656E7368696E

Row = Mapping[str, Any]
Excluded = ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]
Guard = Callable[[sa.Table, Excluded], ColumnElement[bool]]
Assign = Callable[[sa.Table, Excluded], Mapping[str, ColumnElement[Any]]]


class DatabaseError(RuntimeError):
    """A database the sinks cannot use (unsupported dialect, migrations not applied)."""


# --- engines -------------------------------------------------------------------------------------------------


def normalize_url(url: str) -> sa.URL:
    """Parse ``url``; plain ``postgresql://``/``postgres://`` URLs get the psycopg 3 driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif parsed.drivername != "postgresql+psycopg":
            raise DatabaseError(
                f"PostgreSQL is supported through psycopg 3 only (postgresql+psycopg://), not {parsed.drivername}"
            )
    elif backend != "sqlite":
        raise DatabaseError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")
    return parsed


def make_engine(url: str, **engine_options: Any) -> Engine:
    """An engine for ``url`` (SQLite file or PostgreSQL through psycopg 3); never logs row values."""
    parsed = normalize_url(url)
    options: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "postgresql":
        options["pool_pre_ping"] = True
    options.update(engine_options)
    engine = sa.create_engine(parsed, **options)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys and a busy timeout on every connection; transactions start with ``BEGIN IMMEDIATE``.

    pysqlite's own transaction handling starts transactions lazily before the first write, so reads at the start
    of a transaction would see another snapshot than its writes. Following SQLAlchemy's pysqlite recipe, the driver
    is put in autocommit mode and SQLAlchemy emits the ``BEGIN`` itself; ``IMMEDIATE`` takes the write lock up front
    so that two writers wait on each other (busy timeout) instead of failing to upgrade a read lock.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS:d}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # Deleted rows (outbox records, retention's deletions) hold personal data: overwrite them, not just unlink.
            cursor.execute("PRAGMA secure_delete = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# --- migrations ----------------------------------------------------------------------------------------------


SINKS_MIGRATIONS = "sinks:migrations"


def alembic_config(url: str | None = None, script_location: str = SINKS_MIGRATIONS) -> Config:
    """An Alembic configuration built in code: the scripts are a migrations package (the sinks' by default)."""
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(script_location: str = SINKS_MIGRATIONS) -> str:
    head = ScriptDirectory.from_config(alembic_config(script_location=script_location)).get_current_head()
    if head is None:
        raise DatabaseError(f"the migrations {script_location} have no head revision")
    return head


# The version table of each migration set that may share a database with another (default: alembic_version).
VERSION_TABLES = {"processors:migrations": "alembic_version_processors"}


def current_revision(engine: Engine, script_location: str = SINKS_MIGRATIONS) -> str | None:
    version_table = VERSION_TABLES.get(script_location, "alembic_version")
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": version_table}).get_current_revision()


def upgrade(
    engine: Engine, revision: str = "head", script_location: str = SINKS_MIGRATIONS, *, pii_keys: PiiKeys | None = None
) -> None:
    """Run the migrations up to ``revision`` in one transaction (PostgreSQL: serialised by an advisory lock).

    Migrations that seal stored 個人番号 use ``pii_keys``, else :func:`hub.pii.default_keys` (the settings' key file).
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        cfg = alembic_config(script_location=script_location)
        cfg.attributes["connection"] = conn
        cfg.attributes["pii_keys"] = pii_keys
        command.upgrade(cfg, revision)


def require_head(engine: Engine, script_location: str = SINKS_MIGRATIONS) -> None:
    """Raise :class:`DatabaseError` unless the database is migrated to the head revision."""
    current = current_revision(engine, script_location)
    head = head_revision(script_location)
    if current != head:
        raise DatabaseError(
            f"the database is at migration {current or '(none)'}, {script_location} needs {head}: run the "
            "migrations (`kenshin-hub db upgrade`, or the service's start-up) first"
        )


def run_migration_env(metadata: sa.MetaData, version_table: str = "alembic_version") -> None:
    """The body of every ``env.py`` of the project's migration packages (called by Alembic).

    Online migrations run on the connection that :func:`upgrade` passes in ``config.attributes``; there is no
    ``alembic.ini`` and no URL in the packages. Offline mode (``--sql``) renders the SQL for the URL in the
    ``sqlalchemy.url`` option, for DBAs who apply scripts by hand.
    """
    from alembic import context

    if context.is_offline_mode():
        url = context.config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("offline migrations need the sqlalchemy.url option")
        context.configure(
            url=url,
            target_metadata=metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            version_table=version_table,
        )
    else:
        connection = context.config.attributes.get("connection")
        if not isinstance(connection, Connection):
            raise RuntimeError("run the migrations through sinks.db.upgrade(engine), which passes a connection")
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
    with context.begin_transaction():
        context.run_migrations()


# --- writes --------------------------------------------------------------------------------------------------


def _insert(conn: Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise DatabaseError(f"no upsert for the {name} dialect")


def _dedupe(rows: Sequence[Row], key_columns: Sequence[str], version_column: str | None) -> list[Row]:
    """One row per key: the highest version (the later row on a tie), in first-seen key order.

    One statement may not touch a row twice on PostgreSQL (``ON CONFLICT DO UPDATE command cannot affect row a
    second time``), so rows sharing a key are reduced here.
    """
    kept: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row[c] for c in key_columns)
        old = kept.get(key)
        if old is None or version_column is None or row[version_column] >= old[version_column]:
            kept[key] = row
    return list(kept.values())


def upsert(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Row],
    key_columns: Sequence[str],
    version_column: str | None = None,
    *,
    guard: Guard | None = None,
    assign: Assign | None = None,
) -> int:
    """``INSERT … ON CONFLICT (key_columns) DO UPDATE`` of ``rows``; returns the number of rows sent.

    With ``version_column``, a stored row is only overwritten when the incoming version is greater than or equal
    to the stored one, so replaying an old record is harmless. ``guard`` adds any other monotonic condition
    (``guard(table, excluded)`` is the ``WHERE`` of the update); ``assign(table, excluded)`` gives the value some
    columns are updated to instead of the incoming one (keep a stored value, say). Every row must carry the same
    columns.
    """
    if not rows:
        return 0
    batch = _dedupe(rows, key_columns, version_column)
    columns = list(batch[0])
    stmt = _insert(conn, table)
    updates: dict[str, Any] = {c: stmt.excluded[c] for c in columns if c not in key_columns}
    if assign is not None:
        updates.update(assign(table, stmt.excluded))
    conditions: list[ColumnElement[bool]] = []
    if version_column is not None:
        conditions.append(table.c[version_column] <= stmt.excluded[version_column])
    if guard is not None:
        conditions.append(guard(table, stmt.excluded))
    where = sa.and_(*conditions) if conditions else None
    conn.execute(stmt.on_conflict_do_update(index_elements=list(key_columns), set_=updates, where=where), batch)
    return len(batch)


def insert_or_ignore(conn: Connection, table: sa.Table, rows: Sequence[Row], key_columns: Sequence[str]) -> int:
    """``INSERT … ON CONFLICT (key_columns) DO NOTHING``: the first record of a key wins."""
    if not rows:
        return 0
    kept: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        kept.setdefault(tuple(row[c] for c in key_columns), row)
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=list(key_columns))
    conn.execute(stmt, list(kept.values()))
    return len(kept)
