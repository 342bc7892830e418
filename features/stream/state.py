"""Stream operators: per-key windowed state in event time, as plain Python (no broker).

Feed :class:`FeatureEngine` events; it answers each with the feature values the
definitions prescribe (``[e.ts - W, e.ts)``, equal ``ts`` excluded) and keeps, per
entity id, the "online" vector: the values right after the id's latest event
(``as_of = last_ts + 1``), which is what :mod:`dataflow_playground.features.online_store` serves.

Hot path (events in ``ts`` order per key): every window keeps its entries sorted,
with running aggregates (count, compensated sums, distinct counters, monotonic
deques for min/max); eviction happens from the left as time advances. All events
of one ``ts`` share a history, so the values computed for the first are reused.

Late path (an event older than the key's latest ``ts``): its own values are
recomputed from the key's retained history (:func:`aggregate`, the reference
implementation), and it is inserted into the windows in place, so the key's
online vector and every later event see it; that is the correction.

Installing the project compiles this one module with Cython (``setup.py``; pure Python where
there is no C compiler): the same source, less CPU per event for a worker (measured in
docs/features.md, "Compiled operators"). :data:`BUILD` says which one runs.
"""

from __future__ import annotations

import bisect
import functools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from dataflow_playground.features.definitions import ENTITIES, FEATURES, Agg, FeatureSpec, Filter, empty_value


def _build() -> str:
    """How this module runs: ``"compiled"`` or ``"pure Python"``.

    Installing the project compiles this module with Cython where a C compiler is found
    (``setup.py``), and Python then imports the compiled file in its place. In a checkout (the
    editable install builds it there, beside this source), a compiled file older than this
    source is refused: after an edit it would run the old code without a word. An installed
    wheel is not checked: nobody edits it, and its files' times are those of the install.
    """
    built = Path(__file__).resolve()
    if built.suffix == ".py":
        return "pure Python"
    source = built.with_name(built.name.split(".")[0] + ".py")
    in_checkout = (built.parents[2] / "setup.py").exists()  # <checkout>/features/stream/state...so
    if in_checkout and source.exists() and source.stat().st_mtime > built.stat().st_mtime:
        raise ImportError(f"{built} was compiled before the last change to {source}: rebuild it with "
                          "'make install', or delete it to run the pure-Python module")
    return "compiled"


BUILD: Final = _build()  # reported by the stream benchmark beside its figures

# An event as the operators see it: (ts, event_id, amount, user_id, merchant_id).
Entry = tuple[int, int, float, int, int]
TS: Final = 0
EID: Final = 1
COLUMN_INDEX = {"amount": 2, "user_id": 3, "merchant_id": 4}
# Entries packed as rows (checkpoints, :mod:`.wire`): the same five fields in the same order.
ENTRY_DTYPE = np.dtype([("ts", "<i8"), ("eid", "<i8"), ("amount", "<f8"), ("user", "<i8"),
                        ("merchant", "<i8")])
_ENTRY_FIELD = {3: "user", 4: "merchant"}
# What a restore takes: rows of ENTRY_DTYPE (a checkpoint's) or entry tuples.
EntryRows = np.ndarray | Iterable[Entry]


def entry_from(event: dict[str, object] | object) -> Entry:
    """Build an entry from a dict or an object with the event's attributes."""
    get = event.get if isinstance(event, dict) else lambda k: getattr(event, k)
    return (int(get("ts")), int(get("event_id")), float(get("amount")),  # type: ignore[arg-type]
            int(get("user_id")), int(get("merchant_id")))  # type: ignore[arg-type]


def _passes(where: Filter | None, e: Entry) -> bool:
    if where is None:
        return True
    v = e[COLUMN_INDEX[where.column]]
    match where.op:
        case ">=":
            return v >= where.value
        case ">":
            return v > where.value
        case "<=":
            return v <= where.value
        case "<":
            return v < where.value
        case "==":
            return v == where.value
    raise AssertionError(where.op)


def aggregate(spec: FeatureSpec, entries: Iterable[Entry], t: int) -> object:
    """Reference: the value of ``spec`` at ``t`` over ``entries`` (any superset, sorted by ts, eid)."""
    lo = t - spec.window_ms
    rows = [e for e in entries if lo <= e[TS] < t and _passes(spec.where, e)]
    if not rows:
        return empty_value(spec)
    col = COLUMN_INDEX.get(spec.column or "", -1)
    match spec.agg:
        case Agg.COUNT:
            return len(rows)
        case Agg.SUM:
            return _fsum(e[col] for e in rows)
        case Agg.AVG:
            return _fsum(e[col] for e in rows) / len(rows)
        case Agg.MIN:
            return min(e[col] for e in rows)
        case Agg.MAX:
            return max(e[col] for e in rows)
        case Agg.DISTINCT:
            return len({e[col] for e in rows})
        case Agg.TIME_SINCE_LAST:
            return t - rows[-1][TS]
        case Agg.LAST_K:
            return [e[col] for e in rows[-spec.k:]]
    raise AssertionError(spec.agg)


def _fsum(values: Iterable[float]) -> float:
    import math

    return math.fsum(values)


class _CompensatedSum:
    """Neumaier summation: adding and then removing values leaves (almost) no rounding residue."""

    __slots__ = ("c", "s")

    def __init__(self) -> None:
        self.s = 0.0
        self.c = 0.0

    def add(self, x: float) -> None:
        t = self.s + x
        if abs(self.s) >= abs(x):
            self.c += (self.s - t) + x
        else:
            self.c += (x - t) + self.s
        self.s = t

    def reset(self) -> None:
        self.s = self.c = 0.0

    @property
    def value(self) -> float:
        return self.s + self.c


class _Extreme:
    """Sliding min or max: a monotonic deque of entries, rebuilt after an out-of-order insert."""

    def __init__(self, col: int, is_max: bool) -> None:
        self.col, self.is_max = col, is_max
        self.q: deque[Entry] = deque()
        self.dirty = False

    def add(self, e: Entry) -> None:
        v, q = e[self.col], self.q
        if self.is_max:
            while q and q[-1][self.col] <= v:
                q.pop()
        else:
            while q and q[-1][self.col] >= v:
                q.pop()
        q.append(e)

    def evict(self, e: Entry) -> None:
        if self.q and self.q[0] is e:
            self.q.popleft()

    def rebuild(self, entries: Sequence[Entry]) -> None:
        self.q.clear()
        for e in entries:
            self.add(e)
        self.dirty = False


@functools.cache
def _window_layout(specs: tuple[FeatureSpec, ...]) -> tuple[tuple[int, ...], tuple[int, ...],
                                                             tuple[tuple[tuple[Agg, Any], int, bool], ...]]:
    """Which columns a window of ``specs`` sums, counts distinct, and tracks min/max of (computed
    once per feature set: every key of an entity has the same windows)."""
    sums = tuple(sorted({COLUMN_INDEX[s.column] for s in specs
                         if s.agg in (Agg.SUM, Agg.AVG) and s.column}))
    distinct = tuple(COLUMN_INDEX[s.column] for s in specs if s.agg == Agg.DISTINCT and s.column)
    extremes = tuple(((s.agg, s.column), COLUMN_INDEX[s.column], s.agg == Agg.MAX)
                     for s in specs if s.agg in (Agg.MIN, Agg.MAX) and s.column)
    return sums, distinct, extremes


@functools.cache
def _window_groups(specs: tuple[FeatureSpec, ...]
                   ) -> tuple[tuple[int, Filter | None, tuple[FeatureSpec, ...]], ...]:
    groups: dict[tuple[int, Filter | None], list[FeatureSpec]] = {}
    for s in specs:
        groups.setdefault((s.window_ms, s.where), []).append(s)
    return tuple((w, where, tuple(ss)) for (w, where), ss in groups.items())


class Window:
    """One key's entries of one (window length, filter), sorted by (ts, event_id)."""

    def __init__(self, window_ms: int, where: Filter | None, specs: Sequence[FeatureSpec]) -> None:
        self.window_ms, self.where, self.specs = window_ms, where, tuple(specs)
        self.entries: list[Entry] = []
        self.head = 0  # entries[:head] are evicted
        self.start = -(2**62)  # entries with ts < start are gone
        sum_cols, distinct_cols, extremes = _window_layout(self.specs)
        self.sums = {c: _CompensatedSum() for c in sum_cols}
        self.distinct = {c: Counter[float]() for c in distinct_cols}
        self.extremes: dict[tuple[Agg, Any], _Extreme] = {
            key: _Extreme(col, is_max) for key, col, is_max in extremes}
        # The same, as tuples: the hot loops below iterate them for every event.
        self._sums = tuple(self.sums.items())
        self._distinct = tuple(self.distinct.items())
        self._extremes = tuple(self.extremes.values())

    @property
    def count(self) -> int:
        return len(self.entries) - self.head

    def add(self, e: Entry) -> None:
        """Add ``e``; it may be older than the newest entry (a late event), never older than ``start``."""
        entries = self.entries
        in_order = not entries or len(entries) == self.head or entries[-1] <= e
        if in_order:
            entries.append(e)
        else:
            bisect.insort(entries, e, lo=self.head)
        for c, acc in self._sums:  # _CompensatedSum.add, inlined (the hottest line of the profile)
            x, s = e[c], acc.s
            t = s + x
            acc.c += ((s - t) + x) if abs(s) >= abs(x) else ((x - t) + s)
            acc.s = t
        for c, counter in self._distinct:
            counter[e[c]] += 1
        for ext in self._extremes:
            if in_order and not ext.dirty:
                ext.add(e)
            else:
                ext.dirty = True

    def evict_before(self, t: int) -> None:
        if t > self.start:
            self.start = t
        entries, head = self.entries, self.head
        if not entries or entries[head][TS] >= t:  # the common case: nothing falls out
            return
        while head < len(entries) and entries[head][TS] < t:
            e = entries[head]
            head += 1
            for _c, acc in self._sums:
                acc.add(-e[_c])
            for c, counter in self._distinct:
                n = counter[e[c]] - 1
                if n:
                    counter[e[c]] = n
                else:
                    del counter[e[c]]
            for x in self._extremes:
                x.evict(e)
        if head == len(entries):
            entries.clear()
            head = 0
            for s in self.sums.values():
                s.reset()  # drop the rounding residue with the last entry
        elif head > 4096 and head * 2 > len(entries):
            del entries[:head]
            head = 0
        self.head = head

    def getter(self, spec: FeatureSpec) -> Callable[[int], object]:
        """A function of ``t`` equal to ``self.value(spec, t)``, with the dispatch done once.

        The hot path asks every window for every feature of every event; resolving the
        aggregation per call was the largest slice of the operators' profile. (``if``, not
        ``match``: Cython cannot compile closures defined in ``case`` blocks.)
        """
        entries = self.entries  # mutated in place, never rebound
        col = COLUMN_INDEX.get(spec.column or "", -1)
        agg = spec.agg
        if agg == Agg.COUNT:
            return lambda _t: len(entries) - self.head
        elif agg == Agg.SUM:
            acc = self.sums[col]
            return lambda _t: acc.s + acc.c if len(entries) > self.head else 0.0
        elif agg == Agg.AVG:
            acc = self.sums[col]

            def avg(_t: int) -> object:
                n = len(entries) - self.head
                return (acc.s + acc.c) / n if n else None
            return avg
        elif agg == Agg.DISTINCT:
            counter = self.distinct[col]
            return lambda _t: len(counter) if len(entries) > self.head else 0
        elif agg == Agg.TIME_SINCE_LAST:
            return lambda t: t - entries[-1][TS] if len(entries) > self.head else None
        elif agg in (Agg.MIN, Agg.MAX):
            ext = self.extremes[(spec.agg, spec.column)]

            def extreme(_t: int) -> object:
                if len(entries) == self.head:
                    return None
                if ext.dirty:
                    ext.rebuild(entries[self.head:])
                return ext.q[0][col]
            return extreme
        elif agg == Agg.LAST_K:
            k = spec.k
            return lambda _t: [e[col] for e in entries[max(self.head, len(entries) - k):]]
        return lambda t: self.value(spec, t)

    def value(self, spec: FeatureSpec, t: int) -> object:
        """Value at ``t``, given the window holds exactly the entries in ``[t - W, t)``."""
        n = self.count
        if n == 0:
            return empty_value(spec)
        match spec.agg:
            case Agg.COUNT:
                return n
            case Agg.SUM:
                return self.sums[COLUMN_INDEX[spec.column or ""]].value
            case Agg.AVG:
                return self.sums[COLUMN_INDEX[spec.column or ""]].value / n
            case Agg.MIN | Agg.MAX:
                x = self.extremes[(spec.agg, spec.column)]
                if x.dirty:
                    x.rebuild(self.entries[self.head:])
                return x.q[0][x.col]
            case Agg.DISTINCT:
                return len(self.distinct[COLUMN_INDEX[spec.column or ""]])
            case Agg.TIME_SINCE_LAST:
                return t - self.entries[-1][TS]
            case Agg.LAST_K:
                col = COLUMN_INDEX[spec.column or ""]
                return [e[col] for e in self.entries[max(self.head, len(self.entries) - spec.k):]]
        raise AssertionError(spec.agg)


class KeyState:
    """All windows of one entity id, its retained history and the cached values of its latest ts."""

    def __init__(self, specs: Sequence[FeatureSpec], retention_ms: int) -> None:
        self.specs = tuple(specs)
        self.windows = [Window(w, where, ss) for w, where, ss in _window_groups(self.specs)]
        self.plan = [(s.name, w.getter(s)) for w in self.windows for s in w.specs]
        self.retention_ms = retention_ms
        self.history: list[Entry] = []
        self.hist_head = 0
        self.group_ts: int | None = None  # the latest ts seen
        self.group_values: dict[str, object] = {}
        self.group_stale = False

    def scratch(self, t: int) -> dict[str, object]:
        """Values at ``t`` recomputed from the history (the late path)."""
        h = self.history
        lo = bisect.bisect_left(h, (t - max(s.window_ms for s in self.specs),), lo=self.hist_head)
        hi = bisect.bisect_left(h, (t,), lo=lo)
        rows = h[lo:hi]
        return {s.name: aggregate(s, rows, t) for s in self.specs}

    def process(self, e: Entry) -> tuple[dict[str, object], bool]:
        """Values for ``e`` and whether ``e`` was late for this key; then ``e`` joins the state."""
        t = e[TS]
        late = False
        if self.group_ts is None or t > self.group_ts:
            for w in self.windows:
                w.evict_before(t - w.window_ms)
            values = {name: get(t) for name, get in self.plan}
            self.group_ts, self.group_values, self.group_stale = t, values, False
        elif t == self.group_ts:
            if self.group_stale:
                self.group_values, self.group_stale = self.scratch(t), False
            values = self.group_values
        else:
            late = True
            values = self.scratch(t)
            self.group_stale = True  # the latest ts group's history just changed
        self._insert(e, late)
        return values, late

    def _insert(self, e: Entry, late: bool) -> None:
        h = self.history
        if late or (h and e < h[-1]):  # late, or an equal-ts event with a smaller event_id
            bisect.insort(h, e, lo=self.hist_head)
        else:
            h.append(e)
        for w in self.windows:
            if e[TS] >= w.start and _passes(w.where, e):
                w.add(e)
        # Keep what a late event (within the retention) may still need.
        assert self.group_ts is not None
        horizon = self.group_ts - self.retention_ms
        head = self.hist_head
        while head < len(h) and h[head][TS] < horizon:
            head += 1
        if head > 4096 and head * 2 > len(h):
            del h[:head]
            head = 0
        self.hist_head = head

    @classmethod
    def from_history(cls, specs: Sequence[FeatureSpec], retention_ms: int,
                     history: list[Entry]) -> KeyState:
        """The state that processing ``history`` (sorted by ts, event_id) in order leaves behind.

        Built in bulk for a restore: each window gets the entries that can still matter
        (``ts >= latest - window``), its sums over them in one pass, its min/max rebuilt on
        first use, and the cached values of the latest ts are recomputed from the history.
        """
        st = cls(specs, retention_ms)
        group_ts = history[-1][TS]
        horizon = group_ts - retention_ms
        lo = bisect.bisect_left(history, (horizon,))
        st.history = history[lo:]
        st.group_ts, st.group_stale = group_ts, True
        for w in st.windows:
            w.start = group_ts - w.window_ms
            first = bisect.bisect_left(st.history, (w.start,))
            w.entries[:] = [e for e in st.history[first:] if _passes(w.where, e)]
            for c, acc in w.sums.items():
                acc.s = _fsum(e[c] for e in w.entries)
            for c, counter in w.distinct.items():
                counter.update(e[c] for e in w.entries)
            for x in w.extremes.values():
                x.dirty = True
        return st

    def retained(self) -> list[Entry]:
        return self.history[self.hist_head:]

    def online(self) -> tuple[int, dict[str, object]]:
        """``(as_of, values)`` right after the latest event: ``as_of = latest ts + 1``."""
        assert self.group_ts is not None
        as_of = self.group_ts + 1
        for w in self.windows:
            w.evict_before(as_of - w.window_ms)
        return as_of, {name: get(as_of) for name, get in self.plan}


@dataclass
class EngineStats:
    processed: int = 0
    late_for_key: int = 0  # (event, entity) pairs that arrived after a newer event of that key
    corrections: int = 0  # online vectors rewritten because of a late event


@dataclass
class FeatureEngine:
    """Every entity's key states. ``retention_ms`` bounds how late an event may be and still count."""

    features: tuple[FeatureSpec, ...] = FEATURES
    allowed_lateness_ms: int = 60_000
    stats: EngineStats = field(default_factory=EngineStats)

    def __post_init__(self) -> None:
        self._entities = []
        for name, entity in ENTITIES.items():
            specs = tuple(f for f in self.features if f.entity.name == name)
            if specs:
                retention = max(s.window_ms for s in specs) + self.allowed_lateness_ms
                self._entities.append((name, COLUMN_INDEX[entity.key], specs, retention))
        self.states: dict[tuple[str, int], KeyState] = {}
        # Restored keys not used since: (rows sorted by key, ts, event_id; first row; end row).
        self._cold: dict[tuple[str, int], tuple[np.ndarray, int, int]] = {}
        self.dirty: set[tuple[str, int]] = set()
        self.corrected: set[tuple[str, int]] = set()

    def process(self, e: Entry) -> tuple[dict[str, object], bool]:
        """The event's feature values (all entities) and whether it was late for any of its keys."""
        out: dict[str, object] = {}
        any_late = False
        states = self.states
        for name, col, specs, retention in self._entities:
            key = (name, int(e[col]))
            st = states.get(key)
            if st is None:
                st = self._materialize(key, specs, retention)
            values, late = st.process(e)
            out.update(values)
            self.dirty.add(key)
            if late:
                any_late = True
                self.stats.late_for_key += 1
                self.corrected.add(key)
        self.stats.processed += 1
        return out, any_late

    def _materialize(self, key: tuple[str, int], specs: tuple[FeatureSpec, ...], retention: int) -> KeyState:
        """The key's state: built from its restored rows on first use, or new."""
        cold = self._cold.pop(key, None)
        if cold is None:
            st = KeyState(specs, retention)
        else:
            rows, lo, hi = cold
            st = KeyState.from_history(specs, retention, rows[lo:hi].tolist())
        self.states[key] = st
        return st

    def take_dirty(self) -> list[tuple[str, int, int, dict[str, object], bool]]:
        """``(entity, id, as_of, values, corrected)`` for every id changed since the last call."""
        out = []
        for key in self.dirty:
            as_of, values = self.states[key].online()
            corrected = key in self.corrected
            out.append((key[0], key[1], as_of, values, corrected))
        self.stats.corrections += len(self.corrected)
        self.dirty.clear()
        self.corrected.clear()
        return out

    def online_state(self) -> dict[tuple[str, int], dict[str, object]]:
        specs_of = {name: (specs, retention) for name, _col, specs, retention in self._entities}
        for key in list(self._cold):
            self._materialize(key, *specs_of[key[0]])
        return {key: st.online()[1] for key, st in self.states.items()}

    def restore(self, entries: EntryRows, stats: EngineStats) -> None:
        """Take over the state that processing ``entries`` (a checkpoint's) left behind.

        ``entries``: rows of :data:`ENTRY_DTYPE` (or entry tuples), any order; they may hold more
        than the retention (old deltas): each key keeps what its retention allows. The rows are
        grouped by key with one numpy sort; a key's windows are built from its rows when an event
        of it first arrives (:meth:`_materialize`), so a restore costs a sort, not a rebuild of
        every key. Nothing is emitted and no key is dirty afterwards.
        """
        rows = entries if isinstance(entries, np.ndarray) else np.array(list(entries), dtype=ENTRY_DTYPE)
        self.states, self._cold = {}, {}
        for name, col, _specs, _retention in self._entities if len(rows) else ():
            keys = rows[_ENTRY_FIELD[col]]
            by_key = rows[np.lexsort((rows["eid"], rows["ts"], keys))]
            keys = by_key[_ENTRY_FIELD[col]]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            ends = np.r_[starts[1:], len(keys)]
            for k, lo, hi in zip(keys[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
                self._cold[(name, k)] = (by_key, lo, hi)
        self.dirty.clear()
        self.corrected.clear()
        self.stats = stats

    def retained_entries(self) -> list[Entry]:
        """Every entry some key may still need, each once (entries belong to one key per entity)."""
        seen: set[Entry] = set()
        out: list[Entry] = []

        def take(entries: Iterable[Entry]) -> None:
            for e in entries:
                if e not in seen:
                    seen.add(e)
                    out.append(e)

        for st in self.states.values():
            take(st.retained())
        retention = {name: r for name, _col, _specs, r in self._entities}
        for (name, _id), (rows, lo, hi) in self._cold.items():  # what from_history would keep
            part = rows[lo:hi]
            take(part[part["ts"] >= part["ts"][-1] - retention[name]].tolist())
        return out
