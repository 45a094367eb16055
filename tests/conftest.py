"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

import os
import shutil

import pytest


def needed(what: str, found: bool, install: str) -> None:
    """A tool a test needs: missing, the test is skipped on a developer's machine but fails in CI (``CI`` set),
    where .ci/run installs it (``install`` says how): these tests must never be skipped silently there.
    """
    if found:
        return
    message = f"{what} is not installed ({install}; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def prometheus_tool(name: str) -> str:
    """Path of a Prometheus binary (``prometheus``, ``promtool``; Debian package ``prometheus``)."""
    path = shutil.which(name)
    needed(name, path is not None, "apt-get install prometheus")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return prometheus_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_server_bin() -> str:
    return prometheus_tool("prometheus")
