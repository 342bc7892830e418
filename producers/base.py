"""One interface for the writer of every dataflow mode, and the paced send loop they share.

A ``FlowWriter`` takes batches of event dicts and hands them to its transport
(a DuckDB segment, an HTTP request, a gRPC stream, Kafka), stamping the send time
it carries alongside. ``run_producer`` feeds it, optionally at an offered rate.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataflow_playground.core.receipts import now_us

# A service lists only the first rejections of a call; the rest are counted under this key.
UNLISTED = "(not listed)"


@dataclass
class WriterStats:
    """What the caller saw. ``errors`` by kind (connect, timeout, unavailable, http_5xx...)."""

    batches: int = 0
    events: int = 0
    accepted: int = 0  # acknowledged by the other side, when it acknowledges
    rejected: int = 0  # refused as invalid (not retried)
    retries: int = 0
    gave_up_events: int = 0  # retries exhausted: the caller dropped these
    errors: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)  # field of each rejection (or UNLISTED)

    def to_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "events": self.events, "accepted": self.accepted,
                "rejected": self.rejected, "retries": self.retries,
                "gave_up_events": self.gave_up_events, "errors": dict(self.errors),
                "timeouts": self.errors.get("timeout", 0), "reasons": dict(self.reasons)}


class FlowWriter(ABC):
    """The producer side of one dataflow mode."""

    mode: str

    def __init__(self) -> None:
        self.stats = WriterStats()

    @abstractmethod
    def send(self, events: Sequence[dict[str, Any]]) -> None:
        """Hand one batch to the transport; count failures in ``stats`` rather than raise."""

    @abstractmethod
    def close(self) -> None:
        """Flush what is pending and release the transport."""


@dataclass
class ProducerReport:
    first_sent_us: int
    last_sent_us: int
    wall_s: float
    cpu_s: float
    stats: dict[str, Any]


def run_producer(writer: FlowWriter, events: Sequence[dict[str, Any]], batch: int,
                 rate: float | None = None,
                 on_progress: Callable[[int], None] | None = None) -> ProducerReport:
    """Send ``events`` in batches of ``batch``; with ``rate``, no faster than rate events/s."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    cpu0, t0 = time.process_time(), time.perf_counter()
    first = now_us()
    for i in range(0, len(events), batch):
        if rate:
            # Offered load: batch i is due at i/rate seconds after the start.
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        chunk = events[i:i + batch]
        writer.send(chunk)
        writer.stats.batches += 1
        writer.stats.events += len(chunk)
        if on_progress:
            on_progress(len(chunk))
    writer.close()
    return ProducerReport(first_sent_us=first, last_sent_us=now_us(),
                          wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - cpu0,
                          stats=writer.stats.to_dict())
