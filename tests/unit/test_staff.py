"""職員認証・権限管理: personal accounts, scrypt hashes, sessions, lockout, and a record of every operation."""

import io
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import fastavro
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import hub.staff as staff_module
from hub.staff import (
    ANONYMOUS,
    MAX_FAILED_LOGINS,
    PASSWORD_COST,
    ScryptCost,
    Session,
    StaffError,
    StaffService,
    hash_password,
    needs_rehash,
    unit_test_password_cost,
    verify_password,
)
from schemas.models import OperationOutcome, StaffOperation, StaffOperationType
from schemas.record import now_utc
from sinks.db import make_engine, upgrade
from sinks.tables import staff_accounts, staff_sessions

pytestmark = pytest.mark.unit

PASSWORD = "correct-horse-battery"
OTHER_PASSWORD = "another-long-passphrase"
Op = StaffOperationType
Out = OperationOutcome


@pytest.fixture(autouse=True)
def cheap_hashes() -> Iterator[ScryptCost]:
    """The explicit test hook: unit tests hash at N=2^4 instead of the production N=2^17."""
    with unit_test_password_cost() as cost:
        yield cost


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
    svc.init_admin("admin1", "管理者", PASSWORD)
    return svc


def trail(records: list[StaffOperation]) -> list[tuple[str, Op, Out, str | None]]:
    return [(r.staff_id, r.operation, r.outcome, r.target) for r in records]


def expire(engine: Engine, session: Session) -> None:
    with engine.begin() as conn:
        conn.execute(staff_sessions.update().where(staff_sessions.c.staff_id == session.staff_id)
                     .values(expires_at=now_utc() - timedelta(seconds=1)))  # fmt: skip


def stored_hash(engine: Engine, staff_id: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.select(staff_accounts.c.password_hash).where(staff_accounts.c.staff_id == staff_id))
            .scalar_one()
        )  # fmt: skip


# --- hashes --------------------------------------------------------------------------------------------------


def test_password_hashes_are_salted_scrypt(cheap_hashes: ScryptCost) -> None:
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b
    assert a.startswith(f"scrypt${cheap_hashes.n}$8$1$")
    assert PASSWORD not in a
    assert verify_password(PASSWORD, a)
    assert not verify_password("wrong-password-1", a)
    assert not verify_password(PASSWORD, "md5$abc")
    assert not verify_password(PASSWORD, "scrypt$3$8$1$AAAA$AAAA")  # N not a power of two
    assert not verify_password(PASSWORD, f"scrypt${2**30}$8$1$AAAA$AAAA")  # beyond the limit: refused, not computed


def test_production_cost_is_scrypt_n_2_17_r_8_p_1_and_hashlib_gets_the_memory_for_it() -> None:
    assert (PASSWORD_COST.n, PASSWORD_COST.r, PASSWORD_COST.p) == (2**17, 8, 1)
    assert PASSWORD_COST.maxmem() > 128 * 8 * 2**17  # hashlib's default (32 MiB) would refuse N=2^17, r=8
    stored = hash_password(PASSWORD, PASSWORD_COST)  # one real production hash: slow-ish, but it must work
    assert stored.startswith("scrypt$131072$8$1$")
    assert verify_password(PASSWORD, stored)
    assert not needs_rehash(stored)


def test_the_cost_is_production_outside_the_test_hook_which_refuses_to_run_outside_pytest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    staff_module_cost = staff_module.password_cost()
    assert staff_module_cost.n == 2**4  # inside the autouse hook
    monkeypatch.delitem(sys.modules, "pytest")
    with pytest.raises(RuntimeError, match="unit-test hook"), unit_test_password_cost():
        pass
    monkeypatch.undo()
    with unit_test_password_cost(n=2**5):
        assert staff_module.password_cost().n == 2**5
    assert staff_module.password_cost() == staff_module_cost


def test_old_hashes_still_verify_and_are_rehashed_on_a_successful_login(
    service: StaffService, engine: Engine, records: list[StaffOperation]
) -> None:
    old = hash_password(PASSWORD, ScryptCost(n=2**3, r=8, p=1))  # below the current (test) cost
    with engine.begin() as conn:
        conn.execute(staff_accounts.update().values(password_hash=old))
    assert needs_rehash(old)
    with pytest.raises(StaffError):
        service.login("admin1", "not-the-password")
    assert stored_hash(engine, "admin1") == old  # a failed login changes nothing
    service.login("admin1", PASSWORD)
    new = stored_hash(engine, "admin1")
    assert new != old
    assert new.startswith(f"scrypt${staff_module.password_cost().n}$")
    assert not needs_rehash(new)
    assert records[-1].operation is Op.LOGIN
    assert records[-1].detail == "password re-hashed at the current cost"
    service.login("admin1", PASSWORD)
    assert stored_hash(engine, "admin1") == new  # at the current cost: left alone


# --- the first admin -----------------------------------------------------------------------------------------


def test_an_empty_database_gets_its_first_admin_only_through_an_explicit_recorded_init(
    engine: Engine, records: list[StaffOperation]
) -> None:
    svc = StaffService(engine, "012041", records.append)
    with pytest.raises(StaffError, match="staff init"):
        svc.create_account("admin1", "管理者", {"admin"}, PASSWORD, by=None)  # no bootstrap without init
    assert not svc.has_accounts()
    svc.init_admin("admin1", "管理者", PASSWORD)
    with pytest.raises(StaffError, match="exist already"):
        svc.init_admin("admin2", "管理者", PASSWORD)  # init is for an empty database only
    with pytest.raises(StaffError, match="needs an admin login"):
        svc.create_account("h1", "保健", {"health"}, PASSWORD, by=None)
    with pytest.raises(StaffError, match="at least 12"):
        StaffService(make_engine("sqlite://"), "012041", records.append).init_admin("a", "x", "short")
    assert trail(records) == [
        (ANONYMOUS, Op.ACCOUNT_CREATED, Out.DENIED, "admin1"),
        ("admin1", Op.INIT, Out.SUCCESS, "admin1"),
        ("admin2", Op.INIT, Out.DENIED, "admin2"),
        (ANONYMOUS, Op.ACCOUNT_CREATED, Out.DENIED, "h1"),
        ("a", Op.INIT, Out.FAILED, "a"),
    ]
    assert records[1].detail == "first admin, roles=admin"


def test_later_accounts_need_an_authenticated_admin_and_failures_are_recorded(
    service: StaffService, engine: Engine, records: list[StaffOperation]
) -> None:
    admin = service.login("admin1", PASSWORD)
    service.create_account("h1", "保健", {"health"}, PASSWORD, by=admin)
    health = service.login("h1", PASSWORD)
    with pytest.raises(StaffError, match="admin role"):
        service.create_account("h2", "保健", {"health"}, PASSWORD, by=health)
    with pytest.raises(StaffError, match="never reused"):
        service.create_account("h1", "別人", {"health"}, PASSWORD, by=admin)
    with pytest.raises(StaffError, match="at least 12"):
        service.create_account("h3", "保健", {"health"}, "short", by=admin)
    forged = Session("forged-token", "admin1", frozenset({"admin"}), admin.expires_at)
    with pytest.raises(StaffError, match="not logged in"):
        service.create_account("h4", "保健", {"health"}, PASSWORD, by=forged)  # the token is what counts
    expire(engine, admin)
    with pytest.raises(StaffError, match="expired"):
        service.create_account("h5", "保健", {"health"}, PASSWORD, by=admin)
    created = [t for t in trail(records) if t[1] is Op.ACCOUNT_CREATED]
    assert created == [
        ("admin1", Op.ACCOUNT_CREATED, Out.SUCCESS, "h1"),
        ("h1", Op.ACCOUNT_CREATED, Out.DENIED, "h2"),
        ("admin1", Op.ACCOUNT_CREATED, Out.FAILED, "h1"),
        ("admin1", Op.ACCOUNT_CREATED, Out.FAILED, "h3"),
        (ANONYMOUS, Op.ACCOUNT_CREATED, Out.DENIED, "h4"),
        ("admin1", Op.ACCOUNT_CREATED, Out.DENIED, "h5"),
    ]
    assert [r.detail for r in records if r.operation is Op.ACCOUNT_CREATED][-2:] == [
        "unknown session",
        "session expired",
    ]


# --- login ---------------------------------------------------------------------------------------------------


def test_login_session_authorize_logout_are_recorded(service: StaffService, records: list[StaffOperation]) -> None:
    session = service.login("admin1", PASSWORD)
    assert service.session(session.token).staff_id == "admin1"
    with pytest.raises(StaffError, match="health role"):
        service.authorize(session.token, "health", Op.LIST, "errors")
    service.authorize(session.token, "admin", Op.LIST, "accounts")
    service.logout(session.token)
    with pytest.raises(StaffError, match="not logged in"):
        service.session(session.token)
    assert trail(records) == [
        ("admin1", Op.INIT, Out.SUCCESS, "admin1"),
        ("admin1", Op.LOGIN, Out.SUCCESS, None),
        ("admin1", Op.LIST, Out.DENIED, "errors"),
        ("admin1", Op.LIST, Out.SUCCESS, "accounts"),
        ("admin1", Op.LOGOUT, Out.SUCCESS, None),
        (ANONYMOUS, Op.OTHER, Out.DENIED, None),  # the ended session, tried again
    ]


def test_failed_logins_are_recorded_and_lock_the_account(service: StaffService, records: list[StaffOperation]) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(StaffError, match="login failed"):
            service.login("admin1", "not-the-password")
    with pytest.raises(StaffError, match="login failed"):
        service.login("admin1", PASSWORD)  # locked now, even with the right password
    failed = [r for r in records if r.operation is Op.LOGIN_FAILED]
    assert len(failed) == MAX_FAILED_LOGINS + 1
    assert failed[-1].detail == "locked"
    with pytest.raises(StaffError, match="login failed"):
        service.login("nobody", PASSWORD)  # an unknown id fails the same way
    assert records[-1].detail == "unknown staff id"


def test_an_unknown_id_costs_the_same_hash_work_and_gets_the_same_message(
    service: StaffService, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = service.login("admin1", PASSWORD)
    service.create_account("locked1", "施錠", {"health"}, PASSWORD, by=admin)
    with service.engine.begin() as conn:
        conn.execute(staff_accounts.update().where(staff_accounts.c.staff_id == "locked1").values(locked=True))
    calls: list[ScryptCost] = []
    real = staff_module._scrypt

    def counting(password: str, salt: bytes, cost: ScryptCost) -> bytes:
        calls.append(cost)
        return real(password, salt, cost)

    monkeypatch.setattr(staff_module, "_scrypt", counting)
    work: dict[str, list[ScryptCost]] = {}
    messages = set()
    for staff_id in ("admin1", "nobody", "locked1"):
        calls.clear()
        with pytest.raises(StaffError) as exc:
            service.login(staff_id, "not-the-password")
        work[staff_id] = list(calls)
        messages.add(str(exc.value))
    assert work["nobody"] == work["admin1"] == work["locked1"] == [staff_module.password_cost()]
    assert messages == {"login failed"}


# --- lockout remedies: unlock, disable/enable, roles, passwords ----------------------------------------------


def test_an_admin_unlocks_a_locked_account(service: StaffService, records: list[StaffOperation]) -> None:
    admin = service.login("admin1", PASSWORD)
    service.create_account("h1", "保健", {"health"}, PASSWORD, by=admin)
    health = service.login("h1", PASSWORD)
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(StaffError):
            service.login("h1", "not-the-password")
    with pytest.raises(StaffError, match="not logged in"):
        service.session(health.token)  # a locked account's sessions stop working
    with pytest.raises(StaffError, match="not logged in"):
        service.unlock(health, "h1")  # not by the locked account itself
    service.unlock(admin, "h1")
    service.login("h1", PASSWORD)
    with pytest.raises(StaffError, match="not locked"):
        service.unlock(admin, "h1")
    with pytest.raises(StaffError, match="no staff account"):
        service.unlock(admin, "nobody")
    unlocks = [(t, r.detail) for t, r in zip(trail(records), records, strict=True) if t[1] is Op.ACCOUNT_UNLOCK]
    assert unlocks == [
        (("h1", Op.ACCOUNT_UNLOCK, Out.DENIED, "h1"), "account locked"),
        (("admin1", Op.ACCOUNT_UNLOCK, Out.SUCCESS, "h1"), f"was locked after {MAX_FAILED_LOGINS} failed logins"),
        (("admin1", Op.ACCOUNT_UNLOCK, Out.FAILED, "h1"), "h1 is not locked"),
        (("admin1", Op.ACCOUNT_UNLOCK, Out.FAILED, "nobody"), "no staff account nobody"),
    ]


def test_an_admin_disables_and_enables_an_account_but_never_the_last_admin(
    service: StaffService, records: list[StaffOperation]
) -> None:
    admin = service.login("admin1", PASSWORD)
    service.create_account("h1", "保健", {"health"}, PASSWORD, by=admin)
    health = service.login("h1", PASSWORD)
    service.set_disabled(admin, "h1", True)
    with pytest.raises(StaffError, match="not logged in"):
        service.session(health.token)  # its sessions ended
    with pytest.raises(StaffError, match="login failed"):
        service.login("h1", PASSWORD)
    assert records[-1].detail == "disabled"
    with pytest.raises(StaffError, match="disabled already"):
        service.set_disabled(admin, "h1", True)
    service.set_disabled(admin, "h1", False)
    service.login("h1", PASSWORD)
    with pytest.raises(StaffError, match="no enabled, unlocked admin"):
        service.set_disabled(admin, "admin1", True)
    ops = [t for t in trail(records) if t[1] in (Op.ACCOUNT_DISABLE, Op.ACCOUNT_ENABLE)]
    assert ops == [
        ("admin1", Op.ACCOUNT_DISABLE, Out.SUCCESS, "h1"),
        ("admin1", Op.ACCOUNT_DISABLE, Out.FAILED, "h1"),
        ("admin1", Op.ACCOUNT_ENABLE, Out.SUCCESS, "h1"),
        ("admin1", Op.ACCOUNT_DISABLE, Out.FAILED, "admin1"),
    ]
    states = {a.staff_id: (a.disabled, a.locked) for a in service.accounts(admin)}
    assert states == {"admin1": (False, False), "h1": (False, False)}
    assert trail(records)[-1] == ("admin1", Op.LIST, Out.SUCCESS, "staff accounts")


def test_an_admin_changes_roles_effective_at_once_but_keeps_an_admin(
    service: StaffService, records: list[StaffOperation]
) -> None:
    admin = service.login("admin1", PASSWORD)
    service.create_account("h1", "保健", {"health"}, PASSWORD, by=admin)
    health = service.login("h1", PASSWORD)
    with pytest.raises(StaffError, match="reviewer role"):
        service.authorize(health.token, "reviewer", Op.LIST, "held provisions")
    with pytest.raises(StaffError, match="admin role"):
        service.set_roles(health, "h1", {"admin"})
    service.set_roles(admin, "h1", {"health", "reviewer"})
    service.authorize(health.token, "reviewer", Op.LIST, "held provisions")  # the same session, the new roles
    with pytest.raises(StaffError, match="roles must be among"):
        service.set_roles(admin, "h1", {"root"})
    with pytest.raises(StaffError, match="no enabled, unlocked admin"):
        service.set_roles(admin, "admin1", {"health"})
    changes = [(t, r.detail) for t, r in zip(trail(records), records, strict=True) if t[1] is Op.ROLE_CHANGE]
    assert changes == [
        (("h1", Op.ROLE_CHANGE, Out.DENIED, "h1"), "needs role admin"),
        (("admin1", Op.ROLE_CHANGE, Out.SUCCESS, "h1"), "roles=health,reviewer (was health)"),
        (("admin1", Op.ROLE_CHANGE, Out.FAILED, "admin1"), "that would leave no enabled, unlocked admin account"),
    ]


def test_an_admin_sets_a_password_and_staff_change_their_own_with_the_old_one(
    service: StaffService, engine: Engine, records: list[StaffOperation]
) -> None:
    admin = service.login("admin1", PASSWORD)
    service.create_account("h1", "保健", {"health"}, PASSWORD, by=admin)
    health = service.login("h1", PASSWORD)
    service.set_password(admin, "h1", OTHER_PASSWORD)
    with pytest.raises(StaffError, match="not logged in"):
        service.session(health.token)  # a password set by an admin ends the account's sessions
    with pytest.raises(StaffError, match="login failed"):
        service.login("h1", PASSWORD)
    with pytest.raises(StaffError, match="needs the old one"):
        service.set_password(admin, "admin1", OTHER_PASSWORD)  # one's own: only with the old password
    with pytest.raises(StaffError, match="admin role"):
        service.set_password(service.login("h1", OTHER_PASSWORD), "admin1", OTHER_PASSWORD)
    with pytest.raises(StaffError, match="login failed"):
        service.change_password("h1", "not-the-password", PASSWORD)
    with pytest.raises(StaffError, match="at least 12"):
        service.change_password("h1", OTHER_PASSWORD, "short")
    service.change_password("h1", OTHER_PASSWORD, PASSWORD)
    service.login("h1", PASSWORD)
    with engine.connect() as conn:
        failed = conn.execute(sa.select(staff_accounts.c.failed_logins).where(staff_accounts.c.staff_id == "h1"))
        assert failed.scalar_one() == 0
    changes = [(t, r.detail) for t, r in zip(trail(records), records, strict=True) if t[1] is Op.PASSWORD_CHANGE]
    assert changes == [
        (("admin1", Op.PASSWORD_CHANGE, Out.SUCCESS, "h1"), "set by an admin"),
        (("admin1", Op.PASSWORD_CHANGE, Out.DENIED, "admin1"), "own password: needs the old one"),
        (("h1", Op.PASSWORD_CHANGE, Out.DENIED, "admin1"), "needs role admin"),
        (("h1", Op.PASSWORD_CHANGE, Out.DENIED, "h1"), "bad password"),
        (("h1", Op.PASSWORD_CHANGE, Out.FAILED, "h1"), "a password has at least 12 characters"),
        (("h1", Op.PASSWORD_CHANGE, Out.SUCCESS, "h1"), "own, with the old password"),
    ]


def test_a_wrong_old_password_counts_towards_the_lock(service: StaffService) -> None:
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(StaffError):
            service.change_password("admin1", "not-the-password", OTHER_PASSWORD)
    with pytest.raises(StaffError, match="login failed"):
        service.login("admin1", PASSWORD)  # no way around the lock through the password change


# --- operations: recorded after the work, with the real outcome ----------------------------------------------


def test_an_operation_is_recorded_after_its_work_with_its_real_outcome(
    service: StaffService, records: list[StaffOperation]
) -> None:
    admin = service.login("admin1", PASSWORD)
    before = len(records)
    with service.operation(admin.token, "admin", Op.RETENTION_PURGE, "retention run") as session:
        assert session.staff_id == "admin1"
        assert len(records) == before  # nothing recorded yet: the work has not happened
    assert trail(records)[-1] == ("admin1", Op.RETENTION_PURGE, Out.SUCCESS, "retention run")
    with pytest.raises(ValueError, match="boom"), service.operation(admin.token, "admin", Op.OFFLINE_EXPORT, "f"):
        raise ValueError("boom 個人情報")
    assert trail(records)[-1] == ("admin1", Op.OFFLINE_EXPORT, Out.FAILED, "f")
    assert records[-1].detail == "error: ValueError"  # not the message: it might carry personal data
    ran = False
    with pytest.raises(StaffError, match="health role"), service.operation(admin.token, "health", Op.LIST, "errors"):
        ran = True
    assert not ran
    assert trail(records)[-1] == ("admin1", Op.LIST, Out.DENIED, "errors")


def test_expired_unknown_and_missing_sessions_are_recorded_denied(
    service: StaffService, engine: Engine, records: list[StaffOperation]
) -> None:
    admin = service.login("admin1", PASSWORD)
    expire(engine, admin)
    for token in (admin.token, "no-such-token", ""):
        with pytest.raises(StaffError), service.operation(token, "admin", Op.RETENTION_PURGE, "retention run"):
            pytest.fail("no work without a valid session")
    with pytest.raises(StaffError, match="expired"):
        service.authorize(admin.token, "admin", Op.LIST, "accounts")
    denied = [(r.staff_id, r.operation, r.outcome, r.detail) for r in records[-4:]]
    assert denied == [
        ("admin1", Op.RETENTION_PURGE, Out.DENIED, "session expired"),
        (ANONYMOUS, Op.RETENTION_PURGE, Out.DENIED, "unknown session"),
        (ANONYMOUS, Op.RETENTION_PURGE, Out.DENIED, "no session"),
        ("admin1", Op.LIST, Out.DENIED, "session expired"),
    ]
    with pytest.raises(StaffError, match="already ended"):
        service.logout(admin.token)
    assert trail(records)[-1] == ("admin1", Op.LOGOUT, Out.DENIED, None)


# --- the staff-operations contract --------------------------------------------------------------------------


def test_the_new_operation_symbols_are_appended_and_stay_backward_compatible() -> None:
    schema = json.loads((Path(staff_module.__file__).parents[1] / "schemas/avro/staff_operation.avsc").read_text())
    [operation] = [f["type"] for f in schema["fields"] if f["name"] == "operation"]
    new = ["INIT", "ACCOUNT_UNLOCK", "ACCOUNT_DISABLE", "ACCOUNT_ENABLE", "ROLE_CHANGE", "PASSWORD_CHANGE",
           "FISCAL_YEAR_START", "DATA_EXPORT", "NOTICE_REQUEST", "NOTICE_MAILING", "MAILING_DECISION",
           "INSTITUTION_CHANGE", "ACCEPT_RESULT", "CORRECT_RESULT", "VOID_ENTRY"]  # fmt: skip
    assert operation["symbols"][-len(new) :] == new
    assert operation["default"] == "OTHER"
    old = json.loads(json.dumps(schema))
    [old_operation] = [f["type"] for f in old["fields"] if f["name"] == "operation"]
    old_operation["symbols"] = operation["symbols"][: -len(new)]
    at = now_utc()
    record = {"event_id": "00000000-0000-4000-8000-000000000000", "occurred_at": at, "tenant": "012041",
              "source_system": "t", "staff_id": "admin1", "target": None, "outcome": "SUCCESS", "detail": None,
              "performed_at": at}  # fmt: skip
    # records written under the old schema read with the new one (BACKWARD) ...
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), {**record, "operation": "LOGIN"})
    buf.seek(0)
    assert fastavro.schemaless_reader(buf, fastavro.parse_schema(old), fastavro.parse_schema(schema))["operation"] == (
        "LOGIN"
    )
    # ... and a reader still on the old schema sees a new symbol as the default
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {**record, "operation": "FISCAL_YEAR_START"})
    buf.seek(0)
    assert fastavro.schemaless_reader(buf, fastavro.parse_schema(schema), fastavro.parse_schema(old))["operation"] == (
        "OTHER"
    )
