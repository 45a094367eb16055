"""hub/runtime/process.py: a process the stack just started is known as its own, even while its exec completes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.runtime import process
from hub.runtime.process import running_pid, spawn, stop

pytestmark = pytest.mark.unit

SLEEPER = "import time\ntime.sleep(60)\n"


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real child whose command line carries ``marker``; stopped afterwards."""
    marker = str(tmp_path / "marker")
    pid_file = tmp_path / "sleeper.pid"
    spawn([sys.executable, "-c", SLEEPER, marker], pid_file=pid_file, log_file=tmp_path / "sleeper.log")
    yield pid_file, marker
    stop(pid_file, marker, timeout=5)


def test_a_command_line_read_during_exec_is_waited_out(
    sleeper: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between posix_spawn's return and the kernel setting the new image's arguments, /proc/<pid>/cmdline reads
    # empty. `stack up` then took a starting nginx for a dead one, and `down` left it running (CI failed on it).
    pid_file, marker = sleeper
    real = process._cmdline
    reads: list[str] = []

    def racing(pid: int) -> str:
        line = "" if len(reads) < 3 else real(pid)
        reads.append(line)
        return line

    monkeypatch.setattr(process, "_cmdline", racing)
    assert running_pid(pid_file, marker) == int(pid_file.read_text())
    assert reads[:3] == ["", "", ""]
    assert marker in reads[-1]


def test_a_command_line_that_stays_empty_is_not_ours(
    sleeper: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernel thread's command line is always empty: a recycled pid that became one is never taken for ours.
    pid_file, marker = sleeper
    monkeypatch.setattr(process, "_cmdline", lambda _pid: "")
    assert running_pid(pid_file, marker) is None


def test_every_process_is_ours_right_after_spawn(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker")
    for i in range(20):
        pid_file = tmp_path / f"p{i}.pid"
        spawn([sys.executable, "-c", SLEEPER, marker], pid_file=pid_file, log_file=tmp_path / "p.log")
        try:
            assert running_pid(pid_file, marker) is not None, f"spawn {i}: taken for somebody else's process"
        finally:
            assert stop(pid_file, marker, timeout=5)
