"""The feature definitions: one declarative spec that batch SQL and the stream both compile.

Semantics (docs/features.md): the value of a feature for an
event ``e`` aggregates the events of the same entity key whose ``ts`` lies in
``[e.ts - window, e.ts)``. The interval is half-open on the right, so events with
exactly ``e.ts`` are *excluded*, whatever their ``event_id``: all events that share
a timestamp see the same history (and none sees another, so no label leaks through
a tie). ``event_id`` only orders events *inside* a window (``last_k`` lists them by
``(ts, event_id)``) and orders processing in the stream.

Adding a feature is adding one :class:`FeatureSpec` to :data:`FEATURES`; the SQL
compiler (:mod:`dataflow_playground.features.batch_sql`) and the stream operators
(:mod:`dataflow_playground.features.stream.state`) both read this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class Agg(StrEnum):
    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    DISTINCT = "distinct_count"
    TIME_SINCE_LAST = "time_since_last_ms"
    LAST_K = "last_k"


@dataclass(frozen=True)
class Entity:
    name: str  # as in the URL: /features/{name}/{id}
    key: str  # the event column holding the entity id


USER = Entity("user", "user_id")
MERCHANT = Entity("merchant", "merchant_id")
ENTITIES: dict[str, Entity] = {e.name: e for e in (USER, MERCHANT)}

# Columns a feature may aggregate or filter on (numbers only: they compare and hash cheaply).
NumericColumn = Literal["amount", "user_id", "merchant_id"]
Op = Literal[">=", ">", "<=", "<", "=="]


@dataclass(frozen=True)
class Filter:
    """Keep only events with ``column op value`` (e.g. ``amount >= 500``)."""

    column: NumericColumn
    op: Op
    value: float

    def sql(self) -> str:
        op = "=" if self.op == "==" else self.op
        return f"{self.column} {op} {self.value!r}"

    def label(self) -> str:
        return f"{self.column}{self.op}{self.value:g}"


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    entity: Entity
    agg: Agg
    window_ms: int
    column: NumericColumn | None = None  # what is aggregated; None for count / time-since-last
    k: int = 0  # for LAST_K
    where: Filter | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        needs_column = self.agg not in (Agg.COUNT, Agg.TIME_SINCE_LAST)
        if needs_column != (self.column is not None):
            raise ValueError(f"feature {self.name}: aggregation {self.agg} "
                             f"{'needs' if needs_column else 'takes no'} column")
        if (self.agg == Agg.LAST_K) != (self.k > 0):
            raise ValueError(f"feature {self.name}: k > 0 goes with last_k and only with it")
        if self.agg == Agg.LAST_K and self.where is not None:
            raise ValueError(f"feature {self.name}: last_k takes no filter (its SQL counts rows)")
        if self.window_ms <= 0:
            raise ValueError(f"feature {self.name}: window must be positive")

    @property
    def is_list(self) -> bool:
        return self.agg == Agg.LAST_K


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("user_txn_count_1h", USER, Agg.COUNT, HOUR_MS,
                doc="payments by the user in the last hour (velocity)"),
    FeatureSpec("user_amount_sum_24h", USER, Agg.SUM, DAY_MS, "amount",
                doc="total spent by the user in the last 24 h"),
    FeatureSpec("user_amount_avg_7d", USER, Agg.AVG, 7 * DAY_MS, "amount",
                doc="the user's mean payment over 7 days (baseline for 'unusual amount')"),
    FeatureSpec("user_amount_max_24h", USER, Agg.MAX, DAY_MS, "amount",
                doc="the user's largest payment in the last 24 h"),
    FeatureSpec("user_distinct_merchants_24h", USER, Agg.DISTINCT, DAY_MS, "merchant_id",
                doc="how many different merchants the user paid in 24 h"),
    FeatureSpec("user_time_since_last_ms", USER, Agg.TIME_SINCE_LAST, 7 * DAY_MS,
                doc="ms since the user's previous payment (null if none in 7 days)"),
    FeatureSpec("user_last_3_amounts", USER, Agg.LAST_K, DAY_MS, "amount", k=3,
                doc="the user's last three amounts within 24 h, oldest first"),
    FeatureSpec("user_large_txn_count_24h", USER, Agg.COUNT, DAY_MS,
                where=Filter("amount", ">=", 500.0),
                doc="payments of 500 or more by the user in 24 h"),
    FeatureSpec("merchant_txn_count_1h", MERCHANT, Agg.COUNT, HOUR_MS,
                doc="payments received by the merchant in the last hour"),
    FeatureSpec("merchant_amount_sum_1h", MERCHANT, Agg.SUM, HOUR_MS, "amount",
                doc="amount received by the merchant in the last hour"),
    FeatureSpec("merchant_amount_min_24h", MERCHANT, Agg.MIN, DAY_MS, "amount",
                doc="the merchant's smallest payment in 24 h (card-testing shows as tiny amounts)"),
    FeatureSpec("merchant_distinct_users_24h", MERCHANT, Agg.DISTINCT, DAY_MS, "user_id",
                doc="how many different users paid the merchant in 24 h"),
)


def by_entity(features: tuple[FeatureSpec, ...] = FEATURES) -> dict[str, tuple[FeatureSpec, ...]]:
    return {name: tuple(f for f in features if f.entity.name == name) for name in ENTITIES}


def feature_names(features: tuple[FeatureSpec, ...] = FEATURES) -> list[str]:
    return [f.name for f in features]


def empty_value(spec: FeatureSpec) -> object:
    """The value over an empty window: 0 for counts and sums, [] for last-k, else null."""
    if spec.agg in (Agg.COUNT, Agg.DISTINCT):
        return 0
    if spec.agg == Agg.SUM:
        return 0.0
    if spec.agg == Agg.LAST_K:
        return []
    return None
