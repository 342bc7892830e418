"""Stream operators fed from memory (no broker) against the batch SQL: in order -> identical values."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_playground.core.schema import arrow_schema
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.definitions import FEATURES, HOUR_MS
from dataflow_playground.features.parity import compare, values_equal
from dataflow_playground.features.stream.event_time import IDLE, Arrival, EventTimeOrderer
from dataflow_playground.features.stream.state import FeatureEngine, aggregate, entry_from

T0 = 1_767_225_600_000


@st.composite
def event_sets(draw: st.DrawFn) -> list[dict[str, object]]:
    n = draw(st.integers(1, 60))
    # Few users/merchants and coarse times: many windows overlap, many equal timestamps.
    offsets = draw(st.lists(st.integers(0, 30) .map(lambda x: x * 20 * 60_000 // 3), min_size=n, max_size=n))
    events = []
    for i, off in enumerate(offsets):
        events.append({
            "event_id": i, "user_id": draw(st.integers(0, 3)), "merchant_id": draw(st.integers(0, 2)),
            "amount": draw(st.sampled_from([0.01, 1.5, 20.0, 499.99, 500.0, 1234.56])),
            "currency": "USD", "country": "US", "device": None,
            "ts": T0 + off + draw(st.sampled_from([0, 0, 1, HOUR_MS, 24 * HOUR_MS])), "is_fraud": False,
        })
    return events


def _stream_values(events: list[dict[str, object]]) -> tuple[dict[int, dict[str, object]], FeatureEngine]:
    engine = FeatureEngine()
    out = {}
    for e in sorted(entry_from(ev) for ev in events):
        out[e[1]] = engine.process(e)[0]
    return out, engine


def _assert_no_mismatch(report: dict) -> None:  # type: ignore[type-arg]
    bad = {n: p.examples for n, p in report.items() if p.mismatches}
    assert not bad, bad


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_sets())
def test_in_order_stream_equals_batch_sql(events: list[dict[str, object]]) -> None:
    table = pa.Table.from_pylist(events, schema=arrow_schema())
    batch = BatchFeatures(table)
    training = batch.training_table().to_pylist()
    stream, engine = _stream_values(events)
    _assert_no_mismatch(compare(((r["event_id"], r) for r in training), stream))
    snapshot = batch.snapshot()
    for f in FEATURES:
        ids = [(k, v) for k, v in snapshot.items() if k[0] == f.entity.name]
        _assert_no_mismatch(compare(ids, engine.online_state(), features=(f,)))


@settings(max_examples=40, deadline=None)
@given(event_sets(), st.randoms(use_true_random=False))
def test_late_events_converge_to_the_snapshot(events: list[dict[str, object]], rnd) -> None:  # type: ignore[no-untyped-def]
    """Any arrival order: the final online state still equals the batch snapshot (corrections work)."""
    table = pa.Table.from_pylist(events, schema=arrow_schema())
    snapshot = BatchFeatures(table).snapshot()
    engine = FeatureEngine(allowed_lateness_ms=10 * 24 * HOUR_MS)
    entries = [entry_from(ev) for ev in events]
    rnd.shuffle(entries)
    for e in entries:
        engine.process(e)
    online = engine.online_state()
    for f in FEATURES:
        _assert_no_mismatch(compare([(k, v) for k, v in snapshot.items() if k[0] == f.entity.name],
                                    online, features=(f,)))


def test_equal_timestamps_do_not_see_each_other() -> None:
    base = {"currency": "USD", "country": "US", "device": None, "is_fraud": False, "merchant_id": 1}
    events = [{**base, "event_id": i, "user_id": 7, "amount": 10.0 * (i + 1), "ts": T0 + (i // 2) * 1000}
              for i in range(4)]
    values, _ = _stream_values(events)
    assert values[1]["user_txn_count_1h"] == 0  # shares ts with event 0: excluded
    assert values[2]["user_txn_count_1h"] == 2
    assert values[3]["user_last_3_amounts"] == [10.0, 20.0]
    assert values[3]["user_time_since_last_ms"] == 1000


def test_reference_aggregate_window_is_half_open() -> None:
    f = next(f for f in FEATURES if f.name == "user_txn_count_1h")
    rows = [(T0, 0, 1.0, 1, 1), (T0 + HOUR_MS, 1, 1.0, 1, 1)]
    assert aggregate(f, rows, T0 + HOUR_MS) == 1  # T0 is exactly at e.ts - W: inside
    assert aggregate(f, rows, T0 + HOUR_MS + 1) == 1  # T0 falls out, T0+W is before: inside


def test_float_tolerance_is_tight() -> None:
    assert values_equal(0.1 + 0.2, 0.3)
    assert not values_equal(100.0, 100.001)
    assert values_equal([1.0, 2.0], [1.0, 2.0]) and not values_equal([1.0], [])


def test_orderer_waits_for_every_channel_and_flags_late() -> None:
    o: EventTimeOrderer[int] = EventTimeOrderer([0, 1], allowed_lateness_ms=100)
    assert o.push(0, 10, 1, 1) is Arrival.BUFFERED
    assert o.release() == []  # channel 1 not heard from yet
    o.push(1, 5, 2, 2)
    o.push(1, 20, 3, 3)
    assert o.release() == [2, 1]  # watermark = min(10, 20)
    assert o.push(0, 8, 4, 4) is Arrival.LATE
    assert o.push(0, -200, 5, 5) is Arrival.DROPPED
    assert o.release() == []  # channel 0 is at 10: item 3 (ts 20) waits
    o.advance(0, IDLE)
    assert o.release() == [3]  # an idle channel holds nobody back
    o.push(0, 15, 6, 6)  # back from idle, but behind the frontier: late
    assert o.stats.late_accepted == 2 and o.stats.late_dropped == 1
    o.advance(1, 30)
    assert o.watermark() == 15


def test_an_idle_mark_holds_only_while_its_partition_has_not_grown() -> None:
    o: EventTimeOrderer[int] = EventTimeOrderer([0, 1], allowed_lateness_ms=100)
    o.push(0, 10, 1, 1)
    o.push(1, 12, 2, 2)
    assert o.release() == [1]
    o.advance(1, IDLE, idle_at=40)  # channel 1 caught up at its input offset 40
    o.push(0, 50, 3, 3)
    ends = {0: 99, 1: 40}
    assert o.release(lambda: ends) == [2, 3]  # still at 40: idle, holds nobody back
    o.advance(0, IDLE, idle_at=99)
    o.push(0, 70, 4, 4)  # channel 0 resumes first after a quiet spell...
    ends = {0: 120, 1: 41}
    assert o.release(lambda: ends) == []  # ...but channel 1 has grown: it holds at its last mark (12)
    assert o.release(lambda: None) == []  # end offsets not to be had: idle channels count as woken
    o.push(1, 60, 5, 5)  # channel 1's new event arrives, in time
    o.advance(1, 80)
    assert o.release(lambda: ends) == [5, 4]
    assert o.stats.late_accepted == o.stats.late_dropped == 0
    snap = o.snapshot()
    o.advance(1, IDLE, idle_at=41)
    restored: EventTimeOrderer[int] = EventTimeOrderer([0, 1], allowed_lateness_ms=100)
    restored.restore(o.snapshot(), [(90, 6, 6)])
    assert (restored.idle_at, restored.before_idle, len(restored)) == ({1: 41}, {1: 80}, 1)
    assert snap["idle_at"] == {}
