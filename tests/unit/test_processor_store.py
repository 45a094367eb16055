"""The processors' store: its migrations, and that it may share one database with the sinks' tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from processors.store import PROCESSORS_MIGRATIONS, metadata
from sinks.db import SINKS_MIGRATIONS, current_revision, head_revision, make_engine, require_head, upgrade

pytestmark = pytest.mark.unit


def test_the_processors_store_and_the_sinks_tables_share_one_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        upgrade(engine)
        upgrade(engine, script_location=PROCESSORS_MIGRATIONS)
        upgrade(engine, script_location=PROCESSORS_MIGRATIONS)  # twice: a no-op
        require_head(engine)
        require_head(engine, PROCESSORS_MIGRATIONS)
        assert current_revision(engine, PROCESSORS_MIGRATIONS) == head_revision(PROCESSORS_MIGRATIONS)
        assert current_revision(engine, SINKS_MIGRATIONS) == head_revision(SINKS_MIGRATIONS)
        names = set(sa.inspect(engine).get_table_names())
        assert {t.name for t in metadata.tables.values()} <= names
        assert {"runtime_offsets", "processor_runtime_offsets", "alembic_version_processors"} <= names
    finally:
        engine.dispose()
