"""Online/offline consistency, measured the way Chronon measures it, per feature.

For every event the batch (offline) value ``b`` is the reference and the stream
(online) value ``s`` is compared with it:

- ``mismatch_rate``: share of events where ``s != b`` (a missing or extra value counts too);
- ``missing_rate``: ``b`` is set but the stream has no value (no record, or null);
- ``extra_rate``: the stream has a value where batch has null;
- ``smape``: ``sum|s - b| / sum(s + b)`` over events where both are set (lists: their sums).

Equality: integers and null exactly; floats within ``|a - b| <= 1e-9 * max(|a|, |b|) + 1e-9``.
The tolerance exists because the two sides add in different orders (DuckDB's segment
trees vs the stream's running, compensated sums); rounding then differs in the last
bits (~1e-16 relative), never by 1e-9, so any real difference still counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dataflow_playground.features.definitions import FEATURES, FeatureSpec

REL_TOL = 1e-9
ABS_TOL = 1e-9


def _num_equal(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        fa, fb = float(a), float(b)  # type: ignore[arg-type]
        return abs(fa - fb) <= REL_TOL * max(abs(fa), abs(fb)) + ABS_TOL
    return a == b


def values_equal(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(_num_equal(x, y) for x, y in zip(a, b, strict=True)))
    return _num_equal(a, b)


def _magnitude(v: object) -> float:
    if isinstance(v, list):
        return float(sum(v))
    return float(v)  # type: ignore[arg-type]


def _is_set(v: object) -> bool:
    # An empty last-k list is the list feature's "nothing in the window", like null.
    return v is not None and v != []


@dataclass
class FeatureParity:
    count: int = 0
    mismatches: int = 0
    missing: int = 0
    extra: int = 0
    abs_diff: float = 0.0
    abs_sum: float = 0.0
    examples: list[dict[str, object]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        n = self.count or 1
        return {"mismatch_rate": self.mismatches / n, "missing_rate": self.missing / n,
                "extra_rate": self.extra / n,
                "smape": self.abs_diff / self.abs_sum if self.abs_sum else 0.0}


def compare(batch: Iterable[tuple[object, Mapping[str, object]]],
            stream: Mapping[Any, Mapping[str, object]],
            features: tuple[FeatureSpec, ...] = FEATURES, examples: int = 3) -> dict[str, FeatureParity]:
    """Compare ``(row id, batch values)`` pairs with ``stream[row id]`` (absent = not produced)."""
    out = {f.name: FeatureParity() for f in features}
    for row_id, bvals in batch:
        svals = stream.get(row_id)
        for f in features:
            p = out[f.name]
            p.count += 1
            b = bvals.get(f.name)
            s = svals.get(f.name) if svals is not None else None
            if svals is None or not values_equal(s, b):
                p.mismatches += 1
                if _is_set(b) and not _is_set(s):
                    p.missing += 1
                elif _is_set(s) and not _is_set(b):
                    p.extra += 1
                if len(p.examples) < examples:
                    p.examples.append({"id": row_id, "batch": b,
                                       "stream": s if svals is not None else "<no record>"})
            if _is_set(b) and _is_set(s):
                p.abs_diff += abs(_magnitude(s) - _magnitude(b))
                p.abs_sum += abs(_magnitude(s) + _magnitude(b))
    return out
