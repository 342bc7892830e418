"""The ingestion core the REST and gRPC services share: validate, record, dead-letter.

Every record is checked by the one pydantic ``Event`` model. An accepted event
gets a receipt row (``dataflow_playground.core.receipts``) the moment it is taken, which is
what "visible to the consumer" means for a service; a refused one gets a
dead-letter line (JSON) naming the field and the reason. Files are per process
(``<source>-<pid>``), so a restarted service never overwrites its predecessor's.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from dataflow_playground.core.receipts import ReceiptLog, now_us, rows
from dataflow_playground.core.validation import Rejection, validate_record

INGEST_DIR_ENV = "PLAYGROUND_INGEST_DIR"


@dataclass
class Outcome:
    accepted: int = 0
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)


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

    def ingest(self, records: list[Any], sent_us: int | None = None) -> Outcome:
        """Validate and record ``records``; without a send time, latency counts from now."""
        out = Outcome()
        good: list[int] = []
        for i, record in enumerate(records):
            result = validate_record(record)
            if isinstance(result, Rejection):
                out.rejections.append((i, result))
            else:
                good.append(result.event_id)
        recv = now_us()
        batch = rows(np.asarray(good, dtype=np.int64), sent_us if sent_us else recv, recv)
        dead = b"".join(
            orjson.dumps({"source": self.source, "index": i, "field": r.field, "reason": r.reason,
                          "payload": repr(records[i])[:2000], "received_us": recv}) + b"\n"
            for i, r in out.rejections)
        with self._lock:
            self.receipts.append(batch)
            if dead:
                self._dead.write(dead)
            self.accepted += len(good)
            self.rejected += len(out.rejections)
        out.accepted = len(good)
        return out

    def close(self) -> None:
        self.receipts.close()
        self._dead.close()


def ingest_folder(default: Path) -> Path:
    """Where a service process keeps receipts and dead letters (env override for flow runs)."""
    return Path(os.environ.get(INGEST_DIR_ENV, str(default)))
