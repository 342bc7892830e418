"""The default stream engine: a faust-streaming app wiring Kafka to :class:`StreamRunner`.

Run: ``python -m dataflow_playground.features.stream.faust_engine [--input-topic T ...]``
(``playground up`` does).

Kafka 4.x notes: faust-streaming talks to the broker through aiokafka, whose
protocol versions Kafka 4.1 still accepts; what broke was compression: the
playground's producers write lz4 batches and aiokafka decodes lz4 through
``cramjam`` (not the ``lz4`` package), so without it the fetcher crashes with
``UnsupportedCodecError: Libraries for lz4 compression codec not found``.
``cramjam`` is a project dependency for that reason, and :func:`build_app` checks
every codec (:mod:`dataflow_playground.core.kafka_codecs`) before joining the group.

State lives in memory; on start the worker forgets its group's committed offsets
and replays the input topic from the beginning (bounded by retention), so a
restarted worker rebuilds exact window state instead of resuming with none.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import faust
from faust.types import TP

from dataflow_playground.core import kafka_admin
from dataflow_playground.core.kafka_codecs import require_codecs
from dataflow_playground.core.settings import get_settings
from dataflow_playground.features.online_store import OnlineStoreWriter
from dataflow_playground.features.stream.worker import (
    WorkerConfig,
    build_runner,
    parse_config,
    prepare,
    published_dead_letters,
)

log = logging.getLogger(__name__)


def build_app(cfg: WorkerConfig) -> faust.App:
    require_codecs("aiokafka", "the faust stream engine")
    app = faust.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=1,
        datadir=str(cfg.store.parent / f"faust-{cfg.app_id}"),
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=cfg.batch_max,
        producer_linger_ms=5,
        producer_acks=1,
        stream_buffer_maxsize=8192,
    )
    source = app.topic(cfg.input_topic, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    sink = app.topic(cfg.output_topic, key_serializer="raw", value_serializer="raw")
    dlq = app.topic(cfg.dlq_topic, key_serializer="raw", value_serializer="raw")
    partitions = sorted(kafka_admin.end_offsets(cfg.bootstrap, cfg.input_topic))
    store = OnlineStoreWriter(cfg.store)
    store.reset()  # the replay rebuilds it

    def send_features(key: bytes, value: bytes) -> None:
        sink.send_soon(key=key, value=value)

    def send_dead(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        dlq.send_soon(key=key, value=value, headers=headers)

    published = published_dead_letters(cfg.bootstrap, cfg.dlq_topic, cfg.input_topic)
    runner = build_runner(cfg, partitions, store, send_features, send_dead, published)

    def backlog(partition: int) -> bool:
        try:
            high = app.consumer.highwater(TP(cfg.input_topic, partition))
        except Exception:  # not assigned to this worker: it must not hold the watermark
            return False
        if high is None:  # assigned but not fetched yet: assume it has records coming
            return True
        return bool(high > runner.last_offset.get(partition, -1) + 1)

    runner.orderer.backlog = backlog

    @app.agent(source, name="features")
    async def features(stream: Any) -> None:
        async for events in stream.take_events(cfg.batch_max, within=cfg.batch_within_s):
            msgs = [ev.message for ev in events]
            runner.step([[(m.partition, m.offset, m.key, m.value, int((m.timestamp or 0) * 1000))
                          for m in msgs]], cfg.input_topic)

    @app.timer(interval=0.05)
    async def tick() -> None:
        # Releases the tail when partitions go idle and keeps the heartbeat fresh.
        runner.assigned_partitions = sum(1 for tp in app.consumer.assignment()
                                         if tp.topic == cfg.input_topic)
        runner.drain()

    return app


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    cfg, loglevel = parse_config(settings, argv, "Stream features worker (faust-streaming).")
    prepare(settings, cfg)
    app = build_app(cfg)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
