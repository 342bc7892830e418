"""A bad record gives exactly one dead letter per consumer, on that consumer's own topic.

The sink and the features worker both read the input topic; each republishes every record it
cannot use, key and value untouched, to its own dead-letter topic with the documented headers
(``reason``, ``stage``, ``source``: core/dead_letters.py). The features worker replays its
input on every start, so it is started twice: still one dead letter per bad record.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from dataflow_playground.consumers.kafka_to_duckdb import KafkaToDuckDB
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.dead_letters import (
    FEATURES_STAGE,
    MAX_REASON_BYTES,
    SINK_STAGE,
    DeadLetterInfo,
    source_id,
)
from dataflow_playground.core.settings import STREAM_ENGINES, Settings
from dataflow_playground.features.stream.process import WorkerProcess
from dataflow_playground.features.stream.worker import internal_topics
from dataflow_playground.producers.generator import GeneratorConfig, wire_records
from dataflow_playground.producers.to_kafka import make_producer
from dataflow_playground.storage.duckdb_store import EventStore

pytestmark = pytest.mark.kafka


def _read_exactly(bootstrap: str, topic: str, n: int) -> list:
    """The topic's messages, which must be exactly ``n`` (none missing after 20 s, then no more)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=20_000)
    messages = []
    try:
        for m in consumer:
            messages.append(m)
            if len(messages) == n:
                break
    finally:
        consumer.close()
    assert len(messages) == n == kafka_admin.topic_size(bootstrap, topic), f"{topic}: not {n} records"
    return messages


def test_stack_creates_one_dead_letter_topic_per_consumer(kafka_stack: Settings) -> None:
    assert kafka_stack.sink_dead_letter_topic != kafka_stack.features_dead_letter_topic
    client = kafka_admin.admin(kafka_stack.bootstrap_servers)
    try:
        topics = set(client.list_topics())
    finally:
        client.close()
    assert {kafka_stack.sink_dead_letter_topic, kafka_stack.features_dead_letter_topic} <= topics


@pytest.mark.parametrize("engine", STREAM_ENGINES)
def test_one_dead_letter_per_consumer_with_headers(
        engine: str, kafka_stack: Settings, topic_factory: Callable[..., str], tmp_path: Path,
        seed: int) -> None:
    bootstrap = kafka_stack.bootstrap_servers
    topic = topic_factory(partitions=3)
    settings = kafka_stack.model_copy(update={"sink_dead_letter_topic": topic_factory(partitions=1),
                                              "features_dead_letter_topic": topic_factory(partitions=1)})
    records = list(wire_records(GeneratorConfig(events=300, seed=seed, malformed_rate=0.05)))
    # And one refused for a long value the reason may quote: the header must stay within its bound.
    long_bad = (b"7", b'{"event_id": 1, "user_id": 7, "merchant_id": 3, "amount": 1.0, "country": "US", '
                b'"device": null, "ts": 1767225600000, "is_fraud": false, '
                b'"currency": "' + b"Z" * 5000 + b'"}')
    producer = make_producer(bootstrap)
    futures = [(r.key, r.value, r.malformed is not None, producer.send(topic, key=r.key, value=r.value))
               for r in records]
    futures.append((*long_bad, True, producer.send(topic, key=long_bad[0], value=long_bad[1])))
    producer.flush()
    producer.close()
    bad: dict[str, tuple[bytes, bytes]] = {}
    for key, value, is_bad, future in futures:
        meta = future.get(timeout=30)
        if is_bad:
            bad[source_id(topic, meta.partition, meta.offset)] = (key, value)
    assert len(bad) > 5

    with EventStore(tmp_path / "sink.duckdb") as store:
        sink = KafkaToDuckDB(settings, store, group=f"dl-{uuid.uuid4().hex[:8]}", topic=topic)
        try:
            stats = sink.run(max_events=len(futures), idle_timeout_s=15)
        finally:
            sink.close()
    assert stats.dead_lettered == len(bad)

    app_id = f"dl-{uuid.uuid4().hex[:8]}"
    features_out = topic_factory(partitions=3)
    runs = []
    try:
        # The first worker dies (SIGKILL) before any checkpoint, so the restarted one re-reads
        # every record and meets every bad one again: it must not dead-letter them twice.
        for run in ("first", "restart"):
            # A store file per start: WorkerProcess reads readiness from it, and the old
            # file's counters would look like the new process's.
            worker = WorkerProcess(settings, topic, features_out, settings.features_dead_letter_topic,
                                   tmp_path / f"online-{run}.sqlite", app_id, engine=engine,
                                   checkpoint_interval_s=3600)
            try:
                worker.start(timeout_s=60)
                runs.append(worker.wait_drained(len(futures), timeout_s=60))
            finally:
                worker.kill() if run == "first" else worker.stop()
    finally:
        existing = set(kafka_admin.list_topics(bootstrap))
        kafka_admin.delete_topics(bootstrap, [t for t in internal_topics(app_id) if t in existing])
    known = [(r["dead_lettered"], r["dead_letters_known"]) for r in runs]
    assert known == [(len(bad), 0), (len(bad), len(bad))]

    for dlq, stage in ((settings.sink_dead_letter_topic, SINK_STAGE),
                       (settings.features_dead_letter_topic, FEATURES_STAGE)):
        messages = _read_exactly(bootstrap, dlq, len(bad))
        infos = [DeadLetterInfo.from_headers(m.headers) for m in messages]
        sources = [i.source for i in infos]
        assert sorted(sources) == sorted(bad), f"{dlq}: not exactly one dead letter per bad record"
        assert {i.stage for i in infos} == {stage}
        for m, info in zip(messages, infos, strict=True):
            assert (m.key, m.value) == bad[info.source]  # the original record, untouched
            reason = dict(m.headers)["reason"]
            assert 0 < len(reason) <= MAX_REASON_BYTES and ":" in info.reason
