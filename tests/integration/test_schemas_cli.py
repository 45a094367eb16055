"""`schemas register` and `schemas check` against the real registry, as a user runs them."""

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from tests.integration.conftest import Endpoints

pytestmark = pytest.mark.integration


def _cli(endpoints: Endpoints, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "schemas", *args],
        env=endpoints.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "avro"
    source = resources.files("schemas").joinpath("avro")
    target.mkdir()
    for entry in source.iterdir():
        if entry.name.endswith(".avsc"):
            (target / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def _add_field(schema_file: Path, field: dict[str, object]) -> None:
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    schema["fields"].append(field)
    schema_file.write_text(json.dumps(schema, ensure_ascii=False), encoding="utf-8")


def test_register_is_idempotent_and_check_passes(endpoints: Endpoints) -> None:
    first = _cli(endpoints, "register")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _cli(endpoints, "register")
    assert second.returncode == 0, second.stdout + second.stderr
    assert first.stdout == second.stdout  # same ids: nothing new was registered
    check = _cli(endpoints, "check")
    assert check.returncode == 0, check.stdout
    assert "juki.resident-changes.v1-value: BACKWARD compatible" in check.stdout


def test_check_rejects_an_incompatible_change(endpoints: Endpoints, tmp_path: Path) -> None:
    assert _cli(endpoints, "register").returncode == 0
    changed = _copy_schemas(tmp_path)
    # A new field without a default: a new reader cannot read the old records.
    _add_field(changed / "resident_change.avsc", {"name": "ward_code", "type": "string", "doc": "区コード"})
    check = _cli(endpoints, "check", "--schemas-dir", str(changed))
    assert check.returncode == 1
    assert "FAIL juki.resident-changes.v1-value: NOT BACKWARD compatible" in check.stdout
    # Registering it is refused as well, and nothing changes in the registry.
    register = _cli(endpoints, "register", "--schemas-dir", str(changed))
    assert register.returncode == 1
    assert _cli(endpoints, "check").returncode == 0


def test_check_accepts_a_compatible_change(endpoints: Endpoints, tmp_path: Path) -> None:
    assert _cli(endpoints, "register").returncode == 0
    changed = _copy_schemas(tmp_path)
    _add_field(
        changed / "resident_change.avsc",
        {"name": "ward_code", "type": ["null", "string"], "default": None, "doc": "区コード"},
    )
    check = _cli(endpoints, "check", "--schemas-dir", str(changed))
    assert check.returncode == 0, check.stdout
    shutil.rmtree(changed)


def test_unreachable_registry_is_a_clear_error(endpoints: Endpoints) -> None:
    env = endpoints.env()
    env["KENSHIN_SCHEMA_REGISTRY_URL"] = "http://127.0.0.1:9/apis/ccompat/v7"
    run = subprocess.run(
        [sys.executable, "-m", "hub.cli", "schemas", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1
    assert "cannot reach the schema registry" in run.stderr
    assert "Traceback" not in run.stderr
