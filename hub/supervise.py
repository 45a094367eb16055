"""Child processes under supervision: each with its own log, watched while the parent waits, always stopped.

`kenshin-hub run all`, the demo and the benchmark start ``python -m hub.cli run <what>`` children and then wait (for
topics to drain, for the provision services to settle). A child that exits while they wait is a failure reported at
once: :class:`ChildExited` (a :class:`~hub.errors.CommandError`, so the CLI prints one line and exits non-zero)
names the child, its exit code or signal, and carries the last lines of its log, which :class:`Supervisor` prints to
stderr first. The death is noticed two ways:

- every wait loop of the demo, the benchmark and the provision flow calls :func:`check_running` at each turn
  (:func:`wait_drained` is the drain wait that does);
- while a supervisor is active in the main thread, a SIGCHLD handler checks the children the moment one exits, so
  code that waits without asking (the scenario's own drain waits in hub/scenario.py) is interrupted there too (by a
  BaseException, as Ctrl-C would, so no ``except Exception`` on the way swallows it; the supervisor turns it back
  into the ChildExited).

Stopping is SIGTERM to every child (each runs in its own process group, so a terminal's Ctrl-C reaches only the
parent, which stops them in order), a bounded wait, then SIGKILL; it runs on the way out of the ``with`` block,
whatever ends it: normal exit, a child's death, an error, KeyboardInterrupt, or SIGTERM/SIGHUP to the parent
(raised as :class:`Stopped`, a KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TextIO

from hub import lag
from hub.errors import CommandError
from hub.kafka import ClientConfig

TAIL_LINES = 20
_TAIL_BYTES = 64 * 1024
_Handler = Callable[[int, FrameType | None], Any] | int | None

_ACTIVE: list[Supervisor] = []


def hub_command(what: str) -> list[str]:
    """The command line of ``kenshin-hub run <what>`` with this interpreter."""
    return [sys.executable, "-m", "hub.cli", "run", what]


def exit_description(returncode: int) -> str:
    """``exited with code 3`` or ``was killed by signal SIGKILL (9)`` (Popen's negative return codes)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "signal"
    return f"was killed by signal {name} ({-returncode})"


class ChildExited(CommandError):
    """A supervised child process ended while the parent still needed it."""

    def __init__(self, name: str, pid: int, returncode: int, log: Path, tail: Sequence[str]) -> None:
        self.name = name
        self.pid = pid
        self.returncode = returncode
        self.log = log
        self.tail = list(tail)
        self.reported = False
        super().__init__(f"{name} (pid {pid}) {exit_description(returncode)}; its log: {log}")

    def report(self, out: TextIO | None = None) -> None:
        """Print the tail of the child's log (once)."""
        if self.reported:
            return
        self.reported = True
        out = sys.stderr if out is None else out
        if self.tail:
            print(f"kenshin-hub: {self} — its last {len(self.tail)} log lines:", file=out)
            for line in self.tail:
                print(f"  | {line}", file=out)
        else:
            print(f"kenshin-hub: {self} — it wrote nothing to its log", file=out)
        out.flush()


class ChildExitedInterrupt(BaseException):
    """How the SIGCHLD handler raises a :class:`ChildExited` into whatever code is running.

    A BaseException on its way, like KeyboardInterrupt, so that no ``except Exception`` of the interrupted code (a
    serializer quoting its failure, a retry loop) turns it into something else; the supervisor's exit raises the
    ChildExited it carries.
    """

    def __init__(self, error: ChildExited) -> None:
        self.error = error
        super().__init__(str(error))


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the supervising process (the CLI treats it like Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def tail(path: Path, *, start: int = 0, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``path`` written after byte ``start`` (the output of this run, not earlier ones)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            begin = max(start, size - _TAIL_BYTES)
            f.seek(begin)
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    if begin > start and text:
        text = text[1:]  # the first line read may be cut
    return text[-lines:]


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    log_start: int
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Start the named commands as children, watch them while the ``with`` block runs, stop them at its end.

    ``with Supervisor({"sinks": hub_command("sinks")}, log_dir=logs) as children: ...`` — each child's stdout and
    stderr are appended to ``log_dir/<name>.log``. Inside the block, :meth:`check` (or :func:`check_running`) raises
    :class:`ChildExited` when a child has exited; in the main thread (unless ``signals=False``) a SIGCHLD handler
    raises it as soon as one does, and SIGTERM/SIGHUP raise :class:`Stopped`. A child's exit is reported once per
    supervisor; a block that ends normally is checked once more. Stopping waits ``stop_timeout_s`` after SIGTERM.
    ``on_start(child)`` runs as each child starts (before any check: ``run all`` prints the pids there).
    """

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        stop_timeout_s: float = 30.0,
        signals: bool = True,
        on_start: Callable[[Child], None] | None = None,
    ) -> None:
        self._commands = {name: list(argv) for name, argv in commands.items()}
        self._log_dir = log_dir
        self._env = dict(env) if env is not None else None
        self._stop_timeout_s = stop_timeout_s
        self._signals = signals
        self._on_start = on_start
        self.children: list[Child] = []
        self._started = False
        self._stopping = False
        self._failed = False
        self._saved: dict[int, _Handler] = {}

    # --- the with block -------------------------------------------------------------------------------------

    def __enter__(self) -> Supervisor:
        _ACTIVE.append(self)
        try:
            self._install_handlers()
            self._log_dir.mkdir(parents=True, exist_ok=True)
            for name, argv in self._commands.items():
                self._start(name, argv)
            self._started = True
            self.check()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, ChildExitedInterrupt):
            died: ChildExited | None = exc.error
        else:
            died = exc if isinstance(exc, ChildExited) else None
        try:
            if exc is None:
                self.check()  # a child that died while the block finished is a failure too
        except ChildExited as late:
            died = late
            raise
        finally:
            self._stopping = True  # from here on the handlers raise nothing
            try:
                if died is not None:
                    died.report()
            finally:
                try:
                    self.stop()
                finally:
                    self._restore_handlers()
                    if self in _ACTIVE:
                        _ACTIVE.remove(self)
        if isinstance(exc, ChildExitedInterrupt):
            raise exc.error from None

    # --- checking -------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`ChildExited` if a child has exited (once; nothing while starting or stopping)."""
        if not self._started or self._stopping or self._failed:
            return
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                self._failed = True
                raise ChildExited(child.name, child.pid, code, child.log, tail(child.log, start=child.log_start))

    def wait(self, timeout_s: float | None = None, *, poll_s: float = 0.5) -> None:
        """Block while every child runs: :class:`ChildExited` when one exits, return after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            self.check()
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))
        self.check()

    # --- starting and stopping ------------------------------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> None:
        path = self._log_dir / f"{name}.log"
        with path.open("ab") as log:
            start = log.seek(0, 2)
            process = subprocess.Popen(  # noqa: S603 - our own commands (hub_command), never user input
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self._env,
                process_group=0,  # its own group: Ctrl-C on the terminal reaches only us; we stop it
            )  # fmt: skip
        child = Child(name, argv, path, start, process)
        self.children.append(child)
        if self._on_start is not None:
            self._on_start(child)

    def stop(self) -> None:
        """SIGTERM every child still running, wait up to ``stop_timeout_s``, SIGKILL the rest; reap them all."""
        self._stopping = True
        interrupted: KeyboardInterrupt | None = None
        try:
            for child in self.children:
                _signal(child, signal.SIGTERM)
            deadline = time.monotonic() + self._stop_timeout_s
            for child in self.children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt as exc:  # a second Ctrl-C: no more waiting, but nothing is left behind
            interrupted = exc
        for child in self.children:
            if child.process.poll() is None:
                _signal(child, signal.SIGKILL)
        for child in self.children:
            child.process.wait()
        if interrupted is not None:
            raise interrupted

    # --- signals --------------------------------------------------------------------------------------------

    def _install_handlers(self) -> None:
        if not self._signals or threading.current_thread() is not threading.main_thread():
            return  # (only the main thread may set handlers) check() at each turn still reports a death
        for signum, handler in (
            (signal.SIGCHLD, self._on_sigchld),
            (signal.SIGTERM, self._on_stop),
            (signal.SIGHUP, self._on_stop),
        ):
            self._saved[signum] = signal.signal(signum, handler)

    def _restore_handlers(self) -> None:
        while self._saved:
            signum, handler = self._saved.popitem()
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _on_sigchld(self, signum: int, frame: FrameType | None) -> None:
        try:
            self.check()
        except ChildExited as exc:
            raise ChildExitedInterrupt(exc) from None
        previous = self._saved.get(signal.SIGCHLD)
        if callable(previous):  # an enclosing supervisor's handler: its children are checked as well
            previous(signum, frame)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            raise Stopped(signum)


def _signal(child: Child, signum: signal.Signals) -> None:
    """Signal the child's process group (it and anything it started) while the child is not yet reaped."""
    if child.process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signum)


def check_running() -> None:
    """Raise :class:`ChildExited` if a child of any active supervisor has exited (a wait loop calls it each turn)."""
    for supervisor in reversed(_ACTIVE):
        supervisor.check()


def wait_drained(conf: ClientConfig, group: str, topics: Iterable[str], *, timeout_s: float = 300.0) -> float:
    """:func:`hub.lag.wait_drained` that checks the supervised children at every turn; the seconds it took."""
    return lag.wait_drained(conf, group, topics, timeout_s=timeout_s, check=check_running)
