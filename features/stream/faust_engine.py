"""The default stream engine: a faust-streaming app around :class:`~.runner.StreamRunner`.

Run: ``python -m dataflow_playground.features.stream.faust_engine [--input-topic T ...]``
(``playground up`` does; the arguments are every engine's, :func:`.worker.parse_config`).

It runs the same tasks, checkpoints and online store as the kafka-python engine
(:mod:`.kafka_python_engine`), and workers of both can share one application id. faust
contributes the consumer group, the fetching and the producing; the tasks' state, and the
offsets they resume from, are the runner's:

- **One App per worker**, in consumer group ``app_id``, with one agent over the input and the
  repartition topic (raw bytes). No standby tables (``table_standby_replicas=0``), so faust
  assigns partitions with aiokafka's round-robin assignor, a protocol the kafka-python
  workers also offer (faust's own assignor speaks only "faust"), and no leader topic.
- **Micro-batches.** The agent appends each record to a pending batch; the batch goes to
  :meth:`~.runner.StreamRunner.step` (grouped by topic and partition) when it holds
  ``batch_max`` records, when it is ``batch_within_s`` old, or, while the worker is behind its
  input (:data:`BEHIND_RECORDS` fetched but not taken), when it is :data:`MAX_WITHIN_S` old.
  ``stream.take_events(batch_max, within)`` steps every ``within`` whatever the backlog; as
  faust hands over a record in about 100 us, a 5 ms window made steps of ~40 records, whose
  per-step costs (outputs, online-store write) capped the worker at 1,000-1,700 events/s.
  The window is 20 ms: at 2,000 events/s a 5 ms one cost so much per step that the worker
  fell behind (the measurements are at :attr:`~.worker.WorkerConfig.batch_within_s`).
- **Partition ownership.** faust's ``on_partitions_revoked`` signal (sent once the flow is
  stopped and the stream buffers cleared) steps the pending batch, then checkpoints and drops
  the revoked tasks (:meth:`~.runner.StreamRunner.revoke`). Its ``on_partitions_assigned``
  signal (sent while the new partitions are still paused) only notes the assigned ones
  (``assign(defer=True)``) and holds them paused: aiokafka sends no heartbeats from its
  JoinGroup until that callback returns, so a restore in there that outlasts the session
  costs the worker its membership. :meth:`FaustWorker._restore` then restores them in a
  thread, under the lock (the event loop goes on serving faust), seeks each partition to
  its task's position and resumes it; faust's own resume after the rebalance, and its
  re-fetch of a partition whose stream buffer drained, skip the held ones
  (:class:`CheckpointConsumer`).
  Before it resumes the flow, and whenever a fetch returns while the flow is stopped, faust
  "seeks to the committed offsets"; this worker's consumer (:class:`CheckpointConsumer`)
  seeks to the restored tasks' positions instead. So the group's committed offsets never decide where
  a task resumes (checked by committing offsets past the end before a first start: nothing
  was skipped). faust commits nothing itself: the topics are not acked (``acks=False``), so its
  commit loop finds no offsets; like the kafka-python engine, the worker mirrors each
  checkpoint's positions as group offsets, for lag tools only.
- **Outputs** (features, repartition rows to an explicit partition, dead letters) are queued
  by the runner's synchronous calls and handed in order to faust's producer
  (``app.producer.send``) after each step and tick, under the lock below; each send's future
  is kept until Kafka acknowledges it. ``StreamRunner.checkpoint`` calls ``Outputs.flush``
  synchronously, and a synchronous call cannot wait on the event loop; so every checkpoint
  (the timer's, a revocation's, the final one) first awaits those acknowledgements
  (:meth:`FaustOutputs.drain`) while holding a lock that every step and tick also takes,
  and ``flush`` then only checks that nothing is left (a checkpoint that would cover an
  unacknowledged record raises instead). ``runner.py`` is unchanged.
- **Ticks.** A task every 50 ms calls :meth:`~.runner.StreamRunner.tick`. A user partition is
  behind if the consumer's highwater is past its task's position; one that looks caught up
  is checked against the broker's end offsets, asked at most every 0.5 s, as the
  kafka-python engine does (on a kafka-python client of its own: the tick is synchronous).
  Then, once the checkpoint interval has passed, the drain and
  :meth:`~.runner.StreamRunner.maybe_checkpoint`.
- **Fetching.** faust creates its aiokafka consumer with a 1.5 s fetch wait; a partition left
  out of the fetch in flight (it still had records buffered when it was sent) then waits up
  to that long for its next records. :class:`FetchThread` sets 50 ms, the kafka-python
  engine's value.
- **Liveness.** ``--session-timeout-ms`` (default 3 s, as for the kafka-python engine) is
  faust's ``broker_session_timeout`` (heartbeat every quarter of it). With ``--worker-id`` the
  worker is a static member
  (``consumer_group_instance_id``; aiokafka sends it in JoinGroup v5): restarted under the same
  id before its session expires, it gets its partitions back without a rebalance (the other
  workers keep their tasks). From launch to its group join a faust worker takes 2.2 s on the
  2-core lab machine when it is quiet and 3.8 s under load (imports, topics, the dead-letter
  scan; faust's table manager's 1 s pause at start is skipped, :class:`NoTablesManager`):
  with the default 3 s session a restart after a SIGKILL is back in time only on a quiet
  machine, otherwise the group has dropped the old member and rebalances. Without a restart,
  a SIGKILLed worker's partitions go to the others after the session timeout.
- **A clean stop** (SIGTERM, handled by faust's Worker) steps the pending batch and writes a
  final checkpoint of every task (:meth:`~.runner.StreamRunner.close`) from
  ``on_before_shutdown``, while the producer still runs: a restart re-reads nothing.

What faust costs: two to three times the CPU per event of the kafka-python engine, so about
40% of its throughput on the same machine; the difference is faust's per-record path (four
tasks per record in its fetcher's ``wait_first``, then the conductor, the channel queue and
the stream), not the tasks' work.

Kafka 4.x notes: faust-streaming talks to the broker through aiokafka, whose
protocol versions Kafka 4.1 still accepts; what broke was compression: the
playground's producers write lz4 batches and aiokafka decodes lz4 through
``cramjam`` (not the ``lz4`` package), so without it the fetcher crashes with
``UnsupportedCodecError: Libraries for lz4 compression codec not found``.
``cramjam`` is a project dependency for that reason, and :class:`FaustWorker` checks
every codec (:mod:`dataflow_playground.core.kafka_codecs`) before joining the group.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as AIOTopicPartition
from faust.tables.manager import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from dataflow_playground.core.kafka_codecs import require_codecs
from dataflow_playground.core.metrics import serve_metrics
from dataflow_playground.core.settings import get_settings
from dataflow_playground.features.online_store import OnlineStoreWriter
from dataflow_playground.features.stream.checkpoint import CheckpointStore
from dataflow_playground.features.stream.tasks import Record
from dataflow_playground.features.stream.worker import (
    METADATA_MAX_AGE_MS,
    InputEndOffsets,
    WorkerConfig,
    build_runner,
    parse_config,
    prepare,
)

log = logging.getLogger(__name__)

TICK_S = 0.05
FETCH_MAX_WAIT_MS = 50
ACK_TIMEOUT_S = 30.0
MAX_WITHIN_S = 0.25  # the longest a batch waits for more records (when behind)
BEHIND_RECORDS = 1000  # records fetched but not taken yet, from which a worker counts as behind

# (topic, partition), as the runner names a partition
Partition = tuple[str, int]


class OutputError(RuntimeError):
    """A record sent to Kafka failed or was not acknowledged in time: no checkpoint may cover it."""


class FaustOutputs:
    """The runner's :class:`~.runner.Outputs` on the faust producer.

    The runner's sends are synchronous; they wait in an outbox until :meth:`publish` hands
    them, in order, to the producer (``app.producer.send``, not ``Topic.send_soon``: faust's
    send buffer throttles every inbound message while it holds more than 100 records, which
    one step's outputs can). Each send's future is kept until Kafka acknowledged it.
    """

    def __init__(self, app: faust.App, cfg: WorkerConfig) -> None:
        self.app = app
        self.out, self.dlq, self.shuffle = cfg.output_topic, cfg.dlq_topic, cfg.repartition_topic
        self.outbox: list[tuple[str, bytes | None, bytes, int | None, list[tuple[str, bytes]] | None]] = []
        self.unacked: list[asyncio.Future[Any]] = []

    def send_features(self, key: bytes, value: bytes) -> None:
        self.outbox.append((self.out, key, value, None, None))

    def send_shuffle(self, partition: int, value: bytes) -> None:
        self.outbox.append((self.shuffle, None, value, partition, None))

    def send_dead(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.outbox.append((self.dlq, key, value, None, headers))

    async def publish(self) -> None:
        """Hand the outbox to the producer, in order (every caller holds the worker's lock)."""
        producer = self.app.producer
        outbox, self.outbox = self.outbox, []
        for i, (topic, key, value, partition, headers) in enumerate(outbox):
            try:
                fut = await producer.send(topic, key, value, partition, None, headers)
            except BaseException:
                self.outbox[:0] = outbox[i:]  # not handed over: no checkpoint may cover them
                raise
            self.unacked.append(cast("asyncio.Future[Any]", fut))

    def prune(self) -> None:
        """Forget the sends Kafka acknowledged; raise if one failed."""
        pending = []
        for fut in self.unacked:
            if not fut.done():
                pending.append(fut)
            elif fut.cancelled() or fut.exception() is not None:
                cause = None if fut.cancelled() else fut.exception()
                raise OutputError(f"sending to Kafka failed: {cause!r}") from cause
        self.unacked = pending

    async def drain(self, timeout_s: float = ACK_TIMEOUT_S) -> None:
        """Publish the outbox and wait until Kafka acknowledged everything (a checkpoint's precondition)."""
        await self.publish()
        if self.unacked:
            _done, pending = await asyncio.wait(list(self.unacked), timeout=timeout_s)
            if pending:
                raise OutputError(f"{len(pending)} records not acknowledged by Kafka within {timeout_s:.0f}s")
        self.prune()

    def flush(self) -> None:
        """Called by ``StreamRunner.checkpoint``, synchronously: every checkpoint of this
        worker is preceded by :meth:`drain` under the worker's lock, so nothing may be pending."""
        self.prune()
        if self.outbox or self.unacked:
            raise OutputError(f"{len(self.outbox) + len(self.unacked)} records not acknowledged yet; "
                              "a checkpoint must not cover them (drain() first)")


class FetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, with a short fetch wait.

    faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500``. aiokafka keeps one
    fetch request in flight per broker, for the partitions that have nothing buffered when it
    is sent; a partition whose records were taken meanwhile is not in it, so its next records
    wait until that request returns: up to 1.5 s. The kafka-python engine waits 50 ms.
    """

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by consumer.start()
        return consumer


class CheckpointConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, positioned at the tasks' positions, never the group's offsets.

    faust calls ``seek_to_committed`` (through ``perform_seek``) before it resumes the flow
    after a rebalance, and whenever a fetch returns while the flow is stopped. Here it seeks
    every assigned partition that has a task to that task's position (the next offset it
    will read: after a restore, its checkpoint's).
    """

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FetchThread(self, loop=self.loop, beacon=self.beacon)

    def task_positions(self) -> Mapping[TP, int]:
        return cast(CheckpointTransport, self.transport).task_positions()

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Resume them, except the partitions whose tasks are still restoring: faust resumes
        every assigned partition once its rebalance is over, a restore may last longer."""
        held = cast(CheckpointTransport, self.transport).held_partitions()
        super().resume_partitions({tp for tp in tps if tp not in held})

    def on_buffer_drop(self, tp: TP) -> None:
        """faust fetches a partition again once its stream buffer drained, not through
        :meth:`resume_partitions`: one held for its restore stays paused (the restore resumes it)."""
        if tp in cast(CheckpointTransport, self.transport).held_partitions():
            self._buffered_partitions.discard(tp)
            return
        super().on_buffer_drop(tp)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        positions = self.task_positions()
        if positions:
            await self.seek_wait(positions)
        return positions

    async def mirror_commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit ``offsets`` as the group's offsets, best effort (a rebalance may refuse them)."""
        thread = cast(faust_aiokafka.AIOKafkaConsumerThread, self._thread)
        await thread.call_thread(self._mirror_commit, thread, offsets)

    @staticmethod
    async def _mirror_commit(thread: faust_aiokafka.AIOKafkaConsumerThread,
                             offsets: Mapping[Partition, int]) -> None:
        consumer = thread._ensure_consumer()
        assigned = consumer.assignment()
        commit = {AIOTopicPartition(t, p): OffsetAndMetadata(o, "") for (t, p), o in offsets.items()
                  if AIOTopicPartition(t, p) in assigned}
        if not commit:
            return
        try:
            await consumer.commit(commit)
        except AIOKafkaError as err:  # a rebalance under way: the next checkpoint commits again
            log.debug("offset commit skipped: %s", err)


class CheckpointTransport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`CheckpointConsumer`; ``task_positions`` and
    ``held_partitions`` are the worker's."""

    Consumer = CheckpointConsumer
    task_positions: Callable[[], Mapping[TP, int]] = staticmethod(dict)
    held_partitions: Callable[[], set[TP]] = staticmethod(set)


class NoTablesManager(TableManager):
    """faust's table manager without its 1 s pause at start (a wait for tables to be defined;
    this app has none): the worker joins its group that much sooner, which decides whether a
    restarted static member is back before its session expires."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def new_app(cfg: WorkerConfig) -> faust.App:
    """A faust App with the worker's settings, on :class:`CheckpointTransport` (the consumer seeks
    to the positions ``transport.task_positions`` gives; none by default)."""
    session_s = cfg.session_timeout_ms / 1000
    app = faust.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=1,
        topic_disable_leader=True,  # no assignor topic: the group holds our two topics only
        # No standby tables: faust then assigns with aiokafka's round-robin assignor, a
        # protocol the kafka-python engine's workers share (faust's own is "faust" only).
        table_standby_replicas=0,
        TableManager=NoTablesManager,
        datadir=str(cfg.store.parent / f"faust-{cfg.app_id}"),
        consumer_auto_offset_reset="earliest",  # overridden by the seeks; a safe default
        consumer_group_instance_id=cfg.worker_id or None,
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(session_s / 4, 0.25),
        broker_max_poll_records=cfg.batch_max,
        consumer_max_fetch_size=1024 * 1024,
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        stream_recovery_delay=0.0,  # no tables to recover: resume at once after a rebalance
        stream_buffer_maxsize=4 * cfg.batch_max,
        producer_acks=1,
        producer_linger=0.002,
        producer_max_batch_size=256 * 1024,
        producer_max_request_size=4 * 1024 * 1024,
        producer_compression_type="lz4",
    )
    # Before anything creates the consumer.
    app.transport = CheckpointTransport(app.conf.broker_consumer, app)
    return app


def raw_topics(app: faust.App, *topics: str) -> Any:
    """``topics`` as one faust source of raw bytes (key and value), without acks: faust never
    commits (the checkpoints hold the positions)."""
    return app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", acks=False)


class FaustWorker:
    def __init__(self, cfg: WorkerConfig) -> None:
        require_codecs("aiokafka", "the faust stream engine")
        self.cfg = cfg
        self.app = app = new_app(cfg)
        transport = cast(CheckpointTransport, app.transport)
        transport.task_positions = self.task_positions
        transport.held_partitions = lambda: self._held
        self.outputs = FaustOutputs(app, cfg)
        self.store = OnlineStoreWriter(cfg.store)
        self.checkpoints = CheckpointStore(cfg.bootstrap, cfg.app_id, client_id=f"{cfg.app_id}-checkpoints")
        # Blocking calls, as the kafka-python engine makes them: faust's consumer answers
        # asynchronously, from its thread, and tick() needs the answer now.
        self.ends = InputEndOffsets(cfg)
        self.runner = build_runner(cfg, self.store, self.outputs, self.checkpoints,
                                   self.ends.after_rows)
        self.topics = (cfg.input_topic, cfg.repartition_topic)
        # Held by every runner call that sends or checkpoints: a checkpoint's drain() and its
        # synchronous save must not have a step in between.
        self.lock = asyncio.Lock()
        self.closed = False
        self._stores_closed = False
        self._mirror_task: asyncio.Future[None] | None = None
        self._checkpoint_due_at = time.monotonic() + cfg.checkpoint_interval_s
        self._batch: dict[Partition, list[Record]] = {}  # records taken, not stepped yet
        self._batched = 0
        self._batch_since = 0.0
        self._held: set[TP] = set()  # assigned, paused until their tasks are restored and sought
        self._restoring: asyncio.Future[None] | None = None

        source = raw_topics(app, *self.topics)
        app.agent(source, name="features")(self._agent)
        app.task(self._timer)
        app.task(self._batcher)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_before_shutdown.connect(self._on_shutdown)

    @property
    def consumer(self) -> CheckpointConsumer:
        return cast(CheckpointConsumer, self.app.consumer)

    # -- partitions --------------------------------------------------------------------------

    def task_positions(self) -> dict[TP, int]:
        assigned = self.app.consumer.assignment()
        # (a copy: a restore in its thread may be adding tasks)
        return {TP(t, p): task.position for (t, p), task in list(self.runner.tasks.items())
                if TP(t, p) in assigned and TP(t, p) not in self._held}

    async def _on_revoked(self, _sender: Any, /, *args: Any, signal: Any, **_kw: Any) -> None:
        revoked: set[TP] = args[0]
        async with self.lock:  # (after a restore under way)
            self._held.difference_update(revoked)
            if self.closed:
                return
            await self._step_pending()  # what was taken before the revocation: its checkpoint covers it
            if self.closed:  # that step failed: no checkpoint
                return
            await self.outputs.drain()
            self.runner.revoke([(tp.topic, tp.partition) for tp in revoked])

    async def _on_assigned(self, _sender: Any, /, *args: Any, signal: Any, **_kw: Any) -> None:
        """Note the new partitions and keep them paused; :meth:`_restore` restores their tasks.

        aiokafka sends no heartbeats from its JoinGroup until this callback returns, so a
        restore in here that outlasts the session (seconds, for a large state) costs the worker
        its membership, and the restore starts over after the next join.
        """
        assigned: set[TP] = args[0]
        if self.closed:
            return
        ours = {(tp.topic, tp.partition) for tp in assigned if tp.topic in self.topics}
        stale = [tp for tp in self.runner.tasks if tp not in ours]
        if stale:  # a revocation we were not told of; eager rebalances revoke everything first
            log.warning("tasks %s were not revoked before the new assignment; checkpointing them", stale)
            async with self.lock:
                await self.outputs.drain()
                self.runner.revoke(stale)
        self.runner.assign(sorted(ours), defer=True)
        held = {TP(t, p) for t, p in self.runner.awaiting}
        if held:
            self._held |= held
            self.consumer.pause_partitions(held)
            if self._restoring is None or self._restoring.done():
                self._restoring = asyncio.ensure_future(self._restore())

    async def _restore(self) -> None:
        """Restore the tasks of the held partitions in a thread (the event loop goes on serving
        the consumer), seek each partition to its task's position, then resume it."""
        async with self.lock:  # no step, tick or checkpoint meanwhile: the runner is the thread's
            loop = asyncio.get_running_loop()
            while self.runner.awaiting and not self.closed:
                try:
                    restored = await loop.run_in_executor(None, self.runner.finish_assign)
                    positions = self.runner.keep_owned(
                        restored, ((tp.topic, tp.partition) for tp in self.consumer.assignment()))
                    ready = {TP(*tp): offset for tp, offset in positions.items()}
                    if ready:
                        await self.consumer.seek_wait(ready)
                except Exception as exc:
                    self.closed = True
                    log.exception("restoring tasks failed; the worker stops")
                    await self.app.crash(exc)
                    return
                self._held.difference_update(TP(*tp) for tp in restored)
                self.consumer.resume_partitions(ready)

    # -- processing --------------------------------------------------------------------------

    async def _agent(self, stream: Any) -> None:
        """Collect the stream's records into the pending batch; a full batch is stepped at once."""
        batch, cap = self._batch, self.cfg.batch_max
        async for event in stream.events():
            m = event.message
            ts = m.timestamp
            if not self._batched:
                self._batch_since = time.monotonic()
            records = batch.get((m.topic, m.partition))
            if records is None:
                records = batch[(m.topic, m.partition)] = []
            records.append((m.partition, m.offset, m.key, m.value, round(ts * 1000) if ts else 0))
            self._batched += 1
            if self._batched >= cap:
                await self._flush()

    async def _batcher(self) -> None:
        """Step the pending batch once it is ``batch_within_s`` old, or, while the worker is
        behind its input (:meth:`_behind`), once it is ``MAX_WITHIN_S`` old or full: a worker
        catching up takes larger batches, as the per-step costs (outputs, online-store
        write) are paid per batch, and its records are late anyway."""
        within = self.cfg.batch_within_s
        while not self.closed and not self.app.should_stop:
            await asyncio.sleep(within)
            if not self._batched:
                continue
            age = time.monotonic() - self._batch_since
            if age >= MAX_WITHIN_S or (age >= within and not self._behind()):
                await self._flush()

    def _behind(self) -> bool:
        """At least ``BEHIND_RECORDS`` records of this worker's partitions are in Kafka (by the
        last fetch's highwaters) and not yet in the pending batch or processed."""
        lag = 0
        for tp, task in list(self.runner.tasks.items()):  # (a restore in its thread may add tasks)
            high = self._highwater(tp)
            if high is None:
                continue
            records = self._batch.get(tp)
            lag += max(high - (records[-1][1] + 1 if records else task.position), 0)
            if lag >= BEHIND_RECORDS:
                return True
        return False

    async def _flush(self) -> None:
        async with self.lock:
            await self._step_pending()

    async def _step_pending(self) -> None:
        """Step the pending batch (the caller holds the lock).

        Batches are never trimmed: what faust delivers for a partition, also across a
        rebalance, continues what it delivered before, so a batch is a contiguous run of
        offsets and a task (which skips offsets below its position) can take it whole.
        """
        if not self._batched or self.closed:
            return
        polled = [(topic, records) for (topic, _p), records in self._batch.items()]
        if any(topic == self.cfg.repartition_topic for topic, _r in polled):
            self.ends.rows_at = time.monotonic()  # after they came in: what the merchants need
        self._batch.clear()
        self._batched = 0
        try:
            self.runner.step(polled)
            await self.outputs.publish()
        except Exception as exc:
            # A task may be half way through its records: stop without checkpointing it;
            # the next owner resumes from the last checkpoint.
            self.closed = True
            log.exception("a step failed; the worker stops without a final checkpoint")
            await self.app.crash(exc)

    def _highwater(self, tp: Partition) -> int | None:
        try:
            return self.app.consumer.highwater(TP(*tp))
        except Exception:  # not assigned (any more), or not fetched yet
            return None

    def _backlog(self, tp: Partition) -> bool:
        """Records of ``tp`` written to Kafka that this worker has not processed yet."""
        task = self.runner.tasks.get(tp)
        return self.ends.backlog(tp[1], task.position if task else None, self._highwater(tp))

    async def _timer(self) -> None:
        while not self.closed and not self.app.should_stop:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            async with self.lock:
                if self.closed:
                    return
                self.outputs.prune()
                self.runner.tick(self._backlog)
                self.runner.observe_lag(self._highwater)
                await self.outputs.publish()
                if now < self._checkpoint_due_at:
                    continue
                await self.outputs.drain()
                if self.runner.maybe_checkpoint():
                    self._checkpoint_due_at = now + self.cfg.checkpoint_interval_s
                    self._mirror()
                else:  # the runner checkpointed on its own (a revocation) more recently
                    self._checkpoint_due_at = now + 0.1

    def _mirror(self) -> None:
        """Mirror the checkpointed positions as group offsets (for lag tools; never read back)."""
        if self._mirror_task is not None and not self._mirror_task.done():
            return
        offsets = {tp: t.checkpointed_position for tp, t in self.runner.tasks.items()
                   if t.checkpointed_position >= 0}
        if offsets:
            self._mirror_task = asyncio.ensure_future(self.consumer.mirror_commit(offsets))

    # -- stopping ----------------------------------------------------------------------------

    async def _on_shutdown(self, _sender: Any, /, *_args: Any, signal: Any, **_kw: Any) -> None:
        async with self.lock:
            try:
                if not self.closed:
                    await self._step_pending()
                if not self.closed:  # not after a failed step: its state must not be saved
                    self.closed = True
                    await self.outputs.drain()
                    self.runner.close()
            except Exception as err:
                log.warning("final checkpoint failed, the next owner resumes from the previous one: %s", err)
            finally:
                self.closed = True
                self._close_stores()

    def _close_stores(self) -> None:
        if self._stores_closed:
            return
        self._stores_closed = True
        try:
            self.checkpoints.close()
        finally:
            self.ends.close()
            self.store.close()


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    cfg, loglevel = parse_config(settings, argv, "Stream features worker (faust-streaming).")
    cfg = prepare(settings, cfg)
    serve_metrics(settings, cfg.component)
    worker = FaustWorker(cfg)
    started = time.monotonic()
    runner = faust.Worker(worker.app, loglevel=loglevel, quiet=True)
    # Its terminal spinner sets the root logger to DEBUG (to spin on every record): every
    # aiokafka debug call would then build a log record; a worker has no terminal anyway.
    runner.spinner = None
    runner.execute_from_commandline()
    log.info("stopped after %.1fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
