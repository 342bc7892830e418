"""The REST ingestion resource: validation naming the field, 413, 415, OpenAPI; the retrying client.

Property-based (hypothesis): whatever the body, the service answers 2xx/4xx (never
5xx), every 4xx names a field, and a batch's counts balance: sent = accepted + rejected.
What a reply echoes is bounded whatever was sent. A few tests run a real uvicorn on
127.0.0.1 (a client that hangs up mid-upload, /health while a batch is being ingested).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_playground.core import receipts
from dataflow_playground.core.schema import CURRENCIES, DEVICES, INT64_MAX, MIN_TS_MS
from dataflow_playground.core.validation import MAX_FIELD_CHARS, MAX_REASON_CHARS
from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.producers.to_rest import RestWriter
from dataflow_playground.services.ingest import MAX_BATCH_RECORDS, MAX_LISTED_REJECTIONS, Ingest
from dataflow_playground.services.rest.app import create_app
from dataflow_playground.services.rest.events import get_ingest
from dataflow_playground.services.rest.limits import DEFAULT_MAX_BODY_BYTES
from tests.helpers import free_ports


def dumps(obj: Any) -> bytes:
    """stdlib json: unlike orjson it writes integers beyond 64 bits, as a hostile client may."""
    return json.dumps(obj).encode()


GOOD = generate_events(GeneratorConfig(events=50, seed=3))
FAR_FUTURE_TS = 32_503_680_000_000

# Per field, values that must be refused (wrong types, out of range, odd unicode, ...).
BAD_VALUES: dict[str, list[Any]] = {
    "event_id": ["1", -1, 1.5, None, True, 2**70, 1e17],  # 1e17: whole, but past exact floats
    "user_id": ["u-1", -5, [], 2**64],
    "merchant_id": [None, {"a": 1}, -1],
    "amount": [-0.01, 0, 0.0, "12.5", None, 1e7, -1e-9],
    "currency": ["usd", "XYZ", "", "U\u0301SD", "\u202eDSU", 12],
    "country": ["usa", "u$", "", "\u00c9S", "ＵＳ", "U\u200bS", None],
    "device": ["Android", "", "\U0001f4f1", 5],
    "ts": [FAR_FUTURE_TS, 0, -1, "2026-01-01", 1.7e12 + 0.5],
    "is_fraud": ["false", 0, None],
}


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    ing = Ingest(tmp_path / "ingest", source="rest")
    yield ing
    ing.close()


def app_for(ingest: Ingest) -> FastAPI:
    app = create_app()
    app.dependency_overrides[get_ingest] = lambda: ingest
    return app


@pytest.fixture
def client(ingest: Ingest) -> Iterator[TestClient]:
    with TestClient(app_for(ingest), headers={"content-type": "application/json"}) as c:
        yield c


@contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """A real uvicorn on 127.0.0.1 in a thread (its logs go to the root logger); the port."""
    port = free_ports(1)[0]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_single_event_is_accepted_with_its_send_time(client: TestClient, ingest: Ingest) -> None:
    r = client.post("/events", content=dumps(GOOD[0]), headers={"x-sent-at-us": "123"})
    assert r.status_code == 201
    assert r.json() == {"accepted": 1, "rejected": 0, "rejections": [], "rejections_omitted": 0}
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
    schemas = spec["components"]["schemas"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        return schemas[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node

    paths = spec["paths"]
    assert {"/events", "/events/batch", "/events/stats", "/health", "/features/{entity}/{entity_id}"
            } <= set(paths)
    # The event: every rule the validators apply.
    event = resolve(paths["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"])
    props = event["properties"]
    assert event["additionalProperties"] is False and set(event["required"]) == set(props)
    assert props["currency"]["enum"] == list(CURRENCIES)
    assert props["device"]["anyOf"] == [{"type": "string", "enum": list(DEVICES)}, {"type": "null"}]
    assert props["country"]["pattern"] == "^[A-Z]{2}$" and props["country"]["maxLength"] == 2
    assert props["ts"]["minimum"] == MIN_TS_MS
    now_ms = time.time() * 1000
    assert now_ms < props["ts"]["maximum"] <= now_ms + 24 * 3600 * 1000 + 60_000
    assert (props["amount"]["exclusiveMinimum"], props["amount"]["maximum"]) == (0, 1_000_000)
    assert props["event_id"]["maximum"] == INT64_MAX
    batch = paths["/events/batch"]["post"]
    body = batch["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "array" and body["maxItems"] == MAX_BATCH_RECORDS
    assert resolve(body["items"]) == event
    # The partial-batch reply, bounded.
    reply = resolve(batch["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(reply["properties"]) == {"accepted", "rejected", "rejections", "rejections_omitted"}
    assert reply["properties"]["rejections"]["maxItems"] == MAX_LISTED_REJECTIONS
    # Every refusal the service makes, and the send clock as an integer header.
    for op in (paths["/events"]["post"], batch):
        assert {"413", "415", "422"} <= set(op["responses"])
        error = resolve(op["responses"]["413"]["content"]["application/json"]["schema"])
        assert resolve(error["properties"]["detail"])["required"] == ["field", "reason"]
        (header,) = [p for p in op["parameters"] if p["in"] == "header"]
        assert header["name"] == "x-sent-at-us" and header["required"] is False
        assert header["schema"]["type"] == "integer"
        assert (header["schema"]["minimum"], header["schema"]["maximum"]) == (0, INT64_MAX)
    features = paths["/features/{entity}/{entity_id}"]["get"]
    assert {"200", "404", "422", "503"} <= set(features["responses"])
    entity_id = next(p for p in features["parameters"] if p["name"] == "entity_id")["schema"]
    assert (entity_id["minimum"], entity_id["maximum"]) == (0, INT64_MAX)
    assert client.get("/docs").status_code == 200


# --- the send clock header ------------------------------------------------------------------


@pytest.mark.parametrize("value", [str(INT64_MAX + 1), "-1", str(-(2**63) - 1), "12abc", "", "0x10",
                                   "9" * 5000, "1.5"])
def test_send_time_outside_int64_or_not_a_number_is_422_naming_the_header(
        client: TestClient, ingest: Ingest, value: str) -> None:
    for path, body in (("/events", dumps(GOOD[0])), ("/events/batch", dumps(GOOD[:2]))):
        r = client.post(path, content=body, headers={"x-sent-at-us": value})
        assert r.status_code == 422, (path, r.text)
        detail = r.json()["detail"]
        assert detail["field"] == "x-sent-at-us" and len(detail["reason"]) <= MAX_REASON_CHARS
    assert ingest.accepted == 0


def test_send_time_at_the_int64_bound_is_taken(client: TestClient, ingest: Ingest) -> None:
    r = client.post("/events", content=dumps(GOOD[0]), headers={"x-sent-at-us": str(INT64_MAX)})
    assert r.status_code == 201, r.text
    ingest.receipts.close()
    assert receipts.read([ingest.receipts.path])["sent_us"].tolist() == [INT64_MAX]


# --- Content-Type: JSON only --------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/json; charset=latin-1", "application/jsonp", None])
def test_a_body_that_is_not_declared_json_is_415_and_nothing_is_stored(
        ingest: Ingest, content_type: str | None) -> None:
    # A plain client: no default Content-Type (what an HTML form or a no-cors fetch sends).
    with TestClient(app_for(ingest)) as plain:
        headers = {} if content_type is None else {"content-type": content_type}
        for path, body in (("/events", dumps(GOOD[0])), ("/events/batch", dumps(GOOD[:3]))):
            r = plain.post(path, content=body, headers=headers)
            assert r.status_code == 415, (path, r.text)
            assert r.json()["detail"]["field"] == "content-type"
    assert (ingest.accepted, ingest.rejected) == (0, 0)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          'Application/JSON;charset="UTF-8"'])
def test_json_with_or_without_a_utf8_charset_is_taken(ingest: Ingest, content_type: str) -> None:
    with TestClient(app_for(ingest)) as plain:
        r = plain.post("/events", content=dumps(GOOD[0]), headers={"content-type": content_type})
    assert r.status_code == 201, r.text


# --- bounded replies and dead letters -------------------------------------------------------------


def test_a_batch_of_junk_gets_a_bounded_reply_and_every_record_is_dead_lettered(
        client: TestClient, ingest: Ingest) -> None:
    n = MAX_BATCH_RECORDS
    r = client.post("/events/batch", content=b"[" + b",".join([b"0"] * n) + b"]")
    assert r.status_code == 200
    out = r.json()
    assert (out["accepted"], out["rejected"], out["rejections_omitted"]) == (0, n, n - MAX_LISTED_REJECTIONS)
    assert [x["index"] for x in out["rejections"]] == list(range(MAX_LISTED_REJECTIONS))
    assert len(r.content) < 16 * 1024  # was ~80 bytes per refused record, unbounded
    lines = ingest.dead_path.read_bytes().splitlines()
    assert len(lines) == n and max(map(len, lines)) < 512


def test_listed_rejections_are_the_first_ones_and_good_records_still_count(
        client: TestClient, ingest: Ingest) -> None:
    records: list[Any] = [*GOOD[:5], *([{"bad": True}] * 150), *GOOD[5:10]]
    out = client.post("/events/batch", content=dumps(records)).json()
    assert (out["accepted"], out["rejected"], out["rejections_omitted"]) == (10, 150, 50)
    assert [x["index"] for x in out["rejections"]] == list(range(5, 5 + MAX_LISTED_REJECTIONS))


def test_more_records_than_a_batch_may_hold_is_413_and_nothing_is_read(
        client: TestClient, ingest: Ingest) -> None:
    # The fuzzed case: one 2 MiB body of `[0,0,...]`, a million records (was: a 79 MiB reply,
    # 140 MiB of dead letters and the service blocked for seconds).
    body = b"[" + b",".join([b"0"] * (DEFAULT_MAX_BODY_BYTES // 2 - 1)) + b"]"
    assert len(body) <= DEFAULT_MAX_BODY_BYTES
    r = client.post("/events/batch", content=body)
    assert r.status_code == 413, r.text[:300]
    detail = r.json()["detail"]
    assert detail["field"] == "body" and f"limit of {MAX_BATCH_RECORDS}" in detail["reason"]
    assert (ingest.accepted, ingest.rejected, ingest.dead_path.stat().st_size) == (0, 0, 0)
    r = client.post("/events/batch", content=dumps([GOOD[0]] * (MAX_BATCH_RECORDS + 1)))
    assert r.status_code == 413


def test_a_long_bad_value_is_quoted_by_a_short_prefix_only(client: TestClient, ingest: Ingest) -> None:
    huge = "Q" * 2**20
    r = client.post("/events", content=dumps({**GOOD[0], "currency": huge}))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail["field"] == "currency" and len(detail["reason"]) <= MAX_REASON_CHARS
    assert "unknown currency" in detail["reason"] and f"({len(huge)} chars)" in detail["reason"]
    assert len(r.content) < 1024
    # An unknown field's name is part of the field path: capped too. So is each dead letter.
    r = client.post("/events/batch", content=dumps([{**GOOD[1], "currency": huge},
                                                    {**GOOD[2], "K" * 100_000: 1}]))
    out = r.json()
    assert out["rejected"] == 2 and len(r.content) < 2048
    assert all(len(x["field"]) <= MAX_FIELD_CHARS and len(x["reason"]) <= MAX_REASON_CHARS
               for x in out["rejections"])
    assert max(map(len, ingest.dead_path.read_bytes().splitlines())) < 4096


# --- a real server: /health throughout, a client that hangs up --------------------------------------


def test_health_answers_while_a_batch_is_being_ingested(ingest: Ingest, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    started, release = threading.Event(), threading.Event()
    real = ingest.ingest

    def slow(records: list[Any], sent_us: int | None = None) -> Any:
        started.set()
        release.wait(10)
        return real(records, sent_us)

    monkeypatch.setattr(ingest, "ingest", slow)
    with serving(app_for(ingest)) as port, ThreadPoolExecutor(1) as pool:
        url = f"http://127.0.0.1:{port}"
        try:
            batch = pool.submit(httpx.post, f"{url}/events/batch", content=dumps(GOOD[:20]), timeout=20,
                                headers={"content-type": "application/json"})
            assert started.wait(10)
            # The batch is still inside ingest(); the event loop must be free to answer.
            assert httpx.get(f"{url}/health", timeout=3).status_code == 200
        finally:
            release.set()
        assert batch.result().json()["accepted"] == 20


def test_a_client_gone_mid_upload_is_one_log_line_not_a_traceback(
        ingest: Ingest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with serving(app_for(ingest)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /events/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n[" + b"0," * 1000)
            time.sleep(0.2)  # the server is now waiting for the rest of the body
        deadline = time.monotonic() + 10
        while not any("disconnected" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.02)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=3).status_code == 200
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) == 1, [r.getMessage() for r in noisy]
    (line,) = noisy
    assert "POST /events/batch" in line.getMessage() and "\n" not in line.getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert (ingest.accepted, ingest.rejected) == (0, 0)


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
    assert out["accepted"] + out["rejected"] == len(records)
    assert out["rejected"] == len(out["rejections"]) and out["rejections_omitted"] == 0
    assert {x["index"]: x["field"] for x in out["rejections"]} == bad


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
        return httpx.Response(200, json={"accepted": n, "rejected": 0, "rejections": [],
                                         "rejections_omitted": 0})

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
