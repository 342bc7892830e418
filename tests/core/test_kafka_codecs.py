"""Every Kafka compression codec decodes in both clients, and a missing one is a clear error."""

from __future__ import annotations

import pytest
from aiokafka import codec as aiokafka_codec
from kafka import codec as kafka_python_codec

from dataflow_playground.core import kafka_codecs
from dataflow_playground.core.kafka_codecs import CODECS, MissingCodecError, missing_codecs, require_codecs

PAYLOAD = b'{"event_id": 1, "amount": 12.5}' * 2000  # > one 32 KiB xerial snappy block


def test_codec_list_is_kafkas() -> None:
    assert CODECS == ("none", "gzip", "snappy", "lz4", "zstd")


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka"])
def test_every_codec_is_available(client: kafka_codecs.Client) -> None:
    assert missing_codecs(client) == {}
    require_codecs(client, "this test")


@pytest.mark.parametrize("codec", [c for c in CODECS if c != "none"])
def test_each_client_decodes_what_the_other_encodes(codec: str) -> None:
    """The clients must agree on the framing (xerial snappy, lz4 frames), not just load a module."""
    kp_encode, kp_decode = getattr(kafka_python_codec, f"{codec}_encode"), getattr(
        kafka_python_codec, f"{codec}_decode")
    ak_encode, ak_decode = getattr(aiokafka_codec, f"{codec}_encode"), getattr(
        aiokafka_codec, f"{codec}_decode")
    assert ak_decode(kp_encode(PAYLOAD)) == PAYLOAD
    assert kp_decode(ak_encode(PAYLOAD)) == PAYLOAD


def test_missing_library_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_python_codec, "has_snappy", lambda: False)
    assert missing_codecs("kafka-python") == {"snappy": "python-snappy"}
    with pytest.raises(MissingCodecError, match=r"the sink cannot read .* snappy: kafka-python needs "
                                                r"python-snappy.*pip install python-snappy"):
        require_codecs("kafka-python", "the sink")
    monkeypatch.setattr(aiokafka_codec, "has_zstd", lambda: False)
    monkeypatch.setattr(aiokafka_codec, "has_lz4", lambda: False)
    assert missing_codecs("aiokafka") == {"lz4": "cramjam", "zstd": "cramjam"}
