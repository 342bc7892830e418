"""Property-based checks of the ingress validator."""

from __future__ import annotations

import math

import orjson
from hypothesis import given
from hypothesis import strategies as st

from dataflow_playground.core.schema import CURRENCIES, DEVICES, FIELD_NAMES, MAX_EXACT_FLOAT_INT, MIN_TS_MS
from dataflow_playground.core.validation import (
    MAX_ECHO_CHARS,
    MAX_FIELD_CHARS,
    MAX_REASON_CHARS,
    Rejection,
    decode_event,
    validate_record,
)

valid_events = st.fixed_dictionaries({
    "event_id": st.integers(0, 2**63 - 1),
    "user_id": st.integers(0, 2**63 - 1),
    "merchant_id": st.integers(0, 2**63 - 1),
    "amount": st.floats(0.01, 1_000_000, allow_nan=False),
    "currency": st.sampled_from(CURRENCIES),
    "country": st.sampled_from(["US", "DE", "JP"]),
    "device": st.one_of(st.none(), st.sampled_from(DEVICES)),
    "ts": st.integers(MIN_TS_MS, 1_767_225_600_000),
    "is_fraud": st.booleans(),
})


@given(valid_events)
def test_valid_events_round_trip(event: dict[str, object]) -> None:
    result = decode_event(orjson.dumps(event))
    assert not isinstance(result, Rejection), result
    assert result.model_dump() == event


@given(valid_events, st.sampled_from(FIELD_NAMES))
def test_missing_field_is_named(event: dict[str, object], field: str) -> None:
    if field == "device":
        return  # nullable, but still required: covered below
    del event[field]
    result = decode_event(orjson.dumps(event))
    assert isinstance(result, Rejection) and result.field == field


@given(valid_events, st.sampled_from(["user_id", "amount", "ts", "is_fraud", "currency"]),
       st.one_of(st.text(max_size=5), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2)))
def test_wrong_type_is_named(event: dict[str, object], field: str, bad: object) -> None:
    event[field] = bad
    result = decode_event(orjson.dumps(event))
    assert isinstance(result, Rejection) and result.field == field


@given(valid_events, st.one_of(st.floats(max_value=0), st.just(math.inf), st.just(-math.inf)))
def test_impossible_amount_rejected(event: dict[str, object], amount: float) -> None:
    event["amount"] = amount
    raw = orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY).replace(b"null", b"NaN")
    result = decode_event(raw)
    assert isinstance(result, Rejection) and result.field in {"amount", "<record>"}


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    result = decode_event(raw)
    assert isinstance(result, Rejection) or result.event_id >= 0


def test_odd_unicode_is_rejected_with_field() -> None:
    event = {"event_id": 1, "user_id": 2, "merchant_id": 3, "amount": 1.5, "currency": "USD",
             "country": "Ü\u200f", "device": "ios", "ts": MIN_TS_MS + 1, "is_fraud": False}
    result = decode_event(orjson.dumps(event))
    assert isinstance(result, Rejection) and result.field == "country"


# --- what a rejection may echo: bounded whatever the input -----------------------------------


def test_rejection_caps_its_field_and_reason_whoever_builds_it() -> None:
    r = Rejection("f" * 10_000, "r" * 10_000)
    assert len(r.field) == MAX_FIELD_CHARS and len(r.reason) == MAX_REASON_CHARS
    assert r.reason.endswith("chars)") and Rejection("amount", "short").reason == "short"


def test_a_huge_bad_value_is_quoted_by_a_short_prefix() -> None:
    good = {"event_id": 1, "user_id": 2, "merchant_id": 3, "amount": 1.5, "currency": "USD",
            "country": "US", "device": "ios", "ts": MIN_TS_MS + 1, "is_fraud": False}
    for field, value in [("currency", "Q" * 2**20), ("device", b"x" * 2**20), ("amount", [0] * 10**6),
                         ("K" * 10**5, 1), ("ts", 10**5000), ("country", {str(i): i for i in range(10**4)})]:
        result = validate_record({**good, field: value})
        assert isinstance(result, Rejection), field
        assert len(result.field) <= MAX_FIELD_CHARS and len(result.reason) <= MAX_REASON_CHARS, field
    result = validate_record({**good, "currency": "Q" * 2**20})
    assert isinstance(result, Rejection)
    assert result.reason.endswith(f"got '{'Q' * MAX_ECHO_CHARS}'… (1048576 chars)")


@given(valid_events, st.sampled_from(FIELD_NAMES),
       st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3000),
                    lambda c: st.lists(c, max_size=50)
                    | st.dictionaries(st.text(max_size=500), c, max_size=5), max_leaves=60))
def test_every_reason_is_bounded(event: dict[str, object], field: str, bad: object) -> None:
    event[field] = bad
    result = validate_record(event)
    if isinstance(result, Rejection):
        assert len(result.field) <= MAX_FIELD_CHARS and len(result.reason) <= MAX_REASON_CHARS


def test_a_whole_number_is_an_integer_while_a_float_holds_it_exactly() -> None:
    # JSON Schema (the OpenAPI) calls 2.0 an integer; so does the validator, up to 2**53.
    raw = b'{"event_id": 2.0, "user_id": 1e3, "merchant_id": 3, "amount": 1, "currency": "USD", ' \
          b'"country": "US", "device": null, "ts": 1.7e12, "is_fraud": false}'
    event = decode_event(raw)
    assert not isinstance(event, Rejection), event
    assert (event.event_id, event.user_id, event.ts) == (2, 1000, 1_700_000_000_000)
    assert type(event.event_id) is int
    for value in (b"2.5", str(float(MAX_EXACT_FLOAT_INT + 1)).encode(), b"1e19", b"true"):
        result = decode_event(raw.replace(b'"event_id": 2.0', b'"event_id": ' + value))
        assert isinstance(result, Rejection) and result.field == "event_id", value
