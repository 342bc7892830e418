"""Read-only looks into a broker: topics with their offsets and group lag, the last records."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from dataflow_playground.core.errors import StackError
from dataflow_playground.core.kafka_admin import admin, group_ids


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    begin: int
    end: int
    lag: dict[str, int]  # consumer group -> end minus its committed offset (uncommitted: end - begin)


@dataclass(frozen=True)
class TopicOverview:
    name: str
    partitions: list[PartitionOffsets]

    @property
    def records(self) -> int:
        return sum(p.end - p.begin for p in self.partitions)


@dataclass(frozen=True)
class TailRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _consumer(bootstrap: str) -> KafkaConsumer:
    try:
        return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             request_timeout_ms=10_000, client_id="playground-inspect")
    except KafkaError as err:
        raise StackError(f"cannot reach Kafka at {bootstrap}: {err}. Is the stack up? "
                         "('playground status')") from err


def overview(bootstrap: str, include_internal: bool = False) -> list[TopicOverview]:
    """Every topic, its partitions' begin/end offsets and each consumer group's lag on them."""
    client = admin(bootstrap)
    try:
        topics = sorted(t for t in client.list_topics() if include_internal or not t.startswith("__"))
        groups = sorted(group_ids(client))
        committed = client.list_group_offsets(dict.fromkeys(groups)) if groups else {}
    except KafkaError as err:
        raise StackError(f"cannot list topics at {bootstrap}: {err}") from err
    finally:
        client.close()
    consumer = _consumer(bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends, begins = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
    finally:
        consumer.close()
    out = []
    for t in topics:
        parts = []
        for tp in (tp for tp in tps if tp.topic == t):
            lag = {}
            for group in groups:
                offsets = committed.get(group) or {}
                if not any(c.topic == t for c in offsets):
                    continue  # this group does not read this topic
                meta = offsets.get(tp)
                pos = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
                lag[group] = max(ends[tp] - pos, 0)
            parts.append(PartitionOffsets(tp.partition, begins[tp], ends[tp], lag))
        out.append(TopicOverview(t, parts))
    return out


def tail(bootstrap: str, topic: str, n: int, timeout_s: float = 10.0) -> list[TailRecord]:
    """The last ``n`` records of ``topic`` across its partitions, oldest first (by timestamp)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    consumer = _consumer(bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise StackError(f"topic {topic!r} does not exist at {bootstrap}; "
                             "'playground topics list' shows the topics there are")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends, begins = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
        want = {tp: ends[tp] for tp in tps if ends[tp] > begins[tp]}
        for tp in tps:
            consumer.seek(tp, max(ends[tp] - n, begins[tp]))
        got: list[TailRecord] = []
        positions = {tp: max(ends[tp] - n, begins[tp]) for tp in want}
        deadline = time.monotonic() + timeout_s
        while any(positions[tp] < want[tp] for tp in want) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=200).items():
                for r in batch:
                    if r.offset < want.get(tp, 0):
                        got.append(TailRecord(r.partition, r.offset, r.timestamp, r.key, r.value,
                                              list(r.headers or [])))
                    positions[tp] = max(positions.get(tp, 0), r.offset + 1)
    finally:
        consumer.close()
    got.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return got[-n:]


def group_members(bootstrap: str, group: str, timeout_ms: int = 3000) -> int:
    """How many members consumer ``group`` has now (0 if it is empty, unknown or unreachable)."""
    try:
        client = admin(bootstrap, timeout_ms)
    except (KafkaError, OSError, ValueError):
        return 0
    try:
        described = client.describe_groups([group])
    except (KafkaError, OSError, ValueError):
        return 0
    finally:
        client.close()
    info = described.get(group) if isinstance(described, dict) else None
    if info is None and isinstance(described, list) and described:
        info = described[0]
    if info is None:
        return 0
    members = info.get("members") if isinstance(info, dict) else getattr(info, "members", None)
    return len(members or ())
