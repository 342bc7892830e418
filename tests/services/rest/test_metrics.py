"""GET /metrics of the REST service: request latency by route template, ingestion counters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.services.ingest import Ingest
from dataflow_playground.services.rest.app import create_app
from dataflow_playground.services.rest.events import get_ingest
from dataflow_playground.services.rest.metrics import UNMATCHED


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    ingest = Ingest(tmp_path / "ingest", source="rest")
    app = create_app()
    app.dependency_overrides[get_ingest] = lambda: ingest
    with TestClient(app, headers={"content-type": "application/json"}) as c:
        yield c
    ingest.close()


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``GET /metrics``, by name and labels (parsed as Prometheus parses it)."""
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(resp.text) for s in fam.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_request_latency_is_counted_by_route_template(client: TestClient) -> None:
    count = "playground_request_duration_seconds_count"
    route = "/features/{entity}/{entity_id}"
    before = scrape(client)
    for _ in range(3):
        assert client.get("/health").status_code == 200
    statuses = {client.get(f"/features/user/{i}").status_code for i in (101, 202)}
    assert client.get("/no/such/path").status_code == 404
    after = scrape(client)

    def delta(**labels: str) -> float:
        return (value(after, count, component="rest", **labels)
                - value(before, count, component="rest", **labels))

    assert delta(method="GET", route="/health", status="200") == 3
    # Two ids, one series: the route's template, never the path asked for.
    assert sum(delta(method="GET", route=route, status=str(s)) for s in statuses) == 2
    assert not any(name == count and ("route", "/features/user/101") in labels for name, labels in after)
    assert delta(method="GET", route=UNMATCHED, status="404") == 1
    # The histogram is whole: its +Inf bucket is its count.
    assert (value(after, "playground_request_duration_seconds_bucket", component="rest", method="GET",
                  route="/health", status="200", le="+Inf")
            == value(after, count, component="rest", method="GET", route="/health", status="200"))


def test_post_events_counts_received_stored_and_dead_letters_by_kind(client: TestClient) -> None:
    events = generate_events(GeneratorConfig(events=5, seed=7))
    before = scrape(client)
    for event in events[:3]:
        assert client.post("/events", json=event).status_code == 201
    assert client.post("/events", json={**events[3], "amount": -1}).status_code == 422
    reply = client.post("/events/batch", json=[events[4], {**events[4], "user_id": "u"}, [1]]).json()
    assert (reply["accepted"], reply["rejected"]) == (1, 2)
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return (value(after, name, component="rest", **labels)
                - value(before, name, component="rest", **labels))

    assert delta("playground_events_received_total") == 7
    assert delta("playground_events_stored_total") == 4
    dead = {kind: delta("playground_dead_letters_total", reason=kind)
            for kind in ("out_of_range", "wrong_type", "not_an_object")}
    assert dead == {"out_of_range": 1, "wrong_type": 1, "not_an_object": 1}
    assert delta("playground_duplicates_total") == 0
    assert delta("playground_freshness_seconds_count") == 4
    assert delta("playground_request_duration_seconds_count", method="POST", route="/events",
                 status="201") == 3
    assert delta("playground_request_duration_seconds_count", method="POST", route="/events",
                 status="422") == 1


def test_metrics_is_not_in_the_openapi_document(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
