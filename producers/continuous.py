"""A continuous, paced stream of seeded events into Kafka, generated in bounded chunks.

The generator builds one chunk at a time (``chunk`` events, seeded by the run's seed and
the chunk's index), so memory stays flat however long the run: a million events hold at
most one chunk. Event ids and event times continue from chunk to chunk; both start at the
run's start (ids at ``start_ms * 1000``), so runs one after another never reuse an id.
Sending is paced: event ``i`` is due ``i / rate`` seconds after the start.
"""

from __future__ import annotations

import re
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from kafka.errors import KafkaTimeoutError

from dataflow_playground.core.metrics import ProducerMetrics
from dataflow_playground.producers.generator import GeneratorConfig, WireRecord, generate_table, table_to_wire

MAX_RATE = 1_000_000.0  # events/s; far beyond what one Python producer sends
MAX_EVENTS = 10_000_000_000
MAX_DURATION_S = 30 * 24 * 3600.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


class ProduceConfigError(ValueError):
    """A produce setting is out of range; the message names it and the accepted range."""


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``60s``, ``5m``, ``1.5h``, ``250ms``, ``1d``."""
    m = _DURATION.match(text)
    if not m:
        raise ProduceConfigError(f"duration {text!r} is not a duration; write e.g. 60s, 5m, 1h or 250ms")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2) or "s"]
    if not 0 < seconds <= MAX_DURATION_S:
        raise ProduceConfigError(f"duration {text!r} must be more than 0 and at most 30 days")
    return seconds


@dataclass(frozen=True)
class ProduceConfig:
    rate: float  # events/s offered
    events: int | None = None  # stop after this many (None: no limit)
    duration_s: float | None = None  # stop after this long (None: no limit)
    out_of_order: float = 0.0
    max_lateness_ms: int = 5_000
    malformed: float = 0.0
    seed: int = 42
    chunk: int = 10_000  # events generated at once: the memory bound
    start_ms: int | None = None  # first event time (default: the wall clock at the start)

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.rate <= MAX_RATE:
            problems.append(f"rate must be more than 0 and at most {MAX_RATE:,.0f} events/s, "
                            f"got {self.rate:g}")
        if self.events is not None and not 0 < self.events <= MAX_EVENTS:
            problems.append(f"events must be at least 1 and at most {MAX_EVENTS:,}, got {self.events:,}")
        if self.duration_s is not None and not 0 < self.duration_s <= MAX_DURATION_S:
            problems.append(f"duration must be more than 0 s and at most 30 days, got {self.duration_s:g}s")
        if self.events is not None and self.duration_s is not None:
            problems.append("give --events or --duration, not both")
        if not 0 <= self.out_of_order <= 1:
            problems.append(f"out-of-order must be a fraction between 0 and 1, got {self.out_of_order:g}")
        if not 0 <= self.malformed <= 1:
            problems.append(f"malformed must be a fraction between 0 and 1, got {self.malformed:g}")
        if not 0 <= self.max_lateness_ms <= 86_400_000:
            problems.append(f"max lateness must be 0..86400000 ms, got {self.max_lateness_ms}")
        if not 1 <= self.chunk <= 1_000_000:
            problems.append(f"chunk must be 1..1,000,000 events, got {self.chunk:,}")
        if self.seed < 0:
            problems.append(f"seed must be 0 or more, got {self.seed}")
        if problems:
            raise ProduceConfigError("; ".join(problems))


def chunks(cfg: ProduceConfig, start_ms: int) -> Iterator[list[WireRecord]]:
    """Wire records ``cfg.chunk`` at a time, ``cfg.events`` in all (endless without it)."""
    first_id = start_ms * 1000
    index, done, next_ms = 0, 0, start_ms
    while cfg.events is None or done < cfg.events:
        n = cfg.chunk if cfg.events is None else min(cfg.chunk, cfg.events - done)
        seed = int(np.random.SeedSequence([cfg.seed, index]).generate_state(1)[0])
        gen = GeneratorConfig(events=n, seed=seed, rate=cfg.rate, start_ms=next_ms,
                              out_of_order=cfg.out_of_order,
                              max_lateness_ms=cfg.max_lateness_ms if cfg.out_of_order else 0)
        table = generate_table(gen)
        ids = pa.array(np.arange(first_id + done, first_id + done + n, dtype=np.int64))
        table = table.set_column(table.schema.get_field_index("event_id"), "event_id", ids)
        next_ms = int(pc.max(table["ts"]).as_py()) + 1
        yield list(table_to_wire(table, seed + 1, cfg.malformed))
        index += 1
        done += n


@dataclass
class ProduceTotals:
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    malformed_sent: int = 0
    elapsed_s: float = 0.0
    last_ack_at: float | None = None  # time.time() of the latest acknowledgement
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def acked(self, _meta: Any = None) -> None:
        with self._lock:
            self.acknowledged += 1
            self.last_ack_at = time.time()

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(repr(exc))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"sent": self.sent, "acknowledged": self.acknowledged, "failed": self.failed,
                    "malformed_sent": self.malformed_sent, "elapsed_s": round(self.elapsed_s, 3),
                    "last_ack_at": self.last_ack_at, "peak_rss_mb": round(peak_rss_mb(), 1)}


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PacedProducer:
    """Send ``chunks`` to ``topic`` at ``cfg.rate`` until done, the duration ends or ``stop()``."""

    def __init__(self, producer: Any, topic: str, cfg: ProduceConfig,
                 metrics: ProducerMetrics | None = None) -> None:
        self.producer = producer
        self.metrics = metrics
        self.topic = topic
        self.cfg = cfg
        self.totals = ProduceTotals()
        self._stop = threading.Event()
        self.flush_timeout_s = 20.0  # below the stack's stop timeout, so `down` sees a clean exit

    def stop(self) -> None:
        """Ask the loop to finish: it stops sending, flushes and returns (signal-handler safe)."""
        self._stop.set()

    def run(self, on_progress: Callable[[ProduceTotals], None] | None = None,
            progress_every_s: float = 0.5) -> ProduceTotals:
        cfg, totals = self.cfg, self.totals
        start_ms = cfg.start_ms if cfg.start_ms is not None else int(time.time() * 1000)
        t0 = time.perf_counter()
        deadline = t0 + cfg.duration_s if cfg.duration_s is not None else None
        next_report = t0
        for batch in chunks(replace(cfg, start_ms=start_ms), start_ms):
            for rec in batch:
                due = t0 + totals.sent / cfg.rate
                now = time.perf_counter()
                if deadline is not None and max(now, due) >= deadline:
                    self._stop.set()
                if due > now:
                    self._stop.wait(due - now)  # wakes at once on stop()
                if self._stop.is_set():
                    break
                fut = self.producer.send(self.topic, key=rec.key, value=rec.value)
                fut.add_callback(totals.acked)
                fut.add_errback(totals.failure)
                if self.metrics is not None:
                    fut.add_callback(lambda _m, c=self.metrics.acknowledged: c.inc())
                    fut.add_errback(self.metrics.error)
                    self.metrics.sent.inc()
                totals.sent += 1
                totals.malformed_sent += rec.malformed is not None
                if on_progress and time.perf_counter() >= next_report:
                    totals.elapsed_s = time.perf_counter() - t0
                    on_progress(totals)
                    next_report = time.perf_counter() + progress_every_s
            if self._stop.is_set():
                break
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except KafkaTimeoutError as err:  # what is still unacknowledged shows in the totals
            totals.errors.append(f"flush: {err}")
        totals.elapsed_s = time.perf_counter() - t0
        if on_progress:
            on_progress(totals)
        return totals
