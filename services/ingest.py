"""The ingestion core the REST and gRPC services share: validate, record, dead-letter.

Every record is checked by the one pydantic ``Event`` model. An accepted event
gets a receipt row (``dataflow_playground.core.receipts``) the moment it is taken, which is
what "visible to the consumer" means for a service; a refused one gets a
dead-letter line (JSON) naming the field and the reason. Files are per process
(``<source>-<pid>``), so a restarted service never overwrites its predecessor's.

What a caller gets back is bounded whatever it sends: the counts, plus the first
``MAX_LISTED_REJECTIONS`` rejections (each reason capped by ``core.validation``); the
rest are counted, and every one of them is in the dead letters. A request or message
holds at most ``MAX_BATCH_RECORDS`` records.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from dataflow_playground.core.metrics import consumer_metrics, observe_many
from dataflow_playground.core.receipts import ReceiptLog, now_us, rows
from dataflow_playground.core.schema import INT64_MAX
from dataflow_playground.core.validation import Rejection, preview, validate_record

INGEST_DIR_ENV = "PLAYGROUND_INGEST_DIR"
# The producer's send clock travels beside the events (REST header, gRPC metadata).
SENT_AT_NAME = "x-sent-at-us"
# A reply lists this many rejections at most, the first ones; the counts are always whole.
MAX_LISTED_REJECTIONS = 100
# Records in one REST batch or one gRPC message. A valid event is at least ~130 bytes of JSON,
# so a 2 MiB body holds about 16,000 of them, but a body of `[0,0,...]` holds a million
# records, each refused and dead-lettered (it was a 79 MiB reply and 140 MiB of dead letters).
MAX_BATCH_RECORDS = 10_000
MAX_DEAD_PAYLOAD_CHARS = 2000  # of a refused record's repr in its dead-letter line


def parse_sent_at(raw: str) -> int:
    """The send clock from a header or metadata value: decimal UTC microseconds in int64."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(INT64_MAX))
            and int(raw) <= INT64_MAX):
        raise ValueError(f"expected the send time as an integer of UTC microseconds from 0 to {INT64_MAX}, "
                         f"got {preview(raw)}")
    return int(raw)


def batch_too_large(n: int, unit: str) -> str:
    return (f"{n} records in one {unit} exceed the limit of {MAX_BATCH_RECORDS}; "
            "send smaller batches")


@dataclass
class Outcome:
    """Counts of one call, and its first ``MAX_LISTED_REJECTIONS`` rejections by index."""

    accepted: int = 0
    rejected: int = 0
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)

    @property
    def omitted(self) -> int:
        """Rejections counted but not listed."""
        return self.rejected - len(self.rejections)

    def add(self, other: Outcome, offset: int) -> None:
        """Fold in the outcome of a later batch of the same call, whose first record is ``offset``."""
        self.accepted += other.accepted
        self.rejected += other.rejected
        room = MAX_LISTED_REJECTIONS - len(self.rejections)
        self.rejections.extend((offset + i, r) for i, r in other.rejections[:max(room, 0)])


class Ingest:
    def __init__(self, folder: Path, source: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.source = source
        stem = f"{source}-{os.getpid()}"
        self.receipts = ReceiptLog(folder / f"{stem}.rcpt")
        self.dead_path = folder / f"{stem}.dead.jsonl"
        self._dead = self.dead_path.open("ab", buffering=0)
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0
        # Labelled by the service (rest, rpc): received = stored + dead letters; duplicates
        # are not detected here (the events are not stored by id), so that series stays 0.
        self.metrics = consumer_metrics(source)

    def ingest(self, records: list[Any], sent_us: int | None = None) -> Outcome:
        """Validate and record ``records``; without a send time, latency counts from now."""
        out = Outcome()
        good: list[int] = []
        event_ms: list[int] = []
        refused: list[tuple[int, Rejection]] = []
        for i, record in enumerate(records):
            result = validate_record(record)
            if isinstance(result, Rejection):
                refused.append((i, result))
            else:
                good.append(result.event_id)
                event_ms.append(result.ts)
        recv = now_us()
        batch = rows(np.asarray(good, dtype=np.int64), sent_us if sent_us else recv, recv)
        dead = b"".join(self._dead_line(i, r, repr(records[i])[:MAX_DEAD_PAYLOAD_CHARS], recv)
                        for i, r in refused)
        with self._lock:
            self.receipts.append(batch)
            if dead:
                self._dead.write(dead)
            self.accepted += len(good)
            self.rejected += len(refused)
        m = self.metrics
        m.received.inc(len(records))
        m.stored.inc(len(good))
        for _i, r in refused:
            m.dead_letter(r.kind)
        if event_ms:
            observe_many(m.freshness, recv / 1e6 - np.asarray(event_ms, dtype=np.float64) / 1000.0)
        out.accepted = len(good)
        out.rejected = len(refused)
        out.rejections = refused[:MAX_LISTED_REJECTIONS]
        return out

    def refuse_all(self, count: int, rejection: Rejection) -> Outcome:
        """Refuse ``count`` records as one (a message over ``MAX_BATCH_RECORDS``): one dead letter."""
        line = self._dead_line(0, rejection, f"<{count} records, not read>", now_us())
        with self._lock:
            self._dead.write(line)
            self.rejected += count
        self.metrics.received.inc(count)
        self.metrics.dead_letter(rejection.kind, count)
        return Outcome(rejected=count, rejections=[(0, rejection)])

    def _dead_line(self, index: int, rejection: Rejection, payload: str, recv_us: int) -> bytes:
        return orjson.dumps({"source": self.source, "index": index, "field": rejection.field,
                             "reason": rejection.reason, "payload": payload,
                             "received_us": recv_us}) + b"\n"

    def close(self) -> None:
        self.receipts.close()
        self._dead.close()


def ingest_folder(default: Path) -> Path:
    """Where a service process keeps receipts and dead letters (env override for flow runs)."""
    return Path(os.environ.get(INGEST_DIR_ENV, str(default)))
