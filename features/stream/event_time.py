"""Event-time order for one task: watermarks per input channel, a reorder buffer, the lateness policy.

A task (:mod:`.tasks`) owns one input partition. Its records come from one or more
*channels*, each in its own order:

- a ``user`` task reads one ``transactions`` partition: one channel, already in the
  order events happened (per key, which is all user features need);
- a ``merchant`` task reads one partition of the repartition topic, which every user
  task writes to. Each user task is a channel there: its events arrive in its own
  order, and between events it sends *watermark marks* ("my partition has reached ts T",
  or "my partition is idle"), the way Flink forwards watermarks through a shuffle.

An item is released once every channel's watermark has reached its ``ts``, so the
operators see the input sorted by ``(ts, event_id)``, which is what parity needs. There is
no process-wide merge and no wall clock in here: a channel that has nothing to say says so
with an :data:`IDLE` mark, sent by the user task that owns it once it has no backlog.

Lateness: an item with ``ts`` below the release frontier (the newest ``ts`` released) is
*late*. Within ``allowed_lateness_ms`` it is processed at once as a correction; beyond it,
it is dropped and counted (the state it needs is gone).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

T = TypeVar("T")

IDLE = 2**62  # a channel's mark when it has nothing buffered upstream: it holds nobody back


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
    """The reorder buffer of one task; ``channels`` are the inputs that hold its watermark."""

    def __init__(self, channels: Iterable[int], allowed_lateness_ms: int) -> None:
        self.marks: dict[int, int | None] = dict.fromkeys(channels)
        self.allowed_lateness_ms = allowed_lateness_ms
        self.heap: list[tuple[int, int, int, T]] = []
        self.frontier: int | None = None  # newest ts released
        self.stats = LatenessStats()
        self._seq = 0

    def classify(self, ts: int) -> Arrival | None:
        """LATE or DROPPED for an item behind the frontier (and count it); None if it is on time."""
        if self.frontier is None or ts >= self.frontier:
            return None
        lateness = self.frontier - ts
        self.stats.max_lateness_ms = max(self.stats.max_lateness_ms, lateness)
        if lateness > self.allowed_lateness_ms:
            self.stats.late_dropped += 1
            return Arrival.DROPPED
        self.stats.late_accepted += 1
        return Arrival.LATE

    def advance(self, channel: int, ts: int) -> None:
        """The channel promises nothing older than ``ts`` is on its way (or is :data:`IDLE`)."""
        mark = self.marks.get(channel)
        if ts == IDLE or mark is None or mark == IDLE or ts > mark:
            self.marks[channel] = ts

    def push(self, channel: int, ts: int, event_id: int, item: T) -> Arrival:
        """An item; a channel's items come in its own order, so each one is also a mark."""
        mark = self.marks.get(channel)
        if mark is None or mark == IDLE or ts > mark:
            self.marks[channel] = ts
        verdict = self.classify(ts)
        if verdict is not None:
            return verdict
        self._seq += 1
        heapq.heappush(self.heap, (ts, event_id, self._seq, item))
        return Arrival.BUFFERED

    def watermark(self) -> int | None:
        """Min over the channels' marks (idle ones left out); None while one is not heard from."""
        active = []
        for mark in self.marks.values():
            if mark is None:
                return None
            if mark != IDLE:
                active.append(mark)
        return min(active) if active else IDLE

    def release(self) -> list[T]:
        """Buffered items with ts <= watermark, in (ts, event_id) order."""
        mark = self.watermark()
        out: list[T] = []
        heap = self.heap
        if mark is None:
            return out
        while heap and heap[0][0] <= mark:
            ts, _eid, _seq, item = heapq.heappop(heap)
            out.append(item)
            self.frontier = ts
        return out

    def buffered(self) -> list[T]:
        return [item for *_k, item in sorted(self.heap)]

    def snapshot(self) -> dict[str, Any]:
        """Everything but the buffered items (a checkpoint stores those as entries)."""
        return {"marks": {str(c): m for c, m in self.marks.items()}, "frontier": self.frontier,
                "stats": asdict(self.stats)}

    def restore(self, snap: dict[str, Any]) -> None:
        self.marks.update({int(c): m for c, m in snap["marks"].items()})
        self.frontier = snap["frontier"]
        self.stats = LatenessStats(**snap["stats"])

    def __len__(self) -> int:
        return len(self.heap)
