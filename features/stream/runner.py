"""The stream path's glue, broker-free: decode -> dead-letter or order -> operators -> outputs.

Every engine (:mod:`.registry`) hands each poll's raw Kafka records to
:meth:`StreamRunner.step` (or :meth:`StreamRunner.ingest_batch`, then :meth:`StreamRunner.drain`)
and calls :meth:`StreamRunner.drain` on a timer; the runner never touches Kafka itself.
Outgoing messages go through the two callables it is given, so tests feed it from lists
(:mod:`.testing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from dataflow_playground.core.dead_letters import FEATURES_STAGE, dead_letter_headers, source_id
from dataflow_playground.core.schema import Event
from dataflow_playground.core.validation import Rejection, decode_batch
from dataflow_playground.features.online_store import OnlineStoreWriter
from dataflow_playground.features.stream.event_time import Arrival, EventTimeOrderer
from dataflow_playground.features.stream.state import Entry, FeatureEngine, entry_from

Send = Callable[[bytes, bytes], None]
SendDead = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], None]
# One consumed record: (partition, offset, key, value, produced_ms).
Record = tuple[int, int, bytes | None, bytes, int]

@dataclass
class RunnerStats:
    consumed: int = 0
    dead_lettered: int = 0  # bad records met, whether their dead letter was published now or before
    dead_letters_known: int = 0  # of those, already on the dead-letter topic (an earlier run's)
    emitted: int = 0
    corrections_emitted: int = 0


class StreamRunner:
    def __init__(self, engine: FeatureEngine, orderer: EventTimeOrderer[tuple[Entry, int]],
                 store: OnlineStoreWriter, send_features: Send, send_dead: SendDead,
                 record_freshness: bool = False, heartbeat_s: float = 1.0,
                 published_dead: set[str] | None = None) -> None:
        self.engine, self.orderer, self.store = engine, orderer, store
        self.send_features, self.send_dead = send_features, send_dead
        # Sources whose dead letter an earlier run published (the input is replayed on start).
        self.published_dead = published_dead or set()
        self.record_freshness = record_freshness
        self.heartbeat_s = heartbeat_s
        self.stats = RunnerStats()
        self._fresh: list[tuple[int, int]] = []
        self._last_write = 0.0
        self.last_offset: dict[int, int] = {}
        self.assigned_partitions = 0  # set by the Kafka wiring; readiness for benchmarks

    def step(self, polled: Iterable[Sequence[Record]], topic: str = "") -> int:
        """One poll: ingest each partition's records, then release and write; return records."""
        n = 0
        for records in polled:
            self.ingest_batch(records, topic)
            n += len(records)
        self.drain()
        return n

    def ingest_batch(self, records: Sequence[Record], topic: str = "") -> None:
        """The one way records enter: validated together (:func:`decode_batch`), then ordered."""
        self.stats.consumed += len(records)
        if not records:
            return
        decoded = decode_batch([r[3] for r in records])
        last = self.last_offset
        for (partition, offset, key, value, produced_ms), event in zip(records, decoded, strict=True):
            last[partition] = offset
            self._accept(partition, offset, key, value, produced_ms, topic, event)

    def _accept(self, partition: int, offset: int, key: bytes | None, value: bytes, produced_ms: int,
                topic: str, event: Event | Rejection) -> None:
        if isinstance(event, Rejection):
            # Key and value as consumed; the documented headers (core/dead_letters.py).
            self.stats.dead_lettered += 1
            source = source_id(topic, partition, offset)
            if source in self.published_dead:
                self.stats.dead_letters_known += 1
                return
            self.send_dead(key, value, dead_letter_headers(str(event), FEATURES_STAGE, source))
            return
        entry = entry_from(event)
        arrival = self.orderer.push(partition, entry[0], entry[1], (entry, produced_ms))
        if arrival is Arrival.LATE:
            self._apply(entry, produced_ms)

    def _apply(self, entry: Entry, produced_ms: int) -> None:
        values, late = self.engine.process(entry)
        ts, eid, _amount, user, merchant = entry
        self.send_features(str(user).encode(), orjson.dumps(
            {"kind": "event", "event_id": eid, "user_id": user, "merchant_id": merchant, "ts": ts,
             "late": late, "values": values}))
        self.stats.emitted += 1
        if self.record_freshness:
            self._fresh.append((eid, produced_ms))

    def drain(self, now: float | None = None) -> int:
        """Release what the watermark allows, then write the online store; return events released."""
        released = self.orderer.release(now)
        for entry, produced in released:
            self._apply(entry, produced)
        wall = time.monotonic()
        if self.engine.dirty or wall - self._last_write >= self.heartbeat_s:
            rows = []
            for entity, id_, as_of, values, corrected in self.engine.take_dirty():
                rows.append((entity, id_, as_of, values))
                if corrected:  # a late event changed this id's state: publish the fixed vector
                    self.stats.corrections_emitted += 1
                    self.send_features(f"{entity}:{id_}".encode(), orjson.dumps(
                        {"kind": "correction", "entity": entity, "id": id_, "as_of": as_of,
                         "values": values}))
            fresh, self._fresh = self._fresh, []
            self.store.write(rows, self.counters(), fresh)
            self._last_write = wall
        return len(released)

    def counters(self) -> dict[str, int]:
        lat, eng = self.orderer.stats, self.engine.stats
        return {
            "consumed": self.stats.consumed, "processed": eng.processed,
            "dead_lettered": self.stats.dead_lettered, "emitted": self.stats.emitted,
            "dead_letters_known": self.stats.dead_letters_known,
            "late_accepted": lat.late_accepted, "late_dropped": lat.late_dropped,
            "max_lateness_ms": lat.max_lateness_ms, "late_for_key": eng.late_for_key,
            "corrections": self.stats.corrections_emitted, "buffered": len(self.orderer),
            "allowed_lateness_ms": self.engine.allowed_lateness_ms,
            "frontier_ts": self.orderer.frontier or 0,
            "assigned_partitions": self.assigned_partitions,
        }
