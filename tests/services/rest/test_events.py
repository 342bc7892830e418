"""The REST ingestion resource: validation naming the field, 413, OpenAPI; the retrying client.

Property-based (hypothesis): whatever the body, the service answers 2xx/4xx (never
5xx), every 4xx names a field, and a batch's counts balance: sent = accepted + rejected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_playground.core import receipts
from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.producers.to_rest import RestWriter
from dataflow_playground.services.ingest import Ingest
from dataflow_playground.services.rest.app import create_app
from dataflow_playground.services.rest.events import get_ingest
from dataflow_playground.services.rest.limits import DEFAULT_MAX_BODY_BYTES


def dumps(obj: Any) -> bytes:
    """stdlib json: unlike orjson it writes integers beyond 64 bits, as a hostile client may."""
    return json.dumps(obj).encode()


GOOD = generate_events(GeneratorConfig(events=50, seed=3))
FAR_FUTURE_TS = 32_503_680_000_000

# Per field, values that must be refused (wrong types, out of range, odd unicode, ...).
BAD_VALUES: dict[str, list[Any]] = {
    "event_id": ["1", -1, 1.5, None, True, 2**70],
    "user_id": ["u-1", -5, [], 2**64],
    "merchant_id": [None, {"a": 1}, -1],
    "amount": [-0.01, 0, 0.0, "12.5", None, 1e7, -1e-9],
    "currency": ["usd", "XYZ", "", "U\u0301SD", "\u202eDSU", 12],
    "country": ["usa", "u$", "", "\u00c9S", "ＵＳ", "U\u200bS", None],
    "device": ["Android", "", "\U0001f4f1", 5],
    "ts": [FAR_FUTURE_TS, 0, -1, "2026-01-01", 1.7e12],
    "is_fraud": ["false", 0, None],
}


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    ing = Ingest(tmp_path / "ingest", source="rest")
    yield ing
    ing.close()


@pytest.fixture
def client(ingest: Ingest) -> Iterator[TestClient]:
    app = create_app()
    app.dependency_overrides[get_ingest] = lambda: ingest
    with TestClient(app) as c:
        yield c


def test_single_event_is_accepted_with_its_send_time(client: TestClient, ingest: Ingest) -> None:
    r = client.post("/events", content=dumps(GOOD[0]), headers={"x-sent-at-us": "123"})
    assert r.status_code == 201 and r.json() == {"accepted": 1, "rejected": []}
    ingest.receipts.close()
    got = receipts.read([ingest.receipts.path])
    assert got["event_id"].tolist() == [GOOD[0]["event_id"]] and got["sent_us"].tolist() == [123]


@pytest.mark.parametrize(("field", "value"), [(f, v) for f, vs in BAD_VALUES.items() for v in vs])
def test_each_bad_value_is_422_naming_the_field(client: TestClient, field: str, value: Any) -> None:
    r = client.post("/events", content=dumps({**GOOD[0], field: value}))
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == field


def test_missing_field_is_named(client: TestClient) -> None:
    body = {k: v for k, v in GOOD[0].items() if k != "amount"}
    r = client.post("/events", content=dumps(body))
    assert r.status_code == 422 and r.json()["detail"]["field"] == "amount"


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe not json", b'{"amount": NaN}', b"[1,",
                                  b'{"currency": "\\ud800"}'])
def test_malformed_json_is_422_body(client: TestClient, body: bytes) -> None:
    r = client.post("/events", content=body)
    assert r.status_code == 422 and r.json()["detail"]["field"] in {"body", "currency"}


def test_batch_must_be_an_array(client: TestClient) -> None:
    r = client.post("/events/batch", content=dumps(GOOD[0]))
    assert r.status_code == 422 and r.json()["detail"]["field"] == "body"


def test_oversized_body_is_413_and_chunked_too(client: TestClient) -> None:
    big = b"[" + b",".join([orjson.dumps(GOOD[0])] * (DEFAULT_MAX_BODY_BYTES // 100)) + b"]"
    assert len(big) > DEFAULT_MAX_BODY_BYTES
    r = client.post("/events/batch", content=big)
    assert r.status_code == 413 and r.json()["detail"]["field"] == "body"
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))  # no Content-Length
    r = client.post("/events/batch", content=chunks)
    assert r.status_code == 413


def test_openapi_documents_the_resource(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/events", "/events/batch", "/events/stats", "/health"} <= set(spec["paths"])
    body = spec["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "amount" in body["properties"]
    assert client.get("/docs").status_code == 200


@st.composite
def batch_with_bad_records(draw: st.DrawFn) -> tuple[list[Any], dict[int, str]]:
    n = draw(st.integers(1, 30))
    records: list[Any] = [dict(e) for e in draw(st.lists(st.sampled_from(GOOD), min_size=n, max_size=n))]
    bad: dict[int, str] = {}
    for i in draw(st.sets(st.integers(0, n - 1))):
        kind = draw(st.sampled_from(["value", "missing", "not_object"]))
        field = draw(st.sampled_from(sorted(BAD_VALUES)))
        if kind == "value":
            records[i][field] = draw(st.sampled_from(BAD_VALUES[field]))
        elif kind == "missing":
            records[i].pop(field)
            if field == "device":  # device is nullable but still required
                pass
        else:
            records[i] = draw(st.one_of(st.text(max_size=5), st.integers(), st.none(), st.lists(st.none())))
            field = "<record>"
        bad[i] = field
    return records, bad


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=batch_with_bad_records())
def test_batch_counts_balance_and_name_the_field(client: TestClient, case: tuple[list[Any], dict[int, str]]
                                                 ) -> None:
    records, bad = case
    r = client.post("/events/batch", content=dumps(records))
    assert r.status_code == 200
    out = r.json()
    assert out["accepted"] + len(out["rejected"]) == len(records)
    assert {x["index"]: x["field"] for x in out["rejected"]} == bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.text()
                                   | st.floats(allow_nan=False, allow_infinity=False),
                                   lambda c: st.lists(c, max_size=4)
                                   | st.dictionaries(st.text(), c, max_size=4),
                                   max_leaves=10).map(dumps)))
def test_any_body_gets_a_clear_4xx_never_a_5xx(client: TestClient, body: bytes) -> None:
    for path in ("/events", "/events/batch"):
        r = client.post(path, content=body)
        assert r.status_code < 500
        if r.status_code >= 400:
            assert r.json()["detail"]["field"]


def test_nan_amount_from_a_python_caller_is_refused() -> None:
    from dataflow_playground.core.validation import validate_record

    rej = validate_record({**GOOD[0], "amount": math.nan})
    assert getattr(rej, "field", None) == "amount"


# --- the client: connection reuse, bounded retries with backoff --------------------------


def _flaky(fail_first: int) -> tuple[httpx.MockTransport, list[int]]:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= fail_first:
            raise httpx.ConnectError("refused", request=request)
        n = len(orjson.loads(request.content))
        return httpx.Response(200, json={"accepted": n, "rejected": []})

    return httpx.MockTransport(handler), calls


def test_writer_retries_transient_errors_then_succeeds() -> None:
    transport, calls = _flaky(fail_first=2)
    w = RestWriter("http://test", attempts=5, backoff_max_s=0.01, transport=transport)
    w.send(GOOD[:10])
    w.close()
    assert len(calls) == 3 and w.stats.retries == 2 and w.stats.accepted == 10
    assert w.stats.errors["connect"] == 2 and w.stats.gave_up_events == 0


def test_writer_gives_up_after_bounded_attempts() -> None:
    transport, calls = _flaky(fail_first=100)
    w = RestWriter("http://test", attempts=3, backoff_max_s=0.01, transport=transport)
    w.send(GOOD[:10])
    assert len(calls) == 3 and w.stats.gave_up_events == 10


def test_writer_does_not_retry_a_4xx() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(422, json={"detail": {"field": "amount", "reason": "bad"}})

    w = RestWriter("http://test", transport=httpx.MockTransport(handler))
    w.send(GOOD[:1])
    assert len(calls) == 1 and w.stats.rejected == 1 and w.stats.reasons["amount"] == 1
