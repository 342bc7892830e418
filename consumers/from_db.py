"""Through a database, the reading side: pick up sealed DuckDB segments as they appear.

Each poll lists ``seg-*.duckdb`` (sealed by ``dataflow_playground.producers.to_db``; never written
again), opens every new one read-only, reads its events and writes one receipt
file per segment atomically. The receipt file is the reader's checkpoint: a
reader killed and restarted skips the segments it already has receipts for and
re-reads at most the one it was in the middle of, whose receipt file never
appeared, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb

from dataflow_playground.core import receipts
from dataflow_playground.producers.to_db import sealed_segments


class DuckDBSegmentReader:
    def __init__(self, segments: Path, receipts_dir: Path, poll_ms: float = 20.0) -> None:
        self.segments = segments
        self.receipts_dir = receipts_dir
        self.poll_s = poll_ms / 1000.0
        self.read_segments = 0
        self.dead_letters = 0

    def _receipt_path(self, segment: Path) -> Path:
        return self.receipts_dir / (segment.name.removesuffix(".duckdb") + receipts.SUFFIX)

    def poll_once(self) -> int:
        """Read every sealed segment without a receipt yet; return events read."""
        n = 0
        for seg in sealed_segments(self.segments):
            out = self._receipt_path(seg)
            if out.exists():
                continue
            conn = duckdb.connect(str(seg), read_only=True)
            try:
                cols = conn.execute("SELECT event_id, sent_us FROM events").fetchnumpy()
                dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
            finally:
                conn.close()
            receipts.write_atomic(out, receipts.rows(cols["event_id"], cols["sent_us"]))
            self.read_segments += 1
            self.dead_letters += int(dead[0]) if dead else 0
            n += len(cols["event_id"])
        return n

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.poll_once()
            stop.wait(max(self.poll_s - (time.monotonic() - started), 0.0))
