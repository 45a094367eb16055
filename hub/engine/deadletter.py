"""The one dead-letter builder: the reason, the source position and the original bytes, within the size limit.

A dead letter keeps the original key and value so that nothing accepted is lost and staff can see what arrived.
A message just under the broker's size limit would make a letter (original plus envelope) over it, which the
broker refuses, and the partition would stall on it. Such a letter keeps the head of the original value only, and
its reason says so with the full size and SHA-256, so the letter always fits.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from hub.validation import is_valid_tenant_code
from schemas.models import DeadLetter
from schemas.record import now_utc

# Dead letters get a deterministic event id per consumer group and source position: a replay re-sends the same.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:kenshin-hub:sinks:dead-letter")
ENVELOPE_ALLOWANCE = 4096  # bytes kept free for the envelope (reason, names, ids, Avro framing)
KEPT_HEAD = 1024  # bytes of an oversized original key or value that a letter still carries
MAX_REASON = 800  # characters of the reason itself; the notes on what was cut come after it


def tenant_of(key: bytes | None, default: str) -> str:
    """The 団体コード a record key starts with (``012041:…``), or ``default`` when it does not start with one."""
    if key:
        head = key.split(b":", 1)[0]
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            return default
        if is_valid_tenant_code(text):
            return text
    return default


def build(
    *,
    group_id: str,
    source_system: str,
    default_tenant: str,
    step: str,
    reason: str,
    exc: BaseException,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp_ms: int | None,
    max_bytes: int,
) -> DeadLetter:
    """The dead letter of one message (``max_bytes``: the largest record the dead-letter topic takes)."""
    reason = reason[:MAX_REASON]
    if key is not None and len(key) > KEPT_HEAD:
        reason += f" [original key of {len(key)} bytes; sha256 {hashlib.sha256(key).hexdigest()}; head kept]"
        key = key[:KEPT_HEAD]
    if value is not None and len(value) + len(key or b"") > max_bytes - ENVELOPE_ALLOWANCE:
        digest = hashlib.sha256(value).hexdigest()
        reason += f" [original value of {len(value)} bytes too large to keep; sha256 {digest}; head kept]"
        value = value[:KEPT_HEAD]
    return DeadLetter(
        event_id=uuid.uuid5(_NAMESPACE, f"{group_id}:{topic}:{partition}:{offset}"),
        occurred_at=now_utc(),
        tenant=tenant_of(key, default_tenant),
        source_system=source_system,
        step=step,
        reason=reason,
        error_type=type(exc).__name__,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_timestamp=datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC) if timestamp_ms is not None else None,
        original_key=key,
        original_value=value,
    )
