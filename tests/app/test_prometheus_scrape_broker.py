"""A real Prometheus scrapes the running stack through the file_sd file `playground metrics
file-sd` writes, and sees the same counters the processes serve themselves."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataflow_playground.core.metrics import write_file_sd
from dataflow_playground.core.settings import Settings
from tests.helpers import free_ports

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (make test-deps)")

RECEIVED = "playground_events_received_total"


def _direct_total(url: str, metric: str) -> float:
    """Sum of ``metric`` over every series one endpoint serves."""
    text = httpx.get(url, timeout=5).text
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == metric)


def _api(base: str, path: str, **params: str) -> Any:
    resp = httpx.get(f"{base}/api/v1/{path}", params=params, timeout=5)
    resp.raise_for_status()  # 503 "Service Unavailable" while Prometheus is still starting
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_every_component_and_agrees_with_its_endpoints(
        kafka_stack: Settings, tmp_path: Path) -> None:
    sd_file, targets = write_file_sd(kafka_stack, tmp_path / "targets.json")
    assert {"rest", "sink"} <= set(targets), targets  # the stack's own processes registered
    (port,) = free_ports(1)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: playground\n"
        f"    file_sd_configs: [{{files: ['{sd_file}'], refresh_interval: 1s}}]\n")
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    assert PROMETHEUS is not None
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        active: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                active = _api(base, "targets")["activeTargets"]
            except httpx.HTTPError:
                active = []
            if len(active) == len(targets) and all(t["health"] == "up" for t in active):
                break
            time.sleep(0.5)
        assert sorted(t["labels"]["process"] for t in active) == sorted(targets), active
        assert all(t["health"] == "up" for t in active), [(t["labels"], t["lastError"]) for t in active]

        # Each process's `up` series is 1, and what Prometheus stored for the sink's received
        # counter is what the sink serves (no producer runs, so the counter is still; a scrape
        # in flight may lag by one interval, hence the retry).
        ups = _api(base, "query", query="up")["result"]
        assert {r["metric"]["process"]: r["value"][1] for r in ups} == {c: "1" for c in targets}
        expected = _direct_total(targets["sink"], RECEIVED)
        seen = None
        for _ in range(20):
            result = _api(base, "query", query=f'sum({RECEIVED}{{process="sink"}})')["result"]
            seen = float(result[0]["value"][1]) if result else None
            if seen == expected:
                break
            time.sleep(0.5)
            expected = _direct_total(targets["sink"], RECEIVED)
        assert seen == expected
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
