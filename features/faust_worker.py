"""The stream features worker: a faust-streaming app wiring Kafka to :class:`StreamRunner`.

Run: ``python -m features.faust_worker [--input-topic T ...]`` (``playground up`` does).

Kafka 4.x notes: faust-streaming talks to the broker through aiokafka, whose
protocol versions Kafka 4.1 still accepts; what broke was compression: the
playground's producers write lz4 batches and aiokafka decodes lz4 through
``cramjam`` (not the ``lz4`` package), so without it the fetcher crashes with
``UnsupportedCodecError: Libraries for lz4 compression codec not found``.
``cramjam`` is a project dependency for that reason.

State lives in memory; on start the worker forgets its group's committed offsets
and replays the input topic from the beginning (bounded by retention), so a
restarted worker rebuilds exact window state instead of resuming with none.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from kafka.errors import KafkaError

from features.event_time import EventTimeOrderer
from features.online_store import OnlineStoreWriter, online_store_path
from features.stream_runner import StreamRunner
from features.stream_state import FeatureEngine
from playground import kafka_admin
from playground.settings import get_settings

FEATURES_TOPIC = "features"
DEFAULT_APP_ID = "playground-features"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: str
    input_topic: str
    output_topic: str
    dlq_topic: str
    store: Path
    app_id: str = DEFAULT_APP_ID
    allowed_lateness_ms: int = 60_000
    # Long enough that a partition whose fetch lags behind the others is not taken for idle
    # (500 ms was measured to drop events at start-up); it only delays a stream's tail.
    idle_ms: float = 2000.0
    record_freshness: bool = False
    batch_max: int = 2000
    batch_within_s: float = 0.005


def forget_offsets(bootstrap: str, group: str) -> None:
    """Drop the group's committed offsets so the worker replays from the earliest offset."""
    client = kafka_admin.admin(bootstrap)
    try:
        client.delete_groups([group])
    except (KafkaError, ValueError) as err:  # no such group yet: nothing to forget
        log.debug("no offsets to forget for %s: %s", group, err)
    finally:
        client.close()


def build_app(cfg: WorkerConfig) -> faust.App:
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

    runner = StreamRunner(FeatureEngine(allowed_lateness_ms=cfg.allowed_lateness_ms),
                          EventTimeOrderer(partitions or [0], cfg.allowed_lateness_ms, cfg.idle_ms),
                          store, send_features, send_dead, record_freshness=cfg.record_freshness)

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
            for ev in events:
                msg = ev.message
                runner.ingest(msg.partition, msg.offset, msg.key, msg.value,
                              int((msg.timestamp or 0) * 1000), msg.topic)
            runner.drain()

    @app.timer(interval=0.05)
    async def tick() -> None:
        # Releases the tail when partitions go idle and keeps the heartbeat fresh.
        runner.assigned_partitions = sum(1 for tp in app.consumer.assignment()
                                         if tp.topic == cfg.input_topic)
        runner.drain()

    return app


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    p = argparse.ArgumentParser(description="Stream features worker (faust-streaming).")
    p.add_argument("--input-topic", default=settings.topic)
    p.add_argument("--output-topic", default=FEATURES_TOPIC)
    p.add_argument("--dlq-topic", default=settings.dead_letter_topic)
    p.add_argument("--store", type=Path, default=online_store_path(settings))
    p.add_argument("--app-id", default=DEFAULT_APP_ID)
    p.add_argument("--allowed-lateness-ms", type=int, default=60_000)
    p.add_argument("--idle-ms", type=float, default=2000.0)
    p.add_argument("--record-freshness", action="store_true")
    p.add_argument("--loglevel", default=os.environ.get("PLAYGROUND_FEATURES_LOGLEVEL", "warning"))
    args = p.parse_args(argv)
    cfg = WorkerConfig(bootstrap=settings.bootstrap_servers, input_topic=args.input_topic,
                       output_topic=args.output_topic, dlq_topic=args.dlq_topic, store=args.store,
                       app_id=args.app_id, allowed_lateness_ms=args.allowed_lateness_ms,
                       idle_ms=args.idle_ms, record_freshness=args.record_freshness)
    kafka_admin.ensure_topics(cfg.bootstrap, [
        kafka_admin.TopicSpec(cfg.input_topic, settings.partitions, settings.retention_ms),
        kafka_admin.TopicSpec(cfg.output_topic, settings.partitions, settings.retention_ms),
        kafka_admin.TopicSpec(cfg.dlq_topic, 1, settings.retention_ms)])
    forget_offsets(cfg.bootstrap, cfg.app_id)
    app = build_app(cfg)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
