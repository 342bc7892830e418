"""Write events to Kafka with kafka-python, durably and in order per user.

Settings and why:
- ``acks=all`` + ``enable_idempotence=True``: a retried batch is not written twice,
  and with at most 5 requests in flight per connection order per partition holds.
- key = ``user_id``: all of a user's events land in one partition, in order, which
  the stream features rely on.
- ``linger_ms=10``, ``batch_size=256 KiB``, ``compression_type=lz4``: fill bigger
  batches (fewer requests; lz4 is cheap on CPU and shrinks JSON about 3x). These
  were picked by measurement with ``playground bench kafka``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner.default import DefaultPartitioner

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.metrics import ProducerMetrics
from dataflow_playground.core.receipts import now_us
from dataflow_playground.producers.base import FlowWriter

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "max_in_flight_requests_per_connection": 5,
    "linger_ms": 10,
    "batch_size": 256 * 1024,
    "compression_type": "lz4",
    "retries": 2_147_483_647,
    "delivery_timeout_ms": 120_000,
}
# The header carrying the producer's send clock (UTC microseconds) for latency figures.
SENT_HEADER = "sent_us"


class CachedKeyPartitioner(DefaultPartitioner):
    """The default murmur2 partitioner, hashing each distinct key once.

    Keys are user ids with a Zipf-like skew, so they repeat a lot, and kafka-python's
    pure-Python murmur2 was ~15% of ``send()`` in a pyinstrument profile. The partition
    chosen is exactly the default's (the same one a Java client picks for the key).
    """

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._cache: dict[tuple[str, bytes, int], int] = {}
        self._max_keys = max_keys

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                  serialized_value: bytes | None, cluster: Any) -> int:
        if serialized_key is None:
            return int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        n = len(cluster.partitions_for_topic(topic) or ())
        cache_key = (topic, serialized_key, n)
        found = self._cache.get(cache_key)
        if found is None:
            found = int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
            if len(self._cache) >= self._max_keys:
                self._cache.clear()
            self._cache[cache_key] = found
        return found


def make_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    try:
        return KafkaProducer(bootstrap_servers=bootstrap, client_id="playground-producer",
                             **{"partitioner": CachedKeyPartitioner(), **PRODUCER_DEFAULTS, **overrides})
    except KafkaError as err:
        raise PlaygroundError(
            f"cannot connect a producer to Kafka at {bootstrap}: {err}. "
            "Is the broker up? Try 'playground up' or 'playground status'.") from err


@dataclass
class ProduceStats:
    sent: int = 0
    bytes: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0


def produce(producer: KafkaProducer, topic: str, records: Iterable[tuple[bytes, bytes]],
            on_progress: Callable[[int], None] | None = None, progress_every: int = 10_000,
            metrics: ProducerMetrics | None = None) -> ProduceStats:
    """Send ``(key, value)`` pairs and flush; delivery failures are counted, not raised.

    ``metrics``: also count sent, acknowledged and failed events there (a callback per
    event, so only where a process is scraped; the benchmarks leave it out).
    """
    stats = ProduceStats()

    def failed(exc: BaseException) -> None:
        stats.failed += 1
        if len(stats.errors) < 5:
            stats.errors.append(repr(exc))
        if metrics is not None:
            metrics.error(exc)

    acked = metrics.acknowledged if metrics is not None else None
    start = time.perf_counter()
    for key, value in records:
        fut = producer.send(topic, key=key, value=value).add_errback(failed)
        if metrics is not None:
            fut.add_callback(lambda _meta, c=acked: c.inc())
            metrics.sent.inc()
        stats.sent += 1
        stats.bytes += len(value)
        if on_progress and stats.sent % progress_every == 0:
            on_progress(progress_every)
    producer.flush()
    stats.elapsed_s = time.perf_counter() - start
    if on_progress:
        on_progress(stats.sent % progress_every)
    return stats


class KafkaWriter(FlowWriter):
    """The Kafka side of the dataflow modes: one message per event, send time in a header."""

    mode = "kafka"

    def __init__(self, bootstrap: str, topic: str, metrics: ProducerMetrics | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        self.topic = topic
        self.metrics = metrics
        self.producer = make_producer(bootstrap, **overrides)

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors[type(exc).__name__] += 1
        self.stats.gave_up_events += 1
        if self.metrics is not None:
            self.metrics.error(exc)

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        m = self.metrics
        for event in events:
            fut = self.producer.send(
                self.topic, key=str(event["user_id"]).encode(), value=orjson.dumps(event),
                headers=[(SENT_HEADER, str(now_us()).encode())],
            ).add_errback(self._failed)
            if m is not None:
                fut.add_callback(lambda _meta, c=m.acknowledged: c.inc())
        if m is not None:
            m.sent.inc(len(events))

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()
