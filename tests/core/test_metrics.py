"""core/metrics.py: bulk observation, binding twice, serving and finding the endpoints."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from dataflow_playground.core import metrics
from dataflow_playground.core.settings import Settings
from dataflow_playground.core.validation import REJECTION_KINDS, Rejection, decode_event, kind_of_error


def _samples(hist: Histogram) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for fam in hist.collect() for s in fam.samples
            if not s.name.endswith("_created")}


def test_observe_many_equals_one_observe_per_value(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Values on the bounds themselves (le is inclusive), below the first, above the last finite one.
    values = np.concatenate([rng.exponential(20.0, 500), [0.0, 0.005, 1.0, 3600.0, 5000.0, -1.0]])
    one, bulk = (Histogram("h", "h", buckets=metrics.FRESHNESS_BUCKETS, registry=CollectorRegistry())
                 for _ in range(2))
    for v in values:
        one.observe(float(v))
    metrics.observe_many(bulk, values)
    metrics.observe_many(bulk, [])  # nothing to add
    got, want = _samples(bulk), _samples(one)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_binding_a_component_twice_reuses_the_series() -> None:
    """Several sinks in one process, or a module imported again, never register a metric twice."""
    first = metrics.EVENTS_RECEIVED
    importlib.reload(metrics)  # runs the module again: it must take the registered metrics
    assert metrics.EVENTS_RECEIVED is first
    a, b = metrics.consumer_metrics("twice"), metrics.consumer_metrics("twice")
    before = metrics.EVENTS_RECEIVED.labels("twice")._value.get()
    a.received.inc(2)
    b.received.inc(3)
    assert metrics.EVENTS_RECEIVED.labels("twice")._value.get() == before + 5
    # Every reason kind exists from the start (at 0), so rate() has a series to work on.
    reasons = {s.labels["reason"] for fam in metrics.DEAD_LETTERS.collect() for s in fam.samples
               if s.labels["component"] == "twice" and s.name.endswith("_total")}
    assert reasons == set(REJECTION_KINDS)


@pytest.mark.parametrize("name", ["", "../x", "a/b", "x" * 65, "-lead"])
def test_component_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="component must be"):
        metrics.consumer_metrics(name)


def test_rejection_kinds_are_a_fixed_set() -> None:
    assert kind_of_error("missing") == "missing_field"
    assert kind_of_error("int_parsing") == "wrong_type"
    assert kind_of_error("greater_than") == "out_of_range"
    assert kind_of_error("something_new") == "invalid_value"
    assert isinstance(r := decode_event(b"{not json"), Rejection) and r.kind == "malformed_json"
    assert isinstance(r := decode_event(b"[1, 2]"), Rejection) and r.kind == "not_an_object"
    with pytest.raises(ValueError, match="rejection kind"):
        Rejection("f", "r", "free text")  # type: ignore[arg-type]


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def test_serve_metrics_registers_a_scrapable_endpoint(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    m = metrics.consumer_metrics("unit-served")
    m.received.inc(7)
    port = metrics.serve_metrics(settings, "unit-served")
    try:
        entry = json.loads((settings.run_dir / "metrics" / f"unit-served.{os.getpid()}.json").read_text())
        assert entry == {"component": "unit-served", "url": f"http://127.0.0.1:{port}/metrics",
                         "pid": os.getpid()}
        assert metrics.metrics_targets(settings) == {"unit-served": entry["url"]}
        text = httpx.get(entry["url"], timeout=5).text
        received = {s.labels["component"]: s.value for fam in text_string_to_metric_families(text)
                    if fam.name == "playground_events_received" for s in fam.samples
                    if s.name == "playground_events_received_total"}
        assert received["unit-served"] >= 7
    finally:
        metrics.stop_serving(port)
    assert metrics.metrics_targets(settings) == {}
    with pytest.raises(httpx.TransportError):
        httpx.get(entry["url"], timeout=2)


def test_a_fixed_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    port = metrics.serve_metrics(settings, "unit-first")
    try:
        with pytest.raises(metrics.MetricsError, match="PLAYGROUND_METRICS_PORT"):
            metrics.serve_metrics(settings, "unit-second", port=port)
    finally:
        metrics.stop_serving(port)


def test_targets_of_dead_processes_are_dropped_and_file_sd_lists_the_live(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    folder = settings.run_dir / "metrics"
    folder.mkdir(parents=True)
    stale = folder / "old-sink.json"
    stale.write_text(json.dumps({"component": "old-sink", "url": "http://127.0.0.1:1/metrics",
                                 "pid": int(gone.stdout)}))
    metrics.register_target(settings, "rest", "http://127.0.0.1:8000/metrics")
    path, found = metrics.write_file_sd(settings)
    assert found == {"rest": "http://127.0.0.1:8000/metrics"}
    assert not stale.exists()
    assert path == settings.run_dir / "prometheus" / "targets.json"
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:8000"], "labels": {"process": "rest", "__metrics_path__": "/metrics"}}]


def test_a_second_process_of_one_component_neither_replaces_nor_removes_the_first(tmp_path: Path) -> None:
    """A `playground demo` sink beside the stack's sink: both listed, the older by its name,
    and the older one's entry survives the younger one's exit."""
    settings = _settings(tmp_path)
    port = metrics.serve_metrics(settings, "sink")  # the older process: this one
    code = ("import sys; from pathlib import Path; from dataflow_playground.core import metrics; "
            "from dataflow_playground.core.settings import Settings; "
            f"p = metrics.serve_metrics(Settings(data_dir=Path({str(settings.data_dir)!r})), 'sink'); "
            "print(p, flush=True); sys.stdin.readline()")
    younger = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert younger.stdout is not None and younger.stdin is not None
        their_port = int(younger.stdout.readline())
        assert metrics.metrics_targets(settings) == {
            "sink": f"http://127.0.0.1:{port}/metrics",
            f"sink@{younger.pid}": f"http://127.0.0.1:{their_port}/metrics"}
        younger.stdin.write("\n")
        younger.stdin.flush()
        assert younger.wait(timeout=30) == 0  # a clean exit: it unregisters itself, only itself
        assert metrics.metrics_targets(settings) == {"sink": f"http://127.0.0.1:{port}/metrics"}
        assert len(list((settings.run_dir / "metrics").glob("*.json"))) == 1
    finally:
        if younger.poll() is None:
            younger.kill()
            younger.wait()
        metrics.stop_serving(port)
