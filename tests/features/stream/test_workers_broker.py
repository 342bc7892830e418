"""Real Kafka + the faust features worker + online store + REST endpoint."""

from __future__ import annotations

import time

import httpx
import pyarrow as pa
import pytest
from rich.console import Console

from dataflow_playground.app import stack
from dataflow_playground.app.parity_run import run_parity
from dataflow_playground.core.schema import arrow_schema
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.online_store import (
    OnlineStoreReader,
    online_store_path,
    worker_healthy,
)
from dataflow_playground.features.parity import values_equal
from dataflow_playground.producers.generator import (
    GeneratorConfig,
    encode_event,
    generate_table,
    wire_records,
)
from dataflow_playground.producers.to_kafka import make_producer, produce
from tests.helpers import fresh_event_time_ms, poll_get

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_parity_is_zero_in_order(kafka_stack: Settings) -> None:
    report = run_parity(kafka_stack, events=3000, seed=5, ui=Console(quiet=True))
    doc = report.to_json()
    assert {n: m["mismatch_rate"] for n, m in doc["features"].items()} == dict.fromkeys(doc["features"], 0.0)
    assert doc["final_state_mismatches"] == 0


def test_out_of_order_converges(kafka_stack: Settings) -> None:
    report = run_parity(kafka_stack, events=3000, seed=6, out_of_order=0.05, max_lateness_ms=30_000,
                        ui=Console(quiet=True))
    doc = report.to_json()
    assert doc["stream_counters"]["late_accepted"] > 0
    assert doc["stream_counters"]["late_dropped"] == 0
    assert doc["final_state_mismatches"] == 0


def _stats(settings: Settings) -> dict[str, int]:
    reader = OnlineStoreReader(online_store_path(settings))
    try:
        return reader.stats()
    finally:
        reader.close()


def test_stack_worker_serves_rest_and_survives_bad_events(kafka_stack: Settings) -> None:
    assert stack.read_pid(kafka_stack, stack.FEATURES_WORKER.name) is not None
    # Event times after everything the worker has seen: other tests share its topic.
    cfg = GeneratorConfig(events=500, seed=9, rate=2.0, malformed_rate=0.1,
                          start_ms=fresh_event_time_ms(kafka_stack))
    before = _stats(kafka_stack)  # the worker's counters are for its whole life
    late_before, dead_before = before.get("late_dropped", 0), before.get("dead_lettered", 0)
    records = list(wire_records(cfg))
    malformed = sum(r.malformed is not None for r in records)
    # A user of our own, after the generated events in event time, with known payments: the
    # values the REST endpoint serves must be exactly what batch SQL computes for them.
    user = 10**12 + 9
    t0 = int(generate_table(cfg).column("ts").to_numpy().max()) + 60_000
    mine = [{"event_id": 10**12 + i, "user_id": user, "merchant_id": 100 + i % 3, "amount": amount,
             "currency": "EUR", "country": "DE", "device": "web", "ts": t0 + i * 600_000,
             "is_fraud": False} for i, amount in enumerate([12.5, 700.0, 3.25, 41.0, 0.99])]
    producer = make_producer(kafka_stack.bootstrap_servers)
    produce(producer, kafka_stack.topic, [*((r.key, r.value) for r in records),
                                         *((str(user).encode(), encode_event(e)) for e in mine)])
    producer.close()
    expected = BatchFeatures(pa.Table.from_pylist(mine, schema=arrow_schema())).snapshot()[("user", user)]

    url = f"{kafka_stack.rest_url}/features/user/{user}"
    body = poll_get(url, lambda r: r.status_code == 200 and r.json()["as_of"] == mine[-1]["ts"] + 1,
                 "the user's latest features did not appear").json()
    assert body["values"].keys() == expected.keys()
    wrong = {k: (v, expected[k]) for k, v in body["values"].items() if not values_equal(v, expected[k])}
    assert not wrong, wrong
    # By hand: the snapshot holds right after the last payment, so all five are in its windows.
    assert body["values"]["user_txn_count_1h"] == 5
    assert body["values"]["user_large_txn_count_24h"] == 1
    assert body["values"]["user_last_3_amounts"] == [3.25, 41.0, 0.99]
    assert 0 <= body["age_ms"] < 60_000
    assert body["late_events_dropped"] == late_before  # none of ours was late
    assert httpx.get(f"{kafka_stack.rest_url}/features/nope/1", timeout=5).status_code == 404
    # Still alive after the bad events: its heartbeat keeps coming, and it counted them.
    reader = OnlineStoreReader(online_store_path(kafka_stack))
    try:
        deadline = time.monotonic() + 30
        while reader.stats().get("dead_lettered", 0) < dead_before + malformed:
            assert time.monotonic() < deadline, reader.stats()
            time.sleep(0.2)
        beat = reader.stats()["heartbeat_ms"]
        while reader.stats()["heartbeat_ms"] == beat:
            assert time.monotonic() < deadline, "the worker's heartbeat stopped after bad events"
            time.sleep(0.2)
    finally:
        reader.close()
    assert worker_healthy(kafka_stack)
