"""Start and stop the stack's JVM processes, tracked by pid files under the state directory.

``stop`` only signals a process whose pid file we wrote *and* whose command line still carries the marker we
gave it, so a recycled pid never kills somebody else's process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid recorded in ``pid_file`` if that process is alive and is ours (its command line has ``marker``)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return None
    state = _proc_state(pid)
    if state == "Z":
        return None
    return pid if marker in _settled_cmdline(pid) else None


def _settled_cmdline(pid: int, *, wait_s: float = 2.0) -> str:
    """``pid``'s command line, waiting out the moment of ``execve`` when it reads empty.

    ``spawn`` returns as soon as the child's exec is past its point of no return, but the kernel sets the new
    image's argument area a little later: in that window ``/proc/<pid>/cmdline`` is empty. Read then, a process we
    just started looked like somebody else's: `stack up` took a starting nginx for a dead one, and `down` left it
    running. A user process's command line is never empty for long; a kernel thread's (a recycled pid) always is.
    """
    deadline = time.monotonic() + wait_s
    while not (cmdline := _cmdline(pid)) and time.monotonic() < deadline and _proc_state(pid) not in ("", "Z"):
        time.sleep(0.005)
    return cmdline


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def spawn(cmd: Sequence[str], *, pid_file: Path, log_file: Path, env: dict[str, str] | None = None) -> int:
    """Start ``cmd`` detached in its own session, output appended to ``log_file``; record its pid.

    ``posix_spawn`` rather than ``subprocess.Popen``: the process outlives this one, so no Popen object should
    own it (and warn when collected while the broker still runs).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), flags, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawnp(
        cmd[0], list(cmd), dict(os.environ if env is None else env), file_actions=actions, setsid=True
    )
    pid_file.write_text(str(pid))
    return pid


def stop(pid_file: Path, marker: str, *, timeout: float = 30.0) -> bool:
    """SIGTERM our process, SIGKILL it after ``timeout`` seconds; True when something was stopped."""
    pid = running_pid(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(pid_file, marker) is None:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if running_pid(pid_file, marker) is None:
                break
            time.sleep(0.1)
    _reap(pid)
    pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (tests start the stack in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
