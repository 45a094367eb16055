"""hub/supervise.py with real child processes: a death is reported at once, with its tail; nothing is left running."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import hub.supervise
from hub.cli import main
from hub.errors import CommandError
from hub.supervise import ChildExited, Stopped, Supervisor, check_running

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BOUND_S = 20.0  # every wait below gives up after this long; a passing run takes a fraction of it

# prints 30 lines, then fails with code 3
CRASHER = "import sys\nfor i in range(30):\n    print(f'crasher line {i}', flush=True)\nsys.exit(3)\n"
# runs until stopped (SIGTERM ends it)
RUNNER = "import time\nprint('runner ready', flush=True)\nwhile True:\n    time.sleep(1)\n"
# ignores SIGTERM: only SIGKILL ends it
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('stubborn ready', flush=True)\n"
    "while True:\n    time.sleep(1)\n"
)
KILLS_ITSELF = "import os, signal\nprint('going', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"


def py(source: str) -> list[str]:
    return [sys.executable, "-c", source]


def until(condition: Callable[[], bool], what: str) -> None:
    """A bounded wait for something that has to happen (the test fails when it does not)."""
    deadline = time.monotonic() + BOUND_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {BOUND_S:.0f}s")
        time.sleep(0.02)


def logged(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text(errors="replace")


def gone(pid: int) -> bool:
    """Reaped, not merely dead (a zombie still has its /proc entry)."""
    return not Path(f"/proc/{pid}").exists()


def assert_all_stopped(supervisor: Supervisor) -> None:
    for child in supervisor.children:
        assert child.process.returncode is not None, f"{child.name} was not reaped"
        assert gone(child.pid), f"{child.name} (pid {child.pid}) is still there"


def inside(supervisor: Supervisor, *steps: Callable[[], object]) -> None:
    with supervisor:
        for step in steps:
            step()


def waiting(ask: bool) -> None:
    """A wait loop of the demo's kind, bounded: asking at each turn (``ask``), or not asking and swallowing every
    Exception on the way, as broad code may (the SIGCHLD handler must get through anyway).
    """
    began = time.monotonic()
    while time.monotonic() - began < BOUND_S:
        if ask:
            check_running()
            time.sleep(0.05)
        else:
            with contextlib.suppress(Exception):  # broad code must not swallow it
                time.sleep(0.05)


def crash_until_reported(supervisor: Supervisor, *, ask: bool) -> ChildExited:
    began = time.monotonic()
    with pytest.raises(ChildExited) as raised:
        inside(supervisor, lambda: waiting(ask))
    assert time.monotonic() - began < BOUND_S  # the wait was cut short by the death, not by its own bound
    return raised.value


def exited(supervisor: Supervisor, index: int = 0) -> Callable[[], None]:
    return lambda: until(lambda: supervisor.children[index].process.poll() is not None, "the child exits")


@pytest.mark.parametrize("ask", [True, False], ids=["checked-each-turn", "sigchld-while-sleeping"])
def test_a_dead_child_is_reported_with_its_tail_and_the_others_are_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ask: bool
) -> None:
    (tmp_path / "crasher.log").write_text("an earlier run's line\n")
    supervisor = Supervisor({"runner": py(RUNNER), "crasher": py(CRASHER)}, log_dir=tmp_path, signals=not ask)
    died = crash_until_reported(supervisor, ask=ask)

    assert isinstance(died, CommandError)  # the CLI turns it into one line and exit 1
    assert died.name == "crasher"
    assert died.returncode == 3
    assert died.tail == [f"crasher line {i}" for i in range(10, 30)]  # this run's last 20 lines only
    assert re.fullmatch(rf"crasher \(pid {died.pid}\) exited with code 3; its log: .*crasher\.log", str(died))
    err = capsys.readouterr().err
    assert "kenshin-hub: crasher" in err
    assert "  | crasher line 29" in err
    assert "crasher line 9\n" not in err
    runner = supervisor.children[0]
    assert runner.process.returncode == -signal.SIGTERM
    assert_all_stopped(supervisor)
    assert not hub.supervise._ACTIVE


def test_a_child_killed_by_a_signal_is_named_with_the_signal(tmp_path: Path) -> None:
    supervisor = Supervisor({"victim": py(KILLS_ITSELF), "runner": py(RUNNER)}, log_dir=tmp_path)
    died = crash_until_reported(supervisor, ask=False)
    assert died.name == "victim"
    assert "was killed by signal SIGKILL (9)" in str(died)
    assert died.tail == ["going"]
    assert_all_stopped(supervisor)


@pytest.mark.parametrize("ask", [True, False], ids=["checked-each-turn", "sigchld-while-sleeping"])
def test_a_death_is_reported_inside_a_nested_block_too(tmp_path: Path, ask: bool) -> None:
    """The demo nests supervisors (processors + sinks around the provision services): any wait sees all of them."""
    outer = Supervisor({"crasher": py(CRASHER)}, log_dir=tmp_path, signals=not ask)
    inner = Supervisor({"runner": py(RUNNER)}, log_dir=tmp_path, signals=not ask)
    began = time.monotonic()
    with pytest.raises(ChildExited, match="crasher"):
        inside(outer, lambda: inside(inner, lambda: waiting(ask)))
    assert time.monotonic() - began < BOUND_S
    assert_all_stopped(outer)
    assert_all_stopped(inner)


def test_the_provision_and_drain_waits_check_the_children_first(tmp_path: Path) -> None:
    from connectors.runner import GROUPS
    from hub.provision_demo import settle
    from hub.supervise import wait_drained

    for wait in (lambda: settle({}, [GROUPS["chukan"]], "012041"), lambda: wait_drained({}, "g", ["t"])):
        supervisor = Supervisor({"crasher": py(CRASHER)}, log_dir=tmp_path, signals=False)
        # no broker here: the wait must fail on the dead child before asking Kafka anything
        with pytest.raises(ChildExited, match="crasher"):
            inside(supervisor, exited(supervisor), wait)
        assert_all_stopped(supervisor)


def test_stop_escalates_to_sigkill_after_the_bounded_wait(tmp_path: Path) -> None:
    supervisor = Supervisor({"stubborn": py(STUBBORN)}, log_dir=tmp_path, stop_timeout_s=0.5)
    began = time.monotonic()
    with supervisor:
        until(logged(tmp_path / "stubborn.log", "stubborn ready"), "the stubborn child ignores SIGTERM")
    assert supervisor.children[0].process.returncode == -signal.SIGKILL
    assert time.monotonic() - began < BOUND_S
    assert_all_stopped(supervisor)


def test_keyboard_interrupt_stops_every_child(tmp_path: Path) -> None:
    supervisor = Supervisor({"a": py(RUNNER), "b": py(RUNNER)}, log_dir=tmp_path)

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        inside(supervisor, lambda: until(logged(tmp_path / "b.log", "runner ready"), "b starts"), interrupt)
    assert [c.process.returncode for c in supervisor.children] == [-signal.SIGTERM, -signal.SIGTERM]
    assert_all_stopped(supervisor)
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL  # the handlers are restored


def test_a_command_that_cannot_start_leaves_nothing_behind(tmp_path: Path) -> None:
    supervisor = Supervisor({"runner": py(RUNNER), "missing": [str(tmp_path / "no-such-program")]}, log_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        inside(supervisor)
    assert_all_stopped(supervisor)


def _commands(crash: str | None) -> Callable[[str], list[str]]:
    return lambda what: py(CRASHER if what == crash else RUNNER)


def test_run_all_reports_a_dead_process_stops_the_others_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KENSHIN_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(hub.supervise, "hub_command", _commands("sinks"))
    began = time.monotonic()
    assert main(["run", "all"]) == 1
    assert time.monotonic() - began < BOUND_S
    out, err = capsys.readouterr()
    pids = {name: int(pid) for name, pid in re.findall(r"^(\w+): pid (\d+), log ", out, re.MULTILINE)}
    assert sorted(pids) == ["chukan", "connector", "network", "processors", "sinks"]
    assert all(gone(pid) for pid in pids.values())
    log = tmp_path / "logs" / "sinks.log"
    assert (
        err.strip().splitlines()[-1]
        == f"kenshin-hub: error: sinks (pid {pids['sinks']}) exited with code 3; its log: {log}"
    )
    assert "  | crasher line 29" in err
    assert "Traceback" not in err


def test_run_all_stops_its_children_on_sigterm(tmp_path: Path) -> None:
    script = (
        "import sys\nimport hub.supervise\n"
        f"hub.supervise.hub_command = lambda what: [sys.executable, '-c', {RUNNER!r}]\n"
        "from hub.cli import main\nsys.exit(main(['run', 'all']))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSHIN_")} | {"KENSHIN_STATE_DIR": str(tmp_path)}
    parent = subprocess.Popen(py(script), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for what in ("processors", "sinks", "connector", "chukan", "network"):
            until(logged(tmp_path / "logs" / f"{what}.log", "runner ready"), f"{what} starts")
        parent.send_signal(signal.SIGTERM)
        out, err = parent.communicate(timeout=BOUND_S)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.communicate()
    assert parent.returncode == 0, err
    pids = [int(pid) for pid in re.findall(r"^\w+: pid (\d+), log ", out, re.MULTILINE)]
    assert len(pids) == 5
    assert all(gone(pid) for pid in pids)
    assert "SIGTERM: stopped all 5 processes" in out


def test_stopped_is_a_keyboard_interrupt() -> None:
    """The CLI's KeyboardInterrupt branch (exit 130) covers SIGTERM/SIGHUP in the demo as well."""
    assert isinstance(Stopped(signal.SIGTERM), KeyboardInterrupt)


def test_the_scenario_checks_its_processes_at_every_drain_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that runs the processes itself (the integration tests' Pipeline) hands run_scenario a check: a dead
    worker then fails the first drain wait at once, before Kafka is asked anything, instead of costing timeout_s."""
    import contextlib

    from hub import scenario
    from hub.settings import load_settings

    city = SimpleNamespace(initial=["a", "b"], changes=["c"])
    plan = SimpleNamespace(results=["d"])
    monkeypatch.setattr(scenario, "build", lambda *_args: (city, plan))
    monkeypatch.setattr(scenario, "registry_client", lambda _conf: contextlib.nullcontext(None))
    monkeypatch.setattr(scenario, "Producer", lambda _conf: None)
    monkeypatch.setattr(scenario, "TopicSerde", lambda _topic, _registry: None)
    monkeypatch.setattr(scenario, "publish", lambda _p, _s, events, **_kw: len(events))
    calls: list[str] = []

    def dead() -> None:
        calls.append("check")
        raise RuntimeError("processors exited with code 1")

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="processors exited"):
        scenario.run_scenario(load_settings({"KENSHIN_STATE_DIR": str(tmp_path)}), seed=1, size=2, fiscal_year=2026,
                              start_fiscal_year=lambda: None, progress=False, timeout_s=600, check=dead)  # fmt: skip
    assert calls == ["check"]
    assert time.monotonic() - began < BOUND_S
