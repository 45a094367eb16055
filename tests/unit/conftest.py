"""Fixtures shared by the unit tier's provision tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.world import Clock, World

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # the in-process provision world's clock at the start of each test


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The network, the 中間サーバー and its tenants in process (connectors/world.py), on SQLite files of its own."""
    w = World(root=tmp_path, clock=Clock(T0))
    yield w
    w.close()
