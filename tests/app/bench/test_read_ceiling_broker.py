"""Each engine's client alone (``playground bench stream``'s ceiling) on the session's broker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest

from dataflow_playground.app.bench.stream import _UI, StreamRun, client_alone, event_records
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import STREAM_ENGINES, Settings
from dataflow_playground.producers.to_kafka import make_producer, produce

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
EVENTS = 3_000


@dataclass
class _Run:  # what client_alone reads of a StreamRun
    app_id: str
    topic: str


class _NoUI:
    def start_phase(self, description: str, total: float | None) -> None:
        pass


@pytest.mark.parametrize("engine", STREAM_ENGINES)
def test_the_client_alone_reads_the_whole_topic_and_leaves_no_group(
        engine: str, kafka_stack: Settings, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=3, prefix="bench-st-ceiling")
    producer = make_producer(kafka_stack.bootstrap_servers)
    try:
        stats = produce(producer, topic, event_records(EVENTS, seed=3))
    finally:
        producer.close()
    assert stats.failed == 0
    run = cast(StreamRun, _Run(app_id=topic, topic=topic))
    figures: dict[str, Any] = client_alone(kafka_stack, run, engine, EVENTS, cast(_UI, _NoUI()))
    assert "error" not in figures, figures
    assert figures["engine"] == engine and figures["records"] >= EVENTS
    assert 0 <= figures["counted"] < figures["records"]  # the first delivery is not counted
    if figures["counted"]:  # faust delivers record by record; kafka-python may take all at once
        assert figures["events_per_s"] > 0 and figures["cpu_s_per_million"] > 0
    assert f"{topic}-client-alone" not in kafka_admin.list_groups(kafka_stack.bootstrap_servers)


def test_a_reader_that_cannot_read_is_a_reason_not_a_failure(kafka_stack: Settings) -> None:
    run = cast(StreamRun, _Run(app_id="bench-st-ceiling-missing", topic="bench-st-ceiling-no-such-topic"))
    figures = client_alone(kafka_stack, run, "kafka-python", 10, cast(_UI, _NoUI()))
    assert set(figures) == {"error"}
    assert "the reader failed with exit code 1" in figures["error"]
    assert "no partitions found" in figures["error"]  # what the reader said, in the reason
