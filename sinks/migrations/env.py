"""Alembic environment of the sinks' tables.

Online migrations run on the connection that :func:`sinks.db.upgrade` passes in ``config.attributes``; there is no
``alembic.ini`` and no URL in this file. Offline mode (``--sql``) renders the SQL for the URL in the
``sqlalchemy.url`` option, for DBAs who apply scripts by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from sinks.tables import metadata

VERSION_TABLE = "alembic_version"


def run_offline() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need the sqlalchemy.url option")
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run the sinks' migrations through sinks.db.upgrade(engine), which passes a connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
