"""The stream runner's metrics, broker-free: every input record is processed or dead-lettered."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dataflow_playground.core import metrics
from dataflow_playground.core.validation import REJECTION_KINDS, Rejection, decode_batch
from dataflow_playground.features.stream.testing import INPUT, MemorySource, run_in_memory
from dataflow_playground.producers.generator import GeneratorConfig, wire_records

COMPONENT = "features-worker"  # TaskConfig's default, what run_in_memory's runner reports as


def _counts() -> dict[str, float]:
    c = COMPONENT
    out = {"received": metrics.EVENTS_RECEIVED.labels(c)._value.get(),
           "stored": metrics.EVENTS_STORED.labels(c)._value.get(),
           "fresh": sum(b.get() for b in metrics.FRESHNESS.labels(c)._buckets)}
    out.update({k: metrics.DEAD_LETTERS.labels(c, k)._value.get() for k in REJECTION_KINDS})
    return out


def test_received_is_processed_plus_dead_letters_by_kind(tmp_path: Path, seed: int) -> None:
    records = [(r.key, r.value) for r in wire_records(GeneratorConfig(events=1_500, seed=seed,
                                                                      malformed_rate=0.05))]
    expected_dead = Counter(r.kind for r in decode_batch([v for _k, v in records])
                            if isinstance(r, Rejection))
    before = _counts()
    runner, _sink = run_in_memory(MemorySource.from_wire(records, 3), tmp_path / "online.duckdb")
    after = _counts()
    delta = {k: after[k] - before[k] for k in after}
    dead = {k: delta[k] for k in REJECTION_KINDS if delta[k]}
    assert dead == dict(expected_dead)
    assert delta["received"] == len(records)
    # In event-time order nothing is dropped as too late: each good event is processed once.
    assert delta["stored"] == len(records) - sum(expected_dead.values())
    assert delta["fresh"] == delta["stored"]

    # Lag per owned input partition; a partition taken away takes its series with it.
    runner.observe_lag(lambda tp: runner.tasks[tp].position + 7 if tp[0] == INPUT else None)
    lag = metrics.CONSUMER_LAG.labels(COMPONENT, INPUT, "1")._value.get()
    assert lag == 7
    runner.drop([(INPUT, 1)])
    assert (COMPONENT, INPUT, "1") not in metrics.CONSUMER_LAG._metrics
