"""``playground bench stream`` end to end on the session's broker, with tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataflow_playground.app.bench.stream import ENTRY_KEYS
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from tests.helpers import run_cli

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_bench_stream_json_has_every_figure(stack_env: dict[str, str], kafka_stack: Settings) -> None:
    out = run_cli(stack_env, "bench", "stream", "--events", "3000", "--workers", "1",
                  "--engine", "kafka-python", "--repeats", "1", "--freshness-seconds", "2",
                  "--kill-after", "1", "--warmup-events", "0", "--json", timeout=150)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    doc = json.loads(out.stdout)  # stdout holds the JSON object and nothing else
    [e] = doc["entries"]
    assert set(ENTRY_KEYS) <= set(e)
    assert (e["engine"], e["workers"], e["repeats"]) == ("kafka-python", 1, 1)
    assert e["events_per_s"] > 0 and e["cpu_s_per_million"] > 0
    assert 0 <= e["freshness_p50_ms"] <= e["freshness_p99_ms"] <= e["freshness_max_ms"] < 60_000
    assert e["freshness"]["samples"] == 4000 and e["freshness"]["incomplete"] == 0
    assert 0 < e["recovery_s"] < 60 and 0 < e["takeover_s"] <= e["recovery_s"]
    assert e["reread_records"] >= 0
    assert e["full_replay_s"] == pytest.approx(3000 / e["events_per_s"])
    [run] = e["runs"]
    rec = run["recovery"]
    tasks = 2 * kafka_stack.partitions
    assert len(rec["moved_tasks"]) == tasks and rec["live_tasks"] == []  # one worker: all of them moved
    assert rec["reread_records"] == sum(t["reread"] for t in rec["tasks"].values())
    assert all(t["caught_up_s"] is not None for t in rec["tasks"].values())
    assert len(e["loadavg_before"]) == 3 and doc["load"]["loadavg_1_5_15_after"]
    assert doc["takeaway"].startswith("kafka-python with 1 worker catches up at")
    hop = doc["kafka_hop"]  # the freshness floor: one hop, same rate, no engine
    assert hop["received"] == hop["events"] == 4000
    assert 0 <= hop["p50_ms"] <= hop["p99_ms"] <= hop["max_ms"] < 60_000
    assert f"p99 {hop['p99_ms']:,.0f}" in doc["takeaway"]
    for ext in ("json", "md", "png"):
        assert Path(doc["results"][ext]).stat().st_size > 0
    # Everything the run made is gone: its topics, its repartition and checkpoint topics.
    left = [t for t in kafka_admin.list_topics(kafka_stack.bootstrap_servers) if t.startswith("bench-st-")]
    assert left == []
