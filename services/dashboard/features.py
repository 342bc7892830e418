"""Feature lookup: one entity's online values (the stream's, with their age) beside the batch
values computed now from every event of that entity in the input topic.

Both sides reuse what the rest of the project uses: the online store's reader (as
``GET /features/...`` does), the batch SQL's ``snapshot`` (as ``playground features parity``
does for its final state) and parity's ``values_equal`` for what counts as a difference.
The batch side reads its events from Kafka, not from the sink's DuckDB file: DuckDB lets
no other process open a file that a running sink holds for writing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from dataflow_playground.core.errors import StackError
from dataflow_playground.core.schema import Event
from dataflow_playground.core.settings import Settings
from dataflow_playground.core.validation import decode_batch
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.definitions import ENTITIES, by_entity
from dataflow_playground.features.online_store import (
    OnlineStoreError,
    OnlineStoreReader,
    now_ms,
    online_store_path,
)
from dataflow_playground.features.parity import values_equal
from dataflow_playground.storage.duckdb_store import events_to_arrow

# The batch side reads the topic once per lookup (a user's records: only its key's partition);
# beyond this many records, or this long, it says so instead of computing values from part of
# the history.
MAX_SCAN_RECORDS = 1_000_000
SCAN_TIMEOUT_S = 30.0
DECODE_CHUNK = 20_000


@dataclass(frozen=True)
class EntityEvents:
    events: list[Event]
    scanned: int  # records read from the topic
    incomplete: str | None = None  # why not every record up to the end offsets was read


def key_partition(key: bytes, partitions: int) -> int:
    """The partition the producer's partitioner (Kafka's default, murmur2) sends ``key`` to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def entity_events(bootstrap: str, topic: str, entity: str, entity_id: int,
                  max_records: int = MAX_SCAN_RECORDS, timeout_s: float = SCAN_TIMEOUT_S) -> EntityEvents:
    """Every valid event of ``entity_id`` in ``topic``, up to the end offsets at the call, each
    event_id once (the first record wins, as in the sink's store).

    A user's records are those keyed by its id (the producer keys by user_id), so only that
    key's partition is read and nothing else is decoded. A merchant's events are spread over
    every partition: only records whose bytes mention the id are decoded (the decoding, not the
    byte test, decides).
    """
    key = ENTITIES[entity].key
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 request_timeout_ms=10_000, max_poll_records=50_000,
                                 fetch_max_bytes=64 * 2**20, max_partition_fetch_bytes=16 * 2**20,
                                 client_id="playground-dashboard-features")
    except KafkaError as err:
        raise StackError(f"cannot reach Kafka at {bootstrap}: {err}") from err
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            return EntityEvents([], 0)
        user_key = str(entity_id).encode() if entity == "user" else None
        if user_key is not None:
            parts = [key_partition(user_key, len(parts))]
        mention = re.compile(rb'"' + key.encode() + rb'"\s*:\s*' + str(entity_id).encode() + rb"(?![0-9])")
        tps = [TopicPartition(topic, p) for p in parts]
        ends, begins = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
        total = sum(ends[tp] - begins[tp] for tp in tps)
        if total > max_records:
            return EntityEvents([], 0, f"{total:,} records of {topic} to read, more than the "
                                       f"{max_records:,} a lookup reads")
        want = {tp: ends[tp] for tp in tps if ends[tp] > begins[tp]}
        consumer.assign(list(want))
        for tp in want:
            consumer.seek(tp, begins[tp])
        positions = {tp: begins[tp] for tp in want}
        pending: list[bytes | None] = []
        found: dict[int, Event] = {}
        scanned = 0
        deadline = time.monotonic() + timeout_s

        def flush() -> None:
            for ev in decode_batch(pending):
                if isinstance(ev, Event) and getattr(ev, key) == entity_id:
                    found.setdefault(ev.event_id, ev)
            pending.clear()

        while any(positions[tp] < want[tp] for tp in want) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=200).items():
                for r in batch:
                    if r.offset >= want[tp]:
                        continue
                    scanned += 1
                    value = r.value
                    if (r.key == user_key if user_key is not None
                            else value is not None and mention.search(value)):
                        pending.append(value)
                    positions[tp] = r.offset + 1
                if len(pending) >= DECODE_CHUNK:
                    flush()
        flush()
        left = sum(want[tp] - positions[tp] for tp in want)
    except KafkaError as err:
        raise StackError(f"cannot read {topic} at {bootstrap}: {err}") from err
    finally:
        consumer.close()
    events = sorted(found.values(), key=lambda e: (e.ts, e.event_id))
    if left:
        return EntityEvents(events, scanned, f"{left:,} of {total:,} records of {topic} still unread "
                                             f"after {timeout_s:g} s")
    return EntityEvents(events, scanned)


def batch_values(entity: str, entity_id: int, events: list[Event]) -> tuple[int | None, dict[str, Any]]:
    """(as_of, values) of the batch snapshot right after the entity's latest event; none without events."""
    if not events:
        return None, {}
    table: pa.Table = events_to_arrow(events)
    table = table.filter(pc.equal(table[ENTITIES[entity].key], entity_id))
    snapshot = BatchFeatures(table, features=by_entity()[entity]).snapshot()
    values = snapshot.get((entity, entity_id), {})
    return int(pc.max(table["ts"]).as_py()) + 1, values


def lookup(settings: Settings, entity: str, entity_id: int) -> dict[str, Any]:
    """What ``/api/features/{entity}/{id}`` answers: both sides, feature by feature."""
    online: dict[str, Any] | None = None
    online_error = None
    try:
        reader = OnlineStoreReader(online_store_path(settings))
    except OnlineStoreError as err:
        online_error = str(err)
    else:
        try:
            row = reader.get(entity, entity_id)
        finally:
            reader.close()
        if row is not None:
            online = {"as_of": row.as_of, "updated_ms": row.updated_ms,
                      "age_ms": max(now_ms() - row.updated_ms, 0), "values": row.values}
    found = entity_events(settings.bootstrap_servers, settings.topic, entity, entity_id)
    as_of, batch = batch_values(entity, entity_id, found.events)
    batch_note = None
    if found.incomplete:
        batch_note = f"no batch values: {found.incomplete}"
        as_of, batch = None, {}
    rows = []
    for spec in by_entity()[entity]:
        o = online["values"].get(spec.name) if online else None
        b = batch.get(spec.name) if as_of is not None else None
        comparable = online is not None and as_of is not None
        rows.append({"feature": spec.name, "online": o, "batch": b,
                     "equal": values_equal(o, b) if comparable else None})
    # Events the online values cannot hold yet: later than the event time they are as of.
    newer = None if online is None or as_of is None else sum(
        1 for e in found.events if e.ts >= online["as_of"])
    return {
        "entity": entity, "id": entity_id,
        "online": online, "online_error": online_error,
        "batch": {"as_of": as_of, "events": len(found.events), "records_scanned": found.scanned,
                  "topic": settings.topic, "note": batch_note, "newer_than_online": newer},
        "features": rows,
        "differences": sum(1 for r in rows if r["equal"] is False),
    }
