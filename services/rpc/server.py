"""The gRPC ingestion service (``Ingest`` in ``events.proto``): unary and client streaming.

Run: ``python -m dataflow_playground.services.rpc.server [--host 127.0.0.1] [--port N]``. Same
validation as REST (``dataflow_playground.services.ingest``): a bad unary event fails with
INVALID_ARGUMENT ``"<field>: <reason>"``; a stream keeps its good records and
lists the bad ones. Messages over ``max_message_bytes`` are refused by gRPC itself
with RESOURCE_EXHAUSTED. Proto3 has no "missing": an unset number reads as 0, so a
missing ``amount`` or ``ts`` is refused by value, a missing id reads as id 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from dataflow_playground.core.proto import events_pb2, events_pb2_grpc
from dataflow_playground.core.settings import get_settings
from dataflow_playground.services.ingest import Ingest, Outcome, ingest_folder

SENT_METADATA = "x-sent-at-us"
DEFAULT_MAX_MESSAGE_BYTES = 2 * 2**20


def to_record(msg: events_pb2.Event) -> dict[str, Any]:
    return {"event_id": msg.event_id, "user_id": msg.user_id, "merchant_id": msg.merchant_id,
            "amount": msg.amount, "currency": msg.currency, "country": msg.country,
            "device": msg.device if msg.HasField("device") else None, "ts": msg.ts,
            "is_fraud": msg.is_fraud}


def _reply(outcome: Outcome, offset: int = 0) -> events_pb2.IngestReply:
    return events_pb2.IngestReply(accepted=outcome.accepted, rejected=[
        events_pb2.Rejected(index=offset + i, field=r.field, reason=r.reason)
        for i, r in outcome.rejections])


class IngestServicer(events_pb2_grpc.IngestServicer):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def Send(self, request: events_pb2.Event, context: grpc.ServicerContext) -> events_pb2.IngestReply:
        sent = dict(context.invocation_metadata() or ()).get(SENT_METADATA)
        outcome = self.ingest.ingest([to_record(request)], int(sent) if sent else None)
        if outcome.rejections:
            _, r = outcome.rejections[0]
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{r.field}: {r.reason}")
        return _reply(outcome)

    def SendStream(self, request_iterator: Iterator[events_pb2.EventBatch],
                   context: grpc.ServicerContext) -> events_pb2.IngestReply:
        total = events_pb2.IngestReply()
        offset = 0
        for batch in request_iterator:
            outcome = self.ingest.ingest([to_record(e) for e in batch.events], batch.sent_at_us or None)
            reply = _reply(outcome, offset)
            total.accepted += reply.accepted
            total.rejected.extend(reply.rejected)
            offset += len(batch.events)
        return total


def make_server(ingest: Ingest, host: str, port: int, max_workers: int = 4,
                max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server and the port it bound (``port=0``: any free)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
    ])
    events_pb2_grpc.add_IngestServicer_to_server(IngestServicer(ingest), server)
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
