"""`kenshin-hub demo` and `kenshin-hub bench ingest`: the pipeline end to end on the local stack.

Both start the processors and the SQL sinks as child processes (as `kenshin-hub run` would), publish a synthetic
city through the same Avro serde as any upstream system, and read the results back from SQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connectors.simulators import City, publish
from hub.kafka import ClientConfig, producer_config
from hub.lag import wait_drained
from hub.office import print_statistics
from hub.pii import key_file_of, open_key_file
from hub.scenario import run_scenario
from hub.settings import Settings
from hub.supervise import Supervisor, hub_command
from hub.validation import fiscal_year_start
from processors import store
from processors.app import APP_ID
from schemas.serde import TopicSerde, registry_client
from sinks.db import make_engine, upgrade
from sinks.runner import GROUP_ID as SINKS_GROUP
from sinks.tables import invitations, ledger_entries, residents, screening_errors
from topics import catalog


def pipeline_processes(
    settings: Settings, env: dict[str, str] | None = None, processes: tuple[str, ...] = ("processors", "sinks")
) -> Supervisor:
    """The given `kenshin-hub run` processes as supervised children (``with``), logging to ``<state>/logs/<what>.log``.

    A child that exits inside the block raises :class:`~hub.supervise.ChildExited` (its name, exit code or signal,
    the tail of its log) at once; on the way out all are stopped (SIGTERM, then SIGKILL after 30 s).
    """
    return Supervisor({what: hub_command(what) for what in processes}, log_dir=settings.state_dir / "logs", env=env)


def _count(conn: sa.Connection, table: sa.Table, tenant: str, *group: sa.ColumnElement[object]) -> list[sa.Row]:  # type: ignore[type-arg]
    query = sa.select(*group, sa.func.count()).where(table.c.tenant == tenant).group_by(*group).order_by(*group)
    return list(conn.execute(query).all())


def print_summary(settings: Settings, year: int) -> None:
    engine = make_engine(settings.database_url.reveal())
    tenant = settings.tenant
    try:
        with engine.connect() as conn:
            print(f"\n== summary for {tenant}, fiscal year {year} ==")
            print(
                "residents:  " + ", ".join(f"{s} {n}" for s, n in _count(conn, residents, tenant, residents.c.status))
            )
            rows = _count(conn, ledger_entries, tenant, ledger_entries.c.kind)
            print(
                f"がん検診台帳 (ledger entries): {sum(n for _, n in rows)}  " + ", ".join(f"{k} {n}" for k, n in rows)
            )
            follow = conn.execute(
                sa.select(sa.func.count()).where(ledger_entries.c.tenant == tenant,
                                                 ledger_entries.c.followup_judgement.is_not(None))
            ).scalar_one()  # fmt: skip
            print(f"  with 精密検査 attached: {follow}")
            errors = _count(conn, screening_errors, tenant, screening_errors.c.status, screening_errors.c.reasons)
            print(f"screening errors: {sum(n for *_, n in errors)}")
            for status, reasons, n in errors:
                print(f"  {status:<9}{reasons:<48}{n:>6}")
            invites = _count(conn, invitations, tenant, invitations.c.invitation_type, invitations.c.trigger)
            print(f"invitations: {sum(n for *_, n in invites)}")
            for kind, trigger, n in invites:
                print(f"  {kind:<12}{trigger:<20}{n:>6}")
        print()
        print_statistics(engine, tenant, year)
    finally:
        engine.dispose()


def print_intake_example(settings: Settings, city: City) -> None:
    """Only what is needed is taken in: the people kept minimal, one of their stored change logs, and the 住基's
    対象年齢到達 records of the next fiscal year making those who become targets residents.
    """
    minimal = sorted(a for a, p in city.residents.items() if not p.in_scope)
    print(f"\n住基 intake (III.2): {len(minimal)} of {len(city.residents)} people are below target age: for them the "
          "住基 sends, and the processors keep,")  # fmt: skip
    print(
        "  only the types and dates of their changes and 性別・生年月日 (no residents row, nothing at the 中間サーバー)"
    )
    if not minimal:
        return
    keys = open_key_file(key_file_of(settings))
    engine = make_engine(settings.processors_url())
    try:
        with engine.connect() as conn:
            key = f"{settings.tenant}:{minimal[0]}"
            stored = conn.execute(sa.select(store.people.c.log).where(store.people.c.key == key)).scalar_one_or_none()
    finally:
        engine.dispose()
    for text in json.loads(store.open_log(stored, keys, settings.tenant, key) or "[]"):
        change = json.loads(text)
        kept = {k: v for k, v in change.items() if v is not None and k not in ("event_id", "occurred_at", "tenant")}
        print(f"  {minimal[0]}: {json.dumps(kept, ensure_ascii=False)}")
    records = city.target_age_records()
    with registry_client(settings.schema_registry_config()) as registry:
        producer = Producer(producer_config(settings))
        publish(producer, TopicSerde(catalog.RESIDENT_CHANGES, registry), records, progress=False)
    conf: ClientConfig = dict(settings.kafka_config())
    wait_drained(conf, APP_ID, (catalog.RESIDENT_CHANGES.name,), timeout_s=300)
    wait_drained(conf, SINKS_GROUP, (catalog.RESIDENTS.name,), timeout_s=300)
    engine = make_engine(settings.database_url.reveal())
    try:
        with engine.connect() as conn:
            known = conn.execute(
                sa.select(sa.func.count()).where(
                    residents.c.tenant == settings.tenant, residents.c.atena_no.in_([r.atena_no for r in records])
                )
            ).scalar_one()
    finally:
        engine.dispose()
    day = records[0].change_date if records else fiscal_year_start(city.fiscal_year + 1)
    print(f"対象年齢到達 ({day}): the 住基 sent {len(records)} full record(s); {known} of them are now in residents")


def print_audit_example(settings: Settings) -> None:
    """開示請求 and 監査 (`kenshin-hub person export`, `audit export` under an admin login): one resident's
    document, and today's operation log and 情報提供等記録, each written as a new 0600 file as the commands do.

    The resident's document holds their 個人番号 in clear (it is theirs, for them): the demo writes both files into
    a private temporary folder and removes it once it has shown what they hold, so it leaves no such file behind.
    """
    from datetime import UTC, datetime, timedelta

    from hub.audit import audit_lines, person_document, write_private

    scratch = tempfile.TemporaryDirectory(prefix="kenshin-demo-exports-")
    out = Path(scratch.name)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    engine, processors = make_engine(settings.database_url.reveal()), make_engine(settings.processors_url())
    try:
        with engine.connect() as conn, processors.connect() as pconn:
            atena = conn.execute(
                sa.select(ledger_entries.c.atena_no)
                .where(ledger_entries.c.tenant == settings.tenant)
                .order_by(ledger_entries.c.atena_no)
                .limit(1)
            ).scalar_one_or_none()
            if atena is None:
                return
            document = person_document(conn, pconn, settings.tenant, str(atena))
            person_file = out / f"person-{atena}-{stamp}.json"
            write_private(person_file, [json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"])
            counts: dict[str, int] = {}
            lines = []
            start = datetime.now(UTC).date()  # what the demo itself did: today's operations and records
            end = start + timedelta(days=1)
            for table, row in audit_lines(conn, settings.tenant, start, end):
                counts[table] = counts.get(table, 0) + 1
                lines.append(json.dumps({"table": table, "row": row}, ensure_ascii=False, sort_keys=True) + "\n")
            audit_file = out / f"audit-{start}-{stamp}.jsonl"
            write_private(audit_file, lines)
            sizes = {f.name: f.stat().st_size for f in (person_file, audit_file)}
    finally:
        engine.dispose()
        processors.dispose()
        scratch.cleanup()
    held = {k: len(v) for k, v in document.items() if isinstance(v, list) and v}
    print(
        f"\n開示請求 (`kenshin-hub person export {atena} --out FILE`, admin): {person_file.name}, "
        f"{sizes[person_file.name]:,} bytes (0600; the demo's copy removed): "
        + ", ".join(f"{k} {n}" for k, n in sorted(held.items()))
    )
    print(f"監査 (`kenshin-hub audit export --from {start} --to {end} --out FILE`): {audit_file.name}, "
          f"{sizes[audit_file.name]:,} bytes (0600; removed): "
          + (", ".join(f"{t} {n}" for t, n in sorted(counts.items())) or "no rows"))  # fmt: skip


def print_counter_example(settings: Settings, year: int) -> None:
    """The counter view of one resident who moved in and whose history came from their previous town (else one with
    a 台帳 entry): what staff see with `kenshin-hub person show` under their login.
    """
    from hub.counter import person_view, render
    from processors.rules.eligibility import load_rules
    from sinks.tables import ledger_history

    engine = make_engine(settings.database_url.reveal())
    tenant = settings.tenant
    try:
        with engine.connect() as conn:
            picked = (
                conn.execute(
                    sa.select(ledger_history.c.atena_no)
                    .where(ledger_history.c.tenant == tenant, ledger_history.c.kind.is_not(None))
                    .group_by(ledger_history.c.atena_no)
                    .order_by(sa.func.count().desc(), ledger_history.c.atena_no)
                    .limit(1)
                ).scalar_one_or_none()
                or conn.execute(
                    sa.select(ledger_entries.c.atena_no)
                    .where(ledger_entries.c.tenant == tenant)
                    .order_by(ledger_entries.c.atena_no)
                    .limit(1)
                ).scalar_one_or_none()
            )
            if picked is None:
                return
            view = person_view(conn, tenant, str(picked), year, load_rules())
        print(f"\n窓口: staff see this with `kenshin-hub person show {picked} --year {year}` (a recorded lookup)")
        print(render(view))
    finally:
        engine.dispose()


def print_carry_over_example(settings: Settings, year: int) -> None:
    """繰越受診通知 on request: who could ask this year, and one of them asking at the counter, decided by the
    processors (as `kenshin-hub notice candidates` / `notice request` do under a health login).
    """
    from hub.notices import (
        CHANNEL_LABEL,
        await_decision,
        candidates,
        carry_over_kinds,
        describe_decision,
        new_request,
        send_request,
    )
    from hub.office import office
    from processors.rules.eligibility import load_rules
    from schemas.models import RequestChannel

    rules = load_rules()
    with office(settings) as o:
        with o.engine.connect() as conn:
            found = candidates(conn, settings.tenant, year, rules, carry_over_kinds(rules))
        print(f"\n繰越受診通知: {len(found)} resident × kind could ask this year "
              "(`kenshin-hub notice candidates`)")  # fmt: skip
        if not found:
            return
        first = found[0]
        channel = RequestChannel.COUNTER
        request = new_request(settings.tenant, first.atena_no, first.kind, year, channel, "demo")
        send_request(o, request)
        decided = await_decision(o.engine, request, 120)
    print(f"  {first.atena_no} asks at the {CHANNEL_LABEL[channel]} for {first.kind.value} "
          f"(`kenshin-hub notice request {first.atena_no} --kind {first.kind.value} --channel {channel.value}`): "
          + (describe_decision(decided) if decided is not None else "no decision within 120 s"))  # fmt: skip


def print_mailing_example(settings: Settings, year: int) -> None:
    """The 受診勧奨 as they would go out: a preview batch (mailing list and letters) of the first few, and how many
    are held for 支援措置. Staff print the real batches with `kenshin-hub notice mail` (recorded, marked mailed).
    """
    from hub.mailing import TYPE_LABEL, LettersError, pending, preview
    from schemas.models import InvitationType

    notice = InvitationType.INVITATION
    out = settings.state_dir / "demo-mail" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, mode=0o700)
    engine = make_engine(settings.database_url.reveal())
    try:
        with engine.connect() as conn:
            letters, held = pending(conn, settings.tenant, year, notice)
            batch = preview(conn, settings.tenant, year, notice, out, 20)
    except LettersError as exc:
        print(f"\n郵送: no preview: {exc} (hub/letters.toml)")
        return
    finally:
        engine.dispose()
    print(f"\n郵送: {len(letters)} {TYPE_LABEL[notice]} letter(s) to print for {year}, {len(held)} held for 支援措置 "
          f"until staff decide (`kenshin-hub notice held`, `notice mail-decide`)")  # fmt: skip
    if batch is not None:
        print(f"  a preview of the first {len(batch.letters)} (not marked mailed): {batch.csv_path}, "
              f"{batch.pdf_path}")  # fmt: skip
        print(f"  staff print them all with `kenshin-hub notice mail --type {notice.value} --year {year} --out DIR`")


def print_institutions_example(settings: Settings, year: int) -> None:
    """The 実施医療機関 in force at the year's start, as `kenshin-hub institution list --on` shows them."""
    from hub.institutions import describe, registry

    day = fiscal_year_start(year)
    engine = make_engine(settings.database_url.reveal())
    try:
        with engine.connect() as conn:
            reg, recorded = registry(conn, settings.tenant)
    finally:
        engine.dispose()
    shown = reg.in_force(settings.tenant, day)
    print(f"\n実施医療機関 on {day} (`kenshin-hub institution list --on {day}`; staff change them with "
          f"`institution register|modify`, recorded): {len(shown)} registered, "
          f"{sum(len(v) for v in recorded.values())} change(s) recorded")  # fmt: skip
    for inst in shown[:3]:
        print(f"  {describe(inst)}")


def print_reports_example(settings: Settings, year: int) -> None:
    """The three reports of the year as files (what `kenshin-hub report performance|national|expenses` writes and
    records under a health login), in a folder of the state directory.
    """
    from hub.reports import REPORTS, write_report

    out = settings.state_dir / "demo-reports" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, mode=0o700)
    engine = make_engine(settings.database_url.reveal())
    print(f"\n帳票 ({year}年度; staff run `kenshin-hub report <name> --year {year} --out DIR`, a recorded export):")
    try:
        with engine.connect() as conn:
            for name in REPORTS:
                made, paths, counted = write_report(conn, settings.tenant, year, name, out, {})
                print(f"  {made[0].title}: {counted} entries → {', '.join(p.name for p in paths)}")
    finally:
        engine.dispose()
    print(f"  in {out}")


def print_corrections_example(settings: Settings) -> None:
    """エラー処理 as staff do it (`errors accept`, `errors correct`, `ledger void`): decisions the processors apply."""
    from hub.corrections import await_entry, await_error, decision, entry_line, send
    from hub.office import office
    from processors.rules.decisions import packaged_decisions
    from schemas.models import ErrorReason, LedgerDecisionType

    se, r = screening_errors, residents
    rules = packaged_decisions()
    with office(settings) as o:
        with o.engine.connect() as conn:
            open_errors = [dict(x._mapping) for x in conn.execute(
                sa.select(se).where(se.c.tenant == settings.tenant, se.c.status == "OPEN").order_by(se.c.reception_no)
            )]  # fmt: skip
            entry = conn.execute(
                sa.select(ledger_entries.c.atena_no, ledger_entries.c.kind, ledger_entries.c.fiscal_year,
                          ledger_entries.c.reception_no)
                .where(ledger_entries.c.tenant == settings.tenant, ledger_entries.c.follow_up.is_(None))
                .order_by(ledger_entries.c.atena_no).limit(1)
            ).first()  # fmt: skip
            kana = {x.atena_no: x.name_kana for x in conn.execute(sa.select(r.c.atena_no, r.c.name_kana)
                                                                  .where(r.c.tenant == settings.tenant))}  # fmt: skip
        print(f"\nエラー処理: {len(open_errors)} open error(s); staff decide them, the processors apply the decision")

        def reasons(row: dict[str, object]) -> list[ErrorReason]:
            return [ErrorReason(x) for x in str(row["reasons"]).split(",") if x]

        kana_only = [e for e in open_errors if reasons(e) == [ErrorReason.KANA_MISMATCH] and e["atena_no"] in kana]
        acceptable = [e for e in open_errors if rules.accepts(reasons(e)) and e not in kana_only[:1]]
        steps: list[tuple[str, LedgerDecisionType, dict[str, object], dict[str, object]]] = []
        if kana_only:
            fix = {"subject.name_kana": str(kana[str(kana_only[0]["atena_no"])])}
            steps.append(("errors correct {rec} --set subject.name_kana=… --reason 'カナを住基に合わせて訂正'",
                          LedgerDecisionType.CORRECT, kana_only[0], {"corrections": fix}))  # fmt: skip
        if acceptable:
            steps.append(("errors accept {rec} --reason '本人確認済み'", LedgerDecisionType.ACCEPT, acceptable[0], {}))
        for shown, kind, row, more in steps:
            reason = shown.split("'")[1]
            d = decision(settings.tenant, kind, str(row["atena_no"]), str(row["reception_no"]), "demo", reason,
                         result_event_id=uuid.UUID(str(row["result_event_id"])), **more)  # fmt: skip
            send(o, d)
            settled = await_error(o, d, 120)
            made = await_entry(o, d.atena_no, str(row["kind"]), d, 60) if settled is not None else None
            print(f"  `kenshin-hub {shown.format(rec=row['reception_no'])}` ({row['reasons']}): "
                  + (f"RESOLVED — {settled['resolution']}" if settled else "not settled within 120 s"))  # fmt: skip
            if made is not None:
                print(f"    {entry_line(made)}")
        if entry is not None:
            d = decision(settings.tenant, LedgerDecisionType.VOID, entry.atena_no, entry.reception_no, "demo",
                         "重複登録")  # fmt: skip
            send(o, d)
            made = await_entry(o, entry.atena_no, entry.kind, d, 120)
            print(f"  `kenshin-hub ledger void {entry.atena_no} --kind {entry.kind} --year {entry.fiscal_year} "
                  f"--reason 重複登録`: " + (entry_line(made) if made else "not applied within 120 s"))  # fmt: skip


def cmd_demo(settings: Settings, args: argparse.Namespace, prepare: Callable[[], int],
             start_year: Callable[[int], None]) -> int:  # fmt: skip
    """The main job on the local stack: stack + topics + schemas, a synthetic city and a year of results."""
    rc = prepare()
    if rc:
        return rc
    engine = make_engine(settings.database_url.reveal())
    upgrade(engine)
    engine.dispose()
    print(f"\nsynthetic city of {args.size} residents (seed {args.seed}), fiscal year {args.year}, "
          f"{args.dirty:.0%} dirty results; processors and sinks log to {settings.state_dir / 'logs'}")  # fmt: skip
    started = time.monotonic()
    with pipeline_processes(settings):
        run = run_scenario(settings, seed=args.seed, size=args.size, fiscal_year=args.year, dirty_share=args.dirty,
                           start_fiscal_year=lambda: start_year(args.year), timeout_s=1800)  # fmt: skip
        events = sum(run.published.values())
        print(f"{events} events through the pipeline in {time.monotonic() - started:.1f}s")
        print_summary(settings, args.year)
        print("\n情報提供ネットワーク: this city, the 中間サーバー and simulated municipalities")
        from hub.provision_demo import run_provision_demo

        run_provision_demo(settings, run.city, args.seed, fiscal_year_start(args.year))
        print_counter_example(settings, args.year)
        print_carry_over_example(settings, args.year)
        print_corrections_example(settings)
        print_mailing_example(settings, args.year)
        print_institutions_example(settings, args.year)
        print_reports_example(settings, args.year)
        print_audit_example(settings)
        print_intake_example(settings, run.city)
    print("\nThe stack keeps running (`kenshin-hub stack down` stops it); the tables are in", end=" ")
    print(settings.describe()[[k for k, _ in settings.describe()].index("KENSHIN_DATABASE_URL")][1])
    return 0


# --- benchmark ------------------------------------------------------------------------------------------------


def end_offsets(conf: ClientConfig, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    consumer = Consumer({**conf, "group.id": f"bench-{uuid.uuid4().hex}", "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=30).topics
        return {
            (t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=30, cached=False)[1]
            for t in topics
            for p in metadata[t].partitions
        }
    finally:
        consumer.close()


def passthrough(conf: ClientConfig, settings: Settings, start: dict[tuple[str, int], int],
                end: dict[tuple[str, int], int]) -> tuple[int, float]:  # fmt: skip
    """Raw confluent-kafka consume → produce of exactly the messages in [start, end): (count, seconds)."""
    admin = AdminClient(dict(conf))
    scratch = f"bench.passthrough.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(scratch, num_partitions=6, replication_factor=1)])[scratch].result(timeout=30)
    want = sum(end[k] - start[k] for k in start)
    consumer = Consumer({**conf, "group.id": f"bench-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "log_level": 0})  # fmt: skip
    producer = Producer(producer_config(settings))
    consumer.assign([TopicPartition(t, p, start[(t, p)]) for (t, p) in start if end[(t, p)] > start[(t, p)]])
    count = 0
    began = time.monotonic()
    try:
        while count < want and time.monotonic() - began < 600:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                key = (str(msg.topic()), int(msg.partition() or 0))
                if int(msg.offset() or 0) >= end[key]:
                    continue
                while True:
                    try:
                        producer.produce(scratch, key=msg.key(), value=msg.value())
                        break
                    except BufferError:
                        producer.poll(0.1)
                count += 1
            producer.poll(0)
        producer.flush(60)
        elapsed = time.monotonic() - began
    finally:
        consumer.close()
        admin.delete_topics([scratch])
    return count, elapsed


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1048576:.0f} GiB, {platform.system()} {platform.release()}"


def _with_tenant(settings: Settings, tenant: str) -> Settings:
    from dataclasses import replace

    return replace(settings, tenant=tenant)
