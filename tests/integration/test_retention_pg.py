"""Retention on PostgreSQL: the unit tier's seeds (tests/unit/test_retention.py) in four databases of one
temporary cluster, one tenant's run, exactly that tenant's expired rows gone (no broker needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from connectors import stores as ct
from connectors.policy import load_retention
from hub.pii import PiiKeys
from hub.retention import record_run, run_retention
from processors import store as pt
from sinks.db import make_engine, upgrade
from tests.integration import pg
from tests.unit.test_retention import NOW, A, FakeKafka, FakeProducer, Stores, seed

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_stores() -> Iterator[Stores]:
    keys = PiiKeys.generate()
    with ExitStack() as stack:
        server = os.environ.get(pg.ENV_URL)
        if not server:
            server = stack.enter_context(pg._private_cluster())
        stack.enter_context(pytest.MonkeyPatch.context()).setenv(pg.ENV_URL, server)
        engines = {}
        for store, migrations in (
            ("sinks", None),
            ("processors", pt.PROCESSORS_MIGRATIONS),
            ("chukan", ct.CHUKAN_MIGRATIONS),
            ("network", ct.NETWORK_MIGRATIONS),
        ):
            engine = make_engine(stack.enter_context(pg.temporary_postgres()))
            stack.callback(engine.dispose)
            if migrations is None:
                upgrade(engine, pii_keys=keys)
            else:
                upgrade(engine, script_location=migrations, pii_keys=keys)
            engines[store] = engine
        s = Stores(engines, keys)
        seed(s)
        yield s


def test_retention_deletes_exactly_one_tenants_expired_rows_on_postgresql(pg_stores: Stores) -> None:
    before = pg_stores.snapshot()
    producer = FakeProducer()
    dry = run_retention(
        pg_stores.retention(),
        A,
        policy=load_retention(),
        now=NOW,
        kafka=FakeKafka(),
        producer=producer,
        pii_keys=pg_stores.keys,
        dry_run=True,
    )
    assert pg_stores.snapshot() == before
    report = run_retention(
        pg_stores.retention(),
        A,
        policy=load_retention(),
        now=NOW,
        kafka=FakeKafka(),
        producer=producer,
        pii_keys=pg_stores.keys,
    )
    record_run(pg_stores.engines["chukan"], report, "admin1")
    after = pg_stores.snapshot()
    for where, rows in before.items():
        if where != ("chukan", ct.chukan_retention_runs.name):
            assert rows - after[where] == pg_stores.gone.get(where, set()), where
    assert report.counts() == dry.counts()
    assert {(t, k) for t, k, _ in producer.sent} == pg_stores.tombstones
    assert (len(report.results), report.tables_checked) == (4, 26)
