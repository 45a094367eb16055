"""Fail points: let a fault test crash a process at an exact step (``KH_FAILPOINTS=name@n,...``).

``failpoint("sink.after_commit")`` exits the process abruptly (``os._exit``, as SIGKILL would: nothing flushed,
nothing committed) the ``n``-th time it is reached. Unset, it costs one dictionary lookup. The variable is not a
``KENSHIN_*`` setting on purpose: it is for tests only and never part of a deployment's configuration.
"""

from __future__ import annotations

import os
import sys

_ENV = "KH_FAILPOINTS"
_hits: dict[str, int] = {}


def _armed() -> dict[str, int]:
    armed: dict[str, int] = {}
    for part in os.environ.get(_ENV, "").split(","):
        name, _, nth = part.strip().partition("@")
        if name:
            armed[name] = int(nth or "1")
    return armed


def failpoint(name: str) -> None:
    armed = _armed()
    if name not in armed:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == armed[name]:
        print(f"failpoint {name} reached ({armed[name]}): exiting", file=sys.stderr, flush=True)
        os._exit(137)
