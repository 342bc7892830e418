"""The live sampler: rates from end offsets and counters, freshness p99 from histogram buckets,
read from real Prometheus exposition text (prometheus-client's own) over a mock transport."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from dataflow_playground.core.metrics import FRESHNESS_BUCKETS
from dataflow_playground.core.settings import Settings
from dataflow_playground.services.dashboard.live import LiveSampler
from dataflow_playground.services.dashboard.metrics_scrape import quantile


class Offsets:
    def __init__(self) -> None:
        self.value = 1_000

    def total(self) -> int:
        return self.value

    def close(self) -> None:
        pass


def _process(component: str) -> tuple[CollectorRegistry, Counter, Histogram]:
    reg = CollectorRegistry()
    stored = Counter("playground_events_stored", "stored", ["component"], registry=reg)
    fresh = Histogram("playground_freshness_seconds", "fresh", ["component"], registry=reg,
                      buckets=FRESHNESS_BUCKETS)
    stored.labels(component)
    return reg, stored, fresh


def test_sampler_turns_totals_into_rates_and_p99(tmp_path: pytest.TempPathFactory) -> None:
    sink, sink_stored, sink_fresh = _process("sink")
    w0, w0_stored, w0_fresh = _process("features-w0")
    w1, w1_stored, _ = _process("features-w1")
    regs = {"sink": sink, "w0": w0, "w1": w1}

    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "down":
            return httpx.Response(503)
        return httpx.Response(200, content=generate_latest(regs[host]))

    targets = {"sink": "http://sink/metrics", "features-w0": "http://w0/metrics",
               "features-w1": "http://w1/metrics", "rest": "http://down/metrics"}
    sampler = LiveSampler(Settings(), targets=lambda: targets)
    offsets = Offsets()
    sampler._offsets = offsets  # type: ignore[assignment]
    sampler._http = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        assert sampler.sample() is None  # the first sample has nothing to differ from
        offsets.value += 600
        sink_stored.labels("sink").inc(500)
        w0_stored.labels("features-w0").inc(200)
        w1_stored.labels("features-w1").inc(250)
        for _ in range(100):
            sink_fresh.labels("sink").observe(0.2)  # all in the (0.1, 0.25] bucket
            w0_fresh.labels("features-w0").observe(0.007)  # all in (0.005, 0.01]
        point = sampler.sample()
        assert point is not None
        prev, now = list(sampler._recent)[-2:]
        dt = now.at - prev.at
        assert point.into_topic == pytest.approx(600 / dt)
        assert point.sink == pytest.approx(500 / dt)
        assert point.stream == pytest.approx(450 / dt)  # both workers summed
        assert point.freshness_p99_sink is not None and 0.1 < point.freshness_p99_sink <= 0.25
        assert point.freshness_p99_stream is not None and 0.005 < point.freshness_p99_stream <= 0.01

        # A restarted process's counter goes back: no rate for that point, never a negative one.
        regs["sink"], sink_stored2, _ = _process("sink")
        sink_stored2.labels("sink").inc(3)
        again = sampler.sample()
        assert again is not None and again.sink is None and again.into_topic == 0.0

        snap = sampler.snapshot()
        assert len(snap["points"]) == 2  # type: ignore[arg-type]
        assert "rest" in snap["errors"]  # type: ignore[operator]
    finally:
        sampler.stop()


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    after = {0.1: 0.0, 0.2: 100.0, float("inf"): 100.0}
    assert quantile(0.5, {}, after) == pytest.approx(0.15)
    assert quantile(0.99, {}, {0.1: 0.0, float("inf"): 10.0}) == 0.1  # beyond the last finite bound
    assert quantile(0.99, after, after) is None  # nothing observed in the window
