"""Both stream engines (faust via aiokafka + cramjam, kafka-python) read every Kafka codec.

Each engine runs as the real worker process (:class:`WorkerProcess`, as parity runs start it)
on throwaway topics holding batches of every codec, produced by plain kafka-python producers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from dataflow_playground.app.parity_run import read_feature_topic
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import STREAM_ENGINES, Settings
from dataflow_playground.features.stream.process import WorkerProcess
from dataflow_playground.features.stream.worker import internal_topics
from tests.helpers import missing_by_codec, produce_each_codec

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PER_CODEC = 200


@pytest.mark.parametrize("engine", STREAM_ENGINES)
def test_engine_processes_every_codec(engine: str, kafka_stack: Settings, topic_factory: Callable[..., str],
                                      tmp_path: Path, seed: int) -> None:
    bootstrap = kafka_stack.bootstrap_servers
    topic = topic_factory(partitions=3)
    out_topic, dlq = topic_factory(partitions=3), topic_factory(partitions=1)
    sent = produce_each_codec(bootstrap, topic, PER_CODEC, seed)
    total = sum(len(ids) for ids in sent.values())
    app_id = f"codecs-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(kafka_stack, topic, out_topic, dlq, tmp_path / "online.sqlite", app_id,
                           engine=engine)
    try:
        worker.start(timeout_s=60)
        counters = worker.wait_drained(total, timeout_s=60)
    finally:
        worker.stop()
        existing = set(kafka_admin.list_topics(bootstrap))
        kafka_admin.delete_topics(bootstrap, [t for t in internal_topics(app_id) if t in existing])
    assert (counters["processed"], counters["dead_lettered"], counters["late_dropped"]) == (total, 0, 0)
    values = read_feature_topic(bootstrap, out_topic, total, timeout_s=30)
    assert missing_by_codec(sent, set(values)) == dict.fromkeys(sent, 0)
