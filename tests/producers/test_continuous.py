"""The continuous producer's chunks and pacing, without a broker."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest

from dataflow_playground.producers.continuous import (
    PacedProducer,
    ProduceConfig,
    ProduceConfigError,
    chunks,
    parse_duration,
)

START_MS = 1_767_225_600_000


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60.0), ("5m", 300.0), ("1.5h", 5400.0),
                                               ("250ms", 0.25), ("90", 90.0), (" 2d ", 172_800.0)])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("text", ["0s", "-5s", "5x", "", "m", "31d", "1e3s"])
def test_bad_durations_are_refused_by_name(text: str) -> None:
    with pytest.raises(ProduceConfigError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"rate": 0}, "rate"), ({"rate": -5}, "rate"), ({"rate": 1e9}, "rate"),
    ({"rate": 10, "events": 0}, "events"), ({"rate": 10, "events": -1}, "events"),
    ({"rate": 10, "events": 10**12}, "events"),
    ({"rate": 10, "events": 5, "duration_s": 5.0}, "not both"),
    ({"rate": 10, "malformed": 1.5}, "malformed"), ({"rate": 10, "out_of_order": -0.1}, "out-of-order"),
    ({"rate": 10, "seed": -1}, "seed"), ({"rate": 10, "chunk": 0}, "chunk"),
])
def test_bad_numbers_are_refused_by_name(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ProduceConfigError, match=field):
        ProduceConfig(**kwargs)


def test_chunks_are_bounded_continuous_and_seeded() -> None:
    cfg = ProduceConfig(rate=1000, events=2_500, chunk=1_000, malformed=0.05, seed=3)
    got = list(chunks(cfg, START_MS))
    assert [len(c) for c in got] == [1000, 1000, 500]
    records = [r for c in got for r in c]
    good = [orjson.loads(r.value) for r in records if r.malformed is None]
    ids = [e["event_id"] for e in good]
    assert len(set(ids)) == len(ids) and min(ids) >= START_MS * 1000 and max(ids) < START_MS * 1000 + 2500
    # Event time continues across chunks (no out-of-order asked for).
    ts = [e["ts"] for e in good]
    assert ts == sorted(ts) and ts[0] >= START_MS
    assert 0 < sum(r.malformed is not None for r in records) < 2500 * 0.1
    again = [r.value for c in chunks(cfg, START_MS) for r in c]
    assert again == [r.value for r in records]
    other = [r.value for c in chunks(ProduceConfig(rate=1000, events=2_500, chunk=1_000, seed=4), START_MS)
             for r in c]
    assert other != again


class _FakeFuture:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_callback(self, fn: Any) -> _FakeFuture:
        fn(None)  # acknowledged at once
        return self

    def add_errback(self, fn: Any) -> _FakeFuture:
        return self


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> _FakeFuture:
        self.sent.append((topic, key))
        return _FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        pass


def test_pacing_holds_the_rate() -> None:
    fake = _FakeProducer()
    paced = PacedProducer(fake, "t", ProduceConfig(rate=200, events=100, chunk=30))
    t0 = time.perf_counter()
    totals = paced.run()
    elapsed = time.perf_counter() - t0
    assert totals.sent == totals.acknowledged == 100 == len(fake.sent)
    # 100 events at 200/s: the last is due at 0.495 s; allow scheduling slack upward only.
    assert 0.45 <= elapsed < 2.0


def test_stop_ends_an_endless_run_cleanly() -> None:
    paced = PacedProducer(_FakeProducer(), "t", ProduceConfig(rate=1000, chunk=100))
    threading.Timer(0.3, paced.stop).start()
    totals = paced.run()
    assert 100 < totals.sent < 1000 and totals.acknowledged == totals.sent and totals.failed == 0


def test_duration_ends_the_run() -> None:
    totals = PacedProducer(_FakeProducer(), "t", ProduceConfig(rate=500, duration_s=0.4, chunk=64)).run()
    assert totals.sent == pytest.approx(200, abs=2)
