"""Hypothesis strategies shared by the batch feature tests."""

from __future__ import annotations

from hypothesis import strategies as st

from dataflow_playground.features.definitions import HOUR_MS

T0 = 1_767_225_600_000
AMOUNTS = (0.01, 1.5, 20.0, 499.99, 500.0, 1234.56, 50_000.0)
SAMPLED_AMOUNTS = st.sampled_from(AMOUNTS)


@st.composite
def event_sets(draw: st.DrawFn, amounts: st.SearchStrategy[float] = SAMPLED_AMOUNTS
               ) -> list[dict[str, object]]:
    """1-80 events of a few users and merchants.

    Coarse times plus offsets of exactly 0, 1 ms and one window: equal timestamps, and events
    sitting exactly on a window's left edge (inside) or just past it. Event ids are unique and
    not in ``ts`` order.
    """
    n = draw(st.integers(1, 80))
    events = []
    for i in range(n):
        off = draw(st.integers(0, 40)) * 20 * 60_000 + draw(
            st.sampled_from([0, 0, 1, -1, HOUR_MS, 24 * HOUR_MS, 7 * 24 * HOUR_MS]))
        events.append({
            "event_id": draw(st.integers(0, 10_000)) * 100 + i,
            "user_id": draw(st.integers(0, 3)), "merchant_id": draw(st.integers(0, 2)),
            "amount": draw(amounts),
            "currency": "USD", "country": "US", "device": None, "ts": T0 + off, "is_fraud": False,
        })
    return events
