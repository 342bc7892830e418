"""From receipts to the figures every mode reports: delivery, throughput, latency, CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dataflow_playground.core.receipts import ROW


@dataclass
class Delivery:
    sent: int
    received: int  # distinct sent ids that arrived
    lost: int
    duplicated: int  # arrivals beyond the first per id
    unexpected: int  # ids that were never sent


def delivery(sent_ids: np.ndarray, received_ids: np.ndarray) -> Delivery:
    """Compare the ids sent with the ids received (with repeats)."""
    sent = np.unique(sent_ids)
    got, counts = np.unique(received_ids, return_counts=True)
    arrived = np.isin(sent, got, assume_unique=True)
    return Delivery(
        sent=len(sent),
        received=int(arrived.sum()),
        lost=int((~arrived).sum()),
        duplicated=int((counts - 1).sum()),
        unexpected=int((~np.isin(got, sent, assume_unique=True)).sum()),
    )


@dataclass
class Latency:
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def latency(receipts: np.ndarray) -> Latency:
    """Percentiles of ``recv_us - sent_us`` over first arrivals (numpy's linear method)."""
    if not len(receipts):
        return Latency(None, None, None, None)
    ms = (receipts["recv_us"] - receipts["sent_us"]) / 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Latency(round(float(p50), 3), round(float(p95), 3), round(float(p99), 3),
                   round(float(ms.max()), 3))


def first_arrivals(receipts: np.ndarray) -> np.ndarray:
    if not len(receipts):
        return receipts
    order = np.argsort(receipts["recv_us"], kind="stable")
    ordered = receipts[order]
    _, first = np.unique(ordered["event_id"], return_index=True)
    return ordered[np.sort(first)]


def throughput(receipts: np.ndarray, first_sent_us: int | None = None) -> float:
    """Distinct events per second, from the first send to the last first arrival."""
    firsts = first_arrivals(receipts)
    if len(firsts) < 2:
        return 0.0
    start = first_sent_us if first_sent_us is not None else int(firsts["sent_us"].min())
    span_s = (int(firsts["recv_us"].max()) - start) / 1e6
    return len(firsts) / span_s if span_s > 0 else 0.0


@dataclass
class FlowResult:
    """One row of the comparison: one mode (or one consumer group) of one run."""

    mode: str
    sent: int
    received: int
    lost: int
    duplicated: int
    events_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    cpu_s: float
    rejected: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flow_result(mode: str, sent_ids: np.ndarray, receipts: np.ndarray, cpu_s: float,
                first_sent_us: int | None = None, rejected: int = 0,
                detail: dict[str, Any] | None = None) -> FlowResult:
    d = delivery(sent_ids, receipts["event_id"])
    lat = latency(first_arrivals(receipts))
    return FlowResult(
        mode=mode, sent=d.sent, received=d.received, lost=d.lost, duplicated=d.duplicated,
        events_per_s=round(throughput(receipts, first_sent_us), 1),
        p50_ms=lat.p50_ms, p95_ms=lat.p95_ms, p99_ms=lat.p99_ms, cpu_s=round(cpu_s, 3),
        rejected=rejected,
        detail={"max_ms": lat.max_ms, "unexpected_ids": d.unexpected, **(detail or {})},
    )


EMPTY = np.empty(0, dtype=ROW)
