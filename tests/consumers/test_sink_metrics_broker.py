"""The sink's loss accounting, read the way Prometheus reads it: an HTTP scrape of /metrics."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataflow_playground.consumers.kafka_to_duckdb import KafkaToDuckDB
from dataflow_playground.core.metrics import metrics_targets, serve_metrics, stop_serving
from dataflow_playground.core.settings import Settings
from dataflow_playground.core.validation import Rejection, decode_batch
from dataflow_playground.producers.generator import GeneratorConfig, wire_records
from dataflow_playground.producers.to_kafka import make_producer, produce
from dataflow_playground.storage.duckdb_store import EventStore

pytestmark = pytest.mark.kafka

EVENTS = 3_000
RESENT = 40  # valid records sent a second time: the second copy is a duplicate


def test_received_is_stored_plus_dead_letters_plus_duplicates(
        kafka_stack: Settings, topic_factory: Callable[..., str], tmp_path: Path, seed: int) -> None:
    topic, dlq = topic_factory(partitions=3), topic_factory(partitions=1)
    records = list(wire_records(GeneratorConfig(events=EVENTS, seed=seed, malformed_rate=0.05)))
    valid = [r for r in records if r.event_id is not None]
    sent = [(r.key, r.value) for r in records] + [(r.key, r.value) for r in valid[:RESENT]]
    producer = make_producer(kafka_stack.bootstrap_servers)
    stats = produce(producer, topic, sent)
    producer.close()
    assert stats.failed == 0, stats.errors
    expected_dead = Counter(r.kind for r in decode_batch([v for _k, v in sent]) if isinstance(r, Rejection))
    assert sum(expected_dead.values()) == len(records) - len(valid) > 0

    component = f"sink-{uuid.uuid4().hex[:8]}"
    settings = kafka_stack.model_copy(update={"data_dir": tmp_path / "data", "sink_dead_letter_topic": dlq})
    port = serve_metrics(settings, component)
    try:
        assert metrics_targets(settings) == {component: f"http://127.0.0.1:{port}/metrics"}
        with EventStore(tmp_path / "sink.duckdb") as store:
            sink = KafkaToDuckDB(settings, store, group=f"g-{component}", topic=topic,
                                 max_poll_records=500, write_batch=1000, component=component)
            try:
                sink.run(max_events=len(sent), idle_timeout_s=20)
            finally:
                sink.close()
            rows = store.count()
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop_serving(port)

    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.labels.get("component") == component]

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name
                   and all(s.labels.get(k) == v for k, v in labels.items()))

    received = total("playground_events_received_total")
    stored = total("playground_events_stored_total")
    dead = total("playground_dead_letters_total")
    duplicates = total("playground_duplicates_total")
    assert received == len(sent)
    assert (stored, dead, duplicates) == (len(valid), len(records) - len(valid), RESENT)
    assert received == stored + dead + duplicates
    assert stored == rows
    dead_by_kind = {kind: total("playground_dead_letters_total", reason=kind) for kind in expected_dead}
    assert dead_by_kind == dict(expected_dead)
    assert total("playground_freshness_seconds_count") == stored
    lag = {s.labels["partition"]: s.value for s in samples if s.name == "playground_consumer_lag_records"}
    assert lag == {"0": 0.0, "1": 0.0, "2": 0.0}, "everything produced was read"
