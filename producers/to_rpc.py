"""gRPC writer: batches fed into client-streaming calls (or unary ``Send`` for batch 1).

A stream carries up to ``stream_batches`` batches, fed from a small bounded queue
so the producer feels the server's back-pressure. The server answers once per
stream, so when a stream breaks the caller cannot know which of its batches
landed: it retries them all (tenacity, exponential backoff with jitter), and the
ones the server had already taken arrive twice. That is the honest cost of
at-least-once over a request/response protocol; the fault run counts it.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from dataflow_playground.core.proto import events_pb2, events_pb2_grpc
from dataflow_playground.core.receipts import now_us
from dataflow_playground.producers.base import UNLISTED, FlowWriter

SENT_METADATA = "x-sent-at-us"
TRANSIENT_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                   grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
# Reconnect quickly after the server comes back (gRPC's default starts at 1 s, grows to 120 s).
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1000),
                   ("grpc.max_send_message_length", 8 * 2**20)]


class TransientRpcError(Exception):
    pass


def to_proto(event: dict[str, Any]) -> events_pb2.Event:
    device = event.get("device")
    msg = events_pb2.Event(
        event_id=event["event_id"], user_id=event["user_id"], merchant_id=event["merchant_id"],
        amount=event["amount"], currency=event["currency"], country=event["country"],
        ts=event["ts"], is_fraud=event["is_fraud"])
    if device is not None:
        msg.device = device
    return msg


_END = object()


class RpcWriter(FlowWriter):
    mode = "rpc"

    def __init__(self, target: str, timeout_s: float = 10.0, attempts: int = 8,
                 backoff_max_s: float = 1.0, stream_batches: int = 20) -> None:
        super().__init__()
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = events_pb2_grpc.IngestStub(self.channel)
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_max_s = backoff_max_s
        self.stream_batches = stream_batches
        self._pending: list[events_pb2.EventBatch] = []  # batches of the open stream
        self._queue: queue.Queue[Any] | None = None
        self._future: Any = None

    # --- retry plumbing -----------------------------------------------------------------

    def _retrying(self) -> Retrying:
        def count(_state: RetryCallState) -> None:
            self.stats.retries += 1

        return Retrying(stop=stop_after_attempt(self.attempts),
                        wait=wait_exponential_jitter(multiplier=0.05, max=self.backoff_max_s),
                        retry=retry_if_exception_type(TransientRpcError), before_sleep=count,
                        reraise=True)

    def _classify(self, err: grpc.RpcError, n: int) -> None:
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        kind = "timeout" if code == grpc.StatusCode.DEADLINE_EXCEEDED else code.name.lower()
        self.stats.errors[kind] += 1
        if code in TRANSIENT_CODES:
            raise TransientRpcError(kind) from err
        self.stats.rejected += n  # INVALID_ARGUMENT and friends: not worth retrying
        self.stats.reasons[(err.details() or "?").split(":")[0]] += n

    def _count_reply(self, reply: events_pb2.IngestReply) -> None:
        self.stats.accepted += reply.accepted
        self.stats.rejected += reply.rejected
        for r in reply.rejections:
            self.stats.reasons[r.field] += 1
        if reply.rejections_omitted:
            self.stats.reasons[UNLISTED] += reply.rejections_omitted

    # --- unary ----------------------------------------------------------------------------

    def _send_unary(self, event: dict[str, Any]) -> None:
        msg = to_proto(event)
        metadata = ((SENT_METADATA, str(now_us())),)

        def call() -> None:
            try:
                self._count_reply(self.stub.Send(msg, metadata=metadata, timeout=self.timeout_s))
            except grpc.RpcError as err:
                self._classify(err, 1)

        try:
            for attempt in self._retrying():
                with attempt:
                    call()
        except TransientRpcError:
            self.stats.gave_up_events += 1

    # --- client streaming -----------------------------------------------------------------

    def _open_stream(self) -> None:
        q: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._queue = q

        def requests() -> Iterator[events_pb2.EventBatch]:
            while (item := q.get()) is not _END:
                yield item

        self._future = self.stub.SendStream.future(requests(), timeout=self.timeout_s * 6)

    def _put(self, batch: events_pb2.EventBatch) -> bool:
        """Feed the open stream; False if the stream already failed."""
        assert self._queue is not None
        while True:
            if self._future.done():
                return False
            try:
                self._queue.put(batch, timeout=0.1)
                return True
            except queue.Full:
                continue

    def _finish_stream(self) -> None:
        """Close the open stream and settle its batches, resending them all if it failed."""
        if self._future is None:
            return
        future, batches, q = self._future, self._pending, self._queue
        self._future, self._queue, self._pending = None, None, []
        if q is not None:
            # Release gRPC's request thread if the stream died while it waited for more.
            with contextlib.suppress(queue.Full):
                q.put_nowait(_END)
        n = sum(len(b.events) for b in batches)
        try:
            self._count_reply(future.result())
            return
        except grpc.RpcError as err:
            try:
                self._classify(err, n)
                return
            except TransientRpcError:
                pass
        # Resend every batch of the broken stream in a fresh one (at-least-once).
        def resend() -> None:
            try:
                reply = self.stub.SendStream(iter(batches), timeout=self.timeout_s * 6)
                self._count_reply(reply)
            except grpc.RpcError as err:
                self._classify(err, n)

        self.stats.retries += 1
        try:
            for attempt in self._retrying():
                with attempt:
                    resend()
        except TransientRpcError:
            self.stats.gave_up_events += n

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        if len(events) == 1 and self.stream_batches <= 1:
            self._send_unary(events[0])
            return
        batch = events_pb2.EventBatch(events=[to_proto(e) for e in events], sent_at_us=now_us())
        if self._future is None:
            self._open_stream()
        self._pending.append(batch)
        fed = self._put(batch)
        if not fed or len(self._pending) >= self.stream_batches:
            self._end_queue()
            self._finish_stream()

    def _end_queue(self) -> None:
        if self._queue is not None and self._future is not None and not self._future.done():
            try:
                self._queue.put(_END, timeout=self.timeout_s)
            except queue.Full:
                self._future.cancel()

    def close(self) -> None:
        self._end_queue()
        self._finish_stream()
        self.channel.close()
