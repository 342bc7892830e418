"""The gRPC ingestion service (``Ingest`` in ``events.proto``): unary and client streaming.

Run: ``python -m dataflow_playground.services.rpc.server [--host 127.0.0.1] [--port N]``. Same
validation as REST (``dataflow_playground.services.ingest``): a bad unary event fails with
INVALID_ARGUMENT ``"<field>: <reason>"``; a stream keeps its good records and
lists the bad ones (the first ``MAX_LISTED_REJECTIONS``, plus the counts). Bytes that do
not decode as the request message, and an ``x-sent-at-us`` metadata value that is not an
int64 of microseconds, are INVALID_ARGUMENT too. Messages over ``max_message_bytes`` are
refused by gRPC itself with RESOURCE_EXHAUSTED, and so are calls beyond
``max_concurrent_rpcs`` (the thread pool has a thread for each, so idle streams can hold
only their own share). Proto3 has no "missing": an unset number reads as 0, so a
missing ``amount`` or ``ts`` is refused by value, a missing id reads as id 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from dataflow_playground.core.metrics import serve_metrics
from dataflow_playground.core.proto import events_pb2, events_pb2_grpc
from dataflow_playground.core.settings import get_settings
from dataflow_playground.core.validation import Rejection
from dataflow_playground.services.ingest import (
    MAX_BATCH_RECORDS,
    SENT_AT_NAME,
    Ingest,
    Outcome,
    batch_too_large,
    ingest_folder,
    parse_sent_at,
)

SENT_METADATA = SENT_AT_NAME
DEFAULT_MAX_MESSAGE_BYTES = 2 * 2**20
# Calls served at once; one more is refused at once with RESOURCE_EXHAUSTED ("Concurrent RPC
# limit exceeded!") rather than queued behind streams that may idle for minutes. The pool has
# a thread for every admitted call, so a few idle streams never starve the unary calls.
DEFAULT_MAX_CONCURRENT_RPCS = 16

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Undecodable:
    """What the request deserializer hands over instead of raising (grpcio would answer INTERNAL)."""

    detail: str


def _decoder(message: type[M]) -> Callable[[bytes], M | Undecodable]:
    name = message.DESCRIPTOR.full_name

    def decode(raw: bytes) -> M | Undecodable:
        try:
            return message.FromString(raw)
        except DecodeError as err:
            return Undecodable(f"request: {len(raw)} bytes that are not a {name} message ({err})")

    return decode


def _decoded(request: M | Undecodable, context: grpc.ServicerContext) -> M:
    if isinstance(request, Undecodable):
        _invalid(context, request.detail)
    return request


def _invalid(context: grpc.ServicerContext, detail: str) -> NoReturn:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, detail)
    raise AssertionError("context.abort returned")  # it raises; this line is for the type checker


def _sent_at(context: grpc.ServicerContext) -> int | None:
    sent = dict(context.invocation_metadata() or ()).get(SENT_METADATA)
    if sent is None:
        return None
    try:
        return parse_sent_at(sent if isinstance(sent, str) else sent.decode("latin-1"))
    except ValueError as err:
        _invalid(context, f"{SENT_METADATA}: {err}")


def to_record(msg: events_pb2.Event) -> dict[str, Any]:
    return {"event_id": msg.event_id, "user_id": msg.user_id, "merchant_id": msg.merchant_id,
            "amount": msg.amount, "currency": msg.currency, "country": msg.country,
            "device": msg.device if msg.HasField("device") else None, "ts": msg.ts,
            "is_fraud": msg.is_fraud}


def _reply(outcome: Outcome) -> events_pb2.IngestReply:
    return events_pb2.IngestReply(
        accepted=outcome.accepted, rejected=outcome.rejected, rejections_omitted=outcome.omitted,
        rejections=[events_pb2.Rejected(index=i, field=r.field, reason=r.reason)
                    for i, r in outcome.rejections])


class IngestServicer(events_pb2_grpc.IngestServicer):
    """The two calls; requests arrive through ``_decoder``, so each may be ``Undecodable``."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def Send(self, request: events_pb2.Event | Undecodable,
             context: grpc.ServicerContext) -> events_pb2.IngestReply:
        event = _decoded(request, context)
        outcome = self.ingest.ingest([to_record(event)], _sent_at(context))
        if outcome.rejections:
            _, r = outcome.rejections[0]
            _invalid(context, str(r))
        return _reply(outcome)

    def SendStream(self, request_iterator: Iterator[events_pb2.EventBatch | Undecodable],
                   context: grpc.ServicerContext) -> events_pb2.IngestReply:
        total = Outcome()
        offset = 0
        for n, request in enumerate(request_iterator):
            batch = _decoded(request, context)
            count = len(batch.events)
            if count > MAX_BATCH_RECORDS:
                outcome = self.ingest.refuse_all(count, Rejection(
                    "events", f"batch {n}: {batch_too_large(count, 'message')}; none of it was taken",
                    "too_many_records"))
            else:
                outcome = self.ingest.ingest([to_record(e) for e in batch.events],
                                             batch.sent_at_us or None)
            total.add(outcome, offset)
            offset += count
        return _reply(total)


def add_to_server(servicer: IngestServicer, server: grpc.Server) -> None:
    """``add_IngestServicer_to_server`` with request decoders that never raise (see ``Undecodable``)."""
    service = events_pb2.DESCRIPTOR.services_by_name["Ingest"]
    handlers = {
        "Send": grpc.unary_unary_rpc_method_handler(
            servicer.Send, request_deserializer=_decoder(events_pb2.Event),
            response_serializer=events_pb2.IngestReply.SerializeToString),
        "SendStream": grpc.stream_unary_rpc_method_handler(
            servicer.SendStream, request_deserializer=_decoder(events_pb2.EventBatch),
            response_serializer=events_pb2.IngestReply.SerializeToString),
    }
    if set(handlers) != {m.name for m in service.methods}:
        raise RuntimeError(f"events.proto's Ingest has {sorted(m.name for m in service.methods)}, "
                           f"the server serves {sorted(handlers)}")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def make_server(ingest: Ingest, host: str, port: int,
                max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server and the port it bound (``port=0``: any free).

    One worker thread per admitted call: a call beyond ``max_concurrent_rpcs`` is refused
    (RESOURCE_EXHAUSTED), never queued for a thread.
    """
    workers = futures.ThreadPoolExecutor(max_workers=max_concurrent_rpcs, thread_name_prefix="grpc-ingest")
    server = grpc.server(workers, options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
    ], maximum_concurrent_rpcs=max_concurrent_rpcs)
    add_to_server(IngestServicer(ingest), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the gRPC server to {host}:{port}")
    return server, bound


def ready(target: str, timeout_s: float = 2.0) -> bool:
    """True when a channel to ``target`` connects within ``timeout_s``."""
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
            return True
        except grpc.FutureTimeoutError:
            return False


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description="Serve the gRPC Ingest service.")
    parser.add_argument("--host", default=settings.bind_host)
    parser.add_argument("--port", type=int, default=settings.rpc_port)
    args = parser.parse_args(argv)
    ingest = Ingest(ingest_folder(settings.data_dir / "ingest"), source="rpc")
    server, port = make_server(ingest, args.host, args.port)
    server.start()
    serve_metrics(settings, "rpc")
    stopping = threading.Event()

    def stop(_sig: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"gRPC Ingest listening on {args.host}:{port}", flush=True)
    stopping.wait()
    server.stop(grace=2).wait()
    ingest.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
