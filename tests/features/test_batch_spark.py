"""Spark SQL computes the same training table as DuckDB: 0 mismatches per feature, integers and
nulls exactly, floats within the project's tolerance (:func:`...features.parity.values_equal`).

The events have what makes point-in-time features hard: ties on ``ts`` within an entity,
events exactly one window apart (the left edge is inside, the right edge outside), late
events (``event_id`` order is not ``ts`` order) and empty windows.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dataflow_playground.core.schema import arrow_schema
from dataflow_playground.features import batch_sql
from dataflow_playground.features.batch_spark import (
    SparkConfig,
    SparkEngineError,
    spark_session,
    training_sql,
    training_table,
)
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.definitions import DAY_MS, FEATURES, HOUR_MS, Agg
from dataflow_playground.features.parity import values_equal
from dataflow_playground.producers.generator import GeneratorConfig, generate_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T0 = 1_767_225_600_000
MINUTE_MS = 60_000


def mismatches(expected: pa.Table, got: pa.Table) -> dict[str, int]:
    """Per feature, the rows where ``got`` differs from ``expected`` (same event_id order)."""
    assert got["event_id"].to_pylist() == expected["event_id"].to_pylist()
    out = {}
    for f in FEATURES:
        pairs = zip(expected[f.name].to_pylist(), got[f.name].to_pylist(), strict=True)
        out[f.name] = sum(not values_equal(a, b) for a, b in pairs)
    return out


def duckdb_tables(events: pa.Table) -> list[pa.Table]:
    """DuckDB's training table, by the default path and by the reference SQL."""
    con = duckdb.connect()
    con.register("ev", events)
    return [BatchFeatures(events).training_table(),
            con.sql(batch_sql.training_sql("ev")).to_arrow_table()]


def tied_late_events(seed: int, n: int = 3000) -> pa.Table:
    """Generated events on a minute grid (ties within users and merchants, many events exactly
    one window apart), a fifth of them up to two hours late."""
    events = generate_table(GeneratorConfig(events=n, seed=seed, rate=0.05, out_of_order=0.2,
                                            max_lateness_ms=2 * HOUR_MS))
    ts = pc.multiply(pc.divide(events["ts"], MINUTE_MS), MINUTE_MS)
    return events.set_column(events.schema.get_field_index("ts"), "ts", ts)


def edge_cases(seed: int, sets: int = 60) -> pa.Table:
    """Many small histories with disjoint keys, so one query checks them all: a few users and
    merchants each, times on a 20-minute grid plus offsets of 0, +-1 ms and whole windows."""
    rng = np.random.default_rng(seed)
    rows = []
    offsets = [0, 0, 1, -1, HOUR_MS, DAY_MS, 7 * DAY_MS]
    amounts = [0.01, 1.5, 20.0, 499.99, 500.0, 1234.56, 50_000.0]
    for s in range(sets):
        for i in range(int(rng.integers(1, 40))):
            rows.append({
                "event_id": int(rng.integers(0, 10_000)) * 10_000 + s * 100 + i,
                "user_id": s * 10 + int(rng.integers(0, 3)),
                "merchant_id": s * 10 + int(rng.integers(0, 3)),
                "amount": float(rng.choice(amounts)), "currency": "USD", "country": "US",
                "device": None, "is_fraud": bool(rng.random() < 0.1),
                "ts": T0 + int(rng.integers(0, 40)) * 20 * MINUTE_MS + int(rng.choice(offsets)),
            })
    return pa.Table.from_pylist(rows, schema=arrow_schema())


pytestmark = pytest.mark.spark


def test_spark_equals_duckdb_with_ties_and_late_events(spark: SparkSession, seed: int,
                                                       tmp_path: Path) -> None:
    events = tied_late_events(seed)
    ids_by_ts = events.sort_by([("ts", "ascending"), ("event_id", "ascending")])["event_id"]
    assert not ids_by_ts.equals(events["event_id"]), "no late events: the test would prove less"
    for key in ("user_id", "merchant_id"):
        groups = events.group_by([key, "ts"]).aggregate([("event_id", "count")])
        assert pc.max(groups["event_id_count"]).as_py() > 1, f"no ts ties within a {key}"
    # Read from Parquet by the executors, as the backfill reads its --input.
    pq.write_table(events, tmp_path / "events.parquet")

    got = training_table(spark, str(tmp_path / "events.parquet"), passthrough=("is_fraud",))
    for expected in duckdb_tables(events):
        assert mismatches(expected, got) == dict.fromkeys(mismatches(expected, got), 0)
    assert got["is_fraud"].to_pylist() == events.sort_by("event_id")["is_fraud"].to_pylist()


def test_spark_equals_duckdb_on_window_edges(spark: SparkSession, seed: int) -> None:
    events = edge_cases(seed)
    got = training_table(spark, events)  # sent from the driver (Arrow)
    for expected in duckdb_tables(events):
        assert mismatches(expected, got) == dict.fromkeys(mismatches(expected, got), 0)
    # The cases really have empty windows, filters that drop rows and partial last-k lists.
    values = got.to_pydict()
    assert None in values["user_amount_max_24h"] and 0 in values["user_txn_count_1h"]
    assert {len(v) for v in values["user_last_3_amounts"]} == {0, 1, 2, 3}


def test_sql_has_no_sliding_frames() -> None:
    """Spark recomputes a sliding frame for every row; the compiled SQL uses running frames
    (which it updates row by row) and, for last-k, a frame of k rows."""
    sql = training_sql("ev")
    assert "EXCLUDE" not in sql and "count(DISTINCT" not in sql
    assert not re.search(r"RANGE BETWEEN \d+ PRECEDING", sql)
    rows_frames = set(re.findall(r"ROWS BETWEEN (\w+) PRECEDING", sql))
    assert rows_frames == {"UNBOUNDED"} | {str(f.k) for f in FEATURES if f.agg == Agg.LAST_K}


@pytest.mark.parametrize("master", ["yarn", "local[two]", "spark://nohost", "http://h:7077"])
def test_bad_master_is_refused(master: str) -> None:
    with pytest.raises(SparkEngineError, match="master"):
        SparkConfig(master=master)


def test_unreachable_master_fails_fast() -> None:
    from tests.helpers import free_ports

    (port,) = free_ports(1)
    start = time.monotonic()
    with pytest.raises(SparkEngineError, match="no Spark master answers"), spark_session(
            SparkConfig(master=f"spark://127.0.0.1:{port}", connect_timeout_s=1)):
        pass
    assert time.monotonic() - start < 5


def test_a_running_session_is_lent_not_replaced(spark: SparkSession) -> None:
    with spark_session(SparkConfig(master="local[2]")) as lent:
        assert lent.sparkContext is spark.sparkContext
    assert not spark.sparkContext._jsc.sc().isStopped()
    with pytest.raises(SparkEngineError, match="already runs Spark on local\\[2\\]"), spark_session(
            SparkConfig(master="local[1]")):
        pass
