"""The dashboard's JSON API and page with fakes for the broker, the stack and the sampler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka.errors import KafkaConnectionError

from dataflow_playground.core.errors import StackError
from dataflow_playground.core.kafka_inspect import PartitionOffsets, TailRecord, TopicOverview
from dataflow_playground.core.settings import Settings
from dataflow_playground.services.dashboard.app import MAX_RECORDS, Sources, create_app
from dataflow_playground.services.dashboard.providers import ComponentView, DashboardProviders

TOPICS = [
    TopicOverview("transactions", [PartitionOffsets(0, 0, 120, {"duckdb-sink": 3, "features": 0}),
                                   PartitionOffsets(1, 10, 90, {"duckdb-sink": 0})]),
    TopicOverview("transactions.dlq.sink", [PartitionOffsets(0, 0, 2, {})]),
]
DLQ_RECORD = TailRecord(0, 1, 1_700_000_000_000, b"42", b'{"amount": "x"}',
                        [("stage", b"sink"), ("reason", b"amount: Input should be a valid number")])


class FakeSampler:
    def __init__(self, _settings: Settings) -> None:
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def snapshot(self) -> dict[str, object]:
        return {"topic": "transactions", "interval_s": 1.0, "freshness_window_s": 10.0,
                "points": [{"t": 1.0, "into_topic": 500.0, "sink": 490.0, "stream": 480.0,
                            "freshness_p99_sink": 0.2, "freshness_p99_stream": 0.05}],
                "totals": None, "errors": {}}


class Calls:
    def __init__(self) -> None:
        self.tail: list[tuple[str, int]] = []
        self.lookup: list[tuple[str, int]] = []


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", results_dir=tmp_path / "results")


def _components() -> list[ComponentView]:
    return [ComponentView("kafka", True, True, 1234, 9092, 65.0, False),
            ComponentView("sink", False, False, None, 0, None, True, "Traceback...\nBoom: the sink died"),
            ComponentView("rest", False, False, None, 8000, None, False)]


@pytest.fixture
def client(settings: Settings, calls: Calls) -> Iterator[TestClient]:
    logs = {"kafka": "started", "sink": "line 1\nline 2\nline 3"}

    def tail(_bootstrap: str, topic: str, n: int) -> list[TailRecord]:
        calls.tail.append((topic, n))
        return [DLQ_RECORD]

    def lookup(_settings: Settings, entity: str, entity_id: int) -> dict[str, Any]:
        calls.lookup.append((entity, entity_id))
        if entity_id == 666:
            raise StackError("cannot reach Kafka at 127.0.0.1:1")
        if entity_id == 667:
            raise KafkaConnectionError()
        return {"entity": entity, "id": entity_id, "features": [], "differences": 0}

    sources = Sources(overview=lambda _b: TOPICS, topic_names=lambda _b: [t.name for t in TOPICS],
                      tail=tail, lookup=lookup, sampler=FakeSampler)
    providers = DashboardProviders(
        components=_components,
        log_tail=lambda name, lines: ("\n".join(logs[name].splitlines()[-lines:]) if name in logs else None))
    with TestClient(create_app(settings, providers, sources)) as c:
        yield c


def _field(resp: Any) -> str:
    assert resp.status_code == 422, resp.text
    return str(resp.json()["detail"]["field"])


def test_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200
    assert client.get("/api/health").json() == {"status": "ok"}


def test_components_say_crashed_with_the_log_tail(client: TestClient) -> None:
    rows = {r["name"]: r for r in client.get("/api/components").json()}
    assert rows["kafka"]["state"] == "healthy" and rows["kafka"]["pid"] == 1234
    assert rows["kafka"]["port"] == 9092 and rows["kafka"]["uptime_s"] == 65.0
    assert rows["kafka"]["log_tail"] is None
    assert rows["sink"]["state"] == "crashed" and "Boom" in rows["sink"]["log_tail"]
    assert rows["sink"]["port"] is None  # a component without a port of its own
    assert rows["rest"]["state"] == "stopped"
    log = client.get(rows["sink"]["log_url"], params={"lines": 2})
    assert log.status_code == 200 and log.text == "line 2\nline 3"


def test_component_log_refuses_bad_input(client: TestClient) -> None:
    assert _field(client.get("/api/components/sink/log", params={"lines": 0})) == "lines"
    assert _field(client.get("/api/components/sink/log", params={"lines": 10**6})) == "lines"
    assert _field(client.get("/api/components/-bad/log")) == "name"
    missing = client.get("/api/components/nothing/log")
    assert missing.status_code == 404 and "nothing" in missing.json()["detail"]


def test_topics_show_partitions_offsets_and_lag_per_group(client: TestClient) -> None:
    data = client.get("/api/topics").json()
    t = {x["name"]: x for x in data["topics"]}
    assert t["transactions"]["records"] == 200
    assert t["transactions"]["groups"] == ["duckdb-sink", "features"]
    assert t["transactions"]["partitions"][0] == {"partition": 0, "begin": 0, "end": 120,
                                                  "lag": {"duckdb-sink": 3, "features": 0}}
    assert "transactions.dlq.sink" in t


def test_message_browser_shows_records_with_headers(client: TestClient, calls: Calls) -> None:
    resp = client.get("/api/topics/transactions.dlq.sink/records", params={"n": 5})
    assert resp.status_code == 200
    rec = resp.json()["records"][0]
    assert calls.tail == [("transactions.dlq.sink", 5)]
    assert rec["key"] == "42" and rec["value"] == '{"amount": "x"}'
    assert {"key": "reason", "value": "amount: Input should be a valid number"} in rec["headers"]


@pytest.mark.parametrize("n", [0, -1, MAX_RECORDS + 1])
def test_message_browser_bounds_n(client: TestClient, calls: Calls, n: int) -> None:
    assert _field(client.get("/api/topics/transactions/records", params={"n": n})) == "n"
    assert _field(client.get("/api/topics/transactions/records", params={"n": "ten"})) == "n"
    assert calls.tail == []


def test_message_browser_refuses_bad_and_unknown_topics(client: TestClient, calls: Calls) -> None:
    assert _field(client.get("/api/topics/bad%20topic!/records")) == "topic"
    missing = client.get("/api/topics/no-such-topic/records")
    assert missing.status_code == 404 and "no-such-topic" in missing.json()["detail"]
    assert calls.tail == []


def test_live_answers_the_samplers_snapshot(client: TestClient) -> None:
    live = client.get("/api/live").json()
    assert live["points"][0]["into_topic"] == 500.0 and live["topic"] == "transactions"


def test_feature_lookup_validates_entity_and_id(client: TestClient, calls: Calls) -> None:
    assert client.get("/api/features/user/7").json()["id"] == 7
    assert _field(client.get("/api/features/shop/7")) == "entity"
    assert _field(client.get("/api/features/user/-1")) == "entity_id"
    assert _field(client.get("/api/features/merchant/abc")) == "entity_id"
    assert _field(client.get(f"/api/features/user/{2**63}")) == "entity_id"
    assert calls.lookup == [("user", 7)]
    down = client.get("/api/features/user/666")
    assert down.status_code == 503 and "cannot reach Kafka" in down.json()["detail"]
    none = client.get("/api/features/user/667")
    assert none.status_code == 503 and "Is the stack up?" in none.json()["detail"]


def _write_result(results: Path, name: str, written_at: str, png: bool) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(
        {"name": name, "title": f"{name} title", "written_at": written_at, "takeaway": f"{name} teaches"}))
    if png:
        (results / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())


def test_results_newest_first_with_charts(client: TestClient, settings: Settings) -> None:
    assert client.get("/api/results").json() == []
    results = settings.results_dir
    _write_result(results, "formats", "2026-12-01T10:00:00Z", png=True)
    _write_result(results, "flow_compare", "2026-12-02T10:00:00Z", png=False)
    (results / "index.json").write_text("[]")  # not a result: no matching name
    (results / "broken.json").write_text("{")
    got = client.get("/api/results").json()
    assert [r["name"] for r in got] == ["flow_compare", "formats"]
    assert got[0]["chart"] is None and got[0]["takeaway"] == "flow_compare teaches"
    assert got[1]["chart"] == "/results/formats.png"
    png = client.get(got[1]["chart"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.endswith(b"formats")
    assert client.get("/results/nothing.png").status_code == 404
    assert client.get("/results/..%2Fsecret.png").status_code in (404, 422)


def test_sampler_runs_with_the_app(settings: Settings) -> None:
    made: list[FakeSampler] = []

    def sampler(s: Settings) -> FakeSampler:
        made.append(FakeSampler(s))
        return made[-1]

    providers = DashboardProviders(components=list, log_tail=lambda _n, _l: None)
    with TestClient(create_app(settings, providers, Sources(sampler=sampler))):
        assert made[0].started and not made[0].stopped
    assert made[0].stopped
