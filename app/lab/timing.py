"""Timing for the lab: medians of repeats after a warm-up, more repeats for fast calls.

A call that takes 50 µs measured three times is mostly noise, so fast calls are
repeated until they have filled a small time budget; slow calls get the minimum.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dataflow_playground.app.results import median, timed_repeats

MIN_BUDGET_S = 0.3
MAX_REPEATS = 200
# Paired comparisons (honesty checks) get more samples: their point is a ratio near 1.
PAIR_BUDGET_S = 1.5
PAIR_MIN_REPEATS = 15


@dataclass(frozen=True)
class Timing:
    median_s: float
    repeats_s: list[float] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "repeats_s": self.repeats_s}


def _planned_repeats(first_s: float, repeats: int, budget_s: float = MIN_BUDGET_S) -> int:
    if first_s <= 0:
        return MAX_REPEATS
    return max(repeats, min(MAX_REPEATS, int(budget_s / first_s)))


def measure(fn: Callable[[], Any], repeats: int = 3, budget_s: float = MIN_BUDGET_S) -> Timing:
    """Warm up once (that call also sizes the repeat count), then time the repeats."""
    t0 = time.perf_counter()
    fn()
    n = _planned_repeats(time.perf_counter() - t0, repeats, budget_s)
    times = timed_repeats(fn, n, warmup=0)
    return Timing(median(times), times)


@dataclass(frozen=True)
class Paired:
    a: Timing
    b: Timing
    ratio: float  # median of the per-pair ratios a_i / b_i

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a.as_dict(), "b": self.b.as_dict(), "ratio": self.ratio}


def measure_pair(a: Callable[[], Any], b: Callable[[], Any], repeats: int = 3,
                 budget_s: float = PAIR_BUDGET_S) -> Paired:
    """Time two calls alternately (a, b, a, b...) so drift on a busy machine hits both.

    The ratio is the median of per-pair ratios: a burst of load from another process
    slows one pair, not the comparison.
    """
    t0 = time.perf_counter()
    a()
    b()
    n = _planned_repeats((time.perf_counter() - t0) / 2, max(repeats, PAIR_MIN_REPEATS),
                         budget_s)
    ta: list[float] = []
    tb: list[float] = []
    for i in range(n):
        # Swap who goes first each round so neither side always runs on a warmer cache.
        first, second, dst1, dst2 = (a, b, ta, tb) if i % 2 == 0 else (b, a, tb, ta)
        dst1 += timed_repeats(first, 1, warmup=0)
        dst2 += timed_repeats(second, 1, warmup=0)
    ratios = [x / y for x, y in zip(ta, tb, strict=True) if y > 0]
    return Paired(Timing(median(ta), ta), Timing(median(tb), tb), median(ratios))
