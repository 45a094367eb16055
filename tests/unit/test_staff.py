"""職員認証・権限管理: personal accounts, scrypt hashes, sessions, lockout, and a record of every operation."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from hub.staff import MAX_FAILED_LOGINS, StaffError, StaffService, hash_password, verify_password
from schemas.models import OperationOutcome, StaffOperation, StaffOperationType
from sinks.db import make_engine, upgrade

pytestmark = pytest.mark.unit

PASSWORD = "correct-horse-battery"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'staff.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def records() -> list[StaffOperation]:
    return []


@pytest.fixture
def service(engine: Engine, records: list[StaffOperation]) -> StaffService:
    svc = StaffService(engine, "012041", records.append)
    svc.create_account("admin1", "管理者", {"admin"}, PASSWORD, by=None)
    return svc


def test_password_hashes_are_salted_scrypt() -> None:
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b
    assert a.startswith("scrypt$")
    assert PASSWORD not in a
    assert verify_password(PASSWORD, a)
    assert not verify_password("wrong-password-1", a)
    assert not verify_password(PASSWORD, "md5$abc")


def test_first_account_must_be_an_admin_and_later_ones_need_an_admin(engine: Engine) -> None:
    svc = StaffService(engine, "012041", lambda _op: None)
    with pytest.raises(StaffError, match="first account"):
        svc.create_account("h1", "保健", {"health"}, PASSWORD, by=None)
    svc.create_account("admin1", "管理者", {"admin"}, PASSWORD, by=None)
    with pytest.raises(StaffError, match="needs an admin login"):
        svc.create_account("h1", "保健", {"health"}, PASSWORD, by=None)
    admin = svc.login("admin1", PASSWORD)
    svc.create_account("h1", "保健", {"health"}, PASSWORD, by=admin)
    health = svc.login("h1", PASSWORD)
    with pytest.raises(StaffError, match="admin role"):
        svc.create_account("h2", "保健", {"health"}, PASSWORD, by=health)
    with pytest.raises(StaffError, match="never reused"):
        svc.create_account("h1", "別人", {"health"}, PASSWORD, by=admin)
    with pytest.raises(StaffError, match="at least 12"):
        svc.create_account("h3", "保健", {"health"}, "short", by=admin)


def test_login_session_authorize_logout_are_recorded(service: StaffService, records: list[StaffOperation]) -> None:
    session = service.login("admin1", PASSWORD)
    assert service.session(session.token).staff_id == "admin1"
    with pytest.raises(StaffError, match="health role"):
        service.authorize(session.token, "health", StaffOperationType.LIST, "errors")
    service.authorize(session.token, "admin", StaffOperationType.LIST, "accounts")
    service.logout(session.token)
    with pytest.raises(StaffError, match="not logged in"):
        service.session(session.token)
    trail = [(r.staff_id, r.operation, r.outcome, r.target) for r in records]
    assert trail == [
        ("admin1", StaffOperationType.ACCOUNT_CREATED, OperationOutcome.SUCCESS, "admin1"),
        ("admin1", StaffOperationType.LOGIN, OperationOutcome.SUCCESS, None),
        ("admin1", StaffOperationType.LIST, OperationOutcome.DENIED, "errors"),
        ("admin1", StaffOperationType.LIST, OperationOutcome.SUCCESS, "accounts"),
        ("admin1", StaffOperationType.LOGOUT, OperationOutcome.SUCCESS, None),
    ]


def test_failed_logins_are_recorded_and_lock_the_account(service: StaffService, records: list[StaffOperation]) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(StaffError, match="login failed"):
            service.login("admin1", "not-the-password")
    with pytest.raises(StaffError, match="login failed"):
        service.login("admin1", PASSWORD)  # locked now, even with the right password
    failed = [r for r in records if r.operation is StaffOperationType.LOGIN_FAILED]
    assert len(failed) == MAX_FAILED_LOGINS + 1
    assert failed[-1].detail == "locked"
    with pytest.raises(StaffError, match="login failed"):
        service.login("nobody", PASSWORD)  # an unknown id fails the same way
