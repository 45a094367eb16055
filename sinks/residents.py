"""residents.v1 -> ``residents``: the current state of each person, newest version wins.

The 個人番号 is never stored in clear (:mod:`hub.pii`): :meth:`ResidentsSink.write` seals it into ``my_number_enc``
(AES-256-GCM, bound to the tenant, the column and the 宛名番号) and puts its keyed hash in ``my_number_hash``
(HMAC-SHA256, indexed) just before the rows go to the database. :func:`find_by_my_number` looks residents up
through the hash; :func:`my_number_of` and :func:`readable_row` open a stored row for code that needs the number
back (authorised staff, a publication). None of them logs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.pii import PREFIX, PiiKeys, default_keys, key_id_of, resident_number
from schemas.models import ResidentState
from sinks.base import Row, TableSink
from sinks.db import Excluded, upsert
from sinks.tables import residents
from topics.catalog import RESIDENTS, Topic

MY_NUMBER_COLUMN = "residents.my_number"  # the associated data's column name, and the lookup hash's
_REENCRYPT_BATCH = 1_000


def resident_row(state: ResidentState, keys: PiiKeys) -> Row:
    """The row of ``state`` as the sink buffers it, the 個人番号 in clear under ``my_number`` (not a column): opened
    from the topic's sealed value (:func:`hub.pii.resident_number`), then :func:`seal_row` turns it into
    ``my_number_enc`` / ``my_number_hash`` when the batch is written.
    """
    person = state.person
    return {
        "tenant": state.tenant,
        "atena_no": state.atena_no,
        "my_number": resident_number(state, keys),
        "name": person.name,
        "name_kana": person.name_kana,
        "sex": person.sex.value,
        "birth_date": person.birth_date,
        "address": person.address,
        "postcode": state.postcode,
        "status": state.status.value,
        "resident_since": state.resident_since,
        "ceased_on": state.ceased_on,
        "support_measure": state.support_measure,
        "household_no": state.household_no,
        "previous_municipality": state.previous_municipality,
        "next_municipality": state.next_municipality,
        "version": state.version,
        "updated_at": state.occurred_at,
    }


def seal_row(row: Mapping[str, Any], keys: PiiKeys) -> Row:
    """``row`` as stored: ``my_number`` replaced by its sealed value and its lookup hash (both None without one)."""
    sealed = dict(row)
    number = sealed.pop("my_number")
    if number is None:
        sealed["my_number_enc"] = sealed["my_number_hash"] = None
    else:
        tenant = str(row["tenant"])
        where = {"tenant": tenant, "column": MY_NUMBER_COLUMN}
        sealed["my_number_enc"] = keys.encrypt(number, row=str(row["atena_no"]), **where)
        sealed["my_number_hash"] = keys.lookup_hash(number, **where)
    return sealed


def my_number_of(row: Mapping[str, Any], keys: PiiKeys | None = None) -> str | None:
    """The 個人番号 of a stored ``residents`` row, opened (:class:`hub.pii.PiiError` if it does not authenticate)."""
    sealed = row["my_number_enc"]
    if sealed is None:
        return None
    keys = keys if keys is not None else default_keys()
    return keys.decrypt(sealed, tenant=str(row["tenant"]), column=MY_NUMBER_COLUMN, row=str(row["atena_no"]))


def readable_row(row: Mapping[str, Any], keys: PiiKeys | None = None) -> Row:
    """A stored ``residents`` row with its 個人番号 opened: the columns of :func:`resident_row` (tests, staff tools)."""
    out = {k: v for k, v in row.items() if k not in ("my_number_enc", "my_number_hash")}
    out["my_number"] = my_number_of(row, keys)
    return out


def find_by_my_number(conn: Connection, tenant: str, my_number: str, keys: PiiKeys | None = None) -> list[Row]:
    """The residents of ``tenant`` registered with ``my_number``, found through the indexed keyed hash (every key's
    hash, for rows not yet re-encrypted) and confirmed by opening the sealed value; readable rows, by 宛名番号.
    """
    keys = keys if keys is not None else default_keys()
    hashes = keys.lookup_hashes(my_number, tenant=tenant, column=MY_NUMBER_COLUMN)
    query = (
        sa.select(residents)
        .where(residents.c.tenant == tenant, residents.c.my_number_hash.in_(hashes))
        .order_by(residents.c.atena_no)
    )
    found = [readable_row(dict(r._mapping), keys) for r in conn.execute(query)]
    return [r for r in found if r["my_number"] == my_number]


def _keep_the_sealed_value(table: sa.Table, excluded: Excluded) -> Mapping[str, sa.ColumnElement[Any]]:
    """An unchanged 個人番号 under an unchanged key keeps its stored sealed value: a replayed state rewrites the row
    with the same bytes. A new number, or a hash under a new current key, stores the new one (lazy rotation).
    """
    same = table.c.my_number_hash == excluded.my_number_hash
    return {"my_number_enc": sa.case((same, table.c.my_number_enc), else_=excluded.my_number_enc)}


class ResidentsSink(TableSink[ResidentState]):
    """Upsert guarded by the state's ``version``: a replayed older state never overwrites a newer one."""

    table = residents

    def __init__(self, topic: Topic = RESIDENTS, name: str = "sinks.residents", *, keys: PiiKeys | None = None) -> None:
        super().__init__(topic, name)
        self.keys = keys

    def setup(self, engine: Engine) -> None:
        super().setup(engine)
        self._keys()  # the key file is opened (or created) before the first batch, not in the middle of one

    def _keys(self) -> PiiKeys:
        if self.keys is None:
            self.keys = default_keys()
        return self.keys

    def to_row(self, event: ResidentState) -> Row:
        return resident_row(event, self._keys())  # a sealed number that does not open: this event is refused

    def rank(self, row: Row) -> tuple[Any, ...]:
        return (row["version"],)

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        keys = self._keys()
        sealed = [seal_row(r, keys) for r in rows]
        upsert(
            connection, self.table, sealed, self.key_columns, version_column="version", assign=_keep_the_sealed_value
        )


# --- key rotation ------------------------------------------------------------------------------------------


def key_usage(conn: Connection) -> dict[str, int]:
    """The number of sealed 個人番号 per key id."""
    counts: dict[str, int] = {}
    query = sa.select(residents.c.my_number_enc).where(residents.c.my_number_enc.is_not(None))
    for (sealed,) in conn.execute(query):
        kid = key_id_of(sealed)
        counts[kid] = counts.get(kid, 0) + 1
    return counts


def reencrypt_residents(engine: Engine, keys: PiiKeys, batch: int = _REENCRYPT_BATCH) -> int:
    """Seal again, under the current key, every 個人番号 sealed under another; the number of rows changed.

    One transaction per ``batch`` rows; each update is a compare-and-set on the old sealed value, so a row the
    sinks rewrote meanwhile (already under the current key) is left as they wrote it.
    """
    current = f"{PREFIX}.{keys.current}.%"
    changed = 0
    after: tuple[str, str] = ("", "")
    while True:
        with engine.begin() as conn:
            query = (
                sa.select(residents.c.tenant, residents.c.atena_no, residents.c.my_number_enc)
                .where(
                    residents.c.my_number_enc.is_not(None),
                    sa.not_(residents.c.my_number_enc.like(current)),
                    sa.tuple_(residents.c.tenant, residents.c.atena_no) > sa.tuple_(*after),
                )
                .order_by(residents.c.tenant, residents.c.atena_no)
                .limit(batch)
            )
            rows = conn.execute(query).all()
            for tenant, atena_no, sealed in rows:
                number = keys.decrypt(sealed, tenant=tenant, column=MY_NUMBER_COLUMN, row=atena_no)
                result = conn.execute(
                    sa.update(residents)
                    .where(
                        residents.c.tenant == tenant,
                        residents.c.atena_no == atena_no,
                        residents.c.my_number_enc == sealed,
                    )
                    .values(
                        my_number_enc=keys.encrypt(number, tenant=tenant, column=MY_NUMBER_COLUMN, row=atena_no),
                        my_number_hash=keys.lookup_hash(number, tenant=tenant, column=MY_NUMBER_COLUMN),
                    )
                )
                changed += result.rowcount
        if len(rows) < batch:
            return changed
        after = (rows[-1][0], rows[-1][1])
