"""The training table as one vectorised numpy pass per entity: the fast path of batch features.

The SQL of :mod:`~dataflow_playground.features.batch_sql` is the readable reference;
``tests/features/test_batch_numpy.py`` proves with hypothesis that this pass gives the same
table (integers and nulls exactly, floats within :data:`~...features.parity.REL_TOL`).
It compiles the same :data:`~...features.definitions.FEATURES` list, so the semantics are
the ones :mod:`~...features.definitions` states.

Per entity the events are sorted once by ``(key, ts, event_id)``, then cut into **blocks** of
whole keys (about :data:`BLOCK_ROWS` rows each). A window never crosses keys, so each block is
computed on its own, with arrays small enough to stay in the CPU caches, and the blocks of both
entities share the threads. In a block every window ``[ts - W, ts)`` is a row range
``[lo, hi)``: ``hi`` is the first row of the event's ``(key, ts)`` peer group, ``lo`` the key's
first row with ``ts >= ts - W``, a ``searchsorted`` on one int64 composite of (key group,
ts). Over these ranges:

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

Each block writes its slice of the entity's result arrays (sorted order); one gather per
array then puts it in ``event_id`` order, and frees the sorted one. Sorts are one vectorised
(unstable) ``np.sort`` of an int64 composite ``key << bits | row``: the row number in the low
bits keeps ties in order. Inputs whose composites would not fit in an int64 (keys spread over
the int64 range, float values) take stable argsorts instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataflow_playground.features.definitions import ENTITIES, FEATURES, Agg, FeatureSpec, Filter

_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "==": np.equal}
_INT64_ROOM = 2**62  # composites and exact integer prefix sums stay below this
T = TypeVar("T")
R = TypeVar("R")


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


def _radix_argsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``order`` stably re-sorted by ``values[order]`` (integers): numpy sorts 16-bit digits
    with a linear radix sort, against n log n for an int64 sort."""
    low = int(values.min())
    shifted = (values - low).astype(np.uint64)
    for shift in range(0, max(int(values.max()) - low, 1).bit_length(), 16):
        digit = (shifted[order] >> np.uint64(shift)).astype(np.uint16)  # keeps the low 16 bits
        order = order[np.argsort(digit, kind="stable")]
    return order


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


def _sorted_composite(keys: np.ndarray) -> tuple[np.ndarray, int] | None:
    """A stable sort of integer ``keys`` as one sort of ``(key - min) << bits | row``: the sorted
    composite and ``bits`` (its low ``bits`` are the order, the rest the sorted keys). None when
    that composite would not fit in an int64 (or the keys are not integers)."""
    n = len(keys)
    if keys.dtype.kind not in "iu" or not n:
        return None
    low, high = int(keys.min()), int(keys.max())
    bits = n.bit_length()
    if (high - low + 1) << bits >= _INT64_ROOM or high >= _INT64_ROOM:
        return None
    composite = (keys.astype(np.int64) - low) << bits | np.arange(n)
    composite.sort()  # unstable, vectorised: the row number in the low digits breaks the ties
    return composite, bits


# Rows per block (blocks hold whole keys): one array of a block is 512 KB, so the few a step
# works on stay in L2. 32k to 128k gave the same time at 10M events within the noise.
BLOCK_ROWS = 1 << 16


@dataclass
class _Block:
    """One key-contiguous slice of an entity's sorted events, with the window searches."""

    ts: np.ndarray
    comp: np.ndarray  # group * stride + ts offset: sorted, and no two keys' ranges overlap
    hi: np.ndarray  # first row of each row's (key, ts) peer group
    group: np.ndarray  # 0, 1, ... by key, within the block
    cols: dict[str, np.ndarray]
    _lo: dict[int, np.ndarray] = field(default_factory=dict)
    _counts: dict[Filter, np.ndarray] = field(default_factory=dict)
    _sums: dict[tuple[str, Filter | None], _PrefixSums] = field(default_factory=dict)

    def lo(self, window_ms: int) -> np.ndarray:
        """The key's first row with ``ts >= row ts - window_ms`` (one search per width)."""
        if window_ms not in self._lo:
            self._lo[window_ms] = np.searchsorted(self.comp, self.comp - window_ms, side="left")
        return self._lo[window_ms]

    def counts(self, where: Filter) -> np.ndarray:
        """Prefix counts of the rows ``where`` keeps (one per filter)."""
        if where not in self._counts:
            self._counts[where] = _prefix_count(_OPS[where.op](self.cols[where.column], where.value))
        return self._counts[where]

    def prefix_sums(self, column: str, where: Filter | None, mask: np.ndarray | None) -> _PrefixSums:
        """One set of prefix sums per (column, filter), shared by its sums and averages."""
        if (column, where) not in self._sums:
            x = self.cols[column]
            self._sums[column, where] = _PrefixSums.of(x if mask is None else np.where(mask, x, 0.0))
        return self._sums[column, where]


def _distinct(b: _Block, values: np.ndarray, mask: np.ndarray | None, window_ms: int) -> np.ndarray:
    kept = None if mask is None else np.flatnonzero(mask)
    group, value = (b.group, values) if kept is None else (b.group[kept], values[kept])
    m = len(group)
    # Kept rows are in (key, ts, event_id) order; sorted stably by (key, value) each row's next
    # occurrence of its value follows it.
    pair = None
    if m and value.dtype.kind in "iu":
        low, high = int(value.min()), int(value.max())
        span, bits = high - low + 1, m.bit_length()
        if (int(group[-1]) + 1) * span << bits < _INT64_ROOM and high < _INT64_ROOM:
            pair = (group * span + (value.astype(np.int64) - low)) << bits | np.arange(m)
    if pair is not None:
        pair.sort()  # unstable, vectorised: the row number in the low bits breaks the ties
        by_value = pair & ((1 << bits) - 1)
        pair >>= bits
        same_next = pair[:-1] == pair[1:]
    else:
        by_value = _argsort_pairs(group, value)
        group, value = group[by_value], value[by_value]
        same_next = (group[:-1] == group[1:]) & (value[:-1] == value[1:])
    rows = by_value if kept is None else kept[by_value]
    ts = b.ts[rows]
    end = ts + window_ms
    end[:-1] = np.where(same_next, np.minimum(ts[1:], end[:-1]), end[:-1])
    end += b.comp[rows] - ts  # comp of time 0 for the row's key: constant per key
    end.sort()
    started = b.hi if mask is None else _prefix_count(mask)[b.hi]  # kept rows before the peer group
    return started - np.searchsorted(end, b.comp, side="left")  # minus intervals over by ts


def _nullable(spec: FeatureSpec) -> bool:
    return spec.agg in (Agg.AVG, Agg.MIN, Agg.MAX, Agg.TIME_SINCE_LAST)


def _feature(spec: FeatureSpec, b: _Block) -> tuple[list[np.ndarray], np.ndarray | None]:
    """One feature's arrays for a block, in sorted order, and where it is non-null."""
    lo, hi = b.lo(spec.window_ms), b.hi
    mask = None if spec.where is None else _OPS[spec.where.op](b.cols[spec.where.column], spec.where.value)
    x = b.cols[spec.column] if spec.column else None
    if spec.where is None:
        count = hi - lo
    else:
        counts = b.counts(spec.where)
        count = counts[hi] - counts[lo]
    match spec.agg:
        case Agg.COUNT:
            return [count], None
        case Agg.SUM | Agg.AVG:
            assert spec.column is not None
            total = b.prefix_sums(spec.column, spec.where, mask).between(lo, hi)
            if spec.agg == Agg.SUM:
                return [total], None
            return [total / np.maximum(count, 1)], count > 0
        case Agg.MIN | Agg.MAX:
            assert x is not None
            if mask is not None:  # filtered-out rows can win neither
                info = np.finfo(x.dtype) if x.dtype.kind == "f" else np.iinfo(x.dtype)
                x = np.where(mask, x, info.min if spec.agg == Agg.MAX else info.max)
            return [_window_extreme(x, lo, hi, spec.agg == Agg.MAX)], count > 0
        case Agg.DISTINCT:
            assert x is not None
            return [_distinct(b, x, mask, spec.window_ms)], None
        case Agg.TIME_SINCE_LAST:
            last = np.maximum(hi - 1, 0)  # the row before the peer group...
            if mask is not None:  # ... or the last one the filter keeps
                rows = np.arange(len(hi))
                last = np.maximum(np.maximum.accumulate(np.where(mask, rows, -1))[last], 0)
            return [b.ts - b.ts[last]], count > 0
        case Agg.LAST_K:
            assert x is not None
            start = np.maximum(lo, hi - spec.k)
            top = len(x) - 1
            return [hi - start, *(x[np.minimum(start + j, top)] for j in range(spec.k))], None
    raise ValueError(f"feature {spec.name}: no vectorised form for {spec.agg}")


def _dtypes(spec: FeatureSpec, cols: dict[str, np.ndarray]) -> list[np.dtype]:
    """The dtypes of the arrays :func:`_feature` returns."""
    i64, f64 = np.dtype(np.int64), np.dtype(np.float64)
    match spec.agg:
        case Agg.SUM | Agg.AVG:
            return [f64]
        case Agg.MIN | Agg.MAX:
            assert spec.column is not None
            return [cols[spec.column].dtype]
        case Agg.LAST_K:
            assert spec.column is not None
            return [i64] + [cols[spec.column].dtype] * spec.k
    return [i64]


class _Entity:
    """One entity's features: its sort, its blocks, and the arrays they fill (sorted order)."""

    def __init__(self, specs: list[FeatureSpec], ev: dict[str, np.ndarray], by_ts: np.ndarray,
                 block_rows: int) -> None:
        self.specs = specs
        key = ev[specs[0].entity.key]
        n = len(by_ts)
        sort = _sorted_composite(key[by_ts])
        # sorted position -> event-order row, by (key, ts, event_id)
        if sort is not None:
            composite, bits = sort
            perm = by_ts[composite & ((1 << bits) - 1)]
            k = composite >> bits  # the sorted keys, less the smallest
            del sort, composite
        else:
            perm = _radix_argsort(key, by_ts)
            k = key[perm]
        self.ts = ev["ts"][perm]
        new_key = np.concatenate(([True], k[1:] != k[:-1]))
        self.group = np.cumsum(new_key) - 1
        key_starts = np.flatnonzero(new_key)
        starts = np.unique(key_starts[np.minimum(
            np.searchsorted(key_starts, np.arange(0, n, max(block_rows, 1))), len(key_starts) - 1)])
        self.blocks = list(zip(starts.tolist(), [*starts[1:].tolist(), n], strict=True))
        self.cols = {c: ev[c][perm] for c in _value_columns(specs)}
        self.max_window = max(f.window_ms for f in specs)
        self.t0 = int(self.ts.min())
        self.stride = int(self.ts.max()) - self.t0 + 2 * self.max_window + 2
        self.take = np.empty(n, dtype=np.int64)  # event-order row -> sorted position
        self.take[perm] = np.arange(n)
        self.values = {f.name: [np.empty(n, dtype=d) for d in _dtypes(f, self.cols)] for f in specs}
        # where a nullable feature's window holds rows: one array per (width, filter)
        self.valid = {(f.window_ms, f.where): np.empty(n, dtype=bool) for f in specs if _nullable(f)}

    def run_block(self, start: int, stop: int) -> None:
        ts = self.ts[start:stop]
        group = self.group[start:stop] - self.group[start]
        comp = group * self.stride + (ts - (self.t0 - self.max_window))
        rows = np.arange(len(comp))
        starts_peers = np.concatenate(([True], comp[1:] != comp[:-1]))
        hi = np.maximum.accumulate(np.where(starts_peers, rows, 0))
        b = _Block(ts, comp, hi, group, {c: v[start:stop] for c, v in self.cols.items()})
        for f in self.specs:
            arrays, ok = _feature(f, b)
            for into, a in zip(self.values[f.name], arrays, strict=True):
                into[start:stop] = a
            if ok is not None:
                self.valid[f.window_ms, f.where][start:stop] = ok

    def release(self) -> list[np.ndarray]:
        """The result arrays (sorted order), handed over to be put in event order: each
        feature's, then the validity ones. The entity keeps only what :meth:`results` needs."""
        arrays = [a for f in self.specs for a in self.values[f.name]] + list(self.valid.values())
        self.valid_keys = list(self.valid)
        del self.ts, self.group, self.cols, self.values, self.valid
        return arrays

    def results(self, ordered: list[np.ndarray]) -> dict[str, pa.Array]:
        """The features from the arrays of :meth:`release`, in event order."""
        valid = dict(zip(self.valid_keys, ordered[len(ordered) - len(self.valid_keys):], strict=True))
        arrays = iter(ordered)
        out: dict[str, pa.Array] = {}
        for f in self.specs:
            if f.agg == Agg.LAST_K:
                lengths, last = next(arrays), np.stack([next(arrays) for _ in range(f.k)], axis=1)
                kept = np.arange(f.k) < lengths[:, None]
                offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
                out[f.name] = pa.ListArray.from_arrays(
                    pa.array(offsets), pa.array(last[kept]),  # row by row, oldest first
                    type=pa.list_(pa.field("l", pa.from_numpy_dtype(last.dtype))))
                continue
            ok = valid[f.window_ms, f.where] if _nullable(f) else None
            out[f.name] = pa.array(next(arrays), mask=None if ok is None else ~ok)
        return out


def training_table(events: pa.Table, features: tuple[FeatureSpec, ...] = FEATURES,
                   threads: int = 2, block_rows: int = BLOCK_ROWS) -> pa.Table:
    """One row per event, in ``event_id`` order, with its point-in-time-correct feature values.

    The same table as :func:`~...features.batch_sql.training_sql` (check :func:`supports` first).
    ``block_rows`` only changes the speed: each block holds whole keys.
    """
    names = {"event_id", "user_id", "merchant_id", "ts"} | _value_columns(features)
    raw = {c: events.column(c).to_numpy() for c in sorted(names)}
    ids = raw["event_id"]
    if not np.all(ids[:-1] <= ids[1:]):  # event order: the output's
        by_event = np.argsort(ids, kind="stable")
        raw = {c: v[by_event] for c, v in raw.items()}
    out: dict[str, pa.Array] = {c: pa.array(raw[c]) for c in ("event_id", "user_id", "merchant_id", "ts")}
    groups = [specs for e in ENTITIES.values() if (specs := [f for f in features if f.entity == e])]
    computed: dict[str, pa.Array] = {}
    if events.num_rows:
        pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        try:
            computed = _compute(groups, raw, block_rows, pool)
        finally:
            if pool is not None:
                pool.shutdown()
    for f in features:
        out[f.name] = computed.get(f.name, pa.array([], type=_empty_type(f)))
    return pa.table(out)


def _compute(groups: list[list[FeatureSpec]], ev: dict[str, np.ndarray], block_rows: int,
             pool: ThreadPoolExecutor | None) -> dict[str, pa.Array]:
    """The features of every entity. Each step is a list of independent jobs for the threads
    (numpy's sorts, searches and gathers release the GIL): the entities' sorts, then the
    blocks of both entities, largest first, then one gather per result array."""
    def run(job: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return list(pool.map(job, items) if pool is not None else map(job, items))

    sort = _sorted_composite(ev["ts"])  # (ts, event_id) order, shared by the entities
    by_ts = np.argsort(ev["ts"], kind="stable") if sort is None else sort[0] & ((1 << sort[1]) - 1)
    del sort
    entities = run(lambda specs: _Entity(specs, ev, by_ts, block_rows), groups)
    blocks = sorted(((e, a, z) for e in entities for a, z in e.blocks), key=lambda t: t[1] - t[2])
    run(lambda t: t[0].run_block(t[1], t[2]), blocks)
    # One gather per result array; each sorted-order array is freed once gathered.
    sources: list[np.ndarray | None] = []
    takes: list[np.ndarray] = []
    counts = []
    for e in entities:
        arrays = e.release()
        sources += arrays
        takes += [e.take] * len(arrays)
        counts.append(len(arrays))

    def gather(i: int) -> np.ndarray:
        a = sources[i]
        assert a is not None
        sources[i] = None
        return a[takes[i]]

    ordered = run(gather, range(len(sources)))
    bounds = np.cumsum([0, *counts]).tolist()
    parts = run(lambda i: entities[i].results(ordered[bounds[i]:bounds[i + 1]]), range(len(entities)))
    return {name: a for part in parts for name, a in part.items()}


def _value_columns(features: Sequence[FeatureSpec]) -> set[str]:
    """The columns features aggregate or filter on."""
    return {c for f in features for c in (f.column, f.where.column if f.where else None) if c}


def _empty_type(spec: FeatureSpec) -> pa.DataType:
    if spec.agg == Agg.LAST_K:
        return pa.list_(pa.field("l", pa.float64()))
    return pa.float64() if spec.agg in (Agg.SUM, Agg.AVG, Agg.MIN, Agg.MAX) else pa.int64()
