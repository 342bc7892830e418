"""The gRPC Ingest service in-process on a free port: unary, client streaming, bad input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_playground.core.proto import events_pb2, events_pb2_grpc
from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.producers.to_rpc import RpcWriter, to_proto
from dataflow_playground.services.ingest import Ingest
from dataflow_playground.services.rpc.server import make_server

GOOD = generate_events(GeneratorConfig(events=50, seed=5))
BAD: dict[str, list[object]] = {
    "amount": [-1.0, 0.0, math.nan, math.inf, -math.inf, 5e6],
    "ts": [0, -5, 32_503_680_000_000],
    "currency": ["", "usd", "XYZ", "U\u0301SD", "\U0001f4b6"],
    "country": ["", "U", "u s", "ＵＳ", "\u00c9S"],
    "device": ["", "Android", "\u202eweb"],
    "event_id": [-1],
    "user_id": [-7],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Ingest]]:
    ingest = Ingest(tmp_path_factory.mktemp("rpc"), source="rpc")
    srv, port = make_server(ingest, "127.0.0.1", 0, max_message_bytes=256 * 1024)
    srv.start()
    yield f"127.0.0.1:{port}", ingest
    srv.stop(grace=None)
    ingest.close()


@pytest.fixture(scope="module")
def stub(server: tuple[str, Ingest]) -> Iterator[events_pb2_grpc.IngestStub]:
    with grpc.insecure_channel(server[0]) as channel:
        yield events_pb2_grpc.IngestStub(channel)


def test_unary_accepts_a_good_event(stub: events_pb2_grpc.IngestStub) -> None:
    reply = stub.Send(to_proto(GOOD[0]), metadata=(("x-sent-at-us", "1"),), timeout=5)
    assert reply.accepted == 1 and not reply.rejected


@pytest.mark.parametrize(("field", "value"), [(f, v) for f, vs in BAD.items() for v in vs])
def test_unary_refuses_with_invalid_argument_naming_the_field(
        stub: events_pb2_grpc.IngestStub, field: str, value: object) -> None:
    msg = to_proto(GOOD[1])
    setattr(msg, field, value)
    with pytest.raises(grpc.RpcError) as err:
        stub.Send(msg, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}:")


def test_missing_fields_read_as_zero_and_are_refused(stub: events_pb2_grpc.IngestStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Send(events_pb2.Event(event_id=1), timeout=5)  # proto3: unset amount reads 0
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_undecodable_bytes_are_refused(server: tuple[str, Ingest]) -> None:
    with grpc.insecure_channel(server[0]) as channel:
        raw = channel.unary_unary("/dataflow.playground.Ingest/Send")
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff not a protobuf", timeout=5)
    assert err.value.code() in {grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT}


def test_oversized_message_is_refused(stub: events_pb2_grpc.IngestStub) -> None:
    batch = events_pb2.EventBatch(events=[to_proto(GOOD[0])] * 10_000)
    assert batch.ByteSize() > 256 * 1024
    with pytest.raises(grpc.RpcError) as err:
        stub.SendStream(iter([batch]), timeout=5)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_stream_counts_balance(stub: events_pb2_grpc.IngestStub, data: st.DataObject) -> None:
    batches, bad, index = [], {}, 0
    for _ in range(data.draw(st.integers(1, 4))):
        msgs = [to_proto(e) for e in data.draw(st.lists(st.sampled_from(GOOD), min_size=1, max_size=20))]
        for i in data.draw(st.sets(st.integers(0, len(msgs) - 1))):
            field = data.draw(st.sampled_from(sorted(BAD)))
            setattr(msgs[i], field, data.draw(st.sampled_from(BAD[field])))
            bad[index + i] = field
        index += len(msgs)
        batches.append(events_pb2.EventBatch(events=msgs, sent_at_us=1))
    reply = stub.SendStream(iter(batches), timeout=5)
    assert reply.accepted + len(reply.rejected) == index
    assert {r.index: r.field for r in reply.rejected} == bad


def test_writer_streams_and_counts(server: tuple[str, Ingest]) -> None:
    w = RpcWriter(server[0], stream_batches=3)
    for i in range(0, 50, 10):
        w.send(GOOD[i:i + 10])
    w.close()
    assert w.stats.accepted == 50 and w.stats.retries == 0


def test_writer_counts_unavailable_and_gives_up(tmp_path: Path) -> None:
    from tests.helpers import free_ports

    w = RpcWriter(f"127.0.0.1:{free_ports(1)[0]}", attempts=2, timeout_s=1, backoff_max_s=0.01,
                  stream_batches=1)
    w.send(GOOD[:1])  # unary path
    w.close()
    assert w.stats.gave_up_events == 1 and w.stats.retries == 1 and w.stats.errors["unavailable"] == 2
