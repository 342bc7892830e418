"""Kafka -> DuckDB sink: validate, store idempotently, dead-letter the bad, then commit.

Order of effects per polled batch, and why it loses and doubles nothing:
1. decode and validate every record; bad ones become dead letters with a reason;
2. write good events, duplicates and dead letters to DuckDB in one transaction
   (``ON CONFLICT DO NOTHING`` on ``event_id`` / the record's offset), with the
   partitions' positions;
3. publish the dead letters to the sink's own dead-letter topic
   (``Settings.sink_dead_letter_topic``, headers as in :mod:`...core.dead_letters`,
   ``stage=sink``) and flush;
4. commit the consumer offsets.
A crash before 4 redelivers the batch; step 2 then inserts nothing new. The
dead-letter *topic* is at-least-once (a redelivered bad record is published
again); the ``dead_letters`` table is exactly-once.

A valid record whose ``event_id`` is already stored (a producer reusing an id) is a
*duplicate*: not inserted (the first record wins), counted in ``SinkStats.duplicates``
and printed with the other figures, and kept in the store's ``duplicate_events`` table,
whose count ``playground status`` shows. A redelivery after a crash is not a duplicate:
the store tells the two apart by the offsets it has written
(:meth:`...storage.duckdb_store.EventStore.write_records`).

Metrics (:mod:`...core.metrics`, component ``sink``): records received, rows stored, dead
letters by kind, duplicates, consumer lag per partition, and freshness (wall clock minus the
event's ``ts`` when its row is stored). Every record received is stored, dead-lettered or a
duplicate, except records redelivered after a crash (received again, stored already).

Run as its own process: ``python -m dataflow_playground.consumers.kafka_to_duckdb --help``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from dataflow_playground.core import kafka_admin
from dataflow_playground.core.dead_letters import SINK_STAGE, dead_letter_headers, source_id
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.kafka_codecs import require_codecs
from dataflow_playground.core.metrics import consumer_metrics, observe_many, serve_metrics
from dataflow_playground.core.schema import Event
from dataflow_playground.core.settings import Settings, get_settings
from dataflow_playground.core.validation import Rejection, decode_batch
from dataflow_playground.storage.duckdb_store import DeadLetter, EventStore, Span, WriteOutcome

# Fault injection for the crash tests: exit hard after this many DuckDB writes,
# before committing offsets: the worst moment for a sink to die.
CRASH_AFTER_WRITES_ENV = "PLAYGROUND_SINK_CRASH_AFTER_WRITES"
JOIN_TIMEOUT_S = 120.0
DLQ_ATTEMPTS = 5
DLQ_FLUSH_TIMEOUT_S = 30.0


@dataclass
class SinkStats:
    consumed: int = 0
    stored: int = 0  # newly inserted rows (redeliveries excluded)
    dead_lettered: int = 0
    duplicates: int = 0  # valid, read for the first time, not inserted: the event_id was stored
    batches: int = 0
    elapsed_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.consumed / self.elapsed_s if self.elapsed_s else 0.0


class KafkaToDuckDB:
    def __init__(self, settings: Settings, store: EventStore, group: str = "duckdb-sink",
                 topic: str | None = None, max_poll_records: int = 5000,
                 write_batch: int = 20_000, write_wait_s: float = 0.2, component: str = "sink") -> None:
        self.settings = settings
        self.metrics = consumer_metrics(component)
        self.store = store
        self.topic = topic or settings.topic
        self.dlq_topic = settings.sink_dead_letter_topic
        self.write_batch = write_batch
        self.write_wait_s = write_wait_s
        require_codecs("kafka-python", "the Kafka -> DuckDB sink")
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=group,
            client_id=f"{group}-{os.getpid()}",
            enable_auto_commit=False,  # we commit after the DuckDB write, never before
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # A crashed member is noticed after this long; a restart waits for it.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        kafka_admin.subscribe(self.consumer, [self.topic])
        self.dlq = KafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                 acks="all", linger_ms=5, client_id=f"{group}-dlq")
        crash = os.environ.get(CRASH_AFTER_WRITES_ENV)
        self._crash_after = int(crash) if crash else None

    def _split(self, records: list) -> tuple[list[Event], list, list[DeadLetter]]:
        """Valid events with the records they came from, and the dead letters (counted by kind)."""
        good: list[Event] = []
        sources: list = []
        dead: list[DeadLetter] = []
        for rec, result in zip(records, decode_batch([r.value for r in records]), strict=True):
            if isinstance(result, Rejection):
                self.metrics.dead_letter(result.kind)
                dead.append(DeadLetter(
                    dead_letter_id=source_id(rec.topic, rec.partition, rec.offset),
                    # A tombstone has no value; it is kept (and republished) as an empty one.
                    source="kafka", key=rec.key, payload=rec.value if rec.value is not None else b"",
                    field=result.field, reason=result.reason))
            else:
                good.append(result)
                sources.append(rec)
        return good, sources, dead

    def _poll_batch(self) -> tuple[list, dict[tuple[str, int], Span]]:
        """Records of one or more polls, so DuckDB gets fewer, larger writes, and their spans.

        A poll often returns a few hundred records; a DuckDB insert costs ~5x more per row
        at 2,000 rows than at 20,000 (measured), so polls are gathered until
        ``write_batch`` records or ``write_wait_s`` after the first one, whichever is first.
        The spans (per partition, lowest offset and the one after the highest) let the store
        tell a redelivered record from a reused event_id; a poll's records per partition
        come in offset order, so its first and last give them.
        """
        records: list = []
        spans: dict[tuple[str, int], Span] = {}
        first = 0.0
        while True:
            polled = self.consumer.poll(timeout_ms=50 if records else 500)
            got = 0
            for tp, batch in polled.items():
                if not batch:
                    continue
                records.extend(batch)
                got += len(batch)
                key = (tp.topic, tp.partition)
                low, high = spans.get(key, (batch[0].offset, batch[-1].offset + 1))
                spans[key] = (min(low, batch[0].offset), max(high, batch[-1].offset + 1))
            if got:
                first = first or time.monotonic()
            if (not got or len(records) >= self.write_batch
                    or time.monotonic() - first >= self.write_wait_s):
                return records, spans

    def run(self, max_events: int | None = None, idle_timeout_s: float | None = 10.0,
            on_batch: Callable[[SinkStats], None] | None = None) -> SinkStats:
        """Consume until ``max_events`` are consumed or nothing arrives for ``idle_timeout_s``."""
        stats = SinkStats()
        start = time.perf_counter()
        last_data = time.monotonic()
        while max_events is None or stats.consumed < max_events:
            records, spans = self._poll_batch()
            if not records:
                if not self.consumer.assignment():
                    # Still joining the group: after a crash the dead member's session must
                    # expire first (session_timeout_ms). That wait is not idleness.
                    last_data = time.monotonic()
                    if time.perf_counter() - start > JOIN_TIMEOUT_S:
                        raise PlaygroundError(
                            f"no partitions assigned within {JOIN_TIMEOUT_S:.0f}s for topic "
                            f"{self.topic!r}; does it exist? ('playground status')")
                    continue
                if idle_timeout_s is not None and time.monotonic() - last_data > idle_timeout_s:
                    break
                continue
            last_data = time.monotonic()
            good, sources, dead = self._split(records)
            outcome = self.store.write_records(good, sources, dead, spans)
            self._observe(records, good, sources, outcome, spans)
            stats.stored += outcome.inserted
            stats.duplicates += len(outcome.duplicates)
            stats.batches += 1
            if self._crash_after is not None and stats.batches >= self._crash_after:
                os._exit(137)  # simulated crash: written to DuckDB, offsets not committed
            if dead:
                self._publish_dead(dead)
            self.consumer.commit()
            stats.consumed += len(records)
            stats.dead_lettered += len(dead)
            stats.elapsed_s = time.perf_counter() - start
            if on_batch:
                on_batch(stats)
        stats.elapsed_s = time.perf_counter() - start
        return stats

    def _publish_dead(self, dead: list[DeadLetter]) -> None:
        """Publish the dead letters and wait for Kafka's acknowledgements, before the commit.

        A send Kafka refused (or did not acknowledge within the flush) is sent again, up to
        ``DLQ_ATTEMPTS`` times, each retry counted in ``playground_retries_total``; then the
        error is raised and the sink stops uncommitted: its restart writes nothing twice to
        DuckDB and publishes the batch's dead letters again.
        """
        pending = dead

        def attempt() -> None:
            nonlocal pending
            sent = [(d, self.dlq.send(self.dlq_topic, key=d.key, value=d.payload,
                                      headers=dead_letter_headers(f"{d.field}: {d.reason}", SINK_STAGE,
                                                                  d.dead_letter_id)))
                    for d in pending]
            self.dlq.flush(timeout=DLQ_FLUSH_TIMEOUT_S)
            failed = [(d, f) for d, f in sent if not f.succeeded()]
            if failed:
                pending = [d for d, _f in failed]
                cause = failed[0][1].exception if failed[0][1].is_done else None
                raise KafkaError(f"{len(failed)} of {len(sent)} dead letters not acknowledged by "
                                 f"{self.dlq_topic!r}: {cause!r}")

        Retrying(stop=stop_after_attempt(DLQ_ATTEMPTS), wait=wait_exponential(multiplier=0.2, max=5.0),
                 retry=retry_if_exception_type(KafkaError), reraise=True,
                 before_sleep=lambda _state: self.metrics.retries.inc())(attempt)

    def _observe(self, records: list, good: list[Event], sources: list, outcome: WriteOutcome,
                 spans: dict[tuple[str, int], Span]) -> None:
        m = self.metrics
        m.received.inc(len(records))
        m.stored.inc(outcome.inserted)
        m.duplicates.inc(len(outcome.duplicates))
        if outcome.inserted:
            # The events of this write that are not duplicates (a record redelivered after a
            # crash, stored before, counts too: rare, and its row is as fresh as this write).
            dup = {d.source for d in outcome.duplicates}
            stored = good if not dup else [e for e, r in zip(good, sources, strict=True)
                                           if source_id(r.topic, r.partition, r.offset) not in dup]
            ts_ms = np.fromiter((e.ts for e in stored), dtype=np.float64, count=len(stored))
            observe_many(m.freshness, time.time() - ts_ms / 1000.0)
        for (topic, partition), (_low, high) in spans.items():
            highwater = self.consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                m.lag(topic, partition, highwater - high)

    def close(self) -> None:
        self.consumer.close()
        self.dlq.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Consume Kafka events into DuckDB.")
    parser.add_argument("--group", default="duckdb-sink")
    parser.add_argument("--topic", default=None)
    parser.add_argument("--db", type=Path, default=None, help="DuckDB file (default: settings)")
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--idle-timeout", type=float, default=10.0,
                        help="exit after this many seconds without data; 0 = run until stopped")
    parser.add_argument("--max-poll-records", type=int, default=5000)
    parser.add_argument("--write-batch", type=int, default=20_000,
                        help="gather polls up to this many records per DuckDB write")
    parser.add_argument("--write-wait", type=float, default=0.2,
                        help="... or this many seconds after the first record")
    args = parser.parse_args(argv)
    settings = get_settings()
    serve_metrics(settings, "sink")
    with EventStore(args.db or settings.store_path) as store:
        sink = KafkaToDuckDB(settings, store, group=args.group, topic=args.topic,
                             max_poll_records=args.max_poll_records,
                             write_batch=args.write_batch, write_wait_s=args.write_wait)

        def report(s: SinkStats) -> None:
            # One line per committed batch: tests and operators can follow progress.
            print(f"committed consumed={s.consumed} stored={s.stored} dead={s.dead_lettered} "
                  f"duplicates={s.duplicates}", flush=True)

        try:
            stats = sink.run(args.max_events, args.idle_timeout or None, on_batch=report)
        finally:
            sink.close()
        print(f"done consumed={stats.consumed} stored={stats.stored} "
              f"dead={stats.dead_lettered} duplicates={stats.duplicates} rows={store.count()} "
              f"store_duplicates={store.count_duplicates()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
