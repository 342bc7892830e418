"""A request body size limit (413) as plain ASGI middleware, for selected path prefixes.

``Content-Length`` over the limit is refused before reading; a chunked body is
counted as it streams in and refused once it passes the limit.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 2 * 2**20


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 prefixes: tuple[str, ...] = ("/events",)) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = prefixes

    async def _refuse(self, send: Send, size: str) -> None:
        body = orjson.dumps({"detail": {"field": "body", "reason":
                                        f"request body of {size} exceeds the limit of "
                                        f"{self.max_bytes} bytes; send smaller batches"}})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, f"{int(length)} bytes")
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, f"more than {self.max_bytes} bytes (chunked)")


def json_error(field: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "reason": reason, **extra}
