"""The training table as one vectorised numpy pass per entity: the fast path of batch features.

The SQL of :mod:`~dataflow_playground.features.batch_sql` is the readable reference;
``tests/features/test_batch_numpy.py`` proves with hypothesis that this pass gives the same
table (integers and nulls exactly, floats within :data:`~...features.parity.REL_TOL`).
It compiles the same :data:`~...features.definitions.FEATURES` list, so the semantics are
the ones :mod:`~...features.definitions` states.

Per entity the events are sorted once by ``(key, ts, event_id)``. Every window
``[ts - W, ts)`` is then a row range ``[lo, hi)`` of that order: ``hi`` is the first row of the
event's ``(key, ts)`` peer group, ``lo`` the key's first row with ``ts >= ts - W``; both are
``searchsorted`` on one int64 composite of (key group, ts). Over these ranges:

- counts are prefix-count differences;
- sums and averages are prefix-sum differences, split so that cancellation cannot lose digits:
  each value is an integer multiple of ``2**-s`` (summed exactly in int64) plus a remainder
  below ``2**-s`` (summed in float64, where its rounding is tiny);
- min and max read a sparse table: two power-of-two blocks that cover ``[lo, hi)``;
- a distinct count is the running sum of +1/-1 markers: a row counts from its ``ts``
  (exclusive) until the next row with its value or ``ts + W`` (inclusive), so the value is
  "rows before ``hi``" minus "rows whose interval ended before ``ts``";
- time since last is ``ts`` minus the last (filtered) row before ``hi``;
- the last ``k`` values are rows ``max(lo, hi - k) .. hi - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataflow_playground.features.definitions import ENTITIES, FEATURES, Agg, FeatureSpec, Filter

_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "==": np.equal}
_INT64_ROOM = 2**62  # composites and exact integer prefix sums stay below this


def supports(events: pa.Table, features: tuple[FeatureSpec, ...] = FEATURES) -> bool:
    """Whether this pass can compute ``features`` over ``events`` (else use the SQL).

    Not covered: null keys, timestamps or aggregated values; sums and averages of integer
    columns (the SQL returns HUGEINT / DECIMAL there); and rows times time span too large for
    one int64 composite of (key group, ts): beyond ~10 million events over 14 years.
    """
    if events.num_rows == 0:
        return True
    used = {"event_id", "ts"} | {f.entity.key for f in features} | _value_columns(features)
    if any(events.column(c).null_count for c in used):
        return False
    for f in features:
        if f.agg in (Agg.SUM, Agg.AVG) and not pa.types.is_floating(events.schema.field(f.column).type):
            return False
    ts = events.column("ts")
    span = int(pc.max(ts).as_py()) - int(pc.min(ts).as_py())
    return events.num_rows * (span + 2 * max(f.window_ms for f in features) + 2) < _INT64_ROOM


@dataclass
class _Sorted:
    """One entity's events in ``(key, ts, event_id)`` order, with the window searches."""

    order: np.ndarray  # sorted position -> input row
    ts: np.ndarray
    comp: np.ndarray  # group * stride + ts offset: sorted, and no two keys' ranges overlap
    hi: np.ndarray  # first row of each row's (key, ts) peer group
    group: np.ndarray  # 0, 1, ... by key
    _lo: dict[int, np.ndarray] = field(default_factory=dict)
    _sums: dict[tuple[str, Filter | None], _PrefixSums] = field(default_factory=dict)

    def prefix_sums(self, column: str, x: np.ndarray, where: Filter | None,
                    mask: np.ndarray | None) -> _PrefixSums:
        """One set of prefix sums per (column, filter), shared by its sums and averages."""
        if (column, where) not in self._sums:
            self._sums[column, where] = _PrefixSums.of(x if mask is None else np.where(mask, x, 0.0))
        return self._sums[column, where]

    def lo(self, window_ms: int) -> np.ndarray:
        """The key's first row with ``ts >= row ts - window_ms`` (one search per width)."""
        if window_ms not in self._lo:
            self._lo[window_ms] = np.searchsorted(self.comp, self.comp - window_ms, side="left")
        return self._lo[window_ms]


def _sort_entity(key: np.ndarray, ts: np.ndarray, event_id: np.ndarray, max_window: int) -> _Sorted:
    t0 = int(ts.min())
    stride = int(ts.max()) - t0 + 2 * max_window + 2
    # Stable sorts, least significant first: (key, ts, event_id). Events usually come nearly
    # in event_id and ts order, which timsort takes in one pass; keys come shuffled.
    order = np.argsort(event_id, kind="stable")
    order = order[np.argsort(ts[order], kind="stable")]
    order = _radix_argsort(key, order)
    k, t = key[order], ts[order]
    group = np.concatenate(([0], np.cumsum(k[1:] != k[:-1])))
    comp = group * stride + (t - t0 + max_window)
    rows = np.arange(len(comp))
    starts_peers = np.concatenate(([True], comp[1:] != comp[:-1]))
    return _Sorted(order, t, comp, np.maximum.accumulate(np.where(starts_peers, rows, 0)), group)


def _radix_argsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``order`` stably re-sorted by ``values[order]`` (integers): numpy sorts 16-bit digits
    with a linear radix sort, against n log n for an int64 sort."""
    low = int(values.min())
    shifted = (values - low).astype(np.uint64)
    for shift in range(0, max(int(values.max()) - low, 1).bit_length(), 16):
        digit = (shifted[order] >> np.uint64(shift)).astype(np.uint16)  # keeps the low 16 bits
        order = order[np.argsort(digit, kind="stable")]
    return order


def _mask(where: Filter | None, cols: dict[str, np.ndarray]) -> np.ndarray | None:
    return None if where is None else _OPS[where.op](cols[where.column], where.value)


def _prefix_count(mask: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))


@dataclass
class _PrefixSums:
    """Prefix sums of floats, split so that differences keep every digit.

    Each value is an integer multiple of ``2**-bits`` (summed exactly in int64) plus a
    remainder of at most ``2**-(bits + 1)`` (summed in float64). ``bits`` is as large as the
    int64 sums allow, so the remainders, and their rounding, are tiny: ~1e-12 for 10M events
    of the generator's amounts. Plain float prefix sums lose the small windows that follow
    large totals (``test_small_sums_next_to_large_ones_keep_their_digits``).
    """

    whole: np.ndarray
    rest: np.ndarray
    scale: float

    @classmethod
    def of(cls, x: np.ndarray) -> _PrefixSums:
        bits = int(np.clip(np.floor(61 - np.log2(float(np.abs(x).sum()) + 1.0)), 0, 40))
        scale = 2.0**bits
        whole = np.rint(x * scale)  # exact: a power-of-two scaling, then the nearest integer
        rest = x - whole / scale  # exact (Sterbenz's lemma)
        return cls(np.concatenate(([0], np.cumsum(whole.astype(np.int64)))),
                   np.concatenate(([0.0], np.cumsum(rest))), scale)

    def between(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """``sum(x[lo:hi])`` per row."""
        whole = (self.whole[hi] - self.whole[lo]).astype(np.float64) / self.scale
        return whole + (self.rest[hi] - self.rest[lo])


def _window_extreme(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, is_max: bool) -> np.ndarray:
    """``max``/``min`` of ``x[lo:hi]`` per row (garbage where empty), sparse-table style.

    At level ``j``, ``block[i]`` is the extreme of ``x[i : i + 2**j]``; a range whose length
    has ``2**j`` as its highest power of two is covered by two such blocks, one starting at
    ``lo`` and one ending at ``hi``. Levels are built in place, one at a time, answering the
    rows of each level as it passes (a full table would be ~15 arrays of ``len(x)``).
    """
    pick = np.maximum if is_max else np.minimum
    n = len(x)
    _, exponent = np.frexp(np.maximum(hi - lo, 1))
    level = (exponent - 1).astype(np.int8)  # floor(log2(length)), exact for integers
    by_level = np.argsort(level, kind="stable")
    bounds = np.searchsorted(level[by_level], np.arange(int(level.max()) + 2))
    out = np.empty_like(x)
    block = x.copy()
    for j in range(int(level.max()) + 1):
        if j:
            half = 2 ** (j - 1)
            block[:-half] = pick(block[:-half], block[half:])  # the tail is never read again
        rows = by_level[bounds[j]:bounds[j + 1]]
        out[rows] = pick(block[np.minimum(lo[rows], n - 1)], block[np.maximum(hi[rows] - 2**j, 0)])
    return out


def _argsort_pairs(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """A stable argsort by ``(major, minor)``, for ``major`` already sorted."""
    rows = np.arange(len(major))
    if minor.dtype.kind in "iu" and len(minor):
        return _radix_argsort(major, _radix_argsort(minor, rows))
    return np.lexsort((minor, major))


def _distinct(s: _Sorted, values: np.ndarray, mask: np.ndarray | None, window_ms: int) -> np.ndarray:
    n = len(s.ts)
    kept = np.arange(n) if mask is None else np.flatnonzero(mask)
    base = (s.comp - s.ts)[kept]  # comp of time 0 for the row's key: constant per key
    # Kept rows are in (key, ts, event_id) order and the sort is stable, so this is
    # (key, value, ts, event_id) order: each row's next occurrence of its value follows it.
    by_value = _argsort_pairs(s.group[kept], values[kept])
    base, value, ts = base[by_value], values[kept][by_value], s.ts[kept][by_value]
    same_next = (base[:-1] == base[1:]) & (value[:-1] == value[1:])
    end = ts + window_ms
    end[:-1] = np.where(same_next, np.minimum(ts[1:], end[:-1]), end[:-1])
    ended_at = np.sort(base + end)
    started = s.hi if mask is None else _prefix_count(mask)[s.hi]  # kept rows before the peer group
    return started - np.searchsorted(ended_at, s.comp, side="left")  # minus intervals over by ts


def _feature(spec: FeatureSpec, s: _Sorted, cols: dict[str, np.ndarray], take: np.ndarray) -> pa.Array:
    """One feature's values, computed in the entity's sorted order, returned in ``take``'s."""
    lo, hi = s.lo(spec.window_ms), s.hi
    mask = _mask(spec.where, cols)
    x = cols[spec.column] if spec.column else None
    if mask is None:
        count = hi - lo
    else:
        counts = _prefix_count(mask)
        count = counts[hi] - counts[lo]
    match spec.agg:
        case Agg.COUNT:
            return pa.array(count[take])
        case Agg.SUM | Agg.AVG:
            assert x is not None and spec.column is not None
            total = s.prefix_sums(spec.column, x, spec.where, mask).between(lo, hi)[take]
            if spec.agg == Agg.SUM:
                return pa.array(total)
            count = count[take]
            return pa.array(total / np.maximum(count, 1), mask=count == 0)
        case Agg.MIN | Agg.MAX:
            assert x is not None
            if mask is not None:  # filtered-out rows can win neither
                info = np.finfo(x.dtype) if x.dtype.kind == "f" else np.iinfo(x.dtype)
                x = np.where(mask, x, info.min if spec.agg == Agg.MAX else info.max)
            extreme = _window_extreme(x, lo, hi, spec.agg == Agg.MAX)[take]
            return pa.array(extreme, mask=count[take] == 0)
        case Agg.DISTINCT:
            assert x is not None
            return pa.array(_distinct(s, x, mask, spec.window_ms)[take])
        case Agg.TIME_SINCE_LAST:
            last = np.maximum(hi - 1, 0)[take]  # the row before the peer group...
            if mask is not None:  # ... or the last one the filter keeps
                rows = np.arange(len(hi))
                last = np.maximum(np.maximum.accumulate(np.where(mask, rows, -1))[last], 0)
            return pa.array(s.ts[take] - s.ts[last], mask=count[take] == 0)
        case Agg.LAST_K:
            assert x is not None
            return _lists(x, np.maximum(lo, hi - spec.k)[take], hi[take])
    raise ValueError(f"feature {spec.name}: no vectorised form for {spec.agg}")


def _lists(x: np.ndarray, start: np.ndarray, stop: np.ndarray) -> pa.Array:
    """``x[start:stop]`` per row, as one list array."""
    lengths = stop - start
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    index = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(x[index]),
                                    type=pa.list_(pa.field("l", pa.from_numpy_dtype(x.dtype))))


def training_table(events: pa.Table, features: tuple[FeatureSpec, ...] = FEATURES,
                   threads: int = 2) -> pa.Table:
    """One row per event, in ``event_id`` order, with its point-in-time-correct feature values.

    The same table as :func:`~...features.batch_sql.training_sql` (check :func:`supports` first).
    """
    names = {"event_id", "user_id", "merchant_id", "ts"} | _value_columns(features)
    raw = {c: events.column(c).to_numpy() for c in sorted(names)}
    by_event = np.argsort(raw["event_id"], kind="stable")
    out: dict[str, pa.Array] = {c: pa.array(raw[c][by_event]) for c in
                                ("event_id", "user_id", "merchant_id", "ts")}
    groups = [specs for e in ENTITIES.values() if (specs := [f for f in features if f.entity == e])]
    computed: dict[str, pa.Array] = {}
    if events.num_rows:
        def run(specs: list[FeatureSpec]) -> dict[str, pa.Array]:
            return _entity_features(specs, raw, by_event)

        if threads > 1 and len(groups) > 1:
            # One thread per entity: numpy's sorts, searches and gathers release the GIL.
            with ThreadPoolExecutor(max_workers=threads) as pool:
                parts = list(pool.map(run, groups))
        else:
            parts = [run(specs) for specs in groups]
        for part in parts:
            computed.update(part)
    for f in features:
        out[f.name] = computed.get(f.name, pa.array([], type=_empty_type(f)))
    return pa.table(out)


def _entity_features(specs: list[FeatureSpec], raw: dict[str, np.ndarray],
                     by_event: np.ndarray) -> dict[str, pa.Array]:
    """The features of one entity, in output (``event_id``) order."""
    s = _sort_entity(raw[specs[0].entity.key], raw["ts"], raw["event_id"],
                     max(f.window_ms for f in specs))
    cols = {c: raw[c][s.order] for c in _value_columns(specs)}
    position = np.empty(len(s.order), dtype=np.int64)  # input row -> sorted position
    position[s.order] = np.arange(len(s.order))
    take = position[by_event]  # output row -> sorted position
    return {f.name: _feature(f, s, cols, take) for f in specs}


def _value_columns(features: Sequence[FeatureSpec]) -> set[str]:
    """The columns features aggregate or filter on."""
    return {c for f in features for c in (f.column, f.where.column if f.where else None) if c}


def _empty_type(spec: FeatureSpec) -> pa.DataType:
    if spec.agg == Agg.LAST_K:
        return pa.list_(pa.field("l", pa.float64()))
    return pa.float64() if spec.agg in (Agg.SUM, Agg.AVG, Agg.MIN, Agg.MAX) else pa.int64()
