"""A restored engine (rows grouped by key, each key rebuilt when it is next used) carries on
exactly as the engine it was saved from: same per-event values, late events included, and the
same online state and retained entries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataflow_playground.features.parity import values_equal
from dataflow_playground.features.stream.state import EngineStats, FeatureEngine, entry_from
from dataflow_playground.features.stream.wire import pack_entries, unpack_entries
from tests.features.stream.test_parity_inmemory import event_sets


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)


@given(events=event_sets(), cut=st.floats(0, 1), late=st.lists(st.integers(0, 59), max_size=8),
       as_rows=st.booleans())
def test_a_restored_engine_carries_on_like_the_one_it_was_saved_from(
        events: list[dict[str, object]], cut: float, late: list[int], as_rows: bool) -> None:
    entries = sorted(entry_from(ev) for ev in events)
    # A few events moved to the end: they arrive late, after newer events of their keys.
    moved = {entries[i % len(entries)] for i in late}
    order = [e for e in entries if e not in moved] + sorted(moved)
    k = int(cut * len(order))
    first, rest = order[:k], order[k:]

    whole = FeatureEngine()
    for e in first:
        whole.process(e)
    saved = whole.retained_entries()
    restored = FeatureEngine()
    rows = unpack_entries(pack_entries(saved)) if as_rows else saved
    restored.restore(rows, EngineStats(**whole.stats.__dict__))
    assert not restored.take_dirty()
    assert sorted(restored.retained_entries()) == sorted(saved)

    for e in rest:
        a, late_a = whole.process(e)
        b, late_b = restored.process(e)
        assert late_a == late_b
        assert _same(a, b), (e, a, b)
    online_a, online_b = whole.online_state(), restored.online_state()
    assert online_a.keys() == online_b.keys()
    assert all(_same(online_a[key], online_b[key]) for key in online_a)
    assert sorted(restored.retained_entries()) == sorted(whole.retained_entries())
