"""Read a whole topic back and count each event id: what a broker really kept."""

from __future__ import annotations

import time
from collections import Counter

import orjson
from kafka import KafkaConsumer, TopicPartition

from dataflow_playground.app.chaos.env import ChaosError


def event_id_counts(bootstrap: str, topic: str, timeout_s: float = 300.0) -> tuple[Counter[int], int]:
    """``(event_id -> copies, records without a readable id)`` from the start to the current end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_poll_records=10_000, client_id="chaos-reader")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        counts: Counter[int] = Counter()
        unreadable = 0
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise ChaosError(f"reading topic {topic!r} back did not finish within {timeout_s:.0f}s")
            for batch in consumer.poll(timeout_ms=500).values():
                for m in batch:
                    try:
                        counts[int(orjson.loads(m.value)["event_id"])] += 1
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                        unreadable += 1
        return counts, unreadable
    finally:
        consumer.close()
