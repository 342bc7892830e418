"""Event-time ordering across partitions: a watermark, a reorder buffer and the lateness policy.

Kafka keeps order per partition only. The user-keyed topic spreads one merchant's
events over every partition, so the worker merges partitions by event time before
the operators see them: an event is released once every active partition has
delivered something at least as new (the watermark). In-order input therefore
reaches the operators sorted by ``(ts, event_id)``, which is what parity needs.

A partition that delivers nothing for ``idle_ms`` (wall clock) stops holding the
watermark back, so the tail of a stream is released too; but never while it still
has a backlog (records written to Kafka that this consumer has not seen yet; the
caller tells via ``backlog``), and idle clocks only start with the first record, so
a slow start or a catch-up cannot make in-order data look late.

Lateness: an event with ``ts`` below the release frontier (the newest ts already
released) is *late*. Within ``allowed_lateness_ms`` it is processed at once as a
correction; beyond it, it is dropped and counted (the state it needs is gone).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

T = TypeVar("T")


class Arrival(Enum):
    BUFFERED = "buffered"
    LATE = "late"  # behind the frontier, within the allowed lateness: process now
    DROPPED = "dropped"  # later than the allowed lateness


@dataclass
class LatenessStats:
    late_accepted: int = 0
    late_dropped: int = 0
    max_lateness_ms: int = 0


class EventTimeOrderer(Generic[T]):
    def __init__(self, partitions: list[int], allowed_lateness_ms: int, idle_ms: float = 500.0,
                 backlog: Callable[[int], bool] = lambda _p: False) -> None:
        self.max_ts: dict[int, int | None] = dict.fromkeys(partitions)
        self.last_seen: dict[int, float] = {}
        self.backlog = backlog
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_s = idle_ms / 1000
        self.heap: list[tuple[int, int, int, T]] = []
        self.frontier: int | None = None  # newest ts released
        self.stats = LatenessStats()
        self._seq = 0

    def push(self, partition: int, ts: int, event_id: int, item: T, now: float | None = None) -> Arrival:
        now = time.monotonic() if now is None else now
        if not self.last_seen:  # first record: start every partition's idle clock now
            self.last_seen = dict.fromkeys(self.max_ts, now)
        if partition not in self.max_ts:  # a partition we were not told about (topic grew)
            self.max_ts[partition] = None
        prev = self.max_ts[partition]
        self.max_ts[partition] = ts if prev is None or ts > prev else prev
        self.last_seen[partition] = now
        if self.frontier is not None and ts < self.frontier:
            lateness = self.frontier - ts
            self.stats.max_lateness_ms = max(self.stats.max_lateness_ms, lateness)
            if lateness > self.allowed_lateness_ms:
                self.stats.late_dropped += 1
                return Arrival.DROPPED
            self.stats.late_accepted += 1
            return Arrival.LATE
        self._seq += 1
        heapq.heappush(self.heap, (ts, event_id, self._seq, item))
        return Arrival.BUFFERED

    def watermark(self, now: float | None = None) -> int | None:
        """Min over active partitions of their newest ts; None = nothing may be released yet."""
        now = time.monotonic() if now is None else now
        if not self.last_seen:
            return None  # nothing seen yet
        marks = []
        for p, ts in self.max_ts.items():
            if now - self.last_seen.get(p, now) > self.idle_s and not self.backlog(p):
                continue  # idle: does not hold the others back
            if ts is None:
                return None  # active but not heard from yet
            marks.append(ts)
        if not marks:
            return 2**62  # everything idle: release all
        return min(marks)

    def release(self, now: float | None = None) -> list[T]:
        """Buffered items with ts <= watermark, in (ts, event_id) order."""
        mark = self.watermark(now)
        out: list[T] = []
        heap = self.heap
        if mark is None:
            return out
        while heap and heap[0][0] <= mark:
            ts, _eid, _seq, item = heapq.heappop(heap)
            out.append(item)
            self.frontier = ts
        return out

    def __len__(self) -> int:
        return len(self.heap)
