"""Broker-free sources and sinks for the stream engine, shipped for tests and experiments.

A :class:`MemorySource` splits wire records over partitions by key, as Kafka does (per-key
order kept, offsets counted per partition), and hands them out in polls of uneven size with
the partitions interleaved, the way a consumer returns them. A :class:`MemorySink` takes
the ``features`` and dead-letter records a runner emits. :func:`run_in_memory` wires the two
to the same :class:`~.runner.StreamRunner` every engine runs, so stream logic is tested in
milliseconds; the broker tests then prove the Kafka wiring.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dataflow_playground.features.online_store import OnlineStoreWriter
from dataflow_playground.features.stream.runner import Record, StreamRunner
from dataflow_playground.features.stream.worker import WorkerConfig, build_runner


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

    def polls(self, first: int = 1) -> Iterator[list[list[Record]]]:
        """Polls of varying size (1, 4, 13, ... records per partition), partitions interleaved."""
        pos = dict.fromkeys(self.partitions, 0)
        size = first
        while any(pos[p] < len(recs) for p, recs in self.partitions.items()):
            poll = []
            for p, recs in self.partitions.items():
                poll.append(recs[pos[p]:pos[p] + size])
                pos[p] += size
            yield poll
            size = size * 3 % 701 + 1


@dataclass
class MemorySink:
    """What a runner sends: per-event feature values, corrections and dead letters."""

    values: dict[int, dict[str, Any]] = field(default_factory=dict)
    corrections: list[dict[str, Any]] = field(default_factory=list)
    dead: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)

    def send_features(self, _key: bytes, value: bytes) -> None:
        rec = orjson.loads(value)
        if rec["kind"] == "event":
            self.values[rec["event_id"]] = rec["values"]
        else:
            self.corrections.append(rec)

    def send_dead(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.dead.append((key, value, headers))


def memory_runner(store: Path, sink: MemorySink, partitions: Sequence[int],
                  allowed_lateness_ms: int = 60_000) -> StreamRunner:
    """The engines' runner (:func:`build_runner`) writing to ``sink`` and an online store file."""
    cfg = WorkerConfig("memory", "in", "out", "dlq", store, allowed_lateness_ms=allowed_lateness_ms)
    return build_runner(cfg, list(partitions), OnlineStoreWriter(store), sink.send_features,
                        sink.send_dead)


def run_in_memory(source: MemorySource, store: Path, allowed_lateness_ms: int = 60_000
                  ) -> tuple[StreamRunner, MemorySink]:
    """Feed every poll of ``source`` through a runner, release the tail, close the store."""
    sink = MemorySink()
    runner = memory_runner(store, sink, sorted(source.partitions), allowed_lateness_ms)
    for poll in source.polls():
        runner.step(poll, "in")
    runner.drain(now=time.monotonic() + 60)  # every partition idle by then: the tail is released
    runner.store.close()
    return runner, sink

