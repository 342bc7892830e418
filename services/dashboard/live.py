"""Live rates, sampled once a second in the background: events/s into the topic (from its end
offsets), through the sink and the stream workers (their counters), and freshness p99."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from dataflow_playground.core.metrics import metrics_targets
from dataflow_playground.core.settings import Settings
from dataflow_playground.services.dashboard.metrics_scrape import (
    DEAD_LETTERS,
    EVENTS_STORED,
    Scrape,
    quantile,
    scrape,
)

log = logging.getLogger(__name__)
GROUPS = ("sink", "stream")


@dataclass(frozen=True)
class Totals:
    """Cumulative figures at one instant; rates are their differences over time."""

    at: float  # wall clock, seconds
    topic_records: int | None  # the input topic's end offsets, summed over its partitions
    stored: dict[str, float]  # group -> playground_events_stored_total
    dead_letters: dict[str, float]  # group -> playground_dead_letters_total
    freshness: dict[str, dict[float, float]]  # group -> cumulative freshness buckets


@dataclass(frozen=True)
class LivePoint:
    t: float
    into_topic: float | None  # events/s; None where it cannot be told (first sample, a restart)
    sink: float | None
    stream: float | None
    freshness_p99_sink: float | None  # seconds, over the last freshness window
    freshness_p99_stream: float | None


def _rate(new: float | None, old: float | None, dt: float) -> float | None:
    if new is None or old is None or dt <= 0 or new < old:  # a counter going back: its process restarted
        return None
    return (new - old) / dt


class EndOffsets:
    """The summed end offsets of one topic, through one consumer kept between calls."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self._consumer: KafkaConsumer | None = None

    def total(self) -> int:
        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                           request_timeout_ms=5_000, client_id="playground-dashboard")
        try:
            parts = self._consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            return int(sum(self._consumer.end_offsets(tps).values())) if tps else 0
        except (KafkaError, OSError, ValueError):
            self.close()  # a fresh client next time, once the broker is back
            raise

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class LiveSampler:
    """Samples :class:`Totals` every ``interval_s`` in a daemon thread and keeps ``history`` points."""

    def __init__(self, settings: Settings, interval_s: float = 1.0, history: int = 180,
                 freshness_window_s: float = 10.0,
                 targets: Callable[[], dict[str, str]] | None = None) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.freshness_window_s = freshness_window_s
        self._targets = targets or (lambda: metrics_targets(settings))
        self._offsets = EndOffsets(settings.bootstrap_servers, settings.topic)
        self._http = httpx.Client(timeout=max(0.5, interval_s))
        self._points: deque[LivePoint] = deque(maxlen=history)
        self._recent: deque[Totals] = deque()
        self._last: Totals | None = None
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._offsets.close()
        self._http.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample()
            except Exception:  # the page shows the errors; the sampler must outlive any one of them
                log.exception("live sample failed")
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def read_totals(self) -> Totals:
        errors: dict[str, str] = {}
        try:
            records: int | None = self._offsets.total()
        except (KafkaError, OSError, ValueError) as err:
            records = None
            errors["kafka"] = f"end offsets of {self.settings.topic}: {err}"
        found: Scrape = scrape(self._targets(), self._http)
        errors.update(found.errors)
        with self._lock:
            self._errors = errors
        return Totals(at=time.time(), topic_records=records,
                      stored={g: found.total(EVENTS_STORED, g) for g in GROUPS},
                      dead_letters={g: found.total(DEAD_LETTERS, g) for g in GROUPS},
                      freshness=found.freshness)

    def sample(self) -> LivePoint | None:
        """Take one sample; return the point it adds (none for the very first sample)."""
        now = self.read_totals()
        prev, self._last = self._last, now
        self._recent.append(now)
        while self._recent and now.at - self._recent[0].at > self.freshness_window_s:
            self._recent.popleft()
        if prev is None:
            return None
        dt = now.at - prev.at
        window = self._recent[0]
        p99 = {g: quantile(0.99, window.freshness.get(g, {}), now.freshness.get(g, {})) for g in GROUPS}
        point = LivePoint(
            t=now.at,
            into_topic=_rate(now.topic_records, prev.topic_records, dt),
            sink=_rate(now.stored["sink"], prev.stored["sink"], dt),
            stream=_rate(now.stored["stream"], prev.stored["stream"], dt),
            freshness_p99_sink=p99["sink"], freshness_p99_stream=p99["stream"])
        with self._lock:
            self._points.append(point)
        return point

    def snapshot(self) -> dict[str, object]:
        """What ``/api/live`` answers: the points, the latest totals, and what could not be read."""
        with self._lock:
            points = [asdict(p) for p in self._points]
            errors = dict(self._errors)
        last = self._last
        totals = None if last is None else {
            "at": last.at, "topic_records": last.topic_records, "stored": last.stored,
            "dead_letters": last.dead_letters}
        return {"topic": self.settings.topic, "interval_s": self.interval_s,
                "freshness_window_s": self.freshness_window_s, "points": points, "totals": totals,
                "errors": errors}
