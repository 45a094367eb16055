"""職員認証・権限管理: personal staff accounts, password login, sessions, and a record of every operation.

* Personal accounts only (no shared ids); roles: ``admin`` (accounts), ``health`` (エラー処理, reports),
  ``reviewer`` (held provisions). Passwords are stored as scrypt hashes with a per-account salt.
* A login yields a session token (random, 256 bits) that the CLI keeps in a 0600 file; the database keeps only
  its SHA-256. Sessions expire after ``SESSION_MINUTES``; five failed logins lock the account.
* Every login, failed login, logout and operation — allowed or denied — is recorded through the ``record``
  callable (SQL and the staff-operations topic, wired by the caller) with staff id, time, operation and target.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from schemas.models import OperationOutcome, StaffOperation, StaffOperationType
from schemas.record import now_utc
from sinks.tables import staff_accounts, staff_sessions

ROLES = frozenset({"admin", "health", "reviewer"})
SESSION_MINUTES = 30
MAX_FAILED_LOGINS = 5
MIN_PASSWORD_LENGTH = 12
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class StaffError(PermissionError):
    """Authentication or authorization failed (the message never says which of id or password was wrong)."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **_SCRYPT, salt=base64.b64encode(salt).decode(), digest=base64.b64encode(digest).decode()
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(got, base64.b64decode(digest))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    token: str
    staff_id: str
    roles: frozenset[str]
    expires_at: datetime


Recorder = Callable[[StaffOperation], None]


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
                staff_id=staff_id,
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

    def create_account(self, staff_id: str, name: str, roles: set[str], password: str, *,
                       by: Session | None) -> None:  # fmt: skip
        """Create a personal account; needs an admin session, except for the very first account (an admin)."""
        if by is None:
            if self.has_accounts():
                raise StaffError("creating an account needs an admin login")
            if "admin" not in roles:
                raise StaffError("the first account must have the admin role")
        elif "admin" not in by.roles:
            self.record(by.staff_id, StaffOperationType.ACCOUNT_CREATED, OperationOutcome.DENIED, staff_id)
            raise StaffError("creating an account needs the admin role")
        if not roles or not roles <= ROLES:
            raise StaffError(f"roles must be among {sorted(ROLES)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise StaffError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
        if not staff_id.isascii() or not staff_id.replace("-", "").replace("_", "").isalnum():
            raise StaffError("a staff id is ASCII letters, digits, '-' and '_'")
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(staff_accounts.c.staff_id).where(staff_accounts.c.staff_id == staff_id))
            if exists.first() is not None:
                raise StaffError(f"staff id {staff_id} exists already (ids are never reused)")
            conn.execute(
                staff_accounts.insert().values(
                    staff_id=staff_id, display_name=name, roles=",".join(sorted(roles)),
                    password_hash=hash_password(password), failed_logins=0, locked=False, created_at=now_utc(),
                )
            )  # fmt: skip
        self.record(by.staff_id if by else staff_id, StaffOperationType.ACCOUNT_CREATED, OperationOutcome.SUCCESS,
                    staff_id, f"roles={','.join(sorted(roles))}")  # fmt: skip

    def login(self, staff_id: str, password: str) -> Session:
        failure: str | None = None
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(staff_accounts).where(staff_accounts.c.staff_id == staff_id)).first()
            if row is None or row.locked or not verify_password(password, row.password_hash):
                failure = "locked" if row is not None and row.locked else "bad credentials"
                if row is not None and not row.locked:
                    failed = row.failed_logins + 1
                    conn.execute(
                        staff_accounts.update()
                        .where(staff_accounts.c.staff_id == staff_id)
                        .values(failed_logins=failed, locked=failed >= MAX_FAILED_LOGINS)
                    )
        if failure is not None or row is None:
            self.record(staff_id, StaffOperationType.LOGIN_FAILED, OperationOutcome.DENIED, detail=failure)
            raise StaffError("login failed")
        with self.engine.begin() as conn:
            token = secrets.token_urlsafe(32)
            expires = now_utc() + timedelta(minutes=SESSION_MINUTES)
            conn.execute(staff_sessions.insert().values(token_hash=_token_hash(token), staff_id=staff_id,
                                                        created_at=now_utc(), expires_at=expires))  # fmt: skip
            conn.execute(staff_accounts.update().where(staff_accounts.c.staff_id == staff_id).values(failed_logins=0))
        self.record(staff_id, StaffOperationType.LOGIN, OperationOutcome.SUCCESS)
        return Session(token, staff_id, frozenset(row.roles.split(",")), expires)

    def session(self, token: str) -> Session:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(staff_sessions.c.staff_id, staff_sessions.c.expires_at, staff_accounts.c.roles,
                          staff_accounts.c.locked)
                .join(staff_accounts, staff_accounts.c.staff_id == staff_sessions.c.staff_id)
                .where(staff_sessions.c.token_hash == _token_hash(token))
            ).first()  # fmt: skip
        if row is None or row.locked:
            raise StaffError("not logged in (run `kenshin-hub login`)")
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=now_utc().tzinfo)
        if expires <= now_utc():
            raise StaffError("the session has expired (run `kenshin-hub login`)")
        return Session(token, row.staff_id, frozenset(row.roles.split(",")), expires)

    def logout(self, token: str) -> str:
        session = self.session(token)
        with self.engine.begin() as conn:
            conn.execute(staff_sessions.delete().where(staff_sessions.c.token_hash == _token_hash(token)))
        self.record(session.staff_id, StaffOperationType.LOGOUT, OperationOutcome.SUCCESS)
        return session.staff_id

    def authorize(self, token: str, role: str, operation: StaffOperationType, target: str | None = None) -> Session:
        """The session if it holds ``role``; the attempt is recorded either way."""
        session = self.session(token)
        if role not in session.roles:
            self.record(session.staff_id, operation, OperationOutcome.DENIED, target, f"needs role {role}")
            raise StaffError(f"this needs the {role} role")
        self.record(session.staff_id, operation, OperationOutcome.SUCCESS, target)
        return session
