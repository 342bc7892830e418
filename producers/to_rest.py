"""REST writer: batches POSTed to the ingestion service with httpx, retried with tenacity.

One ``httpx.Client`` keeps its connection alive across requests. A connect error,
a timeout or a 5xx is transient: retried with exponential backoff and jitter up to
``attempts`` times, then the batch is given up (counted as lost by the caller).
A 4xx is the caller's fault and is never retried. The send time travels in the
``x-sent-at-us`` header, stamped once per batch, so a retried batch shows its delay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from dataflow_playground.core.receipts import now_us
from dataflow_playground.producers.base import UNLISTED, FlowWriter

SENT_HEADER = "x-sent-at-us"


class TransientError(Exception):
    """A failure worth retrying (the service may be back soon)."""


class RestWriter(FlowWriter):
    mode = "rest"

    def __init__(self, url: str, timeout_s: float = 5.0, attempts: int = 8,
                 backoff_max_s: float = 1.0, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__()
        self.client = httpx.Client(
            transport=transport, base_url=url, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            headers={"content-type": "application/json"})
        self.attempts = attempts
        self.backoff_max_s = backoff_max_s

    def _count_retry(self, _state: RetryCallState) -> None:
        self.stats.retries += 1

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        single = len(events) == 1
        path, body = ("/events", orjson.dumps(events[0])) if single else (
            "/events/batch", orjson.dumps(list(events)))
        headers = {SENT_HEADER: str(now_us())}
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential_jitter(multiplier=0.05, max=self.backoff_max_s),
                retry=retry_if_exception_type(TransientError),
                before_sleep=self._count_retry, reraise=True,
            ):
                with attempt:
                    self._post(path, body, headers, len(events))
        except TransientError:
            self.stats.gave_up_events += len(events)

    def _post(self, path: str, body: bytes, headers: dict[str, str], n: int) -> None:
        try:
            resp = self.client.post(path, content=body, headers=headers)
        except httpx.TimeoutException as err:
            self.stats.errors["timeout"] += 1
            raise TransientError(str(err)) from err
        except httpx.TransportError as err:
            self.stats.errors["connect"] += 1
            raise TransientError(str(err)) from err
        if resp.status_code >= 500:
            self.stats.errors["http_5xx"] += 1
            raise TransientError(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            # The whole request was refused (bad JSON, too large, invalid single event).
            self.stats.errors[f"http_{resp.status_code}"] += 1
            self.stats.rejected += n
            detail = resp.json().get("detail", {}) if resp.content else {}
            self.stats.reasons[str(detail.get("field", "?")) if isinstance(detail, dict) else "?"] += n
            return
        out = resp.json()
        self.stats.accepted += int(out["accepted"])
        self.stats.rejected += int(out["rejected"])
        for r in out["rejections"]:
            self.stats.reasons[r["field"]] += 1
        if out["rejections_omitted"]:
            self.stats.reasons[UNLISTED] += int(out["rejections_omitted"])

    def close(self) -> None:
        self.client.close()
