"""個人番号 at rest: authenticated encryption and keyed lookup hashes under a key file outside the databases.

Every 個人番号 the hub keeps in a database (the sinks' ``residents.my_number_enc``; the processors' 住基 change logs,
``processor_people.log``, sealed whole) or publishes (``residents.v1``'s ``my_number_sealed``:
:func:`seal_resident_number`, :func:`resident_number`) is a *sealed value*::

    pii1.<key id>.<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>

with a random 96-bit nonce per value and, as associated data, the key id, the row's tenant (団体コード), the column
(``table.column``) and the row's key (宛名番号): a value copied to another tenant, column or person, or altered in
any byte, is refused (:class:`PiiError`), never decrypted into something else. Equality lookups go through a
*keyed hash* (:meth:`PiiKeys.lookup_hash`): HMAC-SHA256 of (tenant, column, value) under a second key, hex, kept in
an indexed column (``residents.my_number_hash``); the clear value is never in a query.

**The key file** (``KENSHIN_PII_KEY_FILE``, default ``<state dir>/keys/pii.key``), JSON, mode 0600 in a 0700 folder,
created once with one key when missing (atomically: a concurrent creator's file wins)::

    {"format": "kenshin-hub-pii-keys/1", "current": "k2",
     "keys": {"k1": {"secret": "<base64 of 32 random bytes>", "created": "2026-04-01T00:00:00+00:00"},
              "k2": {"secret": "…", "created": "…"}}}

Each key id holds one 256-bit secret; HKDF-SHA256 derives from it the AES-256-GCM key and the HMAC-SHA256 key
(distinct ``info`` labels), so one secret never serves two purposes. New values are sealed and hashed under the
``current`` key; any listed key opens values sealed under it. A file readable by group or others is refused.
Keep the file out of the databases' backups and back it up apart: without it no sealed value can be read again.

**Key rotation** (``python -m hub.pii``, with the hub's ``KENSHIN_*`` environment):

1. ``python -m hub.pii add-key``: a new key becomes current; the old ones stay, so everything still opens. Running
   processes switch to it when they first meet a value sealed under it, or when restarted: restart them.
2. Re-encryption, lazily or at once: every row the sinks or processors write again is sealed and hashed under the
   current key; ``python -m hub.pii reencrypt`` re-seals every remaining row of the sinks' database and the
   processors' store now (in small transactions, compare-and-set, safe beside running processes). Lookups try
   the hashes of every key meanwhile, so a person is found whichever key their row was last written under.
3. ``python -m hub.pii retire-key k1``: removes a key once no row uses it (``python -m hub.pii status`` counts the
   rows per key id); it refuses while any row does, and never removes the current key.

Messages of :class:`PiiError` never carry the value; nothing here logs one.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from connectors.keys import _create_once

if TYPE_CHECKING:
    from hub.settings import Settings
    from schemas.models import ResidentState

FORMAT = "kenshin-hub-pii-keys/1"
KEY_FILE_NAME = "pii.key"
PREFIX = "pii1"  # the version of the sealed-value format
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NONCE_BYTES = 12  # 96 bits, random per value
_SECRET_BYTES = 32
_AEAD_INFO = b"kenshin-hub/pii/aes-256-gcm/v1"
_MAC_INFO = b"kenshin-hub/pii/hmac-sha256/v1"


class PiiError(ValueError):
    """A key file or a sealed value the hub refuses (never carries the value itself)."""


def _fields(*parts: str) -> bytes:
    """Length-prefixed UTF-8 fields: no two different tuples encode alike."""
    out = bytearray()
    for part in parts:
        raw = part.encode()
        if len(raw) > 0xFFFF:
            raise PiiError("an associated-data field is too long")
        out += len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


@dataclass(frozen=True)
class _Key:
    aead: AESGCM
    mac: bytes


def _key(secret: bytes) -> _Key:
    if len(secret) != _SECRET_BYTES:
        raise PiiError(f"a key secret must be {_SECRET_BYTES} bytes")
    return _Key(AESGCM(_derive(secret, _AEAD_INFO)), _derive(secret, _MAC_INFO))


def is_sealed(text: str | None) -> bool:
    """Whether ``text`` looks like a sealed value (``pii1.<key id>.…``); says nothing about its integrity."""
    return text is not None and text.startswith(PREFIX + ".")


def key_id_of(sealed: str) -> str:
    """The key id a sealed value was made under."""
    parts = sealed.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not _KEY_ID.fullmatch(parts[1]):
        raise PiiError("not a sealed value (pii1.<key id>.<data>)")
    return parts[1]


class PiiKeys:
    """The keys of one key file: seal / open values and compute lookup hashes.

    With a ``path``, a value sealed under a key id this instance does not know makes it read the file again (a key
    added by ``add-key`` while the process runs); the file's ``current`` key then seals from that moment on.
    """

    def __init__(self, secrets_by_id: Mapping[str, bytes], current: str, path: Path | None = None) -> None:
        self.path = path
        self._set(secrets_by_id, current)

    def _set(self, secrets_by_id: Mapping[str, bytes], current: str) -> None:
        if current not in secrets_by_id:
            raise PiiError(f"the current key {current!r} is not among the keys")
        for kid in secrets_by_id:
            if not _KEY_ID.fullmatch(kid):
                raise PiiError(f"invalid key id {kid!r} (1-32 of A-Z a-z 0-9 _ -)")
        self._keys = {kid: _key(secret) for kid, secret in secrets_by_id.items()}
        self._current = current

    @classmethod
    def generate(cls, key_id: str = "k1") -> PiiKeys:
        """A fresh in-memory key set (tests, tools); nothing is written."""
        return cls({key_id: secrets.token_bytes(_SECRET_BYTES)}, key_id)

    @property
    def current(self) -> str:
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    # --- sealing ---------------------------------------------------------------------------------------------

    @staticmethod
    def _aad(kid: str, tenant: str, column: str, row: str) -> bytes:
        return _fields(PREFIX, kid, tenant, column, row)

    def encrypt(self, value: str, *, tenant: str, column: str, row: str) -> str:
        """``value`` sealed under the current key, bound to (tenant, column, row)."""
        kid = self._current
        nonce = secrets.token_bytes(_NONCE_BYTES)
        data = self._keys[kid].aead.encrypt(nonce, value.encode(), self._aad(kid, tenant, column, row))
        return f"{PREFIX}.{kid}.{base64.urlsafe_b64encode(nonce + data).rstrip(b'=').decode()}"

    def decrypt(self, sealed: str, *, tenant: str, column: str, row: str) -> str:
        """The value of ``sealed``; :class:`PiiError` if it was altered or belongs to another tenant, column or row."""
        kid = key_id_of(sealed)
        key = self._key_for(kid)
        body = sealed.split(".", 2)[2]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise PiiError("a sealed value is not valid base64") from None
        if len(raw) < _NONCE_BYTES + 16:
            raise PiiError("a sealed value is truncated")
        try:
            plain = key.aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad(kid, tenant, column, row))
        except InvalidTag:
            raise PiiError(
                f"a sealed value does not authenticate for tenant {tenant} column {column} (altered, or moved)"
            ) from None
        return plain.decode()

    def reseal(self, sealed: str, *, tenant: str, column: str, row: str) -> str | None:
        """``sealed`` sealed again under the current key; None when it already is."""
        if key_id_of(sealed) == self._current:
            return None
        plain = self.decrypt(sealed, tenant=tenant, column=column, row=row)
        return self.encrypt(plain, tenant=tenant, column=column, row=row)

    # --- lookups ---------------------------------------------------------------------------------------------

    def lookup_hash(self, value: str, *, tenant: str, column: str, key_id: str | None = None) -> str:
        """HMAC-SHA256 (hex) of ``value`` for an equality lookup in ``column`` of ``tenant`` (current key)."""
        mac = self._key_for(key_id or self._current).mac
        return hmac.new(mac, _fields(tenant, column, value), hashlib.sha256).hexdigest()

    def lookup_hashes(self, value: str, *, tenant: str, column: str) -> tuple[str, ...]:
        """The lookup hashes of ``value`` under every key, the current one first (rows not yet re-encrypted)."""
        ids = [self._current, *(k for k in self._keys if k != self._current)]
        return tuple(self.lookup_hash(value, tenant=tenant, column=column, key_id=k) for k in ids)

    # --- the key file ----------------------------------------------------------------------------------------

    def _key_for(self, kid: str) -> _Key:
        key = self._keys.get(kid)
        if key is None and self.path is not None:
            self.reload()
            key = self._keys.get(kid)
        if key is None:
            raise PiiError(f"unknown key id {kid!r}: the key file does not hold it (retired, or another file)")
        return key

    def reload(self) -> None:
        """Read the key file again (a key added or retired since)."""
        if self.path is None:
            return
        ids, current = _read(self.path)
        self._set(ids, current)


# --- the key file ------------------------------------------------------------------------------------------


# --- the 個人番号 on the residents topic ------------------------------------------------------------------------

RESIDENTS_TOPIC_COLUMN = "residents.v1.my_number"
"""The column the 個人番号 of a ``ResidentState`` on ``residents.v1`` is bound to (with its tenant and 宛名番号)."""


def seal_resident_number(state: ResidentState, keys: PiiKeys) -> ResidentState:
    """``state`` as the processors publish it: its 個人番号 sealed into ``my_number_sealed``, none in clear.

    Only the city's own processes hold the key (the processors seal; the sinks and the connector open), so the
    number is in no Kafka log in clear except the 住基 system's own input topic.
    """
    if state.my_number is None:
        return state
    sealed = keys.encrypt(state.my_number, tenant=state.tenant, column=RESIDENTS_TOPIC_COLUMN, row=state.atena_no)
    return replace(state, my_number=None, my_number_sealed=sealed)


def resident_number(state: ResidentState, keys: PiiKeys) -> str | None:
    """The 個人番号 of a ``ResidentState`` read from ``residents.v1``: opened when sealed (:class:`PiiError` if it
    was altered or belongs to another tenant or person), as is from a record written before it was sealed.
    """
    if state.my_number_sealed is None:
        return state.my_number
    return keys.decrypt(state.my_number_sealed, tenant=state.tenant, column=RESIDENTS_TOPIC_COLUMN, row=state.atena_no)


def key_file_of(settings: Settings) -> Path:
    """``KENSHIN_PII_KEY_FILE``, or ``<state dir>/keys/pii.key``."""
    return settings.pii_key_file if settings.pii_key_file is not None else settings.state_dir / "keys" / KEY_FILE_NAME


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _document(secrets_by_id: Mapping[str, bytes], created: Mapping[str, str], current: str) -> bytes:
    keys = {
        kid: {"secret": base64.b64encode(secret).decode(), "created": created.get(kid, _now())}
        for kid, secret in secrets_by_id.items()
    }
    return (json.dumps({"format": FORMAT, "current": current, "keys": keys}, indent=2) + "\n").encode()


def _parse(path: Path) -> tuple[dict[str, bytes], dict[str, str], str]:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise PiiError(f"the key file {path} does not exist") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PiiError(f"the key file {path} is readable by others: chmod 600 it (and 700 its folder)")
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise PiiError(f"the key file {path} is not a {FORMAT} file")
        ids = {str(k): base64.b64decode(v["secret"], validate=True) for k, v in dict(doc["keys"]).items()}
        created = {str(k): str(v.get("created", "")) for k, v in dict(doc["keys"]).items()}
        current = str(doc["current"])
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise PiiError(f"the key file {path} is damaged (not {FORMAT} JSON)") from None
    if current not in ids:
        raise PiiError(f"the key file {path} names a current key it does not hold")
    return ids, created, current


def _read(path: Path) -> tuple[dict[str, bytes], str]:
    ids, _created, current = _parse(path)
    return ids, current


def open_key_file(path: Path) -> PiiKeys:
    """The keys of ``path``; a file with one fresh key is created first when there is none (0600, folder 0700)."""
    if not path.exists():
        _create_once(path, _document({"k1": secrets.token_bytes(_SECRET_BYTES)}, {}, "k1"))
    ids, current = _read(path)
    return PiiKeys(ids, current, path)


def _replace(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` atomically (a temporary file 0600, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def add_key(path: Path) -> str:
    """Add a new key to the file and make it current; its id (``k<n+1>``)."""
    open_key_file(path)  # created when missing
    ids, created, _current = _parse(path)
    numbers = [int(k[1:]) for k in ids if re.fullmatch(r"k\d+", k)]
    kid = f"k{max(numbers, default=0) + 1}"
    ids[kid] = secrets.token_bytes(_SECRET_BYTES)
    created[kid] = _now()
    _replace(path, _document(ids, created, kid))
    return kid


def retire_key(path: Path, kid: str) -> None:
    """Remove ``kid`` from the file (never the current key; check first that no row uses it)."""
    ids, created, current = _parse(path)
    if kid not in ids:
        raise PiiError(f"the key file {path} holds no key {kid!r}")
    if kid == current:
        raise PiiError(f"{kid} is the current key: add a new one first")
    del ids[kid]
    _replace(path, _document(ids, created, current))


# --- the process's keys ------------------------------------------------------------------------------------

_default: PiiKeys | None = None


def configure(keys: PiiKeys | None) -> None:
    """Set the keys :func:`default_keys` returns (None: resolve them from the settings again)."""
    global _default
    _default = keys


def default_keys() -> PiiKeys:
    """The process's keys: those :func:`configure` set, else the key file of the ``KENSHIN_*`` settings (read once).

    The sinks, the processors and the migrations use these unless they were given keys.
    """
    global _default
    if _default is None:
        from hub.settings import load_settings

        _default = open_key_file(key_file_of(load_settings(os.environ)))
    return _default


def migration_keys() -> PiiKeys:
    """The keys a migration seals existing rows with: those given to :func:`sinks.db.upgrade`, else the process's.

    A key file that cannot be opened stops the migration (its transaction rolls back) with what to do.
    """
    from alembic import context

    given = context.config.attributes.get("pii_keys")
    if isinstance(given, PiiKeys):
        return given
    try:
        return default_keys()
    except (ValueError, OSError) as exc:  # PiiError, SettingsError, a folder it may not create
        raise PiiError(
            f"this migration seals the stored 個人番号 and needs the key file (KENSHIN_PII_KEY_FILE): {exc}; fix it "
            "and run the migrations again"
        ) from None


# --- python -m hub.pii ---------------------------------------------------------------------------------------


def _stores(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, URL, migrations) of the stores that hold sealed values."""
    from processors.store import PROCESSORS_MIGRATIONS
    from sinks.db import SINKS_MIGRATIONS

    return [
        ("sinks", settings.database_url.reveal(), SINKS_MIGRATIONS),
        ("processors", settings.processors_url(), PROCESSORS_MIGRATIONS),
    ]


def _usage(settings: Settings) -> dict[str, dict[str, int]]:
    """Per store, the number of sealed values per key id (stores that do not exist yet are skipped)."""
    from sqlalchemy.engine import make_url

    from processors.store import key_usage as people_usage
    from sinks.db import make_engine, require_head
    from sinks.residents import key_usage as residents_usage

    usage: dict[str, dict[str, int]] = {}
    for name, url, migrations in _stores(settings):
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
            continue
        engine = make_engine(url)
        try:
            require_head(engine, migrations)
            with engine.connect() as conn:
                usage[name] = residents_usage(conn) if name == "sinks" else people_usage(conn)
        finally:
            engine.dispose()
    return usage


def _reencrypt(settings: Settings, keys: PiiKeys) -> dict[str, int]:
    from sqlalchemy.engine import make_url

    from processors.store import reencrypt_people
    from sinks.db import make_engine, require_head
    from sinks.residents import reencrypt_residents

    done: dict[str, int] = {}
    for name, url, migrations in _stores(settings):
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
            continue
        engine = make_engine(url)
        try:
            require_head(engine, migrations)
            done[name] = reencrypt_residents(engine, keys) if name == "sinks" else reencrypt_people(engine, keys)
        finally:
            engine.dispose()
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hub.pii status | add-key | reencrypt | retire-key KID`` (settings from ``KENSHIN_*``)."""
    from hub.settings import SettingsError, load_settings
    from sinks.db import DatabaseError

    parser = argparse.ArgumentParser(prog="python -m hub.pii", description="個人番号 encryption keys and rotation")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("status", help="the key file's keys, and the sealed values per key id in each store")
    sub.add_parser("add-key", help="add a new key and make it current")
    sub.add_parser("reencrypt", help="re-seal every value not under the current key (sinks and processors stores)")
    retire = sub.add_parser("retire-key", help="remove a key that no row uses any more")
    retire.add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(os.environ)
        path = key_file_of(settings)
        if args.action == "add-key":
            print(f"{add_key(path)} is now the current key of {path}; restart the hub's processes, then reencrypt")
            return 0
        keys = open_key_file(path)
        if args.action == "status":
            print(f"key file {path}: keys {', '.join(keys.key_ids)}; current {keys.current}")
            for store, counts in _usage(settings).items():
                shown = ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "no sealed values"
                print(f"  {store}: {shown}")
            return 0
        if args.action == "reencrypt":
            for store, count in _reencrypt(settings, keys).items():
                print(f"  {store}: {count} values sealed again under {keys.current}")
            return 0
        used = {store: counts.get(args.key_id, 0) for store, counts in _usage(settings).items()}
        if any(used.values()):
            raise PiiError(f"{args.key_id} still seals {used}: run `python -m hub.pii reencrypt` first")
        retire_key(path, args.key_id)
        print(f"{args.key_id} removed from {path}")
        return 0
    except (PiiError, SettingsError, DatabaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
