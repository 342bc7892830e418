"""The stack's dashboard over HTTP on the session stack: what `status` knows, and refusals."""

from __future__ import annotations

import httpx

from dataflow_playground.app import stack
from dataflow_playground.core.settings import Settings


def test_dashboard_api_answers_for_the_running_stack(kafka_stack: Settings) -> None:
    s = kafka_stack
    base = f"http://{s.host}:{s.dashboard_port}"
    components = {c["name"]: c for c in httpx.get(f"{base}/api/components", timeout=30).json()}
    status = {r.name: r for r in stack.status(s)}
    assert set(components) == set(status) and "dashboard" in components
    for name, row in status.items():
        assert components[name]["pid"] == row.pid, name
    assert components["dashboard"]["state"] == "healthy"
    assert components["dashboard"]["port"] == s.dashboard_port

    topics = {t["name"]: t for t in httpx.get(f"{base}/api/topics", timeout=30).json()["topics"]}
    assert len(topics[s.topic]["partitions"]) == s.partitions
    assert s.sink_dead_letter_topic in topics

    bad = httpx.get(f"{base}/api/topics/{s.topic}/records", params={"n": 0}, timeout=10)
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "n"
    missing = httpx.get(f"{base}/api/topics/no-such-topic/records", timeout=10)
    assert missing.status_code == 404 and "no-such-topic" in missing.json()["detail"]
    entity = httpx.get(f"{base}/api/features/shop/1", timeout=10)
    assert entity.status_code == 422 and entity.json()["detail"]["field"] == "entity"
    log = httpx.get(f"{base}/api/components/rpc/log", params={"lines": 5}, timeout=10)
    assert log.status_code == 200  # rpc writes its log once, at start: no race with the tail
    assert log.text == stack.tail_log(stack.log_file(s, "rpc"), 5)
