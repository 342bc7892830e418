"""Every Kafka codec (none, gzip, snappy, lz4, zstd) read by the kafka-python consumers here.

The producers are plain kafka-python ``KafkaProducer(compression_type=codec)``, so snappy and
zstd are produced as well as consumed. The stream engines have the same test in
``tests/features/stream/test_compression_broker.py``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from dataflow_playground.consumers.from_kafka import KafkaReader
from dataflow_playground.consumers.kafka_to_duckdb import KafkaToDuckDB
from dataflow_playground.core import receipts
from dataflow_playground.core.settings import Settings
from dataflow_playground.storage.duckdb_store import EventStore
from tests.helpers import missing_by_codec, produce_each_codec

pytestmark = pytest.mark.kafka
PER_CODEC = 200


def test_sink_stores_every_codec(kafka_stack: Settings, topic_factory: Callable[..., str],
                                 tmp_path: Path, seed: int) -> None:
    topic = topic_factory(partitions=3)
    sent = produce_each_codec(kafka_stack.bootstrap_servers, topic, PER_CODEC, seed)
    total = sum(len(ids) for ids in sent.values())
    with EventStore(tmp_path / "codecs.duckdb") as store:
        sink = KafkaToDuckDB(kafka_stack, store, group=f"codecs-{uuid.uuid4().hex[:8]}", topic=topic)
        try:
            stats = sink.run(max_events=total, idle_timeout_s=15)
        finally:
            sink.close()
        assert missing_by_codec(sent, store.event_ids()) == dict.fromkeys(sent, 0)
        assert (stats.consumed, stats.stored, stats.dead_lettered, stats.duplicates) == (total, total, 0, 0)


def test_flow_reader_reads_every_codec(kafka_stack: Settings, topic_factory: Callable[..., str],
                                       tmp_path: Path, seed: int) -> None:
    topic = topic_factory(partitions=3)
    sent = produce_each_codec(kafka_stack.bootstrap_servers, topic, PER_CODEC, seed)
    total = sum(len(ids) for ids in sent.values())
    reader = KafkaReader(kafka_stack.bootstrap_servers, topic, f"codecs-{uuid.uuid4().hex[:8]}",
                         tmp_path, "reader")
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            reader.run(stop)
        except BaseException as err:  # surfaced below: a codec error must fail the test
            failure.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while receipts.count(tmp_path) < total and not failure and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=15)
    assert not failure, failure
    got = receipts.read(receipts.receipt_files(tmp_path))["event_id"]
    assert missing_by_codec(sent, {int(i) for i in got}) == dict.fromkeys(sent, 0)
    assert len(got) == total and reader.rejected == 0
