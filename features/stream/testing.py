"""Broker-free sources, sinks and checkpoints for the stream engine, for tests and experiments.

A :class:`MemorySource` splits wire records over partitions by key, as Kafka does (per-key
order kept, offsets counted per partition), and hands them out in polls of uneven size with
the partitions interleaved, the way a consumer returns them. A :class:`MemorySink` is the
runner's :class:`~.runner.Outputs`: it keeps the ``features`` records, the dead letters and
the repartition topic (a list per partition, which :func:`feed_shuffle` hands to the merchant
tasks). :class:`MemoryCheckpoints` keeps checkpoints in lists with the Kafka store's logic.
:func:`run_in_memory` wires them to the same :class:`~.runner.StreamRunner` every engine
runs, so stream logic is tested in milliseconds; the broker tests then prove the Kafka wiring.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataflow_playground.features.online_store import OnlineStoreWriter
from dataflow_playground.features.stream.checkpoint import CheckpointStore, Manifest
from dataflow_playground.features.stream.runner import StreamRunner, dedupe_feature_records
from dataflow_playground.features.stream.tasks import Record, TaskConfig

INPUT, SHUFFLE_TOPIC = "in", "in-repartition-merchant"


@dataclass
class MemorySource:
    """Records per partition, ``(partition, offset, key, value, produced_ms)`` each."""

    partitions: dict[int, list[Record]]

    @classmethod
    def from_wire(cls, records: Iterable[tuple[bytes, bytes]], partitions: int,
                  produced_ms: int = 1_000) -> MemorySource:
        """Key ``str(user_id)`` -> partition ``int(key) % partitions`` (per-key order kept)."""
        parts: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        for i, (key, value) in enumerate(records):
            p = int(key) % partitions
            parts[p].append((p, len(parts[p]), key, value, produced_ms + i))
        return cls(parts)

    def ends(self) -> dict[int, int]:
        """Each partition's end offset (everything in it counts as written)."""
        return {p: len(recs) for p, recs in self.partitions.items()}

    def polls(self, first: int = 1, start: dict[int, int] | None = None) -> Iterator[list[list[Record]]]:
        """Polls of varying size (1, 4, 13, ... records per partition), partitions interleaved."""
        pos = {p: (start or {}).get(p, 0) for p in self.partitions}
        size = first
        while any(pos[p] < len(recs) for p, recs in self.partitions.items()):
            poll = []
            for p, recs in self.partitions.items():
                poll.append(recs[pos[p]:pos[p] + size])
                pos[p] += size
            yield poll
            size = size * 3 % 701 + 1


KAFKA_MAX_RECORD = 1_048_588  # the broker's default message.max.bytes


def _fits(value: bytes) -> bytes:
    if len(value) > KAFKA_MAX_RECORD:
        raise ValueError(f"a {len(value):,}-byte record: Kafka refuses records over "
                         f"{KAFKA_MAX_RECORD:,} bytes")
    return value


@dataclass
class MemorySink:
    """The runner's outputs, kept in lists (refusing what Kafka would refuse: records over 1 MB)."""

    features: list[bytes] = field(default_factory=list)
    shuffle: dict[int, list[bytes]] = field(default_factory=dict)
    dead: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    flushes: int = 0

    def send_features(self, _key: bytes, value: bytes) -> None:
        self.features.append(_fits(value))

    def send_shuffle(self, partition: int, value: bytes) -> None:
        self.shuffle.setdefault(partition, []).append(_fits(value))

    def send_dead(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.dead.append((key, value, headers))

    def flush(self) -> None:
        self.flushes += 1

    @property
    def values(self) -> dict[int, dict[str, Any]]:
        """Per-event values, user and merchant merged, deduplicated by event id."""
        return dedupe_feature_records(self.features)[0]


class _Sent:
    """A send already acknowledged: ``get()`` gives its offset, as kafka-python's future does."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def get(self, timeout: float | None = None) -> _Sent:
        return self


class _MemoryProducer:
    """The two checkpoint topics as lists; a ``None`` value on the data topic is a tombstone."""

    def __init__(self, store: MemoryCheckpoints) -> None:
        self.store = store

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int = 0) -> _Sent:
        store = self.store
        if topic == store.manifest_topic:
            assert value is not None
            store.manifest_log.append((key.decode(), value))
            return _Sent(len(store.manifest_log) - 1)
        if value is None:  # compaction keeps only the tombstone of a deleted key
            store.data = [(k, None if k == key.decode() else v) for k, v in store.data]
            return _Sent(-1)
        store.data.append((key.decode(), value))
        return _Sent(len(store.data) - 1)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


class MemoryCheckpoints(CheckpointStore):
    """:class:`CheckpointStore`'s logic over lists instead of Kafka topics."""

    def __init__(self) -> None:
        self.data: list[tuple[str, bytes | None]] = []
        self.manifest_log: list[tuple[str, bytes]] = []
        super().__init__("memory", "memory")

    def _producer(self, client_id: str) -> Any:
        return _MemoryProducer(self)

    def manifests(self, timeout_s: float = 30.0) -> dict[str, Manifest]:
        return {task: Manifest.from_json(raw) for task, raw in self.manifest_log}

    def _fetch(self, offsets: list[int], timeout_s: float) -> dict[int, bytes]:
        out = {}
        for o in offsets:
            value = self.data[o][1]
            assert value is not None, f"checkpoint record {o} was dropped while named"
            out[o] = value
        return out

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def forget_current(self) -> None:
        """What a new process knows before it reads: nothing."""
        self.current = {}


def memory_runner(store: Path, sink: MemorySink, partitions: int, allowed_lateness_ms: int = 60_000,
                  checkpoints: CheckpointStore | None = None, worker_id: str = "memory",
                  source: MemorySource | None = None, checkpoint_interval_s: float = 3600,
                  background_checkpoints: bool = False) -> StreamRunner:
    """The engines' runner writing to ``sink`` and an online store file; owns nothing yet.

    ``source``: the input whose lengths are the end offsets merchant tasks check idle marks
    against (without it an idle mark holds unconditionally).
    """
    cfg = TaskConfig(INPUT, SHUFFLE_TOPIC, partitions, allowed_lateness_ms=allowed_lateness_ms)
    ends = None if source is None else source.ends
    return StreamRunner(cfg, OnlineStoreWriter(store), sink, checkpoints, worker_id=worker_id,
                        checkpoint_interval_s=checkpoint_interval_s, input_ends=ends,
                        background_checkpoints=background_checkpoints)


def feed_shuffle(runner: StreamRunner, sink: MemorySink, read: dict[int, int]) -> int:
    """Hand the repartition records not read yet to the runner's merchant tasks; return rows fed."""
    n = 0
    for q, values in sink.shuffle.items():
        start = read.get(q, 0)
        if (SHUFFLE_TOPIC, q) not in runner.tasks:
            continue
        task = runner.tasks[(SHUFFLE_TOPIC, q)]
        start = max(start, task.position)
        recs: list[Record] = [(q, off, None, values[off], 0) for off in range(start, len(values))]
        read[q] = len(values)
        if recs:
            runner.step([(SHUFFLE_TOPIC, recs)])
            n += len(recs)
    return n


def assign_all(runner: StreamRunner, partitions: int) -> dict[tuple[str, int], int]:
    return runner.assign([(t, p) for t in (INPUT, SHUFFLE_TOPIC) for p in range(partitions)])


def run_in_memory(source: MemorySource, store: Path, allowed_lateness_ms: int = 60_000
                  ) -> tuple[StreamRunner, MemorySink]:
    """Feed every poll of ``source`` through one runner owning every task, then the tail."""
    sink = MemorySink()
    parts = len(source.partitions)
    runner = memory_runner(store, sink, parts, allowed_lateness_ms, source=source)
    assign_all(runner, parts)
    read: dict[int, int] = {}
    for poll in source.polls():
        runner.step([(INPUT, recs) for recs in poll])
        feed_shuffle(runner, sink, read)
    # Every input partition idle: the user tasks send idle marks and the merchants release the tail.
    runner.tick(now=time.monotonic() + 60)
    feed_shuffle(runner, sink, read)
    runner.store.close()
    return runner, sink
