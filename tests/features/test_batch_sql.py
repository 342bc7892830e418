"""The fast frame (``W PRECEDING AND CURRENT ROW EXCLUDE GROUP``) equals the reference frame
(``W PRECEDING AND 1 PRECEDING``) in the training table and in both kinds of snapshot (probe
rows): the same rows, counts and extremes exactly, and sums and averages within the project's
float tolerance (1e-9 relative, :func:`...features.parity.values_equal`). The two frames are the
same set of rows, but DuckDB's segment tree may add them in a different order, so a sum can
differ in its last bit."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_playground.core.schema import arrow_schema
from dataflow_playground.features.batch_sql import (
    _frame,
    as_of_spine_sql,
    latest_spine_sql,
    spine_sql,
    training_sql,
)
from dataflow_playground.features.definitions import FEATURES, HOUR_MS, Agg
from dataflow_playground.features.parity import REL_TOL, values_equal
from tests.features.strategies import T0, event_sets

_FAST = "CURRENT ROW EXCLUDE GROUP"
_REFERENCE = "1 PRECEDING"




def _both(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[tuple], list[tuple]]:  # type: ignore[type-arg]
    assert _FAST in sql
    return con.execute(sql).fetchall(), con.execute(sql.replace(_FAST, _REFERENCE)).fetchall()


def _rows_equal(a: list[tuple], b: list[tuple]) -> bool:  # type: ignore[type-arg]
    return len(a) == len(b) and all(
        len(ra) == len(rb) and all(values_equal(x, y) for x, y in zip(ra, rb, strict=True))
        for ra, rb in zip(a, b, strict=True))


def test_rows_equal_is_strict_beyond_the_tolerance() -> None:
    assert _rows_equal([(1, 0.1 + 0.2, [1.0])], [(1, 0.3, [1.0])])  # last-bit difference
    assert not _rows_equal([(1, 1.0)], [(1, 1.0 + 1e-6)])
    assert not _rows_equal([(1, None)], [(1, 0.0)])
    assert not _rows_equal([(1, 2.0)], [(2, 2.0)])
    assert not _rows_equal([(1,)], [(1,), (2,)])


def test_fast_frame_is_used_except_for_distinct() -> None:
    for f in FEATURES:
        if f.agg == Agg.DISTINCT:
            assert _frame(f).endswith(_REFERENCE)
        elif f.agg != Agg.LAST_K:
            assert _frame(f).endswith(_FAST)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(event_sets(), st.integers(-HOUR_MS, 9 * 24 * HOUR_MS))
def test_fast_frame_equals_reference_frame(events: list[dict[str, object]], as_of_offset: int) -> None:
    con = duckdb.connect()
    con.register("ev", pa.Table.from_pylist(events, schema=arrow_schema()))
    fast, reference = _both(con, training_sql("ev"))
    assert _rows_equal(fast, reference)  # in event_id order
    for spine in (latest_spine_sql("ev"), as_of_spine_sql("ev", T0 + as_of_offset)):
        con.execute(f"CREATE OR REPLACE TEMP TABLE sp AS {spine}")
        fast, reference = _both(con, spine_sql("ev", "sp"))
        assert _rows_equal(fast, reference)


def test_empty_and_filtered_windows() -> None:
    base = {"currency": "USD", "country": "US", "device": None, "is_fraud": False}
    events = [
        {**base, "event_id": 1, "user_id": 1, "merchant_id": 1, "amount": 600.0, "ts": T0},
        {**base, "event_id": 2, "user_id": 1, "merchant_id": 2, "amount": 10.0, "ts": T0},
        {**base, "event_id": 3, "user_id": 1, "merchant_id": 1, "amount": 20.0, "ts": T0 + HOUR_MS},
        {**base, "event_id": 4, "user_id": 1, "merchant_id": 1, "amount": 30.0, "ts": T0 + HOUR_MS + 1},
    ]
    con = duckdb.connect()
    con.register("ev", pa.Table.from_pylist(events, schema=arrow_schema()))
    rows = con.sql(training_sql("ev")).to_arrow_table().to_pylist()
    first, _, third, fourth = rows
    assert first["user_txn_count_1h"] == 0 and first["user_amount_sum_24h"] == pytest.approx(0.0, rel=REL_TOL)
    assert first["user_amount_max_24h"] is None and first["user_time_since_last_ms"] is None
    assert third["user_txn_count_1h"] == 2  # T0 is exactly at ts - 1h: inside
    assert third["user_large_txn_count_24h"] == 1 and third["user_distinct_merchants_24h"] == 2
    assert fourth["user_txn_count_1h"] == 1  # T0 fell out; T0 + 1h is before: inside
    assert fourth["user_amount_max_24h"] == pytest.approx(600.0, rel=REL_TOL)
    assert fourth["user_time_since_last_ms"] == 1
