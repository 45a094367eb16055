"""The processors' Settler keeps each partition in order when the consumer drops a message (no broker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from processors.app import Settler

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass(frozen=True)
class Message:
    tp: TP
    offset: int


@dataclass(frozen=True)
class Event:
    message: Message


def test_a_message_past_a_dropped_one_waits_for_it() -> None:
    seeks: list[tuple[Any, int]] = []
    tp = TP("institution.results.v1", 0)

    async def flush() -> None:
        return None

    async def commit(_offsets: dict[Any, int]) -> bool:
        return True

    async def seek(p: Any, offset: int) -> None:
        seeks.append((p, offset))

    settler = Settler(flush, commit, lambda _tp: 10, seek)

    def admit(offset: int) -> bool:
        return asyncio.run(settler.admit(Event(Message(tp, offset))))

    assert admit(10)
    assert not admit(12)  # 11 was dropped: 12 (a follow-up, say) must not overtake it
    assert seeks == [(tp, 11)]
    assert not admit(13)  # already fetched: skipped too, no second seek
    assert seeks == [(tp, 11)]
    assert admit(11)  # the re-read, in order
    assert admit(12)
    assert admit(12)  # a replay of a processed offset is harmless
    assert admit(13)
