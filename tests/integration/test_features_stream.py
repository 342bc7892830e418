"""Real Kafka + the faust features worker + online store + REST endpoint."""

from __future__ import annotations

import time

import httpx
import pytest
from rich.console import Console

from features.online_store import worker_healthy
from features.parity_run import run_parity
from playground import stack
from playground.settings import Settings
from producers.generator import GeneratorConfig, wire_records
from producers.to_kafka import make_producer, produce

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


def test_stack_worker_serves_rest_and_survives_bad_events(kafka_stack: Settings) -> None:
    assert stack.read_pid(kafka_stack, stack.FEATURES_WORKER.name) is not None
    cfg = GeneratorConfig(events=500, seed=9, rate=2.0, malformed_rate=0.1)
    records = list(wire_records(cfg))
    malformed = sum(r.malformed is not None for r in records)
    producer = make_producer(kafka_stack.bootstrap_servers)
    produce(producer, kafka_stack.topic, ((r.key, r.value) for r in records))
    producer.close()
    user = next(int(r.key) for r in reversed(records) if r.malformed is None)
    deadline = time.monotonic() + 60
    body = None
    while time.monotonic() < deadline:
        resp = httpx.get(f"{kafka_stack.rest_url}/features/user/{user}", timeout=5)
        if resp.status_code == 200:
            body = resp.json()
            break
        time.sleep(0.3)
    assert body is not None, "the user's features never appeared in the online store"
    assert body["values"]["user_txn_count_1h"] >= 0 and body["age_ms"] >= 0
    stats = httpx.get(f"{kafka_stack.rest_url}/features/user/{user}", timeout=5).json()
    assert stats["late_events_dropped"] == 0
    assert httpx.get(f"{kafka_stack.rest_url}/features/nope/1", timeout=5).status_code == 404
    time.sleep(1.5)
    assert worker_healthy(kafka_stack), "the worker stopped after bad events"
    from features.online_store import OnlineStoreReader, online_store_path

    reader = OnlineStoreReader(online_store_path(kafka_stack))
    assert reader.stats()["dead_lettered"] >= malformed
    reader.close()
