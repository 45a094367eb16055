"""Keys of the provision flow: the linkage key the 符号 derive from, and the network's permit-signing key pair.

* The **linkage key** stands in for J-LIS's derivation of 符号 from the 住民票コード: connectors turn a 個人番号 into a
  keyed digest (:func:`person_token`) before anything leaves them, so the 個人番号 itself goes no further than the
  connector, and the network can still recognise one person across institutions.
* The **reviewers' key pairs** (Ed25519): each reviewer of a municipality signs their decisions on held provisions
  (:func:`review_message`); the 中間サーバー holds only the public keys it enrolled, per tenant and staff id, so a
  decision it acts on comes from a reviewer it knows, for that tenant, unchanged (:func:`valid_review_signature`).
* The **permit key pair** (Ed25519): the network signs every 提供許可証 with its private key; a 中間サーバー holds
  only the public key, so it can verify a permit but never forge one. The signature covers a canonical, typed and
  length-prefixed encoding of every field the permit binds (:func:`permit_message`), the 符号 as its SHA-256.

In the simulation all keys live under ``<state_dir>/keys`` (mode 0600), created on first use, atomically, by
whichever process needs them first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from hub.validation import is_valid_staff_id, is_valid_tenant_code
from schemas.models import ProvisionPermit, ReviewDecision, ReviewVerdict
from schemas.record import EPOCH

_LINKAGE = "linkage.key"
_SIGNING = "network-permit-ed25519.pem"
_VERIFYING = "network-permit-ed25519.pub"


def _create_once(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` unless it exists (0600; atomic: a concurrent creator's file wins)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def linkage_key(state_dir: Path) -> bytes:
    path = state_dir / "keys" / _LINKAGE
    if not path.exists():
        _create_once(path, secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def person_token(key: bytes, my_number: str) -> str:
    """The keyed digest of a 個人番号 that travels instead of it (to the network, for its 符号)."""
    return hmac.new(key, f"kojin-bango:{my_number}".encode(), hashlib.sha256).hexdigest()


def signing_key(state_dir: Path) -> Ed25519PrivateKey:
    """The network's private key (only the network simulator calls this)."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    path = state_dir / "keys" / _SIGNING
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        _create_once(path, pem)
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    public = state_dir / "keys" / _VERIFYING
    if not public.exists():
        _create_once(public, key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return key


def verify_key(state_dir: Path) -> Ed25519PublicKey:
    """The network's public key, as a 中間サーバー holds it (it never reads the private key).

    In the simulation, a 中間サーバー that starts before the network has ever run has the pair created first.
    """
    path = state_dir / "keys" / _VERIFYING
    if not path.exists():
        signing_key(state_dir)
    key = load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


PERMIT_SCHEME = "kenshin-hub-permit-v2"


def fugo_digest(fugo: str) -> str:
    """The 符号 as a 提供許可証 binds it: SHA-256 of its UTF-8 bytes, lowercase hex (the permit never carries it)."""
    return hashlib.sha256(fugo.encode("utf-8")).hexdigest()


def _enc(value: str | int | tuple[str, ...] | None) -> bytes:
    """One value of the canonical encoding: a type tag, then a length prefix or a fixed width (big-endian)."""
    if value is None:
        return b"n"
    if isinstance(value, str):
        data = value.encode("utf-8")
        return b"s" + len(data).to_bytes(4, "big") + data
    if isinstance(value, int):
        return b"i" + value.to_bytes(8, "big", signed=True)
    return b"l" + len(value).to_bytes(4, "big") + b"".join(_enc(v) for v in value)


def permit_message(permit: ProvisionPermit) -> bytes:
    """The bytes the network signs: the canonical encoding of every bound field of the permit.

    Encoding (kenshin-hub-permit-v2): the concatenation, in this fixed order, of the scheme name
    ``kenshin-hub-permit-v2``, permit id, request id, requester, provider, 事務コード, 特定個人情報名コード, the items
    (in order), fiscal year from, fiscal year to, the SHA-256 hex of the 符号 (:func:`fugo_digest`) and the expiry
    (epoch milliseconds), each value encoded as

    * text: ``b"s"`` + its UTF-8 length as 4 bytes big-endian + the UTF-8 bytes (UUIDs in their canonical
      lowercase hyphenated text);
    * integer: ``b"i"`` + 8 bytes big-endian, two's complement;
    * absent (null): ``b"n"``;
    * list of text: ``b"l"`` + the count as 4 bytes big-endian + each element as text.

    Every value is typed and length-prefixed, so the encoding is injective: two permits that differ in any field
    (an item moved from one list position to another, a field empty rather than absent, a separator inside a
    value) never give the same bytes. The signature covers nothing else, and the scheme name keeps these bytes
    apart from any other message signed with the key.
    """
    fields: tuple[str | int | tuple[str, ...] | None, ...] = (
        PERMIT_SCHEME,
        str(permit.permit_id),
        str(permit.request_id),
        permit.requester,
        permit.provider,
        permit.affair_code,
        permit.info_name_code,
        tuple(permit.items),
        permit.fiscal_year_from,
        permit.fiscal_year_to,
        permit.fugo_sha256,
        (permit.expires_at - EPOCH) // timedelta(milliseconds=1),  # exact, as timestamp-millis keeps it
    )
    return b"".join(_enc(f) for f in fields)


@dataclass(frozen=True)
class PermitSigner:
    key: Ed25519PrivateKey

    def sign(self, permit: ProvisionPermit) -> str:
        return base64.b64encode(self.key.sign(permit_message(permit))).decode()


@dataclass(frozen=True)
class PermitVerifier:
    key: Ed25519PublicKey

    def valid_signature(self, permit: ProvisionPermit) -> bool:
        try:
            self.key.verify(base64.b64decode(permit.signature, validate=True), permit_message(permit))
        except (InvalidSignature, ValueError, OverflowError):  # OverflowError: a value the encoding cannot hold
            return False
        return True


REVIEW_SCHEME = "kenshin-hub-review-decision-v1"


def review_message(decision: ReviewDecision) -> bytes:
    """The bytes a reviewer signs: the canonical encoding (as :func:`permit_message`'s) of the scheme name
    ``kenshin-hub-review-decision-v1``, event id, occurred at (epoch milliseconds), tenant, source system, request id,
    staff id, verdict and reason (absent for an approval), in that order: every field of the decision but the
    signature.
    """
    fields: tuple[str | int | tuple[str, ...] | None, ...] = (
        REVIEW_SCHEME,
        str(decision.event_id),
        (decision.occurred_at - EPOCH) // timedelta(milliseconds=1),
        decision.tenant,
        decision.source_system,
        str(decision.request_id),
        decision.staff_id,
        decision.verdict.value,
        decision.reason,
    )
    return b"".join(_enc(f) for f in fields)


def _reviewer_path(state_dir: Path, tenant: str, staff_id: str) -> Path:
    if not (is_valid_staff_id(staff_id) and is_valid_tenant_code(tenant)):
        raise ValueError("a reviewer's key is named by a 団体コード and a staff id of ASCII letters, digits, '-', '_'")
    return state_dir / "keys" / "reviewers" / f"{tenant}-{staff_id}.pem"


def reviewer_key(state_dir: Path, tenant: str, staff_id: str, create: bool = False) -> Ed25519PrivateKey | None:
    """A reviewer's private key (0600, in the staff tools' key folder); made when ``create`` and missing, else None."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    path = _reviewer_path(state_dir, tenant, staff_id)
    if not path.exists():
        if not create:
            return None
        pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        _create_once(path, pem)
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


UNSIGNED = "unsigned"


def sign_review(key: Ed25519PrivateKey, decision: ReviewDecision) -> ReviewDecision:
    """``decision`` (made with ``signature=UNSIGNED``) with the reviewer's signature over its other fields."""
    return replace(decision, signature=base64.b64encode(key.sign(review_message(decision))).decode())


def signed_review(
    key: Ed25519PrivateKey,
    *,
    tenant: str,
    source_system: str,
    request_id: uuid.UUID,
    staff_id: str,
    approve: bool,
    reason: str | None,
    now: datetime,
) -> ReviewDecision:
    """A new decision (its own event id) of ``staff_id`` on a held provision, signed with their key.

    Raises :class:`~schemas.record.ModelError` for a decision the 中間サーバー could not take (a refusal without a
    reason, say).
    """
    decision = ReviewDecision(
        event_id=uuid.uuid4(),
        occurred_at=now,
        tenant=tenant,
        source_system=source_system,
        request_id=request_id,
        staff_id=staff_id,
        verdict=ReviewVerdict.APPROVE if approve else ReviewVerdict.REFUSE,
        reason=None if approve else reason,
        signature=UNSIGNED,
    )
    return sign_review(key, decision)


def public_key_of(text: str) -> Ed25519PublicKey:
    """An enrolled reviewer's public key from its :func:`public_key_text` (raw 32 bytes, base64)."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def valid_review_signature(public_key: str, decision: ReviewDecision) -> bool:
    try:
        public_key_of(public_key).verify(base64.b64decode(decision.signature, validate=True), review_message(decision))
    except (InvalidSignature, ValueError, OverflowError):
        return False
    return True
