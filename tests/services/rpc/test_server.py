"""The gRPC Ingest service in-process on a free port: unary, client streaming, bad input.

Real channels on 127.0.0.1, every call with a deadline. After each kind of bad input the
module's one server must go on serving (the tests share it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_playground.core.proto import events_pb2, events_pb2_grpc
from dataflow_playground.core.schema import INT64_MAX
from dataflow_playground.core.validation import MAX_REASON_CHARS
from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.producers.to_rpc import RpcWriter, to_proto
from dataflow_playground.services.ingest import MAX_BATCH_RECORDS, MAX_LISTED_REJECTIONS, Ingest
from dataflow_playground.services.rpc.server import DEFAULT_MAX_CONCURRENT_RPCS, make_server

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
    assert reply.accepted == 1 and reply.rejected == 0 and not reply.rejections


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


def test_undecodable_bytes_are_invalid_argument_not_internal(
        server: tuple[str, Ingest], stub: events_pb2_grpc.IngestStub) -> None:
    accepted = server[1].accepted
    with grpc.insecure_channel(server[0]) as channel:
        raw = channel.unary_unary("/dataflow.playground.Ingest/Send")
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff not a protobuf", timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a dataflow.playground.Event message" in err.value.details()
        # In a stream: the batches before the bad one were taken, then the call fails.
        stream = channel.stream_unary("/dataflow.playground.Ingest/SendStream")
        good = events_pb2.EventBatch(events=[to_proto(GOOD[2])]).SerializeToString()
        with pytest.raises(grpc.RpcError) as err:
            stream(iter([good, b"\x0a\xff\xff"]), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a dataflow.playground.EventBatch message" in err.value.details()
    assert server[1].accepted == accepted + 1
    assert stub.Send(to_proto(GOOD[3]), timeout=5).accepted == 1  # still serving


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
    assert reply.accepted + reply.rejected == index
    assert reply.rejected == len(reply.rejections) and reply.rejections_omitted == 0
    assert {r.index: r.field for r in reply.rejections} == bad


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


# --- the send clock in metadata ------------------------------------------------------------------


@pytest.mark.parametrize("value", [str(INT64_MAX + 1), "-1", "12abc", "", "1.5", "9" * 5000, " 12", "1_000"])
def test_send_time_outside_int64_or_not_a_number_is_invalid_argument(
        stub: events_pb2_grpc.IngestStub, value: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Send(to_proto(GOOD[4]), metadata=(("x-sent-at-us", value),), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("x-sent-at-us: expected the send time as an integer")
    assert len(err.value.details()) < 300


def test_send_time_at_the_int64_bound_is_taken(stub: events_pb2_grpc.IngestStub) -> None:
    reply = stub.Send(to_proto(GOOD[5]), metadata=(("x-sent-at-us", str(INT64_MAX)),), timeout=5)
    assert reply.accepted == 1


# --- bounded replies -------------------------------------------------------------------------------


def test_a_stream_of_120000_bad_events_gets_a_small_reply_with_the_counts(
        server: tuple[str, Ingest], stub: events_pb2_grpc.IngestStub) -> None:
    # Every empty Event is refused (amount 0). The reply used to list all 120,000, past gRPC's
    # 4 MiB limit after the good ones were stored; a retrying caller then sent them twice.
    bad = [events_pb2.EventBatch(events=[events_pb2.Event()] * 10_000) for _ in range(12)]
    good = events_pb2.EventBatch(events=[to_proto(e) for e in GOOD[:10]])
    dead_before = server[1].dead_path.stat().st_size
    reply = stub.SendStream(iter([good, *bad]), timeout=60)
    assert (reply.accepted, reply.rejected) == (10, 120_000)
    assert len(reply.rejections) == MAX_LISTED_REJECTIONS
    assert reply.rejections_omitted == 120_000 - MAX_LISTED_REJECTIONS
    assert [r.index for r in reply.rejections] == list(range(10, 10 + MAX_LISTED_REJECTIONS))
    assert reply.rejections[0].field == "amount"
    assert reply.ByteSize() < 16 * 1024
    assert server[1].dead_path.stat().st_size > dead_before  # every one is dead-lettered


def test_a_message_over_the_record_limit_is_refused_whole_and_the_stream_goes_on(
        server: tuple[str, Ingest], stub: events_pb2_grpc.IngestStub) -> None:
    n = MAX_BATCH_RECORDS + 1
    dead_before = len(server[1].dead_path.read_bytes().splitlines())
    batches = [events_pb2.EventBatch(events=[to_proto(GOOD[6])]),
               events_pb2.EventBatch(events=[events_pb2.Event()] * n),
               events_pb2.EventBatch(events=[to_proto(GOOD[7])])]
    reply = stub.SendStream(iter(batches), timeout=10)
    assert (reply.accepted, reply.rejected, reply.rejections_omitted) == (2, n, n - 1)
    (r,) = reply.rejections
    assert (r.index, r.field) == (1, "events") and f"limit of {MAX_BATCH_RECORDS}" in r.reason
    assert len(server[1].dead_path.read_bytes().splitlines()) == dead_before + 1


def test_a_long_bad_value_is_quoted_by_a_short_prefix_only(stub: events_pb2_grpc.IngestStub) -> None:
    msg = to_proto(GOOD[8])
    msg.currency = "Q" * 200_000
    with pytest.raises(grpc.RpcError) as err:
        stub.Send(msg, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    field, reason = err.value.details().split(": ", 1)
    assert field == "currency" and len(reason) <= MAX_REASON_CHARS and "(200000 chars)" in reason


# --- concurrency: idle streams cannot starve the unary calls ---------------------------------------


def test_idle_streams_leave_room_for_unary_calls_and_excess_calls_are_refused(tmp_path: Path) -> None:
    ingest = Ingest(tmp_path / "ingest", source="rpc")
    srv, port = make_server(ingest, "127.0.0.1", 0)  # the defaults the service runs with
    srv.start()
    release = threading.Event()

    def idle(i: int) -> Iterator[events_pb2.EventBatch]:
        yield events_pb2.EventBatch(events=[to_proto({**GOOD[0], "event_id": 10_000 + i})])
        release.wait(30)  # then say nothing, as a stalled producer does

    streams: list[grpc.Future] = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = events_pb2_grpc.IngestStub(channel)

            def open_streams(count: int) -> None:
                """Streams whose first batch is in, so each holds a slot (a slot a finished call
                still held a moment ago may be refused: that stream is opened again)."""
                deadline = time.monotonic() + 10
                for _ in range(count):
                    i, taken = len(streams), ingest.accepted  # nothing else is sent meanwhile
                    while True:
                        future = stub.SendStream.future(idle(i), timeout=30)
                        while ingest.accepted == taken and not future.done():
                            assert time.monotonic() < deadline, f"stream {i} did not start"
                            time.sleep(0.005)
                        if not future.done():
                            streams.append(future)
                            break
                        assert future.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            def unary(event_id: int) -> events_pb2.IngestReply:
                """A unary call, allowed to find a slot still held by a call that just ended."""
                deadline = time.monotonic() + 3
                while True:
                    try:
                        return stub.Send(to_proto({**GOOD[1], "event_id": event_id}), timeout=3)
                    except grpc.RpcError as err:
                        if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                            raise
                        time.sleep(0.01)

            open_streams(4)  # the old pool had 4 threads: these 4 starved every other call
            assert unary(1).accepted == 1
            open_streams(DEFAULT_MAX_CONCURRENT_RPCS - 4 - 1)
            assert unary(2).accepted == 1  # the last free slot
            open_streams(1)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                stub.Send(to_proto(GOOD[3]), timeout=3)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit" in err.value.details() and time.monotonic() - started < 2
            release.set()
            assert sum(f.result(timeout=10).accepted for f in streams) == DEFAULT_MAX_CONCURRENT_RPCS
            assert unary(3).accepted == 1
    finally:
        release.set()
        srv.stop(grace=None)
        ingest.close()
