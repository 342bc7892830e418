"""Task checkpoints in Kafka: state and the input offset it reflects, committed by one record.

Why a checkpoint topic of our own, not faust Tables or a per-key changelog: a task's state
is the list of entries its windows still need (up to 7 days of a user's payments), not a
value per key, and both engines must share it. Rewriting a key's whole history on every
event (a changelog of values) costs as much as the history; a per-entry changelog has no
place for the offsets. So each task writes, every checkpoint interval:

1. the entries it processed since its last checkpoint, packed (:mod:`.wire`), as records
   of the **data topic** ``<app>-checkpoint-data`` (compacted; a record is at most
   :data:`CHUNK_ROWS` rows), and its reorder buffer the same way;
2. then one **manifest** record, keyed by the task, on ``<app>-checkpoints`` (compacted,
   so one manifest per task survives): the input position, the small state (counters,
   watermarks, the offsets already taken from each source) and the data records that make
   up the state, by offset.

The manifest is the commit: until it is written, the previous one still names a complete
state, and data records are never rewritten (their keys hold the epoch), only deleted by a
tombstone once no manifest names them. When the deltas outweigh the state itself the task
writes its whole retained state as a new base instead, so a restore reads at most about
twice the state, however long the input topic is.

Restoring reads the manifest topic (small: one record per task after compaction) and then
only the data records the manifests name, by offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dataflow_playground.core import kafka_admin
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.features.stream.state import Entry
from dataflow_playground.features.stream.wire import (
    ShuffleRow,
    pack_entries,
    pack_shuffle,
    unpack_entries,
    unpack_shuffle,
)

log = logging.getLogger(__name__)

CHUNK_ROWS = 12_000  # 480 KB of entries per data record, under Kafka's 1 MB default
_COMPACTED = (("cleanup.policy", "compact"), ("segment.ms", "30000"),
              ("min.cleanable.dirty.ratio", "0.1"), ("delete.retention.ms", "30000"))


class CheckpointError(PlaygroundError):
    """A checkpoint could not be written or read back."""


@dataclass
class Manifest:
    task: str
    epoch: int
    position: int
    meta: dict[str, Any]
    base: list[int]  # data-topic offsets of the base state's entry records
    deltas: list[int]  # ... and of the entries processed since, in order
    pending: list[int]  # ... and of the reorder buffer's rows
    base_rows: int = 0
    delta_rows: int = 0
    keys: list[str] = field(default_factory=list)  # data-record keys, to tombstone when dropped
    written_ms: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        return cls(**orjson.loads(raw))


@dataclass
class TaskCheckpoint:
    """What one task saves: its input position, small state, new entries and reorder buffer."""

    task: str
    position: int
    meta: dict[str, Any]
    delta: list[Entry]
    pending: list[ShuffleRow]
    full: list[Entry] | None = None  # the whole retained state: starts a new base


@dataclass
class Restored:
    manifest: Manifest
    entries: np.ndarray  # rows of wire.ENTRY
    pending: list[ShuffleRow]
    read_bytes: int


def checkpoint_topics(app_id: str) -> tuple[str, str]:
    """(manifest topic, data topic) of one application id."""
    return f"{app_id}-checkpoints", f"{app_id}-checkpoint-data"


def topic_specs(app_id: str) -> list[kafka_admin.TopicSpec]:
    manifests, data = checkpoint_topics(app_id)
    return [kafka_admin.TopicSpec(manifests, 1, configs=_COMPACTED),
            kafka_admin.TopicSpec(data, 1, configs=_COMPACTED)]


def _chunks(rows: list[Any], size: int = CHUNK_ROWS) -> Iterable[list[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


class CheckpointStore:
    """Writes and reads the checkpoints of one application id's tasks (blocking calls)."""

    def __init__(self, bootstrap: str, app_id: str, client_id: str = "checkpoints") -> None:
        self.bootstrap = bootstrap
        self.manifest_topic, self.data_topic = checkpoint_topics(app_id)
        self.producer = self._producer(client_id)
        self.current: dict[str, Manifest] = {}  # the last manifest this process wrote or read
        self.bytes_written = 0

    def _producer(self, client_id: str) -> Any:
        return KafkaProducer(bootstrap_servers=self.bootstrap, client_id=client_id, acks="all",
                             linger_ms=0, compression_type="lz4", max_request_size=4 * 1024 * 1024)

    # -- writing -----------------------------------------------------------------------------

    def save(self, task: str, position: int, meta: dict[str, Any], delta: list[Entry],
             pending: list[ShuffleRow], full: list[Entry] | None = None) -> Manifest:
        """Commit a checkpoint of ``task``; ``full`` (the whole retained state) starts a new base."""
        return self.save_many([TaskCheckpoint(task, position, meta, delta, pending, full)])[0]

    def save_many(self, checkpoints: list[TaskCheckpoint], timeout_s: float = 30.0) -> list[Manifest]:
        """Commit the checkpoints of several tasks in two round trips to the broker, not two per task.

        Every task's data records are sent at once and awaited together (their offsets go into the
        manifests); then every manifest is sent and awaited together. A task's manifest is still
        its commit: a crash between the two phases leaves each task's previous manifest in force.
        """
        plans = []
        for cp in checkpoints:
            prev = self.current.get(cp.task)
            epoch = prev.epoch + 1 if prev else 1
            keys: list[str] = []
            sent: dict[str, list[Any]] = {"b": [], "d": [], "p": []}

            def put(kind: str, payload: bytes, task: str = cp.task, epoch: int = epoch,
                    keys: list[str] = keys, sent: dict[str, list[Any]] = sent) -> None:
                key = f"{task}/{epoch}/{kind}{len(keys)}"
                keys.append(key)
                self.bytes_written += len(payload)
                sent[kind].append(self.producer.send(self.data_topic, key=key.encode(), value=payload,
                                                     partition=0))

            rebase = cp.full is not None or prev is None
            for chunk in _chunks(cp.full if cp.full is not None else cp.delta) if rebase else ():
                put("b", pack_entries(chunk))
            for chunk in () if rebase else _chunks(cp.delta):
                put("d", pack_entries(chunk))
            for chunk in _chunks(cp.pending):
                put("p", pack_shuffle(chunk))
            plans.append((cp, prev, epoch, keys, sent, rebase))
        deadline = time.monotonic() + timeout_s

        def offsets(futures: list[Any]) -> list[int]:
            return [int(f.get(max(deadline - time.monotonic(), 0.1)).offset) for f in futures]

        manifests, committed = [], []
        for cp, prev, epoch, keys, sent, rebase in plans:
            if rebase:
                rows = len(cp.full if cp.full is not None else cp.delta)
                base, deltas, base_rows, delta_rows, kept = offsets(sent["b"]), [], rows, 0, []
            else:
                assert prev is not None
                base, base_rows, kept = prev.base, prev.base_rows, [k for k in prev.keys if "/p" not in k]
                deltas, delta_rows = prev.deltas + offsets(sent["d"]), prev.delta_rows + len(cp.delta)
            m = Manifest(cp.task, epoch, cp.position, cp.meta, base, deltas, offsets(sent["p"]),
                         base_rows, delta_rows, kept + keys, time.time_ns() // 1_000_000)
            manifests.append(m)
            committed.append(self.producer.send(self.manifest_topic, key=cp.task.encode(),
                                                value=m.to_json(), partition=0))
        offsets(committed)
        for (_cp, prev, *_rest), m in zip(plans, manifests, strict=True):
            self.current[m.task] = m
            if prev is not None:  # the data records no manifest names any more
                live = set(m.keys)
                self._drop([key for key in prev.keys if key not in live])
        return manifests

    def _drop(self, keys: list[str]) -> None:
        for key in keys:
            self.producer.send(self.data_topic, key=key.encode(), value=None, partition=0)

    def needs_rebase(self, task: str) -> bool:
        m = self.current.get(task)
        return m is not None and (m.delta_rows > max(m.base_rows, 50_000) or len(m.deltas) > 64)

    def flush(self) -> None:
        self.producer.flush(30)

    # -- reading -----------------------------------------------------------------------------

    def manifests(self, timeout_s: float = 30.0) -> dict[str, Manifest]:
        """The latest manifest of every task, read from the start of the manifest topic."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 client_id="checkpoint-manifests")
        tp = TopicPartition(self.manifest_topic, 0)
        found: dict[str, Manifest] = {}
        try:
            end = consumer.end_offsets([tp])[tp]
            if not end:
                return found
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            deadline = time.monotonic() + timeout_s
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise CheckpointError(f"reading {self.manifest_topic} did not reach offset {end} "
                                          f"within {timeout_s:.0f}s; is the broker overloaded?")
                for msgs in consumer.poll(timeout_ms=200).values():
                    for m in msgs:
                        if m.value is None:
                            found.pop(m.key.decode(), None)
                        else:
                            found[m.key.decode()] = Manifest.from_json(m.value)
            return found
        finally:
            consumer.close()

    def load(self, tasks: Iterable[str], timeout_s: float = 60.0) -> dict[str, Restored]:
        """The checkpointed state of each of ``tasks`` that has one."""
        wanted = {t: m for t, m in self.manifests().items() if t in set(tasks)}
        offsets = sorted({o for m in wanted.values() for o in (*m.base, *m.deltas, *m.pending)})
        blobs = self._fetch(offsets, timeout_s)
        out = {}
        for task, m in wanted.items():
            parts = [unpack_entries(blobs[o]) for o in (*m.base, *m.deltas)]
            entries = np.concatenate(parts) if parts else unpack_entries(b"")
            pending = [row for o in m.pending for row in unpack_shuffle(blobs[o])]
            size = sum(len(blobs[o]) for o in (*m.base, *m.deltas, *m.pending))
            out[task] = Restored(m, entries, pending, size)
            self.current[task] = m
        return out

    def _fetch(self, offsets: list[int], timeout_s: float) -> dict[int, bytes]:
        if not offsets:
            return {}
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 client_id="checkpoint-restore", max_partition_fetch_bytes=16 * 1024 * 1024,
                                 fetch_max_bytes=64 * 1024 * 1024)
        tp = TopicPartition(self.data_topic, 0)
        todo = set(offsets)
        got: dict[int, bytes] = {}
        try:
            consumer.assign([tp])
            deadline = time.monotonic() + timeout_s
            while todo:
                nxt = min(todo)
                if consumer.position(tp) != nxt:
                    consumer.seek(tp, nxt)
                if time.monotonic() > deadline:
                    raise CheckpointError(f"{len(todo)} checkpoint records of {self.data_topic} not read "
                                          f"within {timeout_s:.0f}s (first missing offset {nxt})")
                for msgs in consumer.poll(timeout_ms=500).values():
                    for m in msgs:
                        if m.offset > nxt and nxt in todo:
                            raise CheckpointError(f"checkpoint record {nxt} of {self.data_topic} is gone "
                                                  "(compacted) while a manifest still names it")
                        if m.offset in todo:
                            if m.value is None:
                                raise CheckpointError(f"checkpoint record {m.offset} of {self.data_topic} "
                                                      "was deleted while a manifest still names it")
                            got[m.offset] = m.value
                            todo.discard(m.offset)
                        if not todo:
                            break
                        nxt = min(todo)
                        if m.offset >= nxt:  # the next one is behind: seek back to it
                            break
            return got
        finally:
            consumer.close()

    def close(self) -> None:
        try:
            self.producer.flush(10)
        finally:
            self.producer.close(5)

