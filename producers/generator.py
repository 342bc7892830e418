"""Seeded generator of realistic payment transactions.

Shape: Zipf-like users and merchants, a daily rhythm in event time,
lognormal amounts, fraud bursts from a few compromised users, and knobs for
rate, out-of-order fraction with bounded lateness, and malformed records.
Everything is vectorised with numpy so a million events take well under a second,
and the same config always yields the same events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from dataflow_playground.core.schema import DEVICES, FIELD_NAMES, arrow_schema

DAY_MS = 86_400_000
DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

COUNTRIES = ("US", "DE", "FR", "GB", "JP", "BR", "IN", "ES", "IT", "NL")
_COUNTRY_CURRENCY = {"US": "USD", "DE": "EUR", "FR": "EUR", "GB": "GBP", "JP": "JPY",
                     "BR": "BRL", "IN": "INR", "ES": "EUR", "IT": "EUR", "NL": "EUR"}


@dataclass(frozen=True)
class GeneratorConfig:
    events: int = 10_000
    seed: int = 42
    rate: float = 1_000.0  # mean events per second of event time
    users: int = 10_000
    merchants: int = 1_000
    zipf_s: float = 1.1  # skew of user and merchant popularity
    fraud_rate: float = 0.004  # background fraud outside bursts
    fraud_bursts: int = 5
    out_of_order: float = 0.0  # fraction of events delivered late
    max_lateness_ms: int = 0  # how late (event time behind arrival) at most
    malformed_rate: float = 0.0  # fraction of wire records deliberately broken
    start_ms: int = DEFAULT_START_MS

    def __post_init__(self) -> None:
        checks = {
            "events": self.events >= 0, "rate": self.rate > 0, "users": self.users > 0,
            "merchants": self.merchants > 0, "zipf_s": self.zipf_s > 0,
            "out_of_order": 0 <= self.out_of_order <= 1,
            "max_lateness_ms": self.max_lateness_ms >= 0,
            "malformed_rate": 0 <= self.malformed_rate <= 1,
            "fraud_rate": 0 <= self.fraud_rate <= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid generator settings: {', '.join(bad)} (see GeneratorConfig)")


def _zipf_ids(rng: np.random.Generator, n: int, size: int, s: float) -> np.ndarray:
    """Ids 0..size-1 with P(rank k) proportional to 1/k^s, shuffled so id != rank."""
    weights = 1.0 / np.arange(1, size + 1) ** s
    weights /= weights.sum()
    ranks = rng.choice(size, size=n, p=weights)
    return rng.permutation(size)[ranks].astype(np.int64)


def _event_times(rng: np.random.Generator, cfg: GeneratorConfig) -> np.ndarray:
    """Arrival times with a daily rhythm: busy afternoons, quiet nights."""
    n = cfg.events
    gaps = rng.exponential(1000.0 / cfg.rate, size=n)
    approx_t = cfg.start_ms + np.cumsum(gaps)
    hour = ((approx_t - cfg.start_ms) % DAY_MS) / 3_600_000
    # Intensity between 0.4x (04:00) and 1.6x (16:00) of the mean rate.
    intensity = 1.0 + 0.6 * np.sin((hour - 10.0) / 24.0 * 2 * np.pi)
    return (cfg.start_ms + np.cumsum(gaps / intensity)).astype(np.int64)


def generate_table(cfg: GeneratorConfig) -> pa.Table:
    """The clean events in arrival (emission) order, as an Arrow table."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.events
    ts = _event_times(rng, cfg)
    users = _zipf_ids(rng, n, cfg.users, cfg.zipf_s)
    merchants = _zipf_ids(rng, n, cfg.merchants, cfg.zipf_s)
    amount = np.round(rng.lognormal(mean=3.3, sigma=1.0, size=n), 2).clip(0.01, 50_000)

    # Each user has a home country; 5% of payments happen abroad.
    home = rng.integers(0, len(COUNTRIES), size=cfg.users)
    country_idx = np.where(rng.random(n) < 0.05, rng.integers(0, len(COUNTRIES), n), home[users])
    countries = np.array(COUNTRIES, dtype=object)[country_idx]
    currencies = np.array([_COUNTRY_CURRENCY[c] for c in COUNTRIES], dtype=object)[country_idx]
    device_idx = rng.choice(len(DEVICES), size=n, p=[0.35, 0.35, 0.2, 0.1])
    devices = np.array(DEVICES, dtype=object)[device_idx]
    devices[rng.random(n) < 0.01] = None  # unknown device

    is_fraud = rng.random(n) < cfg.fraud_rate
    if n and cfg.fraud_bursts:
        # A burst: one compromised user, many large payments in a short span.
        span = max(int(ts[-1] - ts[0]), 1)
        burst_ms = min(15 * 60_000, max(span // 100, 1_000))  # short against the whole run
        for _ in range(cfg.fraud_bursts):
            start = ts[0] + rng.integers(0, span)
            in_burst = (ts >= start) & (ts < start + burst_ms)
            pick = in_burst & (rng.random(n) < 0.3)
            victim = rng.integers(0, cfg.users)
            users[pick] = victim
            amount[pick] = np.round(amount[pick] * rng.uniform(3, 10), 2).clip(0.01, 50_000)
            is_fraud[pick] = True

    if cfg.out_of_order > 0 and cfg.max_lateness_ms > 0:
        late = rng.random(n) < cfg.out_of_order
        ts[late] -= rng.integers(1, cfg.max_lateness_ms + 1, size=int(late.sum()))

    columns = {
        "event_id": np.arange(n, dtype=np.int64),
        "user_id": users,
        "merchant_id": merchants,
        "amount": amount,
        "currency": currencies,
        "country": countries,
        "device": devices,
        "ts": ts,
        "is_fraud": is_fraud,
    }
    assert tuple(columns) == FIELD_NAMES
    return pa.table(columns, schema=arrow_schema())


def generate_events(cfg: GeneratorConfig) -> list[dict[str, object]]:
    """The clean events as Python dicts (slower; for small runs and tests)."""
    return generate_table(cfg).to_pylist()


# --- the wire: JSON records, a few deliberately broken -------------------------------------

MALFORMED_KINDS = (
    "undecodable", "missing_field", "wrong_type", "negative_amount",
    "nan_amount", "far_future_ts", "unknown_currency",
)


@dataclass(frozen=True)
class WireRecord:
    key: bytes
    value: bytes
    event_id: int | None  # None for a malformed record
    malformed: str | None  # which kind of breakage, for the tests' bookkeeping


def encode_event(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)


def _break(event: dict[str, object], kind: str) -> bytes:
    bad = dict(event)
    if kind == "undecodable":
        return b"\xff\xfe not json \x00" + str(event["event_id"]).encode()
    if kind == "missing_field":
        bad.pop("amount")
    elif kind == "wrong_type":
        bad["user_id"] = f"user-{bad['user_id']}"
    elif kind == "negative_amount":
        bad["amount"] = -abs(float(bad["amount"]))  # type: ignore[arg-type]
    elif kind == "nan_amount":
        # orjson writes NaN as null; a lenient producer writes the bare token.
        return orjson.dumps(bad).replace(b'"amount":' + orjson.dumps(bad["amount"]), b'"amount":NaN')
    elif kind == "far_future_ts":
        bad["ts"] = 32_503_680_000_000  # year 3000
    elif kind == "unknown_currency":
        bad["currency"] = "XYZ"
    return orjson.dumps(bad)


def wire_records(cfg: GeneratorConfig) -> Iterator[WireRecord]:
    """Kafka-ready records keyed by user_id; ``malformed_rate`` of them broken.

    A broken record replaces a good one, so ``events`` records are yielded in all.
    """
    return table_to_wire(generate_table(cfg), cfg.seed + 1, cfg.malformed_rate)


def table_to_wire(table: pa.Table, seed: int, malformed_rate: float) -> Iterator[WireRecord]:
    """The rows of ``table`` as wire records; a seeded ``malformed_rate`` of them broken."""
    rng = np.random.default_rng(seed)
    broken = rng.random(table.num_rows) < malformed_rate
    kinds = rng.integers(0, len(MALFORMED_KINDS), size=table.num_rows)
    for i, event in enumerate(table.to_pylist()):
        key = str(event["user_id"]).encode()
        if broken[i]:
            kind = MALFORMED_KINDS[kinds[i]]
            yield WireRecord(key, _break(event, kind), None, kind)
        else:
            event_id = event["event_id"]
            assert isinstance(event_id, int)
            yield WireRecord(key, encode_event(event), event_id, None)
