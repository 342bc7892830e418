"""What every stream engine shares: its configuration, command line, topics and runner.

The engines (:mod:`.registry`) run the same tasks through the same
:class:`~.runner.StreamRunner`, built by :func:`build_runner`. They take the same
arguments, join the same consumer group (``--app-id``) on the input topic and the
repartition topic, write the same topics, checkpoints and online store, so any number of
workers of either engine can share the partitions.

A recovering task re-reads what came after its checkpoint and so meets again the bad
records in it. Their dead letters may already be out, so :func:`published_dead_letters`
reads the dead-letter topic whenever a worker is given user tasks, and the tasks publish only
the ones not there yet.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, replace
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
from dataflow_playground.features.stream.checkpoint import CheckpointStore, checkpoint_topics
from dataflow_playground.features.stream.checkpoint import topic_specs as checkpoint_topic_specs
from dataflow_playground.features.stream.event_time import InputEnds
from dataflow_playground.features.stream.runner import Outputs, StreamRunner
from dataflow_playground.features.stream.tasks import TaskConfig

FEATURES_TOPIC = "features"
DEFAULT_APP_ID = "playground-features"
REPARTITION_SUFFIX = "-repartition-merchant"
log = logging.getLogger(__name__)
# How often a worker's group consumer refreshes topic metadata. The clients' default is 5
# minutes; a group leader that assigned with a topic's metadata missing (its partitions got
# nobody) notices the change, and starts a rebalance, only at that refresh.
METADATA_MAX_AGE_MS = 5000


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: str
    input_topic: str
    output_topic: str
    dlq_topic: str
    store: Path
    app_id: str = DEFAULT_APP_ID
    allowed_lateness_ms: int = 60_000
    # A caught-up input partition silent this long sends an idle mark (it delays a stream's tail).
    idle_ms: float = 100.0
    record_freshness: bool = False
    batch_max: int = 4000
    # faust's batch window. At 2,000 events/s offered, 1 worker (p50/p99/max of freshness, ms):
    # 5 ms 357/567/617 (its steps' fixed costs kept the worker near a full core, so it fell
    # behind and took 250 ms batches), 10 ms 129/245/279, 20 ms 107-118/183-203/228-250,
    # 30 ms 139/220/255, 50 ms 199/317/360; 2 workers, 20 ms: 83-85/209-214, 5 ms: 97/324.
    # Single runs vary widely (the worker runs at 75-90 % of a core at that rate): two full
    # `bench stream` runs with 20 ms gave 1 worker p99 352 and 711 ms, one with 5 ms 579 ms.
    batch_within_s: float = 0.02
    partitions: int = 3  # of the input topic (read from the broker by prepare)
    checkpoint_interval_s: float = 1.0
    # Kafka's consumer-group liveness: a worker silent this long (SIGKILL, a hung process)
    # loses its partitions. The broker's minimum is lowered for the lab (core/kafka_native.py).
    session_timeout_ms: int = 3000
    worker_id: str = ""  # static group membership: a restarted worker gets its partitions back at once

    @property
    def repartition_topic(self) -> str:
        return self.app_id + REPARTITION_SUFFIX

    @property
    def component(self) -> str:
        """This worker's name in its metrics (label ``component``, ``<run_dir>/metrics/<name>.json``)."""
        return self.worker_id or f"features-pid{os.getpid()}"

    def task_config(self) -> TaskConfig:
        return TaskConfig(self.input_topic, self.repartition_topic, self.partitions,
                          self.allowed_lateness_ms, self.idle_ms, self.record_freshness,
                          component=self.component)


def internal_topics(app_id: str) -> list[str]:
    """The topics the workers of ``app_id`` create for themselves (to delete with a throwaway run)."""
    return [app_id + REPARTITION_SUFFIX, *checkpoint_topics(app_id), f"{app_id}-__assignor-__leader"]


def parse_config(settings: Settings, argv: list[str] | None, description: str) -> tuple[WorkerConfig, str]:
    """The engines' shared command line; returns the config and the log level."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--input-topic", default=settings.topic)
    p.add_argument("--output-topic", default=FEATURES_TOPIC)
    p.add_argument("--dlq-topic", default=settings.features_dead_letter_topic)
    p.add_argument("--store", type=Path, default=online_store_path(settings))
    p.add_argument("--app-id", default=DEFAULT_APP_ID)
    p.add_argument("--allowed-lateness-ms", type=int, default=60_000)
    p.add_argument("--idle-ms", type=float, default=100.0,
                   help="a caught-up input partition silent this long stops holding merchant tasks back")
    p.add_argument("--record-freshness", action="store_true")
    p.add_argument("--checkpoint-interval-s", type=float, default=1.0)
    p.add_argument("--session-timeout-ms", type=int, default=WorkerConfig.session_timeout_ms)
    p.add_argument("--worker-id", default="",
                   help="a stable name for this worker (static group membership); empty = dynamic")
    p.add_argument("--loglevel", default=os.environ.get("PLAYGROUND_FEATURES_LOGLEVEL", "warning"))
    args = p.parse_args(argv)
    cfg = WorkerConfig(bootstrap=settings.bootstrap_servers, input_topic=args.input_topic,
                       output_topic=args.output_topic, dlq_topic=args.dlq_topic, store=args.store,
                       app_id=args.app_id, allowed_lateness_ms=args.allowed_lateness_ms,
                       idle_ms=args.idle_ms, record_freshness=args.record_freshness,
                       checkpoint_interval_s=args.checkpoint_interval_s,
                       session_timeout_ms=args.session_timeout_ms, worker_id=args.worker_id)
    for name, ok in {"--allowed-lateness-ms": cfg.allowed_lateness_ms >= 0, "--idle-ms": cfg.idle_ms > 0,
                     "--checkpoint-interval-s": cfg.checkpoint_interval_s > 0,
                     "--session-timeout-ms": cfg.session_timeout_ms >= 1000}.items():
        if not ok:
            p.error(f"{name} is out of range (lateness >= 0, idle > 0, interval > 0, session >= 1000)")
    return cfg, str(args.loglevel)


def prepare(settings: Settings, cfg: WorkerConfig) -> WorkerConfig:
    """Create the worker's topics if missing; return the config with the input's partition count.

    The repartition topic gets as many partitions as the input, so merchant task ``q`` and
    user task ``q`` line up (co-partitioned) whatever the worker count.
    """
    kafka_admin.ensure_topics(cfg.bootstrap, [
        kafka_admin.TopicSpec(cfg.input_topic, settings.partitions, settings.retention_ms)])
    partitions = len(kafka_admin.end_offsets(cfg.bootstrap, cfg.input_topic)) or settings.partitions
    kafka_admin.ensure_topics(cfg.bootstrap, [
        kafka_admin.TopicSpec(cfg.repartition_topic, partitions, settings.retention_ms),
        kafka_admin.TopicSpec(cfg.output_topic, partitions, settings.retention_ms),
        kafka_admin.TopicSpec(cfg.dlq_topic, 1, settings.retention_ms),
        *checkpoint_topic_specs(cfg.app_id)])  # (and waits for their leaders: see wait_for_leaders)
    return replace(cfg, partitions=partitions)


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


class InputEndOffsets:
    """The input topic's end offsets, asked of the broker on a client of its own.

    Two questions need them. A user task that looks caught up asks whether it really is
    (:meth:`backlog`: the highwater of its last fetch can predate what the producer wrote
    since). A merchant task asks whether an idle user partition has grown since it said it
    was idle (:meth:`after_rows`, the runner's ``input_ends``); the answer must be read after
    the repartition records it is about to release came in, which the engine notes in
    ``rows_at`` (monotonic seconds) when it polls some. Requests go out at most every 50 ms.
    A client of its own: metadata requests made through the group consumer for some topics
    only were seen to leave its leader without metadata for the others.
    """

    MIN_INTERVAL_S = 0.05
    BACKLOG_MAX_AGE_S = 0.5

    def __init__(self, cfg: WorkerConfig) -> None:
        self.client = KafkaConsumer(bootstrap_servers=cfg.bootstrap, enable_auto_commit=False,
                                    client_id=f"{cfg.app_id}-ends")
        self.tps = [TopicPartition(cfg.input_topic, p) for p in range(cfg.partitions)]
        self.ends: dict[int, int] = {}
        self.read_at = float("-inf")  # when the request behind ``ends`` went out
        self.rows_at = 0.0

    def _refresh(self) -> bool:
        now = time.monotonic()
        if now - self.read_at < self.MIN_INTERVAL_S:
            return False
        try:
            ends = self.client.end_offsets(self.tps)
        except KafkaError as err:  # asked again next time; until then nothing counts as idle
            log.debug("end offsets not read: %s", err)
            return False
        self.ends = {tp.partition: int(end) for tp, end in ends.items()}
        self.read_at = now
        return True

    def backlog(self, partition: int, position: int | None, highwater: int | None) -> bool:
        """Records of input ``partition`` at or after ``position`` (None: no task) are in Kafka,
        or may be. ``highwater`` is the consumer's, as of the partition's last fetch (None: not
        fetched yet); while other partitions' records keep a worker busy, it can predate what
        the producer wrote since, and an idle mark trusting it would let merchants run ahead
        (measured: 38k of 100k events late), so the broker is asked too."""
        if position is None or highwater is None or highwater > position:
            return True
        if time.monotonic() - self.read_at > self.BACKLOG_MAX_AGE_S:
            self._refresh()
        return partition not in self.ends or self.ends[partition] > position

    def after_rows(self) -> dict[int, int] | None:
        """End offsets read after the last repartition records came in; None if not to be had now."""
        if self.read_at < self.rows_at:
            self._refresh()
        return self.ends if self.read_at >= self.rows_at else None

    def close(self) -> None:
        self.client.close()


def build_runner(cfg: WorkerConfig, store: OnlineStoreWriter, outputs: Outputs,
                 checkpoints: CheckpointStore | None, input_ends: InputEnds | None = None,
                 background_checkpoints: bool = False) -> StreamRunner:
    """The broker-free core every engine runs: tasks, outputs, checkpoints, online store.

    ``background_checkpoints``: an engine whose ``Outputs.flush`` may be called from another
    thread has its checkpoints written there (:meth:`StreamRunner.maybe_checkpoint`).

    ``input_ends``: :meth:`InputEndOffsets.after_rows`. The runner reads the dead letters
    already published (:func:`published_dead_letters`) whenever it is given user tasks.
    """
    return StreamRunner(cfg.task_config(), store, outputs, checkpoints,
                        worker_id=cfg.worker_id or f"pid-{os.getpid()}",
                        checkpoint_interval_s=cfg.checkpoint_interval_s,
                        refresh_dead=lambda: published_dead_letters(cfg.bootstrap, cfg.dlq_topic,
                                                                    cfg.input_topic),
                        input_ends=input_ends, freeze_gc=True,
                        background_checkpoints=background_checkpoints)
