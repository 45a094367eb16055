"""`kenshin-hub bench ingest`: a synthetic city through the pipeline, publish → SQL, against a raw passthrough.

The city and its year are generated and encoded before the clock starts, so the figure is the pipeline's, not the
simulator's. The processors and sinks are started (supervised) and ready first; then, timed:

1. the 住基 population is published, then the 年度開始 command (one per partition), each drained by the processors;
2. the year's 住基異動 and results are published together (arrival order across the topics does not matter);
3. the clock stops when the sinks have committed everything (their group's lag is 0).

Reported: events/s, the ratio to a raw confluent-kafka consume → produce of exactly the same input messages on the
same broker in the same run, peak RSS and CPU seconds per process, and the CPU cost per event. With ``--profile``,
py-spy records both processes during the timed part and the hottest frames are reported beside the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from confluent_kafka import Producer

from hub.demo import end_offsets, machine, passthrough, pipeline_processes
from hub.errors import CommandError
from hub.kafka import ClientConfig, producer_config
from hub.runtime.stack import onboard_tenant
from hub.scenario import PROCESSOR_INPUTS, SINK_INPUTS, build, year_start_commands
from hub.settings import Settings
from hub.supervise import wait_drained
from hub.validation import tenant_check_digit
from processors.app import APP_ID
from schemas.models import Event
from schemas.serde import TopicSerde, registry_client
from sinks.runner import GROUP_ID as SINKS_GROUP
from topics import catalog
from topics.catalog import Topic

Encoded = tuple[str, bytes, bytes, int | None]  # topic, key, value, partition (None: by key)


def _encode(settings: Settings, topic: Topic, events: Sequence[Event]) -> list[Encoded]:
    with registry_client(settings.schema_registry_config()) as registry:
        serde: TopicSerde[Event] = TopicSerde(topic, registry)
        return [(topic.name, serde.key(e), serde.value(e), None) for e in events]


def _commands(settings: Settings, year: int) -> list[Encoded]:
    commands = year_start_commands(settings.tenant, year, "kenshin-hub.bench")
    return [(t, k, v, n) for n, (t, k, v, _) in enumerate(_encode(settings, catalog.HUB_COMMANDS, commands))]


def _publish(producer: Producer, records: Sequence[Encoded]) -> None:
    for topic, key, value, partition in records:
        while True:
            try:
                if partition is None:
                    producer.produce(topic, key=key, value=value)
                else:
                    producer.produce(topic, key=key, value=value, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise CommandError("the benchmark's input was not delivered")


def _proc_figures(pid: int) -> tuple[float, float]:
    """(peak RSS in MiB, CPU seconds) of a running process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return hwm_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def _start_profiles(pids: dict[str, int], out: Path) -> list[tuple[str, Path, subprocess.Popen[bytes]]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise CommandError("py-spy is not installed: .venv/bin/pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)
    started = []
    for name, pid in pids.items():
        path = out / f"{name}.txt"
        proc = subprocess.Popen(  # noqa: S603 - our own profiler on our own children
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                "50",
                "--output",
                str(path),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append((name, path, proc))
    return started


def _stop_profiles(started: Sequence[tuple[str, Path, subprocess.Popen[bytes]]]) -> dict[str, list[str]]:
    for _name, _path, proc in started:
        proc.send_signal(signal.SIGINT)
    tops: dict[str, list[str]] = {}
    for name, path, proc in started:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        tops[name] = _top_frames(path) if path.exists() else ["(no profile written)"]
    return tops


def _top_frames(path: Path, lines: int = 12) -> list[str]:
    """The frames with the most samples anywhere on the stack ("total"), from py-spy's collapsed stacks."""
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        samples += n
        for frame in set(stack.split(";")):
            total[frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]] += n
    if not samples:
        return ["(no samples)"]
    return [f"{100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(lines + 4)[4:]]


def cmd_bench_ingest(settings: Settings, args: argparse.Namespace, prepare: Callable[[], int]) -> int:
    rc = prepare()
    if rc:
        return rc
    body = f"{random.Random().randrange(10000, 99999):05d}"  # noqa: S311 - a throw-away tenant, not a secret
    tenant = body + str(tenant_check_digit(body))
    bench = replace(settings, tenant=tenant)
    onboard_tenant(settings, tenant)  # the throw-away tenant's topics and (secured local stack) principals
    year = 2025
    print(f"bench: generating a synthetic city of {args.size} residents under throw-away tenant {tenant}")
    city, plan = build(args.seed, args.size, tenant, year, 0.05)
    population = _encode(bench, catalog.RESIDENT_CHANGES, city.initial)
    commands = _commands(bench, year)
    rest = _encode(bench, catalog.RESIDENT_CHANGES, city.changes) + _encode(
        bench, catalog.INSTITUTION_RESULTS, plan.results
    )
    events = len(population) + len(commands) + len(rest)
    conf: ClientConfig = dict(settings.kafka_config())
    inputs = (catalog.RESIDENT_CHANGES.name, catalog.INSTITUTION_RESULTS.name, catalog.HUB_COMMANDS.name)
    env = {**os.environ, "KENSHIN_TENANT": tenant}
    producer = Producer(producer_config(settings))
    with pipeline_processes(bench, env) as children:
        wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=600)
        wait_drained(conf, SINKS_GROUP, SINK_INPUTS, timeout_s=600)
        pids = {child.name: child.pid for child in children.children}
        cpu_before = {name: _proc_figures(pid)[1] for name, pid in pids.items()}
        profiles = _start_profiles(pids, args.profile) if args.profile else []
        start = end_offsets(conf, inputs)
        print(f"bench: {events} events, timed from the first publish to the last SQL commit")
        began = time.monotonic()
        _publish(producer, population)
        wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=3600)
        _publish(producer, commands)
        wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=3600)
        _publish(producer, rest)
        wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=3600)
        wait_drained(conf, SINKS_GROUP, SINK_INPUTS, timeout_s=3600)
        e2e_s = time.monotonic() - began
        tops = _stop_profiles(profiles)
        figures = {name: _proc_figures(pid) for name, pid in pids.items()}
    end = end_offsets(conf, inputs)
    raw_count, raw_s = passthrough(conf, settings, start, end)
    # The input topics also hold the 年度開始's continuation commands the processors wrote (one per 2,000 residents
    # of a partition): the passthrough moves those too, so it may see a few more than were published.
    if raw_count < events:
        raise CommandError(f"the passthrough saw {raw_count} messages, the pipeline was given {events}")
    e2e_rate, raw_rate = events / e2e_s, raw_count / raw_s
    cpu = {name: figures[name][1] - cpu_before[name] for name in figures}
    per_event_ms = 1000 * sum(cpu.values()) / events
    procs = "; ".join(f"{name}: peak RSS {figures[name][0]:.0f} MiB, {cpu[name]:.1f} CPU s" for name in sorted(figures))
    report = (
        f"\n## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — `kenshin-hub bench ingest --size {args.size}`\n\n"
        f"- machine: {machine()}; one local Kafka 4.1.1 node (the project's stack), SQLite stores\n"
        f"- input: {events} events (population {len(population)}, 年度開始 {len(commands)}, 異動 + results "
        f"{len(rest)}), generated and encoded before the clock starts\n"
        f"- end to end (publish → processors → topics → sinks → SQL committed): {e2e_s:.1f} s, "
        f"**{e2e_rate:,.0f} events/s**\n"
        f"- raw confluent-kafka consume→produce passthrough of the same {raw_count} messages, same broker, same run: "
        f"{raw_s:.1f} s, **{raw_rate:,.0f} events/s**\n"
        f"- ratio end-to-end / passthrough: **{e2e_rate / raw_rate:.3f}** (1 / {raw_rate / e2e_rate:.1f})\n"
        f"- processes: {procs}\n"
        f"- cost per event (processors + sinks CPU): **{per_event_ms:.2f} ms**\n"
    )
    for name, top in sorted(tops.items()):
        report += f"\n  py-spy, {name}, share of samples with the frame on the stack:\n\n"
        report += "".join(f"      {line}\n" for line in top)
    print(report)
    if args.report:
        with args.report.open("a", encoding="utf-8") as f:
            f.write(report)
        print(f"appended to {args.report}")
    return 0
