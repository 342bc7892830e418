"""The vectorised pass (``features/batch_numpy.py``) equals the reference SQL (``training_sql``).

Equal means: the same schema and rows in ``event_id`` order; integers, nulls and list lengths
exactly; floats within the project's tolerance, ``|a - b| <= 1e-9 * max(|a|, |b|) + 1e-9``
(:func:`...features.parity.values_equal`), because the two add in different orders. Generated
events include equal timestamps, timestamps out of ``event_id`` order, events exactly on a
window's left edge or 1 ms past it, and amounts from 0.01 to the maximum (a cancellation test
for the prefix sums). Besides the 12 features, filtered variants of every filterable
aggregation are checked, since the compiler accepts them.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_playground.core.schema import MAX_AMOUNT, arrow_schema
from dataflow_playground.features import batch_numpy
from dataflow_playground.features.batch_sql import BatchFeatures, training_sql
from dataflow_playground.features.definitions import (
    DAY_MS,
    FEATURES,
    HOUR_MS,
    MERCHANT,
    USER,
    Agg,
    FeatureSpec,
    Filter,
)
from dataflow_playground.features.parity import values_equal
from dataflow_playground.producers.generator import GeneratorConfig, generate_table
from tests.features.strategies import AMOUNTS, T0
from tests.features.strategies import event_sets as shared_event_sets

# Every filterable aggregation with a filter, on both entities and odd windows.
FILTERED = (
    FeatureSpec("u_sum_small", USER, Agg.SUM, HOUR_MS, "amount", where=Filter("amount", "<", 500.0)),
    FeatureSpec("u_avg_large", USER, Agg.AVG, DAY_MS, "amount", where=Filter("amount", ">=", 500.0)),
    FeatureSpec("u_min_large", USER, Agg.MIN, DAY_MS, "amount", where=Filter("amount", ">", 20.0)),
    FeatureSpec("m_max_small", MERCHANT, Agg.MAX, 2 * HOUR_MS, "amount", where=Filter("amount", "<=", 20.0)),
    FeatureSpec("m_max_user", MERCHANT, Agg.MAX, DAY_MS, "user_id"),
    FeatureSpec("m_distinct_large", MERCHANT, Agg.DISTINCT, 3 * HOUR_MS, "user_id",
                where=Filter("amount", ">=", 500.0)),
    FeatureSpec("u_last_large", USER, Agg.TIME_SINCE_LAST, DAY_MS, where=Filter("amount", ">=", 500.0)),
    FeatureSpec("u_merchant_1", USER, Agg.COUNT, 7 * DAY_MS, where=Filter("merchant_id", "==", 1.0)),
    FeatureSpec("u_last_2", USER, Agg.LAST_K, HOUR_MS, "amount", k=2),
)


def event_sets() -> st.SearchStrategy[list[dict[str, object]]]:
    """Also amounts anywhere from 0.01 to the maximum: a cancellation test for the prefix sums."""
    return shared_event_sets(st.one_of(st.sampled_from([*AMOUNTS, MAX_AMOUNT]), st.floats(0.01, MAX_AMOUNT)))


def _assert_equal(fast: pa.Table, reference: pa.Table) -> None:
    assert fast.schema == reference.schema
    for name in reference.column_names:
        a, b = fast.column(name).to_pylist(), reference.column(name).to_pylist()
        bad = [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if not values_equal(x, y)]
        assert not bad, f"{name}: (row, fast, reference) {bad[:3]}"


def _check(table: pa.Table, features: tuple[FeatureSpec, ...]) -> None:
    assert batch_numpy.supports(table, features)
    con = duckdb.connect()
    con.register("ev", table)
    reference = con.sql(training_sql("ev", features)).to_arrow_table()
    for threads in (1, 2):
        _assert_equal(batch_numpy.training_table(table, features, threads=threads), reference)


@settings(suppress_health_check=[HealthCheck.too_slow])  # examples: the profile's (conftest.py)
@given(event_sets())
def test_vectorised_equals_reference_sql(events: list[dict[str, object]]) -> None:
    table = pa.Table.from_pylist(events, schema=arrow_schema())
    _check(table, FEATURES)
    _check(table, FILTERED)


# Aggregations over a float column that sort by value (a fallback path of the distinct count).
FLOAT_VALUES = (
    FeatureSpec("u_distinct_amounts", USER, Agg.DISTINCT, DAY_MS, "amount"),
    FeatureSpec("m_distinct_amounts_large", MERCHANT, Agg.DISTINCT, HOUR_MS, "amount",
                where=Filter("amount", ">=", 500.0)),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(event_sets(), st.sampled_from([1, 2, 3, 7]))
def test_blocks_of_a_few_keys_give_the_same_table(events: list[dict[str, object]], block_rows: int) -> None:
    # Blocks hold whole keys: with blocks of 1-7 rows nearly every key boundary is a block
    # boundary, and a key with more rows than a block is one block of its own.
    table = pa.Table.from_pylist(events, schema=arrow_schema())
    con = duckdb.connect()
    con.register("ev", table)
    features = FEATURES + FILTERED + FLOAT_VALUES
    reference = con.sql(training_sql("ev", features)).to_arrow_table()
    for threads in (1, 2):
        _assert_equal(batch_numpy.training_table(table, features, threads=threads, block_rows=block_rows),
                      reference)


def test_many_keys_across_many_blocks(seed: int) -> None:
    cfg = GeneratorConfig(events=20_000, seed=seed, rate=0.5, users=5_000, merchants=900,
                          out_of_order=0.2, max_lateness_ms=2 * HOUR_MS)
    table = generate_table(cfg)
    con = duckdb.connect()
    con.register("ev", table)
    features = FEATURES + FILTERED + FLOAT_VALUES
    reference = con.sql(training_sql("ev", features)).to_arrow_table()
    for block_rows in (1, 64, 1_000):
        _assert_equal(batch_numpy.training_table(table, features, block_rows=block_rows), reference)


@pytest.mark.parametrize("spread_ids", [False, True])
def test_generated_events_out_of_order(seed: int, spread_ids: bool) -> None:
    cfg = GeneratorConfig(events=20_000, seed=seed, rate=0.5, users=300, merchants=40,
                          out_of_order=0.2, max_lateness_ms=2 * HOUR_MS)
    table = generate_table(cfg)
    if spread_ids:  # negative ids and ids 2**53 apart: every 16-bit digit of the key sorts
        for name, step in (("user_id", 2**53), ("merchant_id", 2**56)):
            ids = pc.subtract(pc.multiply(table.column(name), step), 2**62)
            table = table.set_column(table.schema.get_field_index(name), name, ids)
    _check(table, FEATURES + FILTERED)


def test_small_sums_next_to_large_ones_keep_their_digits() -> None:
    # Plain float prefix sums give 5e7 + 0.01 - 5e7 = 0.009999997913837433 here: 2e-9 off,
    # beyond the tolerance. The split prefix sums give 0.01.
    amounts = [(MAX_AMOUNT, ms) for ms in range(50)] + [(0.01, 2 * HOUR_MS), (0.01, 3 * HOUR_MS)]
    events = [{"event_id": i, "user_id": 1, "merchant_id": 1, "amount": a, "currency": "USD",
               "country": "US", "device": None, "ts": T0 + ts, "is_fraud": False}
              for i, (a, ts) in enumerate(amounts)]
    table = pa.Table.from_pylist(events, schema=arrow_schema())
    specs = (FeatureSpec("s", USER, Agg.SUM, 90 * 60_000, "amount"),)
    sums = batch_numpy.training_table(table, specs).column("s").to_pylist()
    assert sums[49] == 49 * MAX_AMOUNT and sums[-2:] == [0.0, 0.01]
    _check(table, specs)


def test_empty_events() -> None:
    table = pa.Table.from_pylist([], schema=arrow_schema())
    con = duckdb.connect()
    con.register("ev", table)
    _assert_equal(batch_numpy.training_table(table), con.sql(training_sql("ev")).to_arrow_table())


def test_batch_features_default_is_the_vectorised_pass_and_reference_is_the_sql(seed: int) -> None:
    table = generate_table(GeneratorConfig(events=3_000, seed=seed, rate=0.2))
    batch = BatchFeatures(table)
    _assert_equal(batch.training_table(), batch.training_table(reference=True))
    with_null_key = pa.table({**{c: table.column(c) for c in table.column_names},
                              "user_id": pa.array([None, *table.column("user_id").to_pylist()[1:]],
                                                  pa.int64())})
    assert not batch_numpy.supports(with_null_key)  # such events run the SQL
    assert BatchFeatures(with_null_key).training_table().num_rows == table.num_rows
