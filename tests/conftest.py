"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

import os
import shutil

import pytest


def prometheus_tool(name: str) -> str:
    """Path of a Prometheus binary (``prometheus``, ``promtool``; Debian package ``prometheus``).

    Missing, the test is skipped on a developer's machine but fails in CI (``CI`` set), where .ci/run installs it:
    these tests must never be skipped silently there.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (apt-get install prometheus; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    return prometheus_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_server_bin() -> str:
    return prometheus_tool("prometheus")
