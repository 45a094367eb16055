"""職員認証・権限管理: personal staff accounts, password login, sessions, and a record of every operation.

* Personal accounts only (no shared ids); roles: ``admin`` (accounts), ``health`` (エラー処理, reports, 年度開始),
  ``reviewer`` (held provisions). The first admin of an empty database is created only by the explicit, recorded
  :meth:`StaffService.init_admin` (`kenshin-hub staff init`); every other account change needs an admin session.
* Passwords are stored as scrypt hashes (``scrypt$N$r$p$salt$digest``, per-account salt) at
  :data:`PASSWORD_COST` (N=2^17, r=8, p=1). The stored string carries its parameters, so older hashes still verify;
  a successful login re-hashes a password stored below the current cost. Only unit tests may lower the cost, through
  :func:`unit_test_password_cost`.
* A login yields a session token (random, 256 bits) that the CLI keeps in a 0600 file; the database keeps only
  its SHA-256. Sessions expire after ``SESSION_MINUTES``; five failed logins lock the account until an admin unlocks
  it. A login for an unknown id does the same hash work (against a dummy hash) and fails with the same message.
* Every login, failed login, logout and operation is recorded through the ``record`` callable (SQL and the
  staff-operations topic, wired by the caller) with staff id, time, operation, target and its real outcome:
  :meth:`StaffService.operation` records after the work, ``SUCCESS`` or ``FAILED``; an attempt without a valid
  session (none, unknown, expired, locked or disabled account) or without the role is recorded ``DENIED``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.errors import CommandError
from hub.validation import STAFF_ID_MAX, is_valid_staff_id
from schemas.models import OperationOutcome, StaffOperation, StaffOperationType
from schemas.record import now_utc
from sinks.tables import staff_accounts, staff_sessions

ROLES = frozenset({"admin", "health", "reviewer"})
SESSION_MINUTES = 30
MAX_FAILED_LOGINS = 5
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
# recorded as the staff id of an attempt that carries no valid session (staff ids never contain parentheses)
ANONYMOUS = "(anonymous)"
_LOGIN_FAILED = "login failed"


# --- password hashes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScryptCost:
    """scrypt's parameters: CPU/memory cost ``n`` (a power of two), block size ``r``, parallelism ``p``."""

    n: int
    r: int
    p: int

    def maxmem(self) -> int:
        """The memory limit hashlib needs: OpenSSL's 128·r·(N+p+2) bytes, plus 1 MiB of slack."""
        return 128 * self.r * (self.n + self.p + 2) + 2**20

    def below(self, other: ScryptCost) -> bool:
        return self.n < other.n or self.r < other.r or self.p < other.p

    def within(self, limit: ScryptCost) -> bool:
        power_of_two = self.n & (self.n - 1) == 0
        return 1 < self.n <= limit.n and power_of_two and 1 <= self.r <= limit.r and 1 <= self.p <= limit.p


PASSWORD_COST = ScryptCost(n=2**17, r=8, p=1)  # production: ~128 MiB and a few hundred ms per hash
_COST_LIMIT = ScryptCost(n=2**20, r=16, p=4)  # stored parameters beyond these are refused, not computed
_current_cost = PASSWORD_COST


def password_cost() -> ScryptCost:
    """The cost new hashes get: :data:`PASSWORD_COST`, unless a unit test lowered it."""
    return _current_cost


@contextmanager
def unit_test_password_cost(n: int = 2**4, r: int = 8, p: int = 1) -> Iterator[ScryptCost]:
    """TEST HOOK, unit tests only: new hashes use this (weak) cost inside the ``with`` block.

    Refuses to run outside pytest, so production never hashes below :data:`PASSWORD_COST`.
    """
    global _current_cost
    if "pytest" not in sys.modules:
        raise RuntimeError("unit_test_password_cost is a unit-test hook; production always uses PASSWORD_COST")
    cost = ScryptCost(n, r, p)
    if not cost.within(_COST_LIMIT):
        raise ValueError(f"not a valid scrypt cost: {cost}")
    previous, _current_cost = _current_cost, cost
    try:
        yield cost
    finally:
        _current_cost = previous


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=cost.n, r=cost.r, p=cost.p, maxmem=cost.maxmem(), dklen=32)


def hash_password(password: str, cost: ScryptCost | None = None) -> str:
    """``scrypt$N$r$p$salt$digest`` (base64) with a fresh 16-byte salt, at ``cost`` or :func:`password_cost`."""
    cost = cost or _current_cost
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, cost)
    b64 = base64.b64encode
    return f"scrypt${cost.n}${cost.r}${cost.p}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(stored: str) -> tuple[ScryptCost, bytes, bytes] | None:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return None
        cost = ScryptCost(int(n), int(r), int(p))
        parsed = cost, base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
    except (ValueError, binascii.Error):
        return None
    return parsed if cost.within(_COST_LIMIT) else None


def verify_password(password: str, stored: str) -> bool:
    parsed = _parse(stored)
    if parsed is None:
        return False
    cost, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, cost), digest)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` is below the current cost (or not a hash this module understands)."""
    parsed = _parse(stored)
    return parsed is None or parsed[0].below(_current_cost)


def _dummy_hash() -> str:
    """A hash at the current cost that no password matches: an unknown id costs a login the same hash work."""
    c = _current_cost
    return f"scrypt${c.n}${c.r}${c.p}${base64.b64encode(bytes(16)).decode()}${base64.b64encode(bytes(32)).decode()}"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- the service ---------------------------------------------------------------------------------------------


class StaffError(PermissionError):
    """Authentication or authorization failed (the message never says which of id or password was wrong)."""


@dataclass(frozen=True)
class Session:
    token: str
    staff_id: str
    roles: frozenset[str]
    expires_at: datetime


@dataclass(frozen=True)
class Account:
    staff_id: str
    display_name: str
    roles: frozenset[str]
    locked: bool
    disabled: bool
    failed_logins: int
    created_at: datetime


Recorder = Callable[[StaffOperation], None]


def _failure_detail(exc: BaseException) -> str:
    """What a FAILED record says: the hub's own (staff-facing) message, else only the exception's type."""
    if isinstance(exc, StaffError | CommandError):
        return str(exc)[:500]
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"error: {type(exc).__name__}"


class StaffService:
    def __init__(self, engine: Engine, tenant: str, record: Recorder) -> None:
        self.engine = engine
        self.tenant = tenant
        self._record = record

    def record(self, staff_id: str, operation: StaffOperationType, outcome: OperationOutcome,
               target: str | None = None, detail: str | None = None) -> None:  # fmt: skip
        at = now_utc()
        self._record(
            StaffOperation(
                event_id=uuid.uuid4(),
                occurred_at=at,
                tenant=self.tenant,
                source_system="kenshin-hub.staff",
                staff_id=staff_id[:STAFF_ID_MAX] or ANONYMOUS,
                operation=operation,
                target=target,
                outcome=outcome,
                detail=detail,
                performed_at=at,
            )
        )

    def has_accounts(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(staff_accounts)).scalar_one() > 0

    # -- accounts --------------------------------------------------------------------------------------------

    def init_admin(self, staff_id: str, name: str, password: str) -> None:
        """`staff init`: the first account of an empty database, an admin; refused (and recorded) once any exists."""
        op = StaffOperationType.INIT
        try:
            _check_new(staff_id, {"admin"}, password)
        except StaffError as exc:
            self.record(staff_id, op, OperationOutcome.FAILED, staff_id, str(exc))
            raise
        password_hash = hash_password(password)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # two concurrent inits must not both see an empty table
                conn.execute(sa.text("LOCK TABLE staff_accounts IN SHARE ROW EXCLUSIVE MODE"))
            empty = conn.execute(sa.select(sa.func.count()).select_from(staff_accounts)).scalar_one() == 0
            if empty:
                _insert(conn, staff_id, name, {"admin"}, password_hash)
        if not empty:
            self.record(staff_id, op, OperationOutcome.DENIED, staff_id, "staff accounts exist already")
            raise StaffError(
                "staff accounts exist already: `staff init` only creates the first admin of an empty database; "
                "an admin adds accounts with `staff add` after `kenshin-hub login`"
            )
        self.record(staff_id, op, OperationOutcome.SUCCESS, staff_id, "first admin, roles=admin")

    def create_account(self, staff_id: str, name: str, roles: set[str], password: str, *,
                       by: Session | None) -> None:  # fmt: skip
        """Create a personal account; needs an admin session (the first admin comes from :meth:`init_admin`)."""
        op = StaffOperationType.ACCOUNT_CREATED
        if by is None:
            if not self.has_accounts():
                self.record(ANONYMOUS, op, OperationOutcome.DENIED, staff_id, "no account yet; needs staff init")
                raise StaffError("no staff account exists yet: create the first admin with `kenshin-hub staff init`")
            self.record(ANONYMOUS, op, OperationOutcome.DENIED, staff_id, "no session")
            raise StaffError("creating an account needs an admin login")
        admin = self._require(by.token, "admin", op, staff_id)
        try:
            _check_new(staff_id, roles, password)
            password_hash = hash_password(password)
            with self.engine.begin() as conn:
                exists = conn.execute(sa.select(staff_accounts.c.staff_id).where(staff_accounts.c.staff_id == staff_id))
                if exists.first() is not None:
                    raise StaffError(f"staff id {staff_id} exists already (ids are never reused)")
                _insert(conn, staff_id, name, roles, password_hash)
        except BaseException as exc:
            self.record(admin.staff_id, op, OperationOutcome.FAILED, staff_id, _failure_detail(exc))
            raise
        self.record(admin.staff_id, op, OperationOutcome.SUCCESS, staff_id, f"roles={','.join(sorted(roles))}")

    def accounts(self, by: Session) -> list[Account]:
        """Every account with its state (admin); recorded as a LIST of ``staff accounts``."""
        op = StaffOperationType.LIST
        with self.operation(by.token, "admin", op, "staff accounts"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(staff_accounts).order_by(staff_accounts.c.staff_id)).all()
        return [Account(r.staff_id, r.display_name, frozenset(r.roles.split(",")), r.locked, r.disabled,
                        r.failed_logins, r.created_at) for r in rows]  # fmt: skip

    def unlock(self, by: Session, staff_id: str) -> None:
        """Lift a lock after failed logins (admin); the failed-login count starts again at 0."""

        def work(conn: Connection, row: sa.Row[tuple[object, ...]]) -> str:
            if not row.locked:
                raise StaffError(f"{staff_id} is not locked")
            conn.execute(_update(staff_id).values(locked=False, failed_logins=0))
            return f"was locked after {row.failed_logins} failed logins"

        self._admin_change(by, StaffOperationType.ACCOUNT_UNLOCK, staff_id, work)

    def set_disabled(self, by: Session, staff_id: str, disabled: bool) -> None:
        """Disable an account (its sessions end; it cannot log in) or enable it again (admin)."""
        op = StaffOperationType.ACCOUNT_DISABLE if disabled else StaffOperationType.ACCOUNT_ENABLE

        def work(conn: Connection, row: sa.Row[tuple[object, ...]]) -> str | None:
            if bool(row.disabled) == disabled:
                raise StaffError(f"{staff_id} is {'disabled' if disabled else 'enabled'} already")
            if disabled and "admin" in row.roles.split(","):
                _keep_an_admin(conn, staff_id)
                conn.execute(staff_sessions.delete().where(staff_sessions.c.staff_id == staff_id))
            conn.execute(_update(staff_id).values(disabled=disabled))
            return None

        self._admin_change(by, op, staff_id, work)

    def set_roles(self, by: Session, staff_id: str, roles: set[str]) -> None:
        """Replace an account's roles (admin); effective at the account's next command."""
        _check_roles(roles)

        def work(conn: Connection, row: sa.Row[tuple[object, ...]]) -> str:
            if "admin" in row.roles.split(",") and "admin" not in roles:
                _keep_an_admin(conn, staff_id)
            conn.execute(_update(staff_id).values(roles=",".join(sorted(roles))))
            return f"roles={','.join(sorted(roles))} (was {row.roles})"

        self._admin_change(by, StaffOperationType.ROLE_CHANGE, staff_id, work)

    def set_password(self, by: Session, staff_id: str, password: str) -> None:
        """An admin sets another account's password (its sessions end); one's own needs :meth:`change_password`."""
        if staff_id == by.staff_id:
            self.record(by.staff_id, StaffOperationType.PASSWORD_CHANGE, OperationOutcome.DENIED, staff_id,
                        "own password: needs the old one")  # fmt: skip
            raise StaffError("change your own password with `kenshin-hub staff password` (it needs the old one)")

        def work(conn: Connection, row: sa.Row[tuple[object, ...]]) -> str:
            conn.execute(_update(staff_id).values(password_hash=password_hash))
            conn.execute(staff_sessions.delete().where(staff_sessions.c.staff_id == staff_id))
            return "set by an admin"

        self._require(by.token, "admin", StaffOperationType.PASSWORD_CHANGE, staff_id)
        try:
            _check_password(password)
        except StaffError as exc:
            self.record(by.staff_id, StaffOperationType.PASSWORD_CHANGE, OperationOutcome.FAILED, staff_id, str(exc))
            raise
        password_hash = hash_password(password)
        self._admin_change(by, StaffOperationType.PASSWORD_CHANGE, staff_id, work)

    def change_password(self, staff_id: str, old: str, new: str) -> None:
        """A staff member changes their own password with the old one; a wrong one counts as a failed login."""
        op = StaffOperationType.PASSWORD_CHANGE
        row = self._credentials(staff_id, old, op)
        try:
            _check_password(new)
            if new == old:
                raise StaffError("the new password is the old one")
            password_hash = hash_password(new)
            with self.engine.begin() as conn:
                changed = conn.execute(
                    _update(staff_id).where(staff_accounts.c.password_hash == row.password_hash)
                    .values(password_hash=password_hash, failed_logins=0)
                ).rowcount  # fmt: skip
                if changed != 1:
                    raise StaffError("the password was changed meanwhile; nothing done")
                conn.execute(staff_sessions.delete().where(staff_sessions.c.staff_id == staff_id))
        except BaseException as exc:
            self.record(staff_id, op, OperationOutcome.FAILED, staff_id, _failure_detail(exc))
            raise
        self.record(staff_id, op, OperationOutcome.SUCCESS, staff_id, "own, with the old password")

    # -- login and sessions ----------------------------------------------------------------------------------

    def login(self, staff_id: str, password: str) -> Session:
        row = self._credentials(staff_id, password, StaffOperationType.LOGIN_FAILED)
        new_hash = hash_password(password) if needs_rehash(row.password_hash) else None
        token = secrets.token_urlsafe(32)
        expires = now_utc() + timedelta(minutes=SESSION_MINUTES)
        with self.engine.begin() as conn:
            values: dict[str, object] = {"failed_logins": 0}
            if new_hash is not None:
                values["password_hash"] = new_hash
            updated = conn.execute(
                _update(staff_id).where(staff_accounts.c.password_hash == row.password_hash,
                                        staff_accounts.c.locked.is_(False), staff_accounts.c.disabled.is_(False))
                .values(**values)
            ).rowcount  # fmt: skip
            if updated == 1:
                conn.execute(staff_sessions.insert().values(token_hash=_token_hash(token), staff_id=staff_id,
                                                            created_at=now_utc(), expires_at=expires))  # fmt: skip
        if updated != 1:  # locked, disabled or re-passworded between the check and now
            self.record(staff_id, StaffOperationType.LOGIN_FAILED, OperationOutcome.DENIED, detail="changed meanwhile")
            raise StaffError(_LOGIN_FAILED)
        self.record(staff_id, StaffOperationType.LOGIN, OperationOutcome.SUCCESS,
                    detail="password re-hashed at the current cost" if new_hash else None)  # fmt: skip
        return Session(token, staff_id, frozenset(row.roles.split(",")), expires)

    def session(self, token: str, operation: StaffOperationType = StaffOperationType.OTHER,
                target: str | None = None) -> Session:  # fmt: skip
        """The valid session of ``token``; otherwise the attempt (``operation`` on ``target``) is recorded DENIED."""
        session, staff_id, problem = self._lookup(token)
        if session is None:
            self.record(staff_id, operation, OperationOutcome.DENIED, target, problem)
            if problem == "session expired":
                raise StaffError("the session has expired (run `kenshin-hub login`)")
            raise StaffError("not logged in (run `kenshin-hub login`)")
        return session

    def logout(self, token: str) -> str:
        session, staff_id, problem = self._lookup(token)
        with self.engine.begin() as conn:
            conn.execute(staff_sessions.delete().where(staff_sessions.c.token_hash == _token_hash(token)))
        if session is None:
            self.record(staff_id, StaffOperationType.LOGOUT, OperationOutcome.DENIED, detail=problem)
            raise StaffError("the session had already ended")
        self.record(session.staff_id, StaffOperationType.LOGOUT, OperationOutcome.SUCCESS)
        return session.staff_id

    def authorize(self, token: str, role: str, operation: StaffOperationType, target: str | None = None) -> Session:
        """The session if it holds ``role``; recorded DENIED, or SUCCESS *before* the caller's work runs.

        Prefer :meth:`operation`, which records the work's real outcome after it.
        """
        session = self._require(token, role, operation, target)
        self.record(session.staff_id, operation, OperationOutcome.SUCCESS, target)
        return session

    @contextmanager
    def operation(self, token: str, role: str, operation: StaffOperationType, target: str | None = None,
                  detail: Callable[[], str | None] | None = None) -> Iterator[Session]:  # fmt: skip
        """The session if it holds ``role``, for the work in the ``with`` block, recorded after it as it went:
        SUCCESS (with ``detail()``, what the work reports of itself), or FAILED (with the error) if the block raised.
        No valid session or no role: DENIED, no work.
        """
        session = self._require(token, role, operation, target)
        try:
            yield session
        except BaseException as exc:
            self.record(session.staff_id, operation, OperationOutcome.FAILED, target, _failure_detail(exc))
            raise
        self.record(session.staff_id, operation, OperationOutcome.SUCCESS, target, detail() if detail else None)

    # -- internals -------------------------------------------------------------------------------------------

    def _lookup(self, token: str) -> tuple[Session | None, str, str]:
        """(the session or None, the staff id to record, what was wrong)."""
        if not token:
            return None, ANONYMOUS, "no session"
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(staff_sessions.c.staff_id, staff_sessions.c.expires_at, staff_accounts.c.roles,
                          staff_accounts.c.locked, staff_accounts.c.disabled)
                .join(staff_accounts, staff_accounts.c.staff_id == staff_sessions.c.staff_id)
                .where(staff_sessions.c.token_hash == _token_hash(token))
            ).first()  # fmt: skip
        if row is None:
            return None, ANONYMOUS, "unknown session"
        if row.disabled:
            return None, row.staff_id, "account disabled"
        if row.locked:
            return None, row.staff_id, "account locked"
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=now_utc().tzinfo)
        if expires <= now_utc():
            return None, row.staff_id, "session expired"
        return Session(token, row.staff_id, frozenset(row.roles.split(",")), expires), row.staff_id, ""

    def _require(self, token: str, role: str, operation: StaffOperationType, target: str | None) -> Session:
        session = self.session(token, operation, target)
        if role not in session.roles:
            self.record(session.staff_id, operation, OperationOutcome.DENIED, target, f"needs role {role}")
            raise StaffError(f"this needs the {role} role")
        return session

    def _credentials(self, staff_id: str, password: str, failed_as: StaffOperationType) -> sa.Row[tuple[object, ...]]:
        """The account row if ``password`` is right and the account may log in; else recorded DENIED and raised.

        The hash work is the same whether the id exists or not (a dummy hash), and so is the message.
        """
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(staff_accounts).where(staff_accounts.c.staff_id == staff_id)).first()
        good = verify_password(password, row.password_hash if row is not None else _dummy_hash())
        if row is not None and good and not row.locked and not row.disabled:
            return row
        if row is None:
            failure = "unknown staff id"
        elif row.disabled:
            failure = "disabled"
        elif row.locked:
            failure = "locked"
        else:
            failure = "bad password"
            failed = staff_accounts.c.failed_logins + 1
            with self.engine.begin() as conn:
                conn.execute(_update(staff_id).values(failed_logins=failed, locked=failed >= MAX_FAILED_LOGINS))
        target = staff_id if failed_as is not StaffOperationType.LOGIN_FAILED else None
        self.record(staff_id, failed_as, OperationOutcome.DENIED, target, failure)
        raise StaffError(_LOGIN_FAILED)

    def _admin_change(self, by: Session, operation: StaffOperationType, staff_id: str,
                      work: Callable[[Connection, sa.Row[tuple[object, ...]]], str | None]) -> None:  # fmt: skip
        """An admin's change to an existing account, in one transaction, recorded after it as it went."""
        admin = self._require(by.token, "admin", operation, staff_id)
        try:
            with self.engine.begin() as conn:
                row = conn.execute(sa.select(staff_accounts).where(staff_accounts.c.staff_id == staff_id)).first()
                if row is None:
                    raise StaffError(f"no staff account {staff_id}")
                detail = work(conn, row)
        except BaseException as exc:
            self.record(admin.staff_id, operation, OperationOutcome.FAILED, staff_id, _failure_detail(exc))
            raise
        self.record(admin.staff_id, operation, OperationOutcome.SUCCESS, staff_id, detail)


def _update(staff_id: str) -> sa.Update:
    return staff_accounts.update().where(staff_accounts.c.staff_id == staff_id)


def _insert(conn: Connection, staff_id: str, name: str, roles: set[str], password_hash: str) -> None:
    conn.execute(
        staff_accounts.insert().values(
            staff_id=staff_id, display_name=name, roles=",".join(sorted(roles)), password_hash=password_hash,
            failed_logins=0, locked=False, disabled=False, created_at=now_utc(),
        )
    )  # fmt: skip


def _keep_an_admin(conn: Connection, staff_id: str) -> None:
    """Refuse a change that would leave no admin able to log in (nobody could unlock or add accounts)."""
    others = conn.execute(
        sa.select(staff_accounts.c.roles).where(
            staff_accounts.c.staff_id != staff_id,
            staff_accounts.c.locked.is_(False),
            staff_accounts.c.disabled.is_(False),
        )
    ).scalars()
    if not any("admin" in roles.split(",") for roles in others):
        raise StaffError("that would leave no enabled, unlocked admin account")


def _check_roles(roles: set[str]) -> None:
    if not roles or not roles <= ROLES:
        raise StaffError(f"roles must be among {sorted(ROLES)}")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise StaffError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def _check_new(staff_id: str, roles: set[str], password: str) -> None:
    _check_roles(roles)
    _check_password(password)
    if not is_valid_staff_id(staff_id):
        raise StaffError(f"a staff id is 1 to {STAFF_ID_MAX} ASCII letters, digits, '-' and '_'")
