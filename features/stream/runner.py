"""The stream path's glue, broker-free: the tasks a worker owns, their outputs, checkpoints, store.

Every engine (:mod:`.registry`) tells the runner which partitions it was given
(:meth:`StreamRunner.assign`, which restores their tasks from the checkpoints and returns
the offsets to resume from) and taken away (:meth:`StreamRunner.revoke`), hands it each
poll's records (:meth:`StreamRunner.step`), calls :meth:`StreamRunner.tick` on a timer and
:meth:`StreamRunner.maybe_checkpoint` after a step. The runner never reads Kafka itself;
outgoing messages go through the :class:`Outputs` it is given, so tests run it from lists
(:mod:`.testing`).

Per-event output on the ``features`` topic is one record per task and step, holding that
step's events (``{"kind": "events", "stage": ..., "events": [...]}``), each with its
``event_id``. A task that recovers computes again what came after its checkpoint, so an
event may appear twice; readers deduplicate by ``(event_id, stage)``
(:func:`dedupe_feature_records`), and every duplicate is one of the records counted in
``read_since_restore``.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from dataflow_playground.core.metrics import consumer_metrics, observe_many
from dataflow_playground.features.online_store import OnlineStoreWriter
from dataflow_playground.features.stream.checkpoint import CheckpointStore, TaskCheckpoint
from dataflow_playground.features.stream.event_time import InputEnds
from dataflow_playground.features.stream.tasks import MerchantTask, Record, Stage, Task, TaskConfig, make_task
from dataflow_playground.features.stream.wire import ShuffleRow, pack_shuffle

# (topic, partition)
TP = tuple[str, int]
EVENTS_PER_RECORD = 500  # about 200 KB of JSON
ROWS_PER_RECORD = 8_000  # 472 KB of packed rows
STATS_INTERVAL_S = 0.1  # task counters reach the online store at most this often
GC_THRESHOLD = (50_000, 20, 10)  # the worker's collector (Python's default is 700, 10, 10)


def quiet_gc() -> None:
    """Keep Python's cyclic collector from pausing a worker for hundreds of milliseconds.

    A task's state is millions of small objects; with the default thresholds a full collection
    walked all of them every few seconds (seen: 235-416 ms pauses with 300,000 objects, and
    growing with the state), which set the freshness tail. The state holds no reference cycles,
    so reference counting frees it; the collector is only needed for the clients' own cycles.
    So: collect less often, and (``StreamRunner(freeze_gc=True)``) ``gc.freeze()`` after each
    restore and checkpoint moves what survived into the permanent generation, which later
    collections skip. The price: cyclic garbage that was
    still alive at a freeze is not reclaimed.
    """
    gc.set_threshold(*GC_THRESHOLD)


class Outputs(Protocol):
    def send_features(self, key: bytes, value: bytes) -> None: ...
    def send_shuffle(self, partition: int, value: bytes) -> None: ...
    def send_dead(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None: ...
    def flush(self) -> None: ...


@dataclass
class RunnerStats:
    checkpoints: int = 0
    checkpoint_s: float = 0.0  # time spent writing them
    restores: int = 0
    restore_s: float = 0.0
    restored_bytes: int = 0


class StreamRunner:
    def __init__(self, cfg: TaskConfig, store: OnlineStoreWriter, outputs: Outputs,
                 checkpoints: CheckpointStore | None = None, worker_id: str = "worker",
                 checkpoint_interval_s: float = 1.0, heartbeat_s: float = 1.0,
                 published_dead: set[str] | None = None,
                 refresh_dead: Callable[[], set[str]] | None = None,
                 input_ends: InputEnds | None = None, freeze_gc: bool = False,
                 background_checkpoints: bool = False) -> None:
        self.cfg, self.store, self.outputs, self.checkpoints = cfg, store, outputs, checkpoints
        self.worker_id = worker_id
        self.checkpoint_interval_s = checkpoint_interval_s
        self.heartbeat_s = heartbeat_s
        # Sources already on the dead-letter topic; ``refresh_dead`` reads them again whenever user
        # tasks arrive, the first ones included: they may be a dead worker's, whose last dead
        # letters came out after this worker started (seen in CI: a worker whose first tasks came
        # at a failover published 31 dead letters a second time).
        self.published_dead = published_dead if published_dead is not None else set()
        self.refresh_dead = refresh_dead
        # The input topic's end offsets (from the engine): merchant tasks check with them that
        # an idle user partition is still idle before they release what it held back.
        self.input_ends = input_ends
        self.freeze_gc = freeze_gc  # a worker process's runner: see quiet_gc
        if freeze_gc:
            quiet_gc()
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="checkpoint") if background_checkpoints
                      else None)
        self._inflight: Future[None] | None = None
        self._inflight_snaps: list[tuple[Task, TaskCheckpoint]] = []
        self.tasks: dict[TP, Task] = {}
        self.awaiting: list[TP] = []  # assigned, not restored yet (assign(defer=True))
        self.stats = RunnerStats()
        self.metrics = consumer_metrics(cfg.component)
        self._last_write = 0.0
        self._last_stats = 0.0
        self._unsaved_stats = False
        self._last_checkpoint = time.monotonic()

    def stage_of(self, topic: str) -> Stage:
        return Stage.USER if topic == self.cfg.input_topic else Stage.MERCHANT

    # -- assignment --------------------------------------------------------------------------

    def assign(self, tps: Iterable[TP], defer: bool = False) -> dict[TP, int]:
        """Create (and restore) the tasks of newly given partitions; return where each resumes.

        ``defer``: only note them (``awaiting``); :meth:`finish_assign` restores them later.
        Both engines defer from their group's assignment callback: neither client sends
        heartbeats while it runs (kafka-python runs it on the loop that heartbeats, aiokafka
        stops heartbeating from JoinGroup until it returns), so a long restore in there
        (seconds, for a large state) would cost the worker its group session.
        """
        new = [tp for tp in tps if tp not in self.tasks and tp not in self.awaiting]
        if defer:
            self.awaiting.extend(new)
            return {}
        return self._create(new)

    def finish_assign(self) -> dict[TP, int]:
        """Restore the tasks :meth:`assign` deferred; return where each resumes."""
        new, self.awaiting = self.awaiting, []
        return self._create(new)

    def _create(self, new: list[TP]) -> dict[TP, int]:
        if self.refresh_dead is not None and any(self.stage_of(t) is Stage.USER for t, _p in new):
            self.published_dead.update(self.refresh_dead())
        for topic, p in new:
            task = make_task(self.cfg, self.stage_of(topic), p)
            task.published_dead = self.published_dead
            if isinstance(task, MerchantTask):
                task.input_ends = self.input_ends
            self.tasks[(topic, p)] = task
        if new and self.checkpoints is not None:
            self._wait_background()  # the store's manifests are not written under it
            started = time.monotonic()
            restored = self.checkpoints.load([self.tasks[tp].name for tp in new])
            for tp in new:
                task = self.tasks[tp]
                r = restored.get(task.name)
                if r is not None:
                    task.restore(r.manifest.meta, r.entries, r.pending)
                    self.stats.restored_bytes += r.read_bytes
                    self.stats.restores += 1
            self.stats.restore_s += time.monotonic() - started
        self._write_store(force=True)
        if self.freeze_gc:
            gc.freeze()  # the restored state
        return {tp: self.tasks[tp].position for tp in new}

    def revoke(self, tps: Iterable[TP]) -> None:
        """Checkpoint the tasks of partitions taken away, then drop them."""
        tps = list(tps)
        self.awaiting = [tp for tp in self.awaiting if tp not in tps]
        gone = [tp for tp in tps if tp in self.tasks]
        if not gone:
            return
        self.checkpoint([self.tasks[tp] for tp in gone])
        for tp in gone:
            del self.tasks[tp]
            self.metrics.forget_partition(*tp)

    def keep_owned(self, positions: dict[TP, int], owned: Iterable[TP]) -> dict[TP, int]:
        """Of the tasks :meth:`finish_assign` just restored (``positions``), those whose
        partitions the engine still owns; the others were taken away again while they
        restored (no revocation will name them) and are dropped."""
        owned = set(owned)
        self.drop(tp for tp in positions if tp not in owned)
        return {tp: offset for tp, offset in positions.items() if tp in owned}

    def drop(self, tps: Iterable[TP]) -> None:
        """Forget tasks restored for partitions that moved on before they read anything.

        No checkpoint: they hold only what they restored. Kept, they would go on writing their
        stale counters to the online store over the new owner's.
        """
        for tp in tps:
            self.tasks.pop(tp, None)
            self.metrics.forget_partition(*tp)

    # -- processing --------------------------------------------------------------------------

    def step(self, polled: Iterable[tuple[str, Sequence[Record]]]) -> int:
        """One poll: each partition's records to its task, then outputs and the online store."""
        n = 0
        for topic, records in polled:
            if not records:
                continue
            task = self.tasks.get((topic, records[0][0]))
            if task is None:  # not ours (any more): a rebalance is under way
                continue
            task.ingest(records)
            n += len(records)
        self._send()
        self._write_store()
        return n

    def tick(self, backlog: Callable[[TP], bool] = lambda _tp: False, now: float | None = None) -> None:
        """Called on a timer: idle marks for caught-up user partitions, merchant releases that
        waited for the input's end offsets, heartbeat."""
        now = time.monotonic() if now is None else now
        for tp, task in self.tasks.items():
            task.tick(now, lambda tp=tp: backlog(tp))  # type: ignore[misc]
        self._send()
        self._write_store()

    def observe_lag(self, highwater: Callable[[TP], int | None]) -> None:
        """Set the lag gauge of every owned partition: ``highwater(tp)`` (the consumer's, None if
        not fetched yet) minus the task's position."""
        for tp, task in self.tasks.items():
            high = highwater(tp)
            if high is not None:
                self.metrics.lag(tp[0], tp[1], high - task.position)

    def _send(self) -> None:
        """Each task's step output: its events in records of at most EVENTS_PER_RECORD; the
        repartition rows of all user tasks, per merchant partition, in records of at most
        ROWS_PER_RECORD (both far under Kafka's 1 MB). Every row names its source partition and
        offset, so rows of several sources share a record (one send per merchant partition and
        step, not one per user task: each send wakes the producer's thread)."""
        out = self.outputs
        shuffle: dict[int, list[ShuffleRow]] = {}
        for task in self.tasks.values():
            box = task.out
            if box.events and task.stage is Stage.MERCHANT:
                # An event's feature vector is complete once its merchant task wrote it: that is
                # when it counts as processed, and its freshness (wall clock - event time) is taken.
                self.metrics.stored.inc(len(box.events))
                ts = np.fromiter((ev["ts"] for ev in box.events), dtype=np.float64, count=len(box.events))
                observe_many(self.metrics.freshness, time.time() - ts / 1000.0)
            for i in range(0, len(box.events), EVENTS_PER_RECORD):
                out.send_features(task.name.encode(), orjson.dumps(
                    {"kind": "events", "stage": task.stage.value, "task": task.name,
                     "events": box.events[i:i + EVENTS_PER_RECORD]}))
            for q, rows in box.shuffle.items():
                shuffle.setdefault(q, []).extend(rows)
            for key, value, headers in box.dead:
                out.send_dead(key, value, headers)
            box.events, box.shuffle, box.dead = [], {}, []
        for q, rows in shuffle.items():
            for i in range(0, len(rows), ROWS_PER_RECORD):
                out.send_shuffle(q, pack_shuffle(rows[i:i + ROWS_PER_RECORD]))

    def _write_store(self, force: bool = False) -> None:
        wall = time.monotonic()
        rows: list[tuple[str, int, int, dict[str, object]]] = []
        fresh: list[tuple[int, str, int]] = []
        corrected = 0
        for task in self.tasks.values():
            for entity, id_, as_of, values, was_corrected in task.engine.take_dirty():
                rows.append((entity, id_, as_of, values))
                if was_corrected:  # a late event changed this id's state: publish the fixed vector
                    corrected += 1
                    self.outputs.send_features(f"{entity}:{id_}".encode(), orjson.dumps(
                        {"kind": "correction", "entity": entity, "id": id_, "as_of": as_of,
                         "values": values}))
            fresh.extend((eid, task.stage.value, produced) for eid, produced in task.out.fresh)
            task.out.clear()
        # Task counters (a row per task and counter) at most every STATS_INTERVAL_S: written with
        # every step's vectors they were most of the store's cost.
        stats = force or (wall - self._last_stats >= STATS_INTERVAL_S
                          and (self._unsaved_stats or wall - self._last_write >= self.heartbeat_s))
        if rows or fresh or stats:
            counters = {t.name: t.counters_dict() for t in self.tasks.values()} if stats else None
            self.store.write(rows, counters, self.worker_counters(), self.worker_id, fresh)
            self._last_write = wall
            self._unsaved_stats = not stats
            if stats:
                self._last_stats = wall

    def worker_counters(self) -> dict[str, int]:
        return {"assigned_partitions": len(self.tasks), "pid": os.getpid(), **{
            k: int(v) for k, v in self.stats.__dict__.items()}}

    # -- checkpoints -------------------------------------------------------------------------

    def maybe_checkpoint(self) -> bool:
        """Checkpoint every task once the interval has passed; True if one was started.

        With ``background_checkpoints`` the loop only takes the snapshot (positions, deltas,
        small state) and a thread of its own waits for Kafka (the producer's flush, then the
        checkpoint's writes); the next one starts only after it is done.
        """
        if time.monotonic() - self._last_checkpoint < self.checkpoint_interval_s:
            return False
        if self._pool is None:
            self.checkpoint(list(self.tasks.values()))
            return True
        if self._inflight is not None and not self._inflight.done():
            return False
        self._wait_background()
        self._last_checkpoint = time.monotonic()
        snaps = self._snapshot(list(self.tasks.values()))
        if snaps:
            self._inflight = self._pool.submit(self._write, snaps)
            self._inflight_snaps = snaps
        return True

    def checkpoint(self, tasks: list[Task]) -> None:
        """Save each changed task with its position, after everything it sent is acknowledged
        (synchronously, after any checkpoint still being written in the background)."""
        self._wait_background()
        self._last_checkpoint = time.monotonic()
        snaps = self._snapshot(tasks)
        if snaps:
            self._write(snaps)

    def _snapshot(self, tasks: list[Task]) -> list[tuple[Task, TaskCheckpoint]]:
        """What each changed task's checkpoint holds, taken now; the deltas are handed over."""
        if self.checkpoints is None:
            return []
        changed = [t for t in tasks if t.position != t.checkpointed_position or t.delta]
        if not changed:
            return []
        self._send()
        self._write_store(force=True)
        store = self.checkpoints
        snaps = [(task, TaskCheckpoint(
            task.name, task.position, task.meta(), task.delta, task.pending(),
            task.engine.retained_entries() if store.needs_rebase(task.name) else None)) for task in changed]
        for task in changed:
            task.delta = []
        if self.freeze_gc:
            gc.freeze()  # what the state gained since the last checkpoint
        return snaps

    def _write(self, snaps: list[tuple[Task, TaskCheckpoint]]) -> None:
        assert self.checkpoints is not None
        started = time.monotonic()
        self.outputs.flush()  # repartition rows and dead letters before the offsets that cover them
        self.checkpoints.save_many([cp for _task, cp in snaps])
        for task, cp in snaps:
            task.checkpointed_position = cp.position
        self.stats.checkpoints += 1
        self.stats.checkpoint_s += time.monotonic() - started

    def _wait_background(self) -> None:
        """Wait for the checkpoint being written in the background; if it failed, give its
        deltas back to their tasks (the next checkpoint writes them) and raise its error."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        err = inflight.exception()
        if err is not None:
            for task, cp in self._inflight_snaps:
                task.delta = cp.delta + task.delta
            raise err

    def close(self) -> None:
        """A clean stop: checkpoint every task, then tell the store this worker owns nothing."""
        try:
            self.checkpoint(list(self.tasks.values()))
        finally:
            self.tasks.clear()
            self._write_store(force=True)
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def counters(self) -> dict[str, Any]:
        return {t.name: t.counters_dict() for t in self.tasks.values()}


def dedupe_feature_records(values: Iterable[bytes]) -> tuple[dict[int, dict[str, object]], int]:
    """Per-event values from ``features`` records: user and merchant values merged by event_id.

    Returns the values and how many per-event entries were repeats (a task recomputing
    what came after its checkpoint); the later of two repeats wins (they are equal).
    """
    out: dict[int, dict[str, object]] = {}
    seen: set[tuple[int, str]] = set()
    repeats = 0
    for raw in values:
        rec = orjson.loads(raw)
        if rec.get("kind") != "events":
            continue
        stage = rec["stage"]
        for ev in rec["events"]:
            key = (ev["event_id"], stage)
            if key in seen:
                repeats += 1
            seen.add(key)
            out.setdefault(ev["event_id"], {}).update(ev["values"])
    return out, repeats
