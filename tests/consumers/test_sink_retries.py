"""The sink's dead-letter publishing: a refused send is sent again, and each retry is counted."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureProduceResult, FutureRecordMetadata

from dataflow_playground.consumers import kafka_to_duckdb
from dataflow_playground.consumers.kafka_to_duckdb import KafkaToDuckDB
from dataflow_playground.core.metrics import consumer_metrics
from dataflow_playground.storage.duckdb_store import DeadLetter


class FlakyProducer:
    """Refuses the first ``failures`` sends (a broker error on the future), then acknowledges."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.acked: list[bytes] = []

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> FutureRecordMetadata:
        fut = FutureRecordMetadata(FutureProduceResult(None), 0, 0, None, len(value), 0, 0)
        if self.failures:
            self.failures -= 1
            fut.failure(KafkaTimeoutError("broker did not answer"))
        else:
            self.acked.append(value)
            fut.success(None)
        return fut

    def flush(self, timeout: float | None = None) -> None:
        pass


def _sink(producer: FlakyProducer, component: str) -> KafkaToDuckDB:
    sink = KafkaToDuckDB.__new__(KafkaToDuckDB)  # no broker: only the dead-letter path is used
    sink.dlq, sink.dlq_topic, sink.metrics = producer, "dlq", consumer_metrics(component)
    return sink


def _dead(n: int) -> list[DeadLetter]:
    return [DeadLetter(dead_letter_id=f"kafka:t:0:{i}", source="kafka", key=None, payload=b"bad%d" % i,
                       field="<record>", reason="malformed") for i in range(n)]


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda _s: None)


def test_refused_dead_letters_are_sent_again_and_counted() -> None:
    producer = FlakyProducer(failures=3)
    sink = _sink(producer, "sink-retry-ok")
    sink._publish_dead(_dead(5))
    # The first attempt: 3 of 5 refused; the second sends those 3 again, all acknowledged.
    assert sorted(producer.acked) == sorted(b"bad%d" % i for i in range(5))
    assert sink.metrics.retries._value.get() == 1


def test_a_dead_letter_topic_that_keeps_refusing_stops_the_sink() -> None:
    producer = FlakyProducer(failures=10_000)
    sink = _sink(producer, "sink-retry-fail")
    with pytest.raises(KafkaError, match="not acknowledged"):
        sink._publish_dead(_dead(2))
    assert sink.metrics.retries._value.get() == kafka_to_duckdb.DLQ_ATTEMPTS - 1
