"""The generator is reproducible and has the shape its docstring promises."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dataflow_playground.core.validation import Rejection, decode_event
from dataflow_playground.producers.generator import (
    MALFORMED_KINDS,
    GeneratorConfig,
    generate_table,
    wire_records,
)


def test_same_seed_same_events(seed: int) -> None:
    cfg = GeneratorConfig(events=2000, seed=seed)
    assert generate_table(cfg).equals(generate_table(cfg))
    assert not generate_table(cfg).equals(generate_table(GeneratorConfig(events=2000, seed=seed + 1)))


def test_realistic_shape(seed: int) -> None:
    t = generate_table(GeneratorConfig(events=50_000, seed=seed, users=5_000))
    users = Counter(t.column("user_id").to_pylist())
    top_1pct = sum(n for _, n in users.most_common(50))
    assert top_1pct / 50_000 > 0.2, "users should be skewed (Zipf-like)"
    amounts = np.asarray(t.column("amount"))
    assert (amounts > 0).all()
    assert np.median(amounts) < amounts.mean(), "lognormal amounts are right-skewed"
    ts = np.asarray(t.column("ts"))
    assert (np.diff(ts) >= 0).all(), "in-order by default"
    fraud = np.asarray(t.column("is_fraud"))
    assert 0 < fraud.mean() < 0.05
    assert t.column("device").null_count > 0, "some devices are unknown"


def test_out_of_order_fraction_and_bound(seed: int) -> None:
    cfg = GeneratorConfig(events=20_000, seed=seed, out_of_order=0.1, max_lateness_ms=30_000)
    late = np.asarray(generate_table(cfg).column("ts"))
    base = np.asarray(generate_table(GeneratorConfig(events=20_000, seed=seed)).column("ts"))
    shifted = base - late
    assert 0.08 < (shifted > 0).mean() < 0.12
    assert shifted.max() <= 30_000 and shifted.min() >= 0


def test_every_malformed_kind_is_rejected_and_good_accepted(seed: int) -> None:
    records = list(wire_records(GeneratorConfig(events=3000, seed=seed, malformed_rate=0.2)))
    kinds = Counter(r.malformed for r in records if r.malformed)
    assert set(kinds) == set(MALFORMED_KINDS)
    for r in records:
        result = decode_event(r.value)
        if r.malformed:
            assert isinstance(result, Rejection), (r.malformed, r.value)
        else:
            assert not isinstance(result, Rejection), (result, r.value)
            assert result.event_id == r.event_id


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="out_of_order"):
        GeneratorConfig(out_of_order=1.5)
