"""Property-based checks of the ingress validator."""

from __future__ import annotations

import math

import orjson
from hypothesis import given
from hypothesis import strategies as st

from dataflow_playground.core.schema import CURRENCIES, DEVICES, FIELD_NAMES, MIN_TS_MS
from dataflow_playground.core.validation import Rejection, decode_event

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
