"""Stream tasks: the unit of state, one per input partition (Kafka Streams' and faust's model).

Two stages, each partitioned by its entity:

- a **user task** owns one partition of ``transactions`` (keyed by ``user_id``). It
  validates the records (bad ones become dead letters), computes the user features in
  offset order (one partition's events come in the order they happened; per key that is
  all user features need), and forwards every event it processed to the repartition
  topic, in the partition of its merchant (:func:`.wire.merchant_partition`), followed by
  a watermark mark;
- a **merchant task** owns one partition of the repartition topic, so all the events of
  its merchants. Each user task is one of its channels (:mod:`.event_time`); it releases
  events in event-time order once every channel has passed them, and computes the
  merchant features.

A task's state is its :class:`~.state.FeatureEngine`, its reorder buffer, its counters and
``position``, the next input offset it will read: a checkpoint (:mod:`.checkpoint`) saves
them together, so a restored task resumes exactly where its state ends. Entries processed
since the last checkpoint are kept in ``delta``: a checkpoint writes only those.

Tasks never touch Kafka or the online store: they fill ``out`` with what to send, and the
runner (:mod:`.runner`) sends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from dataflow_playground.core.dead_letters import FEATURES_STAGE, dead_letter_headers, source_id
from dataflow_playground.core.metrics import consumer_metrics
from dataflow_playground.core.validation import Rejection, RejectionKind, decode_batch
from dataflow_playground.features.definitions import FEATURES, FeatureSpec
from dataflow_playground.features.stream.event_time import IDLE, Arrival, EventTimeOrderer, InputEnds
from dataflow_playground.features.stream.state import EngineStats, Entry, EntryRows, FeatureEngine
from dataflow_playground.features.stream.wire import (
    EVENT,
    MARK,
    ShuffleRow,
    merchant_partition,
    unpack_shuffle,
)

# One consumed record: (partition, offset, key, value, produced_ms).
Record = tuple[int, int, bytes | None, bytes, int]
DeadLetter = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


class Stage(StrEnum):
    USER = "user"
    MERCHANT = "merchant"


@dataclass
class TaskCounters:
    consumed: int = 0  # input records read (a repartition record holds many rows)
    dead_lettered: int = 0  # bad records met, whether their dead letter was published now or before
    dead_letters_known: int = 0  # of those, already on the dead-letter topic (a previous owner's)
    emitted: int = 0  # per-event values produced
    duplicates_skipped: int = 0  # repartition rows already applied (re-sent by a recovering user task)


@dataclass
class Outbox:
    """What one step produced, for the runner to send."""

    events: list[dict[str, Any]] = field(default_factory=list)
    shuffle: dict[int, list[ShuffleRow]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    fresh: list[tuple[int, int]] = field(default_factory=list)  # (event_id, produced_ms)

    def clear(self) -> None:
        self.events, self.shuffle, self.dead, self.fresh = [], {}, [], []


@dataclass(frozen=True)
class TaskConfig:
    """What every task of one application shares."""

    input_topic: str
    repartition_topic: str
    partitions: int  # of the input topic; the repartition topic has as many
    allowed_lateness_ms: int = 60_000
    idle_ms: float = 100.0  # a caught-up user partition silent this long stops holding merchants back
    record_freshness: bool = False
    features: tuple[FeatureSpec, ...] = FEATURES
    component: str = "features-worker"  # the metrics' label (core/metrics.py)

    def specs(self, stage: Stage) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.entity.name == stage.value)


class Task:
    stage: Stage

    def __init__(self, cfg: TaskConfig, partition: int, channels: Sequence[int]) -> None:
        self.cfg, self.partition = cfg, partition
        self.name = f"{self.stage.value}-{partition}"
        self.engine = FeatureEngine(features=cfg.specs(self.stage),
                                    allowed_lateness_ms=cfg.allowed_lateness_ms)
        self.orderer: EventTimeOrderer[ShuffleRow] = EventTimeOrderer(channels, cfg.allowed_lateness_ms)
        self.counters = TaskCounters()
        self.metrics = consumer_metrics(cfg.component)
        self.position = 0  # the next input offset to read
        self.delta: list[Entry] = []  # processed since the last checkpoint
        self.out = Outbox()
        self.published_dead: set[str] = set()
        # Not checkpointed: what this owner read since it restored the task.
        self.restored_position = 0
        self.read_since_restore = 0
        self.checkpointed_position = -1

    # -- processing --------------------------------------------------------------------------

    def _apply(self, entry: Entry, produced_ms: int, late: bool) -> None:
        values, late_for_key = self.engine.process(entry)
        ts, eid, _amount, user, merchant = entry
        self.out.events.append({"event_id": eid, "user_id": user, "merchant_id": merchant, "ts": ts,
                                "late": late or late_for_key, "values": values})
        self.counters.emitted += 1
        self.delta.append(entry)
        if self.cfg.record_freshness:
            self.out.fresh.append((eid, produced_ms))

    def _dead(self, key: bytes | None, value: bytes, reason: str, topic: str, offset: int,
              kind: RejectionKind) -> None:
        self.counters.dead_lettered += 1
        self.metrics.dead_letter(kind)
        source = source_id(topic, self.partition, offset)
        if source in self.published_dead:
            self.counters.dead_letters_known += 1
            return
        self.out.dead.append((key, value, dead_letter_headers(reason, FEATURES_STAGE, source)))

    def ingest(self, records: Sequence[Record]) -> None:
        raise NotImplementedError

    def tick(self, now: float, backlog: Callable[[], bool]) -> None:
        """Time passes (the engine calls this every few ms); ``backlog()`` asks Kafka if records wait."""

    # -- checkpoints -------------------------------------------------------------------------

    def counters_dict(self) -> dict[str, int]:
        lat, eng = self.orderer.stats, self.engine.stats
        return {**asdict(self.counters), "processed": eng.processed, "late_for_key": eng.late_for_key,
                "corrections": eng.corrections, "late_accepted": lat.late_accepted,
                "late_dropped": lat.late_dropped, "max_lateness_ms": lat.max_lateness_ms,
                "buffered": len(self.orderer), "frontier_ts": self.orderer.frontier or 0,
                "position": self.position, "restored_position": self.restored_position,
                "read_since_restore": self.read_since_restore,
                "allowed_lateness_ms": self.cfg.allowed_lateness_ms}

    def meta(self) -> dict[str, Any]:
        """The task's small state, saved in the checkpoint manifest beside its entries."""
        return {"position": self.position, "orderer": self.orderer.snapshot(),
                "counters": asdict(self.counters), "engine": asdict(self.engine.stats)}

    def pending(self) -> list[ShuffleRow]:
        """Consumed but not yet processed (the reorder buffer): saved with the checkpoint."""
        return self.orderer.buffered()

    def restore(self, meta: dict[str, Any], entries: EntryRows, pending: list[ShuffleRow]) -> None:
        self.position = self.restored_position = self.checkpointed_position = int(meta["position"])
        self.orderer.restore(meta["orderer"], ((row[4], row[5], row) for row in pending))
        self.counters = TaskCounters(**meta["counters"])
        self.engine.restore(entries, EngineStats(**meta["engine"]))


class UserTask(Task):
    stage = Stage.USER

    def __init__(self, cfg: TaskConfig, partition: int) -> None:
        super().__init__(cfg, partition, [partition])
        self._mark_sent: int | None = None
        self._last_record = time.monotonic()

    def ingest(self, records: Sequence[Record]) -> None:
        records = [r for r in records if r[1] >= self.position]  # never apply a record twice
        if not records:
            return
        self.counters.consumed += len(records)
        self.read_since_restore += len(records)
        self.position = records[-1][1] + 1
        self.metrics.received.inc(len(records))
        self._last_record = time.monotonic()
        topic = self.cfg.input_topic
        orderer, parts = self.orderer, self.cfg.partitions
        shuffle = self.out.shuffle
        for (_p, offset, key, value, produced_ms), event in zip(
                records, decode_batch([r[3] for r in records]), strict=True):
            if isinstance(event, Rejection):
                self._dead(key, value, str(event), topic, offset, event.kind)
                continue
            # Validated: the types are already int/float (entry_from's conversions are not needed).
            entry = (event.ts, event.event_id, event.amount, event.user_id, event.merchant_id)
            ts = entry[0]
            verdict = orderer.classify(ts)
            if verdict is Arrival.DROPPED:
                continue
            if verdict is None:
                orderer.frontier = ts
            self._apply(entry, produced_ms, verdict is Arrival.LATE)
            shuffle.setdefault(merchant_partition(entry[4], parts), []).append(
                (EVENT, self.partition, offset, produced_ms, *entry))
        self._mark(orderer.frontier)

    def _mark(self, ts: int | None) -> None:
        """Tell every merchant partition how far this partition has come (once per change).

        An idle mark carries the input offset it is true for (:mod:`.event_time`).
        """
        if ts is None or ts == self._mark_sent:
            return
        self._mark_sent = ts
        at = self.position if ts == IDLE else -1
        for q in range(self.cfg.partitions):
            self.out.shuffle.setdefault(q, []).append((MARK, self.partition, at, 0, ts, 0, 0.0, 0, 0))

    def tick(self, now: float, backlog: Callable[[], bool]) -> None:
        """Send an idle mark once the partition is caught up and silent for ``idle_ms``.

        The silence only counts from the partition's first record (a slow start is not
        idleness: merchants would release other partitions' events ahead of this one's and
        then take its first ones as late); a partition that never gets a record counts as
        idle after ten times as long, so an empty one does not hold merchants back forever.
        """
        if self._mark_sent == IDLE:
            return
        grace = self.cfg.idle_ms / 1000 * (1 if self.orderer.frontier is not None else 10)
        if now - self._last_record < grace:
            return
        if backlog():
            self._last_record = now
        else:
            self._mark(IDLE)

    def restore(self, meta: dict[str, Any], entries: EntryRows, pending: list[ShuffleRow]) -> None:
        super().restore(meta, entries, pending)
        self._mark_sent = None


class MerchantTask(Task):
    stage = Stage.MERCHANT

    def __init__(self, cfg: TaskConfig, partition: int) -> None:
        super().__init__(cfg, partition, range(cfg.partitions))
        self.applied: dict[int, int] = {}  # source partition -> highest source offset taken in
        self.input_ends: InputEnds | None = None  # set by the runner: is an idle channel still idle?

    def ingest(self, records: Sequence[Record]) -> None:
        records = [r for r in records if r[1] >= self.position]
        if not records:
            return
        self.counters.consumed += len(records)
        self.read_since_restore += len(records)
        self.position = records[-1][1] + 1
        orderer, applied = self.orderer, self.applied
        channels = orderer.marks
        for _p, offset, key, value, _produced in records:
            try:
                rows = unpack_shuffle(value)
                bad = next((r for r in rows if r[0] not in (EVENT, MARK) or r[1] not in channels), None)
                if bad is not None:
                    raise ValueError(f"row kind {bad[0]} from source partition {bad[1]} is not one a "
                                     f"user task of this {self.cfg.partitions}-partition input writes")
            except ValueError as err:  # not written by a user task: a poison record
                self._dead(key, value, str(err), self.cfg.repartition_topic, offset, "malformed_record")
                continue
            for row in rows:
                kind, src, src_offset, _pm, ts, eid = row[:6]
                if kind == MARK:
                    orderer.advance(src, ts, src_offset)
                    continue
                if src_offset <= applied.get(src, -1):
                    self.counters.duplicates_skipped += 1
                    continue
                applied[src] = src_offset
                if orderer.push(src, ts, eid, row) is Arrival.LATE:
                    self._apply(row[4:], row[3], True)
        self._release()

    def _release(self) -> None:
        for row in self.orderer.release(self.input_ends):
            self._apply(row[4:], row[3], False)

    def tick(self, now: float, backlog: Callable[[], bool]) -> None:
        """Release what waited on idle channels whose partitions were not known to be idle yet."""
        if self.orderer.heap:
            self._release()

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "applied": {str(k): v for k, v in self.applied.items()}}

    def restore(self, meta: dict[str, Any], entries: EntryRows, pending: list[ShuffleRow]) -> None:
        super().restore(meta, entries, pending)
        self.applied = {int(k): int(v) for k, v in meta.get("applied", {}).items()}


def make_task(cfg: TaskConfig, stage: Stage, partition: int) -> Task:
    return UserTask(cfg, partition) if stage is Stage.USER else MerchantTask(cfg, partition)
