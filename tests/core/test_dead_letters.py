"""The dead-letter headers: names, the reason's bound, and reading them back."""

from __future__ import annotations

import pytest

from dataflow_playground.core import kafka_admin
from dataflow_playground.core.dead_letters import (
    FEATURES_STAGE,
    HEADER_NAMES,
    MAX_REASON_BYTES,
    SINK_STAGE,
    STAGES,
    TRUNCATED_MARKER,
    DeadLetterHeaderError,
    DeadLetterInfo,
    bounded_reason,
    dead_letter_headers,
    source_id,
)
from dataflow_playground.core.settings import Settings


def test_short_reason_is_kept_whole() -> None:
    reason = "amount: Input should be greater than 0"
    assert bounded_reason(reason) == reason.encode()
    exact = "r" * MAX_REASON_BYTES
    assert bounded_reason(exact) == exact.encode()


@pytest.mark.parametrize("char", ["x", "é", "€", "💳"])  # 1, 2, 3 and 4 UTF-8 bytes
def test_long_reason_is_cut_at_a_character_and_marked(char: str) -> None:
    reason = "currency: unknown currency " + char * 1000
    out = bounded_reason(reason)
    assert len(out) <= MAX_REASON_BYTES
    assert out.endswith(TRUNCATED_MARKER.encode())
    head = out[: -len(TRUNCATED_MARKER)].decode()  # valid UTF-8: no character split in half
    assert reason.startswith(head)
    # As long as the bound allows: at most one character's bytes are left unused.
    assert len(out) > MAX_REASON_BYTES - len(char.encode())


def test_headers_round_trip_in_documented_order() -> None:
    source = source_id("transactions", 2, 41)
    assert source == "kafka:transactions:2:41"
    headers = dead_letter_headers("ts: too far ahead", SINK_STAGE, source)
    assert [name for name, _ in headers] == list(HEADER_NAMES) == ["reason", "stage", "source"]
    assert all(isinstance(value, bytes) for _, value in headers)
    info = DeadLetterInfo.from_headers(headers)
    assert info == DeadLetterInfo("ts: too far ahead", "sink", source)
    assert set(STAGES) == {SINK_STAGE, FEATURES_STAGE} == {"sink", "features-worker"}


def test_reading_back_names_what_is_missing_or_unknown() -> None:
    with pytest.raises(DeadLetterHeaderError, match=r"without header.*stage, source"):
        DeadLetterInfo.from_headers([("reason", b"x")])
    with pytest.raises(DeadLetterHeaderError, match="unknown stage 'batch'"):
        DeadLetterInfo.from_headers([("reason", b"x"), ("stage", b"batch"), ("source", b"kafka:t:0:1")])
    with pytest.raises(DeadLetterHeaderError):
        DeadLetterInfo.from_headers(None)


def test_each_consumer_has_its_own_dead_letter_topic_which_up_creates() -> None:
    settings = Settings()
    specs = {s.name: s for s in kafka_admin.default_topics(settings)}
    sink, features = settings.sink_dead_letter_topic, settings.features_dead_letter_topic
    assert (sink, features) == ("transactions.dlq.sink", "transactions.dlq.features")
    assert {sink, features, settings.topic} == set(specs)
    assert specs[sink].partitions == specs[features].partitions == 1
    assert specs[sink].retention_ms == specs[features].retention_ms == settings.retention_ms
