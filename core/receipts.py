"""Receipts: what a consumer saw, as fixed-size binary rows ``(event_id, sent_us, recv_us)``.

Every consumer process (a Kafka reader, a DuckDB reader, the REST or gRPC service)
appends one row per event the moment the event becomes visible to it. Rows are
three little-endian int64, so progress is ``file size // 24`` and a reader never
parses a torn row (a partial trailing row is ignored). Clocks are ``time.time_ns``
on the same machine, so ``recv_us - sent_us`` is the send -> visible latency.

Files live in one folder per run, ``*.rcpt``; a file written whole and renamed
into place (``write_atomic``) makes a consumer's work idempotent per unit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROW = np.dtype([("event_id", "<i8"), ("sent_us", "<i8"), ("recv_us", "<i8")])
SUFFIX = ".rcpt"


def now_us() -> int:
    return time.time_ns() // 1000


def rows(event_ids: Sequence[int] | np.ndarray, sent_us: Sequence[int] | np.ndarray | int,
         recv_us: int | None = None) -> np.ndarray:
    out = np.empty(len(event_ids), dtype=ROW)
    out["event_id"] = event_ids
    out["sent_us"] = sent_us
    out["recv_us"] = now_us() if recv_us is None else recv_us
    return out


class ReceiptLog:
    """An append-only receipt file owned by one process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("ab", buffering=0)
        self.count = 0

    def append(self, batch: np.ndarray) -> None:
        if len(batch):
            # One write per batch, unbuffered: visible to the watcher at once.
            self._file.write(batch.tobytes())
            self.count += len(batch)

    def close(self) -> None:
        self._file.close()


def write_atomic(path: Path, batch: np.ndarray) -> None:
    """Write a whole receipt file at once: it appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(batch.tobytes())
    os.replace(tmp, path)


def receipt_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.exists() else []


def count(folder: Path) -> int:
    """Rows written so far under ``folder`` (cheap: file sizes only)."""
    total = 0
    for p in receipt_files(folder):
        try:
            total += p.stat().st_size // ROW.itemsize
        except FileNotFoundError:
            continue
    return total


def read(paths: Sequence[Path]) -> np.ndarray:
    parts = []
    for p in paths:
        raw = p.read_bytes()
        usable = len(raw) - len(raw) % ROW.itemsize
        parts.append(np.frombuffer(raw[:usable], dtype=ROW))
    return np.concatenate(parts) if parts else np.empty(0, dtype=ROW)
