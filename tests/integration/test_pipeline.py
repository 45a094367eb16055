"""The whole path on the real broker: 住基 and results in, exact ledger, errors and invitations out in SQL; and the
same tables whatever order the two input topics arrive in (withdrawals through Kafka, the runtime and the sinks)."""

import csv
import io
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, Producer, TopicPartition
from pypdf import PdfReader

from connectors.simulators import City, publish
from connectors.simulators.institution import ResultTruth
from hub.counter import KIND_LABEL
from hub.kafka import producer_config
from hub.lag import wait_drained
from hub.pii import key_file_of, open_key_file
from hub.scenario import PROCESSOR_INPUTS, SINK_INPUTS, build, run_scenario
from processors import store
from processors.app import APP_ID
from processors.rules.eligibility import load_rules
from processors.rules.ledger import fukuhon_for, load_fukuhon_policy
from processors.store import open_log
from schemas import models as m
from schemas.serde import TopicSerde, registry_client
from sinks.runner import GROUP_ID as SINKS_GROUP
from tests.integration.conftest import Endpoints
from tests.integration.oracle import expected
from tests.integration.pipeline import (
    STAFF_ADMIN,
    STAFF_HEALTH,
    STAFF_PASSWORD,
    Pipeline,
    running_pipeline,
    tenant_code,
)
from topics import catalog

pytestmark = pytest.mark.integration

SEED, SIZE, YEAR = 7, 600, 2025

# What every kind of dirty input must become.
REASON_OF = {
    ResultTruth.KANA_TYPO: m.ErrorReason.KANA_MISMATCH,
    ResultTruth.WRONG_BIRTH_DATE: m.ErrorReason.BIRTH_DATE_MISMATCH,
    ResultTruth.MOVED_OUT: m.ErrorReason.NOT_RESIDENT_ON_EXAM_DATE,
    ResultTruth.INELIGIBLE_AGE: m.ErrorReason.NOT_ELIGIBLE_AGE,
    ResultTruth.UNKNOWN_INSTITUTION: m.ErrorReason.UNKNOWN_INSTITUTION,
}


def test_known_population_through_the_pipeline(endpoints: Endpoints, tmp_path: Path) -> None:
    tenant = tenant_code("01203")  # 小樽市: a tenant of its own, apart from other tests' data
    with running_pipeline(endpoints, tmp_path, tenant) as pipeline:
        run = run_scenario(
            pipeline.settings, seed=SEED, size=SIZE, fiscal_year=YEAR, dirty_share=0.2, progress=False,
            start_fiscal_year=lambda: pipeline.start_year(YEAR), check=pipeline.check, timeout_s=300,
        )  # fmt: skip
        ledger = pipeline.rows("ledger_entries")
        errors = pipeline.rows("screening_errors")
        invitations = pipeline.rows("invitations")
        residents = pipeline.rows("residents")
        counter = _counter_view(pipeline, ledger, errors)
        elsewhere = _history_from_the_previous_town(pipeline, ledger)
        carry_over = _carry_over_requests(pipeline)
        mailing = _mailing(pipeline)
        reports = _reports(pipeline)
        target_age = _target_age(pipeline, run.city)

    plan = run.plan
    truth = Counter(plan.truth.values())
    assert all(truth[category] > 0 for category in REASON_OF), truth  # every kind of dirty case is in the load

    # Every dirty result is an error with the right reason; corrected ones are resolved, the others stay open.
    by_reception = {row["reception_no"]: row for row in errors if row["tenant"] == tenant}
    for reception_no in plan.dirty:
        row = by_reception[reception_no]
        assert REASON_OF[plan.truth[reception_no]].value in str(row["reasons"]).split(","), reception_no
        want = m.ErrorStatus.RESOLVED if reception_no in plan.corrections else m.ErrorStatus.OPEN
        assert row["status"] == want.value, reception_no
    assert set(by_reception) == set(plan.dirty)  # and nothing clean became an error

    # Exact contents against the rules applied in-process to the same inputs.
    want = expected(run.city, plan, YEAR)
    assert len(want.ledger) > 100
    got_ledger = {(r["atena_no"], r["kind"], r["fiscal_year"]): r for r in ledger if r["tenant"] == tenant}
    assert set(got_ledger) == set(want.ledger)
    for key, entry in want.ledger.items():
        row = got_ledger[key]
        assert (row["version"], row["reception_no"], row["exam_date"], row["exam_age"], row["institution_code"]) == (
            entry.version, entry.reception_no, entry.exam_date, entry.exam_age, entry.institution_code
        ), key  # fmt: skip
        judgement = entry.follow_up.findings.judgement.value if entry.follow_up else None
        assert row["followup_judgement"] == judgement, key
    assert {r: (e.status.value, ",".join(x.value for x in e.reasons)) for r, e in want.errors.items()} == {
        r: (row["status"], row["reasons"]) for r, row in by_reception.items()
    }
    got_invitations = {
        (r["atena_no"], r["kind"], r["fiscal_year"], r["invitation_type"]): r["trigger"]
        for r in invitations
        if r["tenant"] == tenant
    }
    assert got_invitations == {k: v.trigger.value for k, v in want.invitations.items()}
    # 繰越受診通知 is issued on request only (I.1 ② (2)): the 年度開始 and the 転入 send 受診勧奨 alone.
    assert {k[3] for k in got_invitations} == {m.InvitationType.INVITATION.value}
    assert {m.InvitationTrigger.MOVE_IN.value} <= set(got_invitations.values())

    # A resident the candidate list names asks at the counter: the processors issue the notice. The same resident
    # asking for a yearly kind is refused, with the reason; both requests are recorded operations.
    atena, kind = carry_over["atena"], m.ScreeningKind.BREAST.value
    assert "繰越受診通知を発行しました" in carry_over["issued"]
    assert "発行しません: NO_CARRY_OVER_FOR_KIND" in carry_over["refused"]
    assert [(r["invitation_type"], r["trigger"]) for r in carry_over["invitations"]
            if r["atena_no"] == atena and r["kind"] == kind] == [("CARRY_OVER", "REQUEST")]  # fmt: skip
    decisions = {(r["kind"], r["issued"], r["refusals"], r["channel"]) for r in carry_over["decisions"]}
    assert decisions == {(kind, True, "", "COUNTER"), ("COLORECTAL", False, "NO_CARRY_OVER_FOR_KIND", "PHONE")}
    for target in (f"person {atena} {kind} {YEAR}", f"person {atena} COLORECTAL {YEAR}"):
        assert ("NOTICE_REQUEST", target, "SUCCESS") in carry_over["operations"]
    assert "繰越受診通知の申出:" in carry_over["show"]

    # The 受診勧奨 go out in batches: a mailing list with the 住基's postcode and address, and one letter per person;
    # every batch is a recorded operation, and no one under 支援措置 is mailed without a staff decision.
    people = {str(r["atena_no"]): r for r in mailing["residents"] if r["tenant"] == tenant}
    invited = {a for (a, _, fy, t) in got_invitations if fy == YEAR and t == "INVITATION"}
    resident = {a for a in invited if people[a]["status"] == m.ResidentStatus.RESIDENT.value}
    flagged = {a for a in resident if people[a]["support_measure"]}
    assert flagged, "the scenario has a 支援措置 resident with a notice"
    first = mailing["first"]
    assert {row[4] for row in first["rows"]} == resident - flagged
    for row in first["rows"]:
        person = people[row[4]]
        assert (row[0], row[1], row[2]) == (person["postcode"], person["address"], person["name"]), row
        assert re.fullmatch(r"\d{3}-\d{4}", row[0]), row  # the 住基's postcode came through the pipeline
    assert first["pages"] == len(first["rows"])
    batches = -(-len(first["rows"]) // MAIL_BATCH)
    assert (len(first["csv"]), len(first["pdf"])) == (batches, batches)
    assert set(mailing["held"]) == flagged
    assert all(mode == 0o600 for mode in mailing["modes"])
    # the decided person alone, at the decided address, in the second run
    [(atena_decided, row)] = [(row[4], row) for row in mailing["second"]["rows"]]
    assert atena_decided == mailing["decided"]
    assert (row[0], row[1], row[8]) == ("070-0001", "小樽市花園1丁目1番1号", "DECIDED_OTHER")
    ops = [o for o in mailing["operations"] if o[0] == "NOTICE_MAILING"]
    assert len(ops) == batches + 1
    assert all(outcome == "SUCCESS" and "sha256:" in (detail or "") for _, _, outcome, detail in ops)
    assert ("MAILING_DECISION", f"person {atena_decided} mailing OTHER", "SUCCESS", None) in mailing["operations"]

    # The three reports, each a CSV and a PDF (the national one with its plot), on one basis: this city's entries.
    own = [r for r in reports["ledger"]  # as the reports saw it (the history above withdrew an entry)
           if r["tenant"] == tenant and r["fiscal_year"] == YEAR and r["history_from"] is None]  # fmt: skip
    assert len(own) > 100
    [perf_total] = [r for r in reports["performance"] if r and r[0] == "計"]
    assert int(perf_total[-1]) == len(own)
    national_rows = [r for r in reports["national"] if len(r) == 11 and r[3].isdigit()]
    assert sum(int(r[4]) for r in national_rows) == len(own)
    assert sum(int(r[3]) for r in national_rows) >= len(own)  # every attendee counted is among the targets' cells
    lines = [r for r in reports["expenses"] if len(r) == 9 and r[6].isdigit() and r[2] != "計" and r[0] != "総計"]
    assert sum(int(r[6]) for r in lines) == len(own)
    assert all(int(r[8]) == int(r[6]) * int(r[7]) for r in lines)
    [total] = [r for r in reports["expenses"] if r[0] == "総計"]
    assert int(total[8]) == sum(int(r[8]) for r in lines)
    assert reports["png"].startswith(b"\x89PNG")
    for name in ("performance", "national", "expenses"):
        assert reports[f"{name}_pages"] >= 1
        assert ("DATA_EXPORT", f"report {name} {YEAR}", "SUCCESS") in reports["operations"]

    # A screening last year in the previous town makes this year's biennial one a second screening within the interval.
    assert elsewhere["error"]["reasons"] == m.ErrorReason.INTERVAL_NOT_MET.value
    assert elsewhere["error"]["status"] == m.ErrorStatus.OPEN.value

    # The counter view of one person shows their every entry (with its version), open error and invitation, and
    # both lookups are recorded operations.
    atena, show = counter["atena"], counter["show"]
    assert show.startswith(f"宛名番号 {atena} ")
    for r in ledger:
        if r["atena_no"] == atena:
            assert re.search(
                rf"{r['fiscal_year']} {KIND_LABEL[m.ScreeningKind(str(r['kind']))]} +v{r['version']} ", show
            )
    for e in errors:
        if e["atena_no"] == atena and e["status"] == m.ErrorStatus.OPEN.value:
            assert re.search(rf"{re.escape(str(e['reception_no']))} .* {re.escape(str(e['reasons']))} ", show)
    notices = show.split("勧奨・通知:")[1].split("繰越受診通知の申出:")[0]
    sent = [line for line in notices.splitlines() if line.strip() not in ("", "(なし)")]
    assert len(sent) == sum(1 for r in invitations if r["atena_no"] == atena)
    assert f"{YEAR}年度の対象:" in show
    assert counter["find"].startswith(atena)
    assert f"('SHOW', 'person {atena}', 'SUCCESS')" in counter["operations"]
    assert "('LIST', 'person find kana birth=" in counter["operations"]
    export = json.loads(Path(counter["person_file"]).read_text())
    assert export["resident"]["atena_no"] == atena
    assert {(e["kind"], e["fiscal_year"]) for e in export["ledger_entries"]} == {
        (r["kind"], r["fiscal_year"]) for r in ledger if r["atena_no"] == atena
    }
    assert export["processor_state"]["log"]  # the processors' 住基 change log of the person, opened
    audit_rows = [json.loads(line) for line in Path(counter["audit_file"]).read_text().splitlines()]
    assert {a["row"]["operation"] for a in audit_rows if a["table"] == "staff_operations"} >= {"LOGIN", "SHOW"}
    for file in (counter["person_file"], counter["audit_file"]):
        assert Path(file).stat().st_mode & 0o777 == 0o600
    assert f"('DATA_EXPORT', 'person {atena}', 'SUCCESS')" in counter["operations"]

    # Residents: every person with their final status; nobody who left or died was invited after leaving.
    got_residents = {r["atena_no"]: r for r in residents if r["tenant"] == tenant}
    assert {a: s.status.value for a, s in want.residents.items()} == {a: r["status"] for a, r in got_residents.items()}
    assert {a: p.status.value for a, p in run.city.residents.items() if p.in_scope} == {
        a: r["status"] for a, r in got_residents.items()
    }

    # Only what is needed is taken in (III.2): below target age the 住基 sends, and the processors keep, the types
    # and dates of a person's changes and their 性別 / 生年月日; no resident row, no 個人番号, no name, no household.
    minimal = {a: p for a, p in run.city.residents.items() if not p.in_scope}
    assert len(minimal) > SIZE // 20
    assert minimal.keys().isdisjoint(got_residents)
    logs = target_age["logs"]
    for atena, person in minimal.items():
        changes = [json.loads(change) for change in json.loads(logs[f"{tenant}:{atena}"])]
        assert changes, atena
        for change in changes:
            assert (change["person"], change["my_number"], change["household_no"], change["postcode"]) == (
                None, None, None, None
            ), atena  # fmt: skip
            assert change["basis"]["birth_date"] == person.person.birth_date.isoformat()
        text = logs[f"{tenant}:{atena}"]
        assert person.my_number not in text
        assert person.person.name not in text
    # 1 April of the next year the 住基 sends the full record of each who becomes a target: they are residents now.
    records = target_age["records"]
    assert records
    after = {str(r["atena_no"]): r for r in target_age["residents"] if r["tenant"] == tenant}
    for record in records:
        row = after[record.atena_no]
        assert (row["name"], row["birth_date"], row["status"]) == (
            record.person.name, record.person.birth_date, "RESIDENT"
        )  # fmt: skip
    assert set(after) - set(got_residents) == {r.atena_no for r in records}


def _target_age(pipeline: Pipeline, city: City) -> dict[str, Any]:
    """The processors' change logs (opened), then the 住基's 対象年齢到達 records published and the residents table
    once every one of them is in it."""
    keys = open_key_file(key_file_of(pipeline.settings))
    engine = sa.create_engine(pipeline.settings.processors_url())
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(store.people.c.key, store.people.c.log).where(store.people.c.tenant == pipeline.tenant)
            )
            logs = {str(key): open_log(log, keys, pipeline.tenant, str(key)) or "[]" for key, log in rows}
    finally:
        engine.dispose()
    records = city.target_age_records()
    pipeline.publish(catalog.RESIDENT_CHANGES, records)
    deadline = time.monotonic() + 120
    while True:
        residents = pipeline.rows("residents")
        if {r.atena_no for r in records} <= {str(r["atena_no"]) for r in residents}:
            return {"logs": logs, "records": records, "residents": residents}
        assert time.monotonic() < deadline, "the 対象年齢到達 records did not reach the residents table"
        time.sleep(0.5)


def _history_from_the_previous_town(pipeline: Pipeline, ledger: list[dict[str, object]]) -> dict[str, object]:
    """A biennial entry of this year, then the connector's record that the person had the same screening last year in
    the town they came from (published on ledger.history.v1 as the connector does): the processors withdraw the entry
    and the result is an INTERVAL_NOT_MET error."""
    biennial = {
        k.value for k, rule in load_rules().kinds.items() if rule.interval_years == 2 and not rule.method_overrides
    }
    entry = next(r for r in ledger if r["kind"] in biennial and r["fiscal_year"] == YEAR)
    record = m.ScreeningHistory(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), tenant=pipeline.tenant,
        source_system="kenshin-hub.connector", atena_no=str(entry["atena_no"]), from_tenant="011002",
        record_id="KH-TEST-1", kind=m.ScreeningKind(str(entry["kind"])), fiscal_year=YEAR - 1,
    )  # fmt: skip
    pipeline.publish(catalog.LEDGER_HISTORY, [record])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        errors = [e for e in pipeline.rows("screening_errors") if e["reception_no"] == entry["reception_no"]]
        gone = not any(
            r["atena_no"] == entry["atena_no"] and r["kind"] == entry["kind"] and r["fiscal_year"] == YEAR
            for r in pipeline.rows("ledger_entries")
        )
        if errors and gone:
            return {"entry": entry, "error": errors[0]}
        time.sleep(0.5)
    raise AssertionError(f"the history of {entry['atena_no']} did not withdraw its {entry['kind']} entry")


def _counter_view(
    pipeline: Pipeline, ledger: list[dict[str, object]], errors: list[dict[str, object]]
) -> dict[str, str]:
    """`person show` and `person find` at the counter, as the health staff member logged in by start_year runs them,
    for a person with a 台帳 entry and an open error (checked below against the tables)."""
    open_error = {str(e["atena_no"]) for e in errors if e["status"] == m.ErrorStatus.OPEN.value}
    atena = sorted({str(r["atena_no"]) for r in ledger} & open_error)[0]
    env = {"KENSHIN_STATE_DIR": str(pipeline.workdir / "staff-state"), **pipeline.env}
    env["KENSHIN_PII_KEY_FILE"] = str(key_file_of(pipeline.settings))  # the staff tools open what the processes seal
    [person] = [r for r in pipeline.rows("residents") if r["atena_no"] == atena]
    show = pipeline.cli("person", "show", atena, "--year", str(YEAR), env=env).stdout
    found = pipeline.cli("person", "find", "--kana", str(person["name_kana"]), "--birth", str(person["birth_date"]),
                         env=env).stdout  # fmt: skip
    # 開示請求 and the auditor's export, by the admin
    pipeline.cli("login", STAFF_ADMIN, "--password-stdin", stdin=STAFF_PASSWORD, env=env)
    person_file, audit_file = pipeline.workdir / "person.json", pipeline.workdir / "audit.jsonl"
    pipeline.cli("person", "export", atena, "--out", str(person_file), env=env)
    today = datetime.now(UTC).date()
    pipeline.cli("audit", "export", "--from", str(today - timedelta(days=1)), "--to", str(today + timedelta(days=1)),
                 "--out", str(audit_file), env=env)  # fmt: skip
    operations = [(r["operation"], r["target"], r["outcome"]) for r in pipeline.rows("staff_operations")]
    return {
        "atena": atena, "show": show, "find": found, "operations": repr(operations),
        "person_file": str(person_file), "audit_file": str(audit_file),
    }  # fmt: skip


def _carry_over_requests(pipeline: Pipeline) -> dict[str, Any]:
    """`notice candidates` and two `notice request`s, as the health staff member runs them at the counter."""
    env = {"KENSHIN_STATE_DIR": str(pipeline.workdir / "staff-state"), **pipeline.env}
    env["KENSHIN_PII_KEY_FILE"] = str(key_file_of(pipeline.settings))
    pipeline.cli("login", STAFF_HEALTH, "--password-stdin", stdin=STAFF_PASSWORD, env=env)
    listed = pipeline.cli("notice", "candidates", "--kind", "BREAST", "--year", str(YEAR), env=env).stdout
    atena = listed.split()[0]
    assert re.fullmatch(r"\d+", atena), listed
    notice = ("notice", "request", atena, "--year", str(YEAR), "--wait", "120")
    issued = pipeline.cli(*notice, "--kind", "BREAST", "--channel", "COUNTER", env=env).stdout
    refused = pipeline.cli(*notice, "--kind", "COLORECTAL", "--channel", "PHONE", env=env).stdout
    deadline = time.monotonic() + 120  # the notice reaches its table beside the decision, not necessarily before it
    while not any(r["atena_no"] == atena and r["trigger"] == "REQUEST" for r in pipeline.rows("invitations")):
        assert time.monotonic() < deadline, "the 繰越受診通知 did not reach the invitations table"
        time.sleep(0.5)
    return {
        "atena": atena, "issued": issued, "refused": refused,
        "invitations": pipeline.rows("invitations"),
        "decisions": [r for r in pipeline.rows("notice_decisions") if r["atena_no"] == atena],
        "operations": [(r["operation"], r["target"], r["outcome"]) for r in pipeline.rows("staff_operations")],
        "show": pipeline.cli("person", "show", atena, "--year", str(YEAR), env=env).stdout,
    }  # fmt: skip


def _reports(pipeline: Pipeline) -> dict[str, Any]:
    """`report performance|national|expenses` as the health staff member runs them: their CSV rows and PDF pages."""
    env = {"KENSHIN_STATE_DIR": str(pipeline.workdir / "staff-state"), **pipeline.env}
    out = pipeline.workdir / "reports"
    out.mkdir(mode=0o700)
    found: dict[str, Any] = {}
    for name in ("performance", "national", "expenses"):
        pipeline.cli("report", name, "--year", str(YEAR), "--out", str(out), env=env)
        text = (out / f"{YEAR}-{name}.csv").read_text(encoding="utf-8-sig")
        found[name] = list(csv.reader(io.StringIO(text)))
        found[f"{name}_pages"] = len(PdfReader(out / f"{YEAR}-{name}.pdf").pages)
    found["png"] = (out / f"{YEAR}-national.png").read_bytes()
    found["ledger"] = pipeline.rows("ledger_entries")
    found["operations"] = [(r["operation"], r["target"], r["outcome"]) for r in pipeline.rows("staff_operations")]
    return found


MAIL_BATCH = 40


def _mailing(pipeline: Pipeline) -> dict[str, Any]:
    """`notice mail` in batches, `notice held` and `notice mail-decide`, as the health staff member runs them."""
    env = {"KENSHIN_STATE_DIR": str(pipeline.workdir / "staff-state"), **pipeline.env}
    pipeline.cli("login", STAFF_HEALTH, "--password-stdin", stdin=STAFF_PASSWORD, env=env)
    mail = ("notice", "mail", "--type", "INVITATION", "--year", str(YEAR), "--batch-size", str(MAIL_BATCH))

    def run(out: Path) -> dict[str, Any]:
        out.mkdir(mode=0o700)
        pipeline.cli(*mail, "--out", str(out), env=env)
        csvs, pdfs = sorted(out.glob("*.csv")), sorted(out.glob("*.pdf"))
        rows = [row for f in csvs for row in list(csv.reader(io.StringIO(f.read_text(encoding="utf-8-sig"))))[1:]]
        pages = sum(len(PdfReader(f).pages) for f in pdfs)
        return {"csv": csvs, "pdf": pdfs, "rows": rows, "pages": pages,
                "modes": [f.stat().st_mode & 0o777 for f in (*csvs, *pdfs)]}  # fmt: skip

    # A resident put under 支援措置 after the notice was issued (a 住基 change, as the 住基 system sends it)
    invited = sorted({str(r["atena_no"]) for r in pipeline.rows("invitations")
                      if r["fiscal_year"] == YEAR and r["invitation_type"] == "INVITATION"})  # fmt: skip
    plain = {str(r["atena_no"]) for r in pipeline.rows("residents")
             if r["status"] == "RESIDENT" and not r["support_measure"]}  # fmt: skip
    target = next(a for a in invited if a in plain)
    change = m.ResidentChange(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), tenant=pipeline.tenant, source_system="juki",
        atena_no=target, change_type=m.ResidentChangeType.SUPPORT_MEASURE_SET, change_date=datetime.now(UTC).date(),
    )  # fmt: skip
    pipeline.publish(catalog.RESIDENT_CHANGES, [change])
    deadline = time.monotonic() + 120
    while not any(r["atena_no"] == target and r["support_measure"] for r in pipeline.rows("residents")):
        assert time.monotonic() < deadline, f"the 支援措置 of {target} did not reach the residents table"
        time.sleep(0.5)
    first = run(pipeline.workdir / "mail-1")
    held = pipeline.cli("notice", "held", "--type", "INVITATION", "--year", str(YEAR), env=env).stdout
    held_atena = [line.split()[0] for line in held.splitlines() if re.match(r"\d+ ", line)]
    decided = held_atena[0]
    pipeline.cli("notice", "mail-decide", decided, "--address", "小樽市花園1丁目1番1号", "--postcode", "070-0001",
                 "--reason", "本人の申出による送付先", env=env)  # fmt: skip
    second = run(pipeline.workdir / "mail-2")
    return {
        "first": first, "second": second, "held": held_atena, "decided": decided,
        "modes": first["modes"] + second["modes"], "residents": pipeline.rows("residents"),
        "operations": [(r["operation"], r["target"], r["outcome"], r["detail"])
                       for r in pipeline.rows("staff_operations")],
    }  # fmt: skip


def _fukuhon(endpoints: Endpoints, registry_url: str, tenant: str) -> list[m.FukuhonRegistration]:
    """Every 副本 of ``tenant`` on the registrations topic, in offset order per partition (one person: one)."""
    topic = catalog.FUKUHON_REGISTRATIONS
    consumer = Consumer({"bootstrap.servers": endpoints.bootstrap, "group.id": f"it-fukuhon-{tenant}",
                         "enable.auto.commit": False})  # fmt: skip
    out: list[m.FukuhonRegistration] = []
    try:
        with registry_client({"url": registry_url}) as registry:
            serde: TopicSerde[m.FukuhonRegistration] = TopicSerde(topic, registry)
            for partition in range(topic.partitions):
                _, high = consumer.get_watermark_offsets(TopicPartition(topic.name, partition), timeout=30)
                consumer.assign([TopicPartition(topic.name, partition, 0)])
                position = 0
                while position < high:
                    msg = consumer.poll(5)
                    assert msg is not None, f"{topic.name}[{partition}] stopped at {position} of {high}"
                    assert msg.error() is None, msg.error()
                    position = (msg.offset() or 0) + 1
                    reg = serde.decode(msg.value() or b"", topic.name)
                    if reg.tenant == tenant:
                        out.append(reg)
    finally:
        consumer.close()
    return out


def test_the_input_topics_in_an_adversarial_order_end_with_the_same_tables(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """The population, then every result backwards (corrections before their originals, 精検 before their 1次),
    then the year's 住基異動 backwards (a 転出 before the 転入 it ends): results wait for their people, entries are
    withdrawn by a late 転出 dated before the exam and their 副本 deleted, waiting errors are withdrawn. The tables
    must be those of the rules applied in the canonical order, and the 副本 as the 中間サーバー would keep them."""
    tenant = tenant_code("01210")  # 岩見沢市: a tenant of its own
    city, plan = build(SEED, SIZE, tenant, YEAR, 0.2)
    assert Counter(plan.truth.values())[ResultTruth.MOVED_OUT] > 0  # entries a late 転出 withdraws
    with running_pipeline(endpoints, tmp_path, tenant) as pipeline:
        settings = pipeline.settings
        conf = dict(settings.kafka_config())
        with registry_client(settings.schema_registry_config()) as registry:
            producer = Producer(producer_config(settings))

            def send(topic: catalog.Topic, events: Sequence[m.Event]) -> None:
                publish(producer, TopicSerde(topic, registry), events, progress=False)
                wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=300)

            send(catalog.RESIDENT_CHANGES, city.initial)
            send(catalog.INSTITUTION_RESULTS, plan.results[::-1])
            send(catalog.RESIDENT_CHANGES, city.changes[::-1])
        wait_drained(conf, SINKS_GROUP, SINK_INPUTS, timeout_s=300)
        ledger = [r for r in pipeline.rows("ledger_entries") if r["tenant"] == tenant]
        errors = [r for r in pipeline.rows("screening_errors") if r["tenant"] == tenant]
        residents = [r for r in pipeline.rows("residents") if r["tenant"] == tenant]
    copies = _fukuhon(endpoints, settings.schema_registry_url, tenant)

    want = expected(city, plan, YEAR)
    assert len(want.ledger) > 100
    assert {(r["atena_no"], r["kind"], r["fiscal_year"]): (r["version"], r["reception_no"], r["source_event_id"],
             r["followup_judgement"]) for r in ledger} == {
        key: (e.version, e.reception_no, str(e.source_event_id),
              e.follow_up.findings.judgement.value if e.follow_up else None) for key, e in want.ledger.items()
    }  # fmt: skip
    assert {r["reception_no"]: (r["status"], r["reasons"], r["resolved_by"]) for r in errors} == {
        rec: (e.status.value, ",".join(x.value for x in e.reasons), e.resolved_by) for rec, e in want.errors.items()
    }
    assert {r["atena_no"]: r["status"] for r in residents} == {a: s.status.value for a, s in want.residents.items()}

    # 副本, per record id in topic order: REGISTER first and only first, versions growing; the last one of each
    # record, unless a DELETE, is the 副本 of the final entry.
    last: dict[str, m.FukuhonRegistration] = {}
    for reg in copies:
        before = last.get(reg.record_id)
        if before is None:
            assert reg.operation is m.FukuhonOperation.REGISTER, reg.record_id
        else:
            assert reg.operation is not m.FukuhonOperation.REGISTER, reg.record_id
            assert reg.version > before.version, reg.record_id
        last[reg.record_id] = reg
    assert any(r.operation is m.FukuhonOperation.DELETE for r in copies)  # the late 転出 withdrew entries
    policy = load_fukuhon_policy()
    published = {r.record_key: r.data for r in last.values() if r.operation is not m.FukuhonOperation.DELETE}
    assert published == {
        f"{a}:{kind}:{year}": fukuhon_for(e, policy, m.FukuhonOperation.UPDATE).data
        for (a, kind, year), e in want.ledger.items()
    }
