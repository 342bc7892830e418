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

An idle mark holds only while it is true (Kafka Streams' rule for idle inputs, KIP-695): it
carries the input offset the channel's partition had reached, and before it lets items pass
that the channel's last real mark would hold back, :meth:`EventTimeOrderer.release` asks
``input_ends`` (the input topic's end offsets, read from the broker after those items
arrived) whether the partition has grown since. If it has, its events are on their way and
the channel holds at its last real mark again. Without that check, after a quiet spell the
first user partition to resume would run the merchants ahead of the others, and their
events would come in late (seen after a rebalance: hundreds of events dropped as too late).

Lateness: an item with ``ts`` below the release frontier (the newest ``ts`` released) is
*late*. Within ``allowed_lateness_ms`` it is processed at once as a correction; beyond it,
it is dropped and counted (the state it needs is gone).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

T = TypeVar("T")

IDLE = 2**62  # a channel's mark when it has nothing buffered upstream: it holds nobody back
# The input topic's end offsets per partition, as of a moment after the items to release
# arrived; None when they cannot be had now (idle channels then count as woken).
InputEnds = Callable[[], Mapping[int, int] | None]


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
        # Per idle channel: the input offset its partition had reached, and its last real mark.
        self.idle_at: dict[int, int] = {}
        self.before_idle: dict[int, int | None] = {}

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

    def advance(self, channel: int, ts: int, idle_at: int = -1) -> None:
        """The channel promises nothing older than ``ts`` is on its way, or is :data:`IDLE`
        with its input partition at offset ``idle_at`` (-1: not known, idle unconditionally)."""
        mark = self.marks.get(channel)
        if ts == IDLE:
            if mark != IDLE:
                self.before_idle[channel] = mark
            self.idle_at[channel] = idle_at
            self.marks[channel] = IDLE
        elif mark is None or mark == IDLE or ts > mark:
            self._active(channel, ts)

    def _active(self, channel: int, ts: int) -> None:
        self.marks[channel] = ts
        if channel in self.idle_at:
            del self.idle_at[channel], self.before_idle[channel]

    def push(self, channel: int, ts: int, event_id: int, item: T) -> Arrival:
        """An item; a channel's items come in its own order, so each one is also a mark."""
        mark = self.marks.get(channel)
        if mark is None or mark == IDLE or ts > mark:
            self._active(channel, ts)
        verdict = self.classify(ts)
        if verdict is not None:
            return verdict
        self._seq += 1
        heapq.heappush(self.heap, (ts, event_id, self._seq, item))
        return Arrival.BUFFERED

    def watermark(self, input_ends: InputEnds | None = None) -> int | None:
        """Min over the channels' marks; None while one is not heard from.

        Idle channels are left out; with ``input_ends``, only those whose partition has not
        grown since they went idle, and only asked when leaving them out would release items.
        """
        active, idle = [], []
        for channel, mark in self.marks.items():
            if mark is None:
                return None
            if mark == IDLE:
                idle.append(channel)
            else:
                active.append(mark)
        mark = min(active) if active else IDLE
        if not idle or input_ends is None or not self.heap or self.heap[0][0] > mark:
            return mark
        ends = input_ends()
        for channel in idle:
            at = self.idle_at.get(channel, -1)
            if at < 0 or (ends is not None and ends.get(channel, 0) <= at):
                continue  # still idle
            held = self.before_idle.get(channel)
            if held is None:  # woken before it ever sent a real mark: it holds everything
                return None
            mark = min(mark, held)
        return mark

    def release(self, input_ends: InputEnds | None = None) -> list[T]:
        """Buffered items with ts <= watermark, in (ts, event_id) order."""
        mark = self.watermark(input_ends)
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
                "stats": asdict(self.stats), "idle_at": {str(c): o for c, o in self.idle_at.items()},
                "before_idle": {str(c): m for c, m in self.before_idle.items()}}

    def restore(self, snap: dict[str, Any], items: Iterable[tuple[int, int, T]] = ()) -> None:
        """The state :meth:`snapshot` saved, and the buffered items as ``(ts, event_id, item)``."""
        self.marks.update({int(c): m for c, m in snap["marks"].items()})
        self.frontier = snap["frontier"]
        self.stats = LatenessStats(**snap["stats"])
        self.idle_at = {int(c): int(o) for c, o in snap.get("idle_at", {}).items()}
        self.before_idle = {int(c): m for c, m in snap.get("before_idle", {}).items()}
        self.heap = [(ts, eid, seq, item) for seq, (ts, eid, item) in enumerate(items)]
        heapq.heapify(self.heap)
        self._seq = len(self.heap)

    def __len__(self) -> int:
        return len(self.heap)
