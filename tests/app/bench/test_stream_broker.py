"""``playground bench stream`` end to end on the session's broker, with tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataflow_playground.app.bench.stream import ENTRY_KEYS
from dataflow_playground.app.bench.stream_profile import cannot_attach
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from tests.helpers import run_cli

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_bench_stream_json_has_every_figure(stack_env: dict[str, str], kafka_stack: Settings) -> None:
    events = 20_000  # a catch-up of a few seconds: enough py-spy samples for the profile
    out = run_cli(stack_env, "bench", "stream", "--events", str(events), "--workers", "1",
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
    # Each stage on its own, for the same events: never later than both together (elementwise
    # max of the two, so every percentile too).
    stages = e["freshness"]["by_stage"]
    assert set(stages) == {"user", "merchant"}
    for figures in stages.values():
        assert figures["samples"] == 4000
        assert all(figures[k] <= e["freshness"][k] for k in ("p50_ms", "p99_ms", "max_ms"))
    assert 0 < e["recovery_s"] < 60 and 0 < e["takeover_s"] <= e["recovery_s"]
    assert e["reread_records"] >= 0
    assert e["full_replay_s"] == pytest.approx(events / e["events_per_s"])
    # The client alone, on the same topic: a rate, unless it read all of it in one delivery.
    alone = e["client_alone_events_per_s"]
    assert alone is None or (alone > 0 and e["client_alone_cpu_s_per_million"] > 0)
    # Where the worker's time went while it caught up: py-spy's samples, in parts.
    profile = e["profile"]
    if (reason := cannot_attach()) is not None:  # the benchmark says why and goes on
        assert profile == {"error": reason}
    else:
        assert "error" not in profile, profile
        assert profile["samples"] > 0 and profile["workers"] == 1
        assert sum(profile["parts"].values()) == pytest.approx(1.0, abs=1e-9)
        assert profile["parts"]["operators (FeatureEngine)"] > 0
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
    # Everything the run made is gone: its topics, its repartition and checkpoint topics, and
    # the client-alone reader's consumer group.
    left = [t for t in kafka_admin.list_topics(kafka_stack.bootstrap_servers) if t.startswith("bench-st-")]
    assert left == []
    groups = kafka_admin.list_groups(kafka_stack.bootstrap_servers)
    assert [g for g in groups if g.endswith("-client-alone")] == []
