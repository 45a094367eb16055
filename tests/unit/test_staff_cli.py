"""The staff CLI without a broker: `staff init` and the admin's account commands, `fiscal-year start` under a
login, and :func:`hub.review.staff_operation` recording each command after it ran, with its real outcome.

The office (database, producer, registry) is replaced by one that records staff operations in a list and writes
to a SQLite file; everything else (argument parsing, session file, the staff service) is the real code.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import hub.cli
import hub.office
import hub.review
from hub.errors import CommandError
from hub.office import Office
from hub.review import staff_operation
from hub.settings import Settings, load_settings
from hub.staff import ANONYMOUS, MAX_FAILED_LOGINS, StaffService, unit_test_password_cost
from schemas.models import OperationOutcome, StaffOperation, StaffOperationType
from schemas.serde import RegistryUnavailable
from sinks.db import make_engine, upgrade
from sinks.tables import staff_operations

pytestmark = pytest.mark.unit

Op = StaffOperationType
Out = OperationOutcome
ADMIN_PW = "admin-long-passphrase"
HEALTH_PW = "health-long-passphrase"


class LocalOffice(Office):
    """:class:`hub.office.Office` without Kafka: staff operations go to ``records``."""

    def __init__(self, settings: Settings, engine: Engine, records: list[StaffOperation]) -> None:
        self.settings = settings
        self.engine = engine
        self.staff = StaffService(engine, settings.tenant, records.append)

    def close(self) -> None:
        pass


def _settings_and_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Engine]:
    """The settings of a state folder and a migrated SQLite database under ``tmp_path``, exported to the CLI."""
    env = {"KENSHIN_STATE_DIR": str(tmp_path / "state"), "KENSHIN_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(env["KENSHIN_DATABASE_URL"])
    upgrade(engine)
    return load_settings(env), engine


@pytest.fixture
def records() -> list[StaffOperation]:
    return []


@pytest.fixture
def local(tmp_path: Path, records: list[StaffOperation], monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalOffice]:
    settings, engine = _settings_and_database(tmp_path, monkeypatch)
    o = LocalOffice(settings, engine, records)

    @contextmanager
    def office(_settings: Settings) -> Iterator[Office]:
        yield o

    monkeypatch.setattr(hub.office, "office", office)
    monkeypatch.setattr(hub.review, "office", office)
    with unit_test_password_cost():
        yield o
    engine.dispose()


def cli(monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return hub.cli.main(list(argv))


def trail(records: list[StaffOperation]) -> list[tuple[str, Op, Out, str | None]]:
    return [(r.staff_id, r.operation, r.outcome, r.target) for r in records]


def test_the_first_admin_needs_staff_init_and_the_admin_runs_the_account_commands(
    local: LocalOffice,
    records: list[StaffOperation],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pw = "--password-stdin"
    # an empty database: `staff add` no longer bootstraps an admin without a login
    assert cli(monkeypatch, "staff", "add", "admin1", "--name", "管理者", "--role", "admin", pw, stdin=ADMIN_PW) == 1
    assert "staff init" in capsys.readouterr().err
    assert not local.staff.has_accounts()
    assert cli(monkeypatch, "staff", "init", "admin1", "--name", "管理者", pw, stdin=ADMIN_PW) == 0
    assert cli(monkeypatch, "staff", "init", "admin2", "--name", "管理者", pw, stdin=ADMIN_PW) == 1
    assert cli(monkeypatch, "login", "admin1", pw, stdin=ADMIN_PW) == 0
    assert cli(monkeypatch, "staff", "add", "h1", "--name", "保健", "--role", "health", pw, stdin=HEALTH_PW) == 0
    # h1 locks itself out; the admin lifts the lock, and manages roles, state and password
    for _ in range(MAX_FAILED_LOGINS):
        assert cli(monkeypatch, "login", "h1", pw, stdin="not-the-password") == 1
    assert cli(monkeypatch, "login", "h1", pw, stdin=HEALTH_PW) == 1
    assert cli(monkeypatch, "staff", "unlock", "h1") == 0
    assert cli(monkeypatch, "staff", "role", "h1", "--role", "health", "--role", "reviewer") == 0
    assert cli(monkeypatch, "staff", "disable", "h1") == 0
    assert cli(monkeypatch, "staff", "enable", "h1") == 0
    assert cli(monkeypatch, "staff", "set-password", "h1", pw, stdin="set-by-the-admin-1") == 0
    capsys.readouterr()
    assert cli(monkeypatch, "staff", "list") == 0
    listing = capsys.readouterr().out
    assert "h1" in listing
    assert "health,reviewer" in listing
    # h1 changes its own password with the old one (no admin session needed: the old password is the proof)
    assert cli(monkeypatch, "staff", "password", "h1", pw, stdin="set-by-the-admin-1\n" + HEALTH_PW) == 0
    assert cli(monkeypatch, "login", "h1", pw, stdin=HEALTH_PW) == 0
    assert cli(monkeypatch, "staff", "unlock", "admin1") == 1  # h1 is no admin
    ops = [t for t in trail(records) if t[1] not in (Op.LOGIN, Op.LOGIN_FAILED)]
    assert ops == [
        (ANONYMOUS, Op.ACCOUNT_CREATED, Out.DENIED, "admin1"),
        ("admin1", Op.INIT, Out.SUCCESS, "admin1"),
        ("admin2", Op.INIT, Out.DENIED, "admin2"),
        ("admin1", Op.ACCOUNT_CREATED, Out.SUCCESS, "h1"),
        ("admin1", Op.ACCOUNT_UNLOCK, Out.SUCCESS, "h1"),
        ("admin1", Op.ROLE_CHANGE, Out.SUCCESS, "h1"),
        ("admin1", Op.ACCOUNT_DISABLE, Out.SUCCESS, "h1"),
        ("admin1", Op.ACCOUNT_ENABLE, Out.SUCCESS, "h1"),
        ("admin1", Op.PASSWORD_CHANGE, Out.SUCCESS, "h1"),
        ("admin1", Op.LIST, Out.SUCCESS, "staff accounts"),
        ("h1", Op.PASSWORD_CHANGE, Out.SUCCESS, "h1"),
        ("h1", Op.ACCOUNT_UNLOCK, Out.DENIED, "admin1"),
    ]


def _health_login(local: LocalOffice, monkeypatch: pytest.MonkeyPatch) -> None:
    local.staff.init_admin("admin1", "管理者", ADMIN_PW)
    admin = local.staff.login("admin1", ADMIN_PW)
    local.staff.create_account("h1", "保健", {"health"}, HEALTH_PW, by=admin)
    assert cli(monkeypatch, "login", "h1", "--password-stdin", stdin=HEALTH_PW) == 0


def test_fiscal_year_start_needs_a_health_login_and_is_recorded_after_it_ran(
    local: LocalOffice, records: list[StaffOperation], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[int, int]] = []  # (year, how many records existed when the year was started)

    def start_year(_settings: Settings, year: int) -> None:
        started.append((year, len(records)))
        if year == 2099:
            raise CommandError("the fiscal-year command was not delivered")

    monkeypatch.setattr(hub.cli, "_start_year", start_year)
    assert cli(monkeypatch, "fiscal-year", "start", "2025") == 1  # nobody logged in
    assert started == []
    assert trail(records)[-1] == (ANONYMOUS, Op.FISCAL_YEAR_START, Out.DENIED, "fiscal year 2025")
    _health_login(local, monkeypatch)
    count = len(records)
    assert cli(monkeypatch, "fiscal-year", "start", "2025") == 0
    assert started == [(2025, count)]  # the record comes after the work
    assert trail(records)[-1] == ("h1", Op.FISCAL_YEAR_START, Out.SUCCESS, "fiscal year 2025")
    assert cli(monkeypatch, "fiscal-year", "start", "2099") == 1
    assert trail(records)[-1] == ("h1", Op.FISCAL_YEAR_START, Out.FAILED, "fiscal year 2099")
    assert records[-1].detail == "the fiscal-year command was not delivered"
    assert cli(monkeypatch, "login", "admin1", "--password-stdin", stdin=ADMIN_PW) == 0
    assert cli(monkeypatch, "fiscal-year", "start", "2026") == 1  # an admin is not health staff
    assert trail(records)[-1] == ("admin1", Op.FISCAL_YEAR_START, Out.DENIED, "fiscal year 2026")
    assert [y for y, _ in started] == [2025, 2099]


def test_staff_operation_records_denied_success_and_failure_as_they_went(
    local: LocalOffice, records: list[StaffOperation], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CommandError, match="not logged in"), staff_operation(local, "health", Op.LIST, "errors"):
        pytest.fail("no work without a session")
    assert records[-1].detail == "no session"
    _health_login(local, monkeypatch)
    with staff_operation(local, "health", Op.LIST, "errors") as session:
        assert session.staff_id == "h1"
        assert trail(records)[-1][1] is Op.LOGIN  # not yet recorded
    assert trail(records)[-1] == ("h1", Op.LIST, Out.SUCCESS, "errors")
    with pytest.raises(CommandError, match="nothing imported"), staff_operation(local, "health", Op.OTHER, "x"):
        raise CommandError("a 副本 carries a 宛名番号; nothing imported")
    assert (trail(records)[-1], records[-1].detail) == (
        ("h1", Op.OTHER, Out.FAILED, "x"),
        "a 副本 carries a 宛名番号; nothing imported",
    )
    local.session_file().write_text("a-token-nobody-issued")
    with pytest.raises(CommandError, match="not logged in"), staff_operation(local, "health", Op.LIST, "errors"):
        pytest.fail("no work with an unknown session")
    assert (trail(records)[-1], records[-1].detail) == ((ANONYMOUS, Op.LIST, Out.DENIED, "errors"), "unknown session")


def test_the_review_commands_record_a_denied_attempt_and_do_no_work(
    local: LocalOffice, records: list[StaffOperation], monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoServer:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the 中間サーバー was used ({name}) without a session")

    monkeypatch.setattr(hub.review, "chukan_engine", lambda _s: make_engine("sqlite://"))
    monkeypatch.setattr(hub.review, "chukan_server", lambda _s: NoServer())
    assert cli(monkeypatch, "review", "approve", "req-1") == 1
    assert cli(monkeypatch, "retention", "run") == 1
    assert cli(monkeypatch, "connector", "import-offline", "medium.json") == 1
    assert trail(records) == [
        (ANONYMOUS, Op.APPROVE, Out.DENIED, "req-1"),
        (ANONYMOUS, Op.RETENTION_PURGE, Out.DENIED, "retention run"),
        (ANONYMOUS, Op.OTHER, Out.DENIED, "import-offline medium.json"),
    ]


def test_a_registry_or_broker_outage_is_a_clear_error_and_the_sql_record_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audit trail is written to SQL first; when the topic cannot take the record (registry or broker down),
    the command says so and exits 1 instead of dying with a traceback."""
    settings, engine = _settings_and_database(tmp_path, monkeypatch)

    class DownOffice(Office):
        def __init__(self) -> None:
            self.settings = settings
            self.engine = engine
            self.staff = StaffService(engine, settings.tenant, self._record)

        def publish(self, outputs: object, failure: str) -> None:
            raise RegistryUnavailable("schema registry failed to answer subject 'chukan.staff-operations.v1-value'")

        def close(self) -> None:
            pass

    @contextmanager
    def office(_settings: Settings) -> Iterator[Office]:
        yield DownOffice()

    monkeypatch.setattr(hub.review, "office", office)
    try:
        with unit_test_password_cost():
            assert (
                cli(monkeypatch, "staff", "init", "admin1", "--name", "管理者", "--password-stdin", stdin=ADMIN_PW) == 1
            )
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert "registry" in err
        assert "run the command again" in err
        with engine.connect() as conn:
            rows = conn.execute(sa.select(staff_operations.c.staff_id, staff_operations.c.operation)).all()
        assert [tuple(r) for r in rows] == [("admin1", "INIT")]
    finally:
        engine.dispose()
