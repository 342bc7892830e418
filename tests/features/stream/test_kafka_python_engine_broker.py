"""The kafka-python stream engine as a real process against the session's real broker."""

from __future__ import annotations

import pytest
from rich.console import Console

from dataflow_playground.app.parity_run import run_parity
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, wire_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_parity_zero_and_bad_records_dead_lettered(kafka_stack: Settings) -> None:
    events, seed, rate = 4000, 15, 0.05
    malformed = sum(r.malformed is not None for r in
                    wire_records(GeneratorConfig(events=events, seed=seed, malformed_rate=rate)))
    report = run_parity(kafka_stack, events=events, seed=seed, malformed_rate=rate,
                        ui=Console(quiet=True), engine="kafka-python")
    doc = report.to_json()
    assert doc["engine"] == "kafka-python"
    assert {n: m["mismatch_rate"] for n, m in doc["features"].items()} == dict.fromkeys(doc["features"], 0.0)
    assert doc["final_state_mismatches"] == 0
    # Bad records went to the dead-letter topic and the worker kept going past them.
    assert malformed > 100
    assert doc["stream_counters"]["dead_lettered"] == doc["dead_letter_records"] == malformed
    assert doc["stream_counters"]["processed"] == events - malformed


def test_out_of_order_converges(kafka_stack: Settings) -> None:
    report = run_parity(kafka_stack, events=3000, seed=6, out_of_order=0.05, max_lateness_ms=30_000,
                        ui=Console(quiet=True), engine="kafka-python")
    doc = report.to_json()
    assert doc["stream_counters"]["late_dropped"] == 0
    assert doc["final_state_mismatches"] == 0
