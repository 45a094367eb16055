"""Run several child processes as one service: forward SIGTERM/SIGINT, stop all when one exits."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType


def supervise(commands: Sequence[Sequence[str]], *, grace_s: float = 20.0) -> int:
    children = [subprocess.Popen(list(cmd)) for cmd in commands]  # noqa: S603 - our own interpreter and module
    stopping = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    exit_code = 0
    while True:
        codes = [c.poll() for c in children]
        if any(code is not None for code in codes):
            exit_code = next(code for code in codes if code is not None)
            break
        time.sleep(0.5)
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0 if stopping else exit_code
