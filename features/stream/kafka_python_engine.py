"""The second stream engine: a plain kafka-python poll loop around :class:`StreamRunner`.

Run: ``python -m dataflow_playground.features.stream.kafka_python_engine [--input-topic T ...]``
(the arguments of every engine; ``PLAYGROUND_STREAM_ENGINE=kafka-python`` makes ``playground up``
start this one).

It joins the application's consumer group on the input and the repartition topic; the
group's rebalance listener tells the runner which partitions (tasks) it owns, and the
runner restores each from its checkpoint and says where to seek. One ``poll()`` returns what
the client has buffered (up to :data:`POLL_MAX_RECORDS`); each task takes its partition's share
as one micro-batch, and its outputs leave in a few records per step. Checkpoints are written on
a thread of their own (the producer is thread-safe). With ``--worker-id`` the worker is a static
group member: restarted under the same id, it gets its partitions back without waiting for
the group to notice the old process is gone.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from types import FrameType

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from dataflow_playground.core import kafka_admin
from dataflow_playground.core.kafka_codecs import require_codecs
from dataflow_playground.core.metrics import serve_metrics
from dataflow_playground.core.settings import get_settings
from dataflow_playground.features.online_store import OnlineStoreWriter
from dataflow_playground.features.stream.checkpoint import CheckpointStore
from dataflow_playground.features.stream.worker import (
    METADATA_MAX_AGE_MS,
    InputEndOffsets,
    WorkerConfig,
    build_runner,
    parse_config,
    prepare,
)

log = logging.getLogger(__name__)
# A poll takes everything the client has buffered (up to this): kafka-python sends its next fetch
# only once the buffer is drained, so a smaller cap left the worker waiting for each fetch
# (about a fifth of its time at 4,000). Each task still takes its partition's share as one batch.
POLL_MAX_RECORDS = 50_000
# How long the broker may hold a fetch that has no new records yet (the client's default is 500).
FETCH_MAX_WAIT_MS = 50


class KafkaOutputs:
    """The runner's :class:`~.runner.Outputs` on a kafka-python producer."""

    def __init__(self, cfg: WorkerConfig) -> None:
        self.producer = KafkaProducer(
            bootstrap_servers=cfg.bootstrap, client_id=f"{cfg.app_id}-kp-out", acks=1, linger_ms=2,
            batch_size=256 * 1024, compression_type="lz4", max_request_size=4 * 1024 * 1024)
        self.out, self.dlq, self.shuffle = cfg.output_topic, cfg.dlq_topic, cfg.repartition_topic

    def send_features(self, key: bytes, value: bytes) -> None:
        self.producer.send(self.out, key=key, value=value)

    def send_shuffle(self, partition: int, value: bytes) -> None:
        self.producer.send(self.shuffle, value=value, partition=partition)

    def send_dead(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.producer.send(self.dlq, key=key, value=value, headers=headers)

    def flush(self) -> None:
        self.producer.flush(timeout=30)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: KafkaPythonWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.worker.runner.revoke([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # The callback runs on the client's IO loop, where heartbeats run too: restoring a
        # large state here took longer than the session (seen at 1M events: the worker lost
        # its partitions, rejoined and restored again, forever). So only note them and pause
        # them; the poll loop restores, seeks and resumes (KafkaPythonWorker._finish_assign).
        self.worker.runner.assign([(tp.topic, tp.partition) for tp in assigned], defer=True)
        if assigned:
            self.worker.consumer.pause(*assigned)


def new_consumer(cfg: WorkerConfig) -> KafkaConsumer:
    """The worker's group consumer (not subscribed yet)."""
    return KafkaConsumer(
        bootstrap_servers=cfg.bootstrap, group_id=cfg.app_id,
        group_instance_id=cfg.worker_id or None,
        client_id=f"{cfg.app_id}-kp", auto_offset_reset="earliest",
        enable_auto_commit=False,  # the checkpoints hold the offsets; commits only mirror them
        session_timeout_ms=cfg.session_timeout_ms,
        heartbeat_interval_ms=max(cfg.session_timeout_ms // 4, 250),
        max_poll_records=POLL_MAX_RECORDS, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_partition_fetch_bytes=1024 * 1024, metadata_max_age_ms=METADATA_MAX_AGE_MS)


class KafkaPythonWorker:
    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.stopping = False
        require_codecs("kafka-python", "the kafka-python stream engine")
        self.consumer = new_consumer(cfg)
        self.outputs = KafkaOutputs(cfg)
        self.store = OnlineStoreWriter(cfg.store)
        self.checkpoints = CheckpointStore(cfg.bootstrap, cfg.app_id, client_id=f"{cfg.app_id}-checkpoints")
        self.ends = InputEndOffsets(cfg)
        # The producer is thread-safe: checkpoints wait for Kafka off the poll loop.
        self.runner = build_runner(cfg, self.store, self.outputs, self.checkpoints,
                                   self.ends.after_rows, background_checkpoints=True)
        # (with the topics' metadata before the first poll joins the group: see kafka_admin.subscribe)
        kafka_admin.subscribe(self.consumer, [cfg.input_topic, cfg.repartition_topic], _Rebalance(self))

    def _backlog(self, tp: tuple[str, int]) -> bool:
        """Records of ``tp`` written to Kafka that this worker has not processed yet."""
        task = self.runner.tasks.get(tp)
        return self.ends.backlog(tp[1], task.position if task else None,
                                 self.consumer.highwater(TopicPartition(*tp)))

    def run(self) -> None:
        consumer, runner = self.consumer, self.runner
        last_tick = 0.0
        try:
            while not self.stopping:
                if runner.awaiting:
                    self._finish_assign()
                polled_at = time.monotonic()
                polled = consumer.poll(timeout_ms=20, max_records=POLL_MAX_RECORDS)
                if any(tp.topic == self.cfg.repartition_topic for tp in polled):
                    self.ends.rows_at = polled_at
                runner.step([(tp.topic, [(m.partition, m.offset, m.key, m.value, m.timestamp)
                                         for m in msgs]) for tp, msgs in polled.items()])
                now = time.monotonic()
                if now - last_tick >= 0.05:
                    runner.tick(self._backlog)
                    runner.observe_lag(lambda tp: consumer.highwater(TopicPartition(*tp)))
                    last_tick = now
                if runner.maybe_checkpoint():
                    self._commit()
        finally:
            self.close()

    def _finish_assign(self) -> None:
        positions = self.runner.keep_owned(self.runner.finish_assign(),
                                           ((tp.topic, tp.partition) for tp in self.consumer.assignment()))
        ready = [TopicPartition(*tp) for tp in positions]
        for tp, offset in zip(ready, positions.values(), strict=True):
            self.consumer.seek(tp, offset)
        if ready:
            self.consumer.resume(*ready)

    def _commit(self) -> None:
        """Mirror the checkpointed positions as group offsets (for lag tools; never read back)."""
        offsets = {TopicPartition(*tp): OffsetAndMetadata(t.checkpointed_position, "", -1)
                   for tp, t in self.runner.tasks.items() if t.checkpointed_position >= 0}
        if offsets:
            try:
                self.consumer.commit_async(offsets)
            except KafkaError as err:  # a rebalance under way: the next checkpoint commits again
                log.debug("offset commit skipped: %s", err)

    def close(self) -> None:
        try:
            self.runner.close()
        except KafkaError as err:
            log.warning("final checkpoint failed, the next owner resumes from the previous one: %s", err)
        finally:
            self.outputs.producer.close(timeout=5)
            self.consumer.close(autocommit=False)
            self.ends.close()
            self.checkpoints.close()
            self.store.close()


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    cfg, loglevel = parse_config(settings, argv, "Stream features worker (plain kafka-python).")
    logging.basicConfig(level=loglevel.upper())
    cfg = prepare(settings, cfg)
    serve_metrics(settings, cfg.component)
    worker = KafkaPythonWorker(cfg)

    def stop(_sig: int, _frame: FrameType | None) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    worker.run()
    log.info("stopped after %.1fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
