"""What every stream engine shares: its configuration, command line, start-up replay and runner.

The engines (:mod:`.registry`) run the same operators through the same
:class:`~.runner.StreamRunner`, built by :func:`build_runner`. They take the same
arguments, write the same topics and online store, and replay the input topic on start,
so any of them can serve ``playground up`` and the parity runs.

Because of that replay, every start meets again each bad record still retained. Its dead
letter was published by an earlier run, so :func:`published_dead_letters` reads the
dead-letter topic first and the runner publishes only the ones not there yet: one dead
letter per bad record on this worker's topic, however often it restarts.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from dataflow_playground.core import kafka_admin
from dataflow_playground.core.dead_letters import (
    FEATURES_STAGE,
    DeadLetterHeaderError,
    DeadLetterInfo,
)
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.online_store import OnlineStoreWriter, online_store_path
from dataflow_playground.features.stream.event_time import EventTimeOrderer
from dataflow_playground.features.stream.runner import Send, SendDead, StreamRunner
from dataflow_playground.features.stream.state import FeatureEngine

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


def parse_config(settings: Settings, argv: list[str] | None, description: str
                 ) -> tuple[WorkerConfig, str]:
    """The engines' shared command line; returns the config and the log level."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--input-topic", default=settings.topic)
    p.add_argument("--output-topic", default=FEATURES_TOPIC)
    p.add_argument("--dlq-topic", default=settings.features_dead_letter_topic)
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
    return cfg, str(args.loglevel)


def prepare(settings: Settings, cfg: WorkerConfig) -> None:
    """Create the worker's topics if missing and forget its offsets (the replay rebuilds state)."""
    kafka_admin.ensure_topics(cfg.bootstrap, [
        kafka_admin.TopicSpec(cfg.input_topic, settings.partitions, settings.retention_ms),
        kafka_admin.TopicSpec(cfg.output_topic, settings.partitions, settings.retention_ms),
        kafka_admin.TopicSpec(cfg.dlq_topic, 1, settings.retention_ms)])
    forget_offsets(cfg.bootstrap, cfg.app_id)


def published_dead_letters(bootstrap: str, dlq_topic: str, input_topic: str,
                           timeout_s: float = 30.0) -> set[str]:
    """The ``source`` of every dead letter this stage already published for ``input_topic``.

    Read from the start of ``dlq_topic`` to its end offsets at call time (dead letters are
    few: a share of the input). If the end is not reached within ``timeout_s`` what was read
    is returned and a warning logged: the rest may then be published a second time.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             client_id="features-dlq-scan")
    prefix = f"kafka:{input_topic}:"
    found: set[str] = set()
    try:
        tps = [TopicPartition(dlq_topic, p) for p in sorted(consumer.partitions_for_topic(dlq_topic) or ())]
        ends = {tp: end for tp, end in consumer.end_offsets(tps).items() if end > 0}
        if not ends:
            return found
        consumer.assign(list(ends))
        consumer.seek_to_beginning(*ends)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                log.warning("read %d dead letters of %s but not to its end within %.0fs; the rest may "
                            "be published again", len(found), dlq_topic, timeout_s)
                break
            for msgs in consumer.poll(timeout_ms=200).values():
                for m in msgs:
                    try:
                        info = DeadLetterInfo.from_headers(m.headers)
                    except DeadLetterHeaderError:
                        continue  # not one of ours (another writer, or an older format)
                    if info.stage == FEATURES_STAGE and info.source.startswith(prefix):
                        found.add(info.source)
        return found
    finally:
        consumer.close()


def build_runner(cfg: WorkerConfig, partitions: list[int], store: OnlineStoreWriter,
                 send_features: Send, send_dead: SendDead,
                 published_dead: set[str] | None = None) -> StreamRunner:
    """The broker-free core every engine runs: operators, event-time merge, online store.

    ``published_dead``: sources already on the dead-letter topic (:func:`published_dead_letters`).
    """
    return StreamRunner(FeatureEngine(allowed_lateness_ms=cfg.allowed_lateness_ms),
                        EventTimeOrderer(partitions or [0], cfg.allowed_lateness_ms, cfg.idle_ms),
                        store, send_features, send_dead, record_freshness=cfg.record_freshness,
                        published_dead=published_dead)
