"""The load a scenario runs under: a producer thread that keeps account of every send.

:class:`ProducerLoad` sends seeded wire records (``producers.generator``) with the project's
durable producer (``acks=all``, idempotent, ``producers.to_kafka.make_producer``) and records,
per record, whether Kafka acknowledged it, plus the time of every acknowledgement, so a
scenario can say what was sent, acknowledged, not acknowledged, and how long the producer
stalled while a broker was down.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from dataflow_playground.producers.generator import WireRecord
from dataflow_playground.producers.to_kafka import make_producer


@dataclass
class LoadFigures:
    sent: int = 0
    acknowledged_ids: set[int] = field(default_factory=set)
    acknowledged: int = 0  # records, good and malformed
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    ack_times: list[float] = field(default_factory=list)  # monotonic, one per acknowledgement

    def longest_stall_s(self, after: float = 0.0) -> float:
        """The longest gap between consecutive acknowledgements from ``after`` on."""
        times = sorted(t for t in self.ack_times if t >= after)
        return max((b - a for a, b in pairwise(times)), default=0.0)

    def first_ack_after(self, t: float) -> float | None:
        return min((a for a in self.ack_times if a > t), default=None)


class ProducerLoad(threading.Thread):
    """Send ``records`` to ``topic`` at ``rate`` records/s (0: as fast as possible)."""

    def __init__(self, bootstrap: str, topic: str, records: list[WireRecord], rate: float = 0.0,
                 **producer_overrides: Any) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.bootstrap, self.topic, self.records, self.rate = bootstrap, topic, records, rate
        self.overrides = producer_overrides
        self.figures = LoadFigures()
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def _acked(self, event_id: int | None) -> Any:
        def on_ok(_meta: Any) -> None:
            with self._lock:
                self.figures.acknowledged += 1
                self.figures.ack_times.append(time.monotonic())
                if event_id is not None:
                    self.figures.acknowledged_ids.add(event_id)
        return on_ok

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.figures.failed += 1
            self.figures.errors[type(exc).__name__] += 1

    def run(self) -> None:
        try:
            producer = make_producer(self.bootstrap, **self.overrides)
            try:
                t0 = time.monotonic()
                for i, rec in enumerate(self.records):
                    if self._stop_event.is_set():
                        break
                    if self.rate and i % 100 == 0:
                        ahead = t0 + i / self.rate - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)
                    future = producer.send(self.topic, key=rec.key, value=rec.value)
                    future.add_callback(self._acked(rec.event_id)).add_errback(self._failed)
                    self.figures.sent += 1
                producer.flush()
            finally:
                producer.close()
        except BaseException as err:  # reported by the scenario, not lost in a thread
            self.error = err

    def progress(self) -> tuple[int, int]:
        with self._lock:
            return self.figures.sent, self.figures.acknowledged
