"""Compile the feature definitions to DuckDB SQL: point-in-time correct, with prefix sums.

A feature's value for an event at ``t`` aggregates ``[t - W, t)``. Counts, sums, averages,
distinct counts and time-since-last are all "what happened before ``t``" questions, so they
are answered with *signed points* and one running total per entity key instead of one
``RANGE`` window per feature (:mod:`features.batch_sql_windows`, the reference, spent
about 1 µs per row per feature there):

- an event at ``ts`` adds ``+x`` at ``ts`` and ``-x`` at ``ts + W``: the running total
  over points strictly before ``t`` is then the window's count (``x = 1``) or sum
  (``x = amount``, as ``DECIMAL(38, 18)`` so the subtraction is exact and an empty
  window gives exactly 0);
- a distinct count counts each value from an occurrence at ``a`` until its next
  occurrence or ``a + W``, whichever is first (``+1`` at ``a``, ``-1`` there);
- time since last is ``t`` minus the running max of the entry times before ``t``.

Points are grouped by ``(key, time)`` and totalled with one ``ROWS ... 1 PRECEDING``
window, so every event of a ``ts`` group sees exactly the times before it (equal ``ts``
excluded, as :mod:`features.definitions` specifies). Min and max keep a ``RANGE`` window,
over events pre-grouped by ``(key, ts)``; ``last_k`` keeps its ``ROWS`` frame, taken from
the first row of the event's ``ts`` group. Values are computed once per ``(key, ts)`` and
joined back to the events.

Snapshots (values "as of T") reuse the same query: probe rows ``(entity, id, as_of)`` are
query points that carry no values.
"""

from __future__ import annotations

import hashlib

import duckdb
import pyarrow as pa

from features.definitions import ENTITIES, FEATURES, Agg, Entity, FeatureSpec

_EVENT_COLUMNS = "event_id, user_id, merchant_id, amount, ts"
_EXACT = "DECIMAL(38, 18)"  # amounts <= 50,000, sums of 1e9 of them still fit 20 integer digits
_ADDITIVE = (Agg.COUNT, Agg.SUM, Agg.AVG, Agg.DISTINCT, Agg.TIME_SINCE_LAST)


def _cond(spec: FeatureSpec) -> str:
    return spec.where.sql() if spec.where else "TRUE"


def _tag(spec: FeatureSpec) -> str:
    """A column-name-safe id of the feature's filter (features with one filter share columns)."""
    if spec.where is None:
        return "all"
    return hashlib.sha1(spec.where.label().encode()).hexdigest()[:10]


def _count_col(spec: FeatureSpec) -> str:
    return f"n_{spec.window_ms}_{_tag(spec)}"


def _sum_col(spec: FeatureSpec) -> str:
    return f"s_{spec.column}_{spec.window_ms}_{_tag(spec)}"


def _zero(col: str) -> str:
    """The neutral value of a point column, typed so UNION ALL keeps exact decimals."""
    return {"s": f"0::{_EXACT}", "l": "NULL::BIGINT"}.get(col[0], "0")


class _EntityPlan:
    """The SQL pieces for one entity's features."""

    def __init__(self, entity: Entity, features: tuple[FeatureSpec, ...]) -> None:
        self.entity, self.key = entity, entity.key
        self.features = tuple(f for f in features if f.entity.name == entity.name)
        # Additive columns: name -> (entry expression, window) ; exits subtract at ts + window.
        self.additive: dict[str, tuple[str, int]] = {}
        self.lasts: dict[str, str] = {}  # time-since-last: column -> filter
        self.distinct: list[FeatureSpec] = []
        for f in self.features:
            if f.agg in (Agg.COUNT, Agg.AVG):
                self.additive[_count_col(f)] = (f"CASE WHEN {_cond(f)} THEN 1 ELSE 0 END", f.window_ms)
            if f.agg in (Agg.SUM, Agg.AVG):
                self.additive[_sum_col(f)] = (
                    f"CASE WHEN {_cond(f)} THEN {f.column}::{_EXACT} ELSE 0::{_EXACT} END", f.window_ms)
            if f.agg == Agg.TIME_SINCE_LAST:
                self.lasts[f"l_{f.name}"] = _cond(f)
            if f.agg == Agg.DISTINCT:
                self.distinct.append(f)
        self.extremes = [f for f in self.features if f.agg in (Agg.MIN, Agg.MAX)]
        self.lists = [f for f in self.features if f.agg == Agg.LAST_K]

    @property
    def name(self) -> str:
        return self.entity.name

    def _point_cols(self) -> list[str]:
        return [*self.additive, *(f"d_{f.name}" for f in self.distinct), *self.lasts]

    def _row(self, time: str, key: str, query: str, values: dict[str, str], src: str) -> str:
        cols = [f"{values.get(c, _zero(c))} AS {c}"
                for c in self._point_cols()]
        return f"SELECT {key} AS k, {time} AS time, {query} AS q, {', '.join(cols)} FROM {src}"

    def ctes(self, source: str, probes: str | None) -> list[str]:
        """CTEs ending in ``{name}_vals(k, time, <features>)``: one row per queried (key, time)."""
        n, key = self.name, self.key
        out: list[str] = []
        parts = [self._row("ts", key, "TRUE",
                           {**{c: e for c, (e, _w) in self.additive.items()},
                            **{c: f"CASE WHEN {cond} THEN ts END" for c, cond in self.lasts.items()}},
                           source)]
        for w in sorted({w for _e, w in self.additive.values()}):
            exits = {c: f"-({e})" for c, (e, ww) in self.additive.items() if ww == w}
            parts.append(self._row(f"ts + {w}", key, "FALSE", exits, source))
        for f in self.distinct:
            # Each (key, value, ts) counts from ts until the value's next ts or ts + W.
            dn = f"{n}_dist_{f.name}"
            out.append(
                f"{dn} AS (SELECT k, a, least(coalesce(lead(a) OVER (PARTITION BY k, v ORDER BY a), "
                f"a + {f.window_ms}), a + {f.window_ms}) AS e FROM (SELECT DISTINCT {key} AS k, "
                f"{f.column} AS v, ts AS a FROM {source} WHERE {_cond(f)}))")
            parts.append(self._row("a", "k", "FALSE", {f"d_{f.name}": "1"}, dn))
            parts.append(self._row("e", "k", "FALSE", {f"d_{f.name}": "-1"}, dn))
        if probes is not None:
            parts.append(self._row("as_of", "id", "TRUE", {}, f"{probes} WHERE entity = '{n}'"))
        union = "\n    UNION ALL ".join(parts)
        aggs = ", ".join([*(f"sum({c}) AS {c}" for c in [*self.additive, *(f"d_{f.name}" for f in self.distinct)]),
                          *(f"max({c}) AS {c}" for c in self.lasts)])
        out.append(f"{n}_grp AS (SELECT k, time, bool_or(q) AS q, {aggs} FROM ({union}) GROUP BY k, time)")
        run = ", ".join([*(f"sum({c}) OVER w AS {c}" for c in [*self.additive, *(f"d_{f.name}" for f in self.distinct)]),
                         *(f"max({c}) OVER w AS {c}" for c in self.lasts)])
        out.append(f"{n}_acc AS (SELECT k, time, q, {run} FROM {n}_grp "
                   f"WINDOW w AS (PARTITION BY k ORDER BY time ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) "
                   f"QUALIFY q)")
        joins = [f"{n}_acc a"]
        if self.extremes:
            out.append(self._extremes_cte(source, probes))
            joins.append(f"JOIN {n}_ext x ON x.k = a.k AND x.time = a.time")
        if self.lists:
            out.append(self._lists_cte(source, probes))
            joins.append(f"JOIN {n}_lst l ON l.k = a.k AND l.time = a.time")
        cols = ", ".join(f"{self._value(f)} AS {f.name}" for f in self.features)
        out.append(f"{n}_vals AS (SELECT a.k, a.time, {cols} FROM {' '.join(joins)})")
        return out

    def _value(self, f: FeatureSpec) -> str:
        match f.agg:
            case Agg.COUNT:
                return f"coalesce(a.{_count_col(f)}, 0)::BIGINT"
            case Agg.SUM:
                return f"coalesce(a.{_sum_col(f)}, 0)::DOUBLE"
            case Agg.AVG:
                return (f"CASE WHEN a.{_count_col(f)} > 0 THEN a.{_sum_col(f)}::DOUBLE / a.{_count_col(f)} "
                        f"END")
            case Agg.DISTINCT:
                return f"coalesce(a.d_{f.name}, 0)::BIGINT"
            case Agg.TIME_SINCE_LAST:
                return f"CASE WHEN a.l_{f.name} >= a.time - {f.window_ms} THEN a.time - a.l_{f.name} END"
            case Agg.MIN | Agg.MAX:
                return f"x.{f.name}"
            case Agg.LAST_K:
                return (f"coalesce([x.a FOR x IN l.{f.name} IF x.a IS NOT NULL "
                        f"AND x.t >= a.time - {f.window_ms}], [])")
        raise AssertionError(f.agg)

    def _extremes_cte(self, source: str, probes: str | None) -> str:
        n, key = self.name, self.key
        per_ts = ", ".join(f"{f.agg.value}(CASE WHEN {_cond(f)} THEN {f.column} END) AS {f.name}"
                           for f in self.extremes)
        probe_rows = ""
        if probes is not None:
            nulls = ", ".join(f"NULL::DOUBLE AS {f.name}" for f in self.extremes)
            probe_rows = f" UNION ALL SELECT id, as_of, {nulls} FROM {probes} WHERE entity = '{n}'"
        windows = ", ".join(
            f"{f.agg.value}({f.name}) OVER (PARTITION BY k ORDER BY time RANGE BETWEEN {f.window_ms} "
            f"PRECEDING AND 1 PRECEDING) AS {f.name}" for f in self.extremes)
        return (f"{n}_ext AS (SELECT k, time, {windows} FROM (SELECT k, time, "
                f"{', '.join(f'max({f.name}) AS {f.name}' for f in self.extremes)} FROM ("
                f"SELECT {key} AS k, ts AS time, {per_ts} FROM {source} GROUP BY {key}, ts{probe_rows}) "
                f"GROUP BY k, time))")

    def _lists_cte(self, source: str, probes: str | None) -> str:
        # The k rows before the first row of the (key, ts) group: peers share one history.
        n, key = self.name, self.key
        rows = f"SELECT {key} AS k, ts AS time, 1 AS _ord, event_id, FALSE AS _probe, {_EVENT_COLUMNS} FROM {source}"
        if probes is not None:
            rows += (f" UNION ALL SELECT id, as_of, 0, NULL, TRUE, NULL, NULL, NULL, NULL, NULL "
                     f"FROM {probes} WHERE entity = '{n}'")
        lists = ", ".join(
            f"list(CASE WHEN NOT _probe THEN struct_pack(t := time, a := {f.column}) END) OVER "
            f"(o ROWS BETWEEN {f.k} PRECEDING AND 1 PRECEDING) AS {f.name}" for f in self.lists)
        return (f"{n}_lst AS (SELECT k, time, {lists} FROM ({rows}) "
                f"WINDOW o AS (PARTITION BY k ORDER BY time, _ord, event_id) "
                f"QUALIFY row_number() OVER (PARTITION BY k, time ORDER BY _ord, event_id) = 1)")


def _plans(features: tuple[FeatureSpec, ...]) -> list[_EntityPlan]:
    return [p for e in ENTITIES.values() if (p := _EntityPlan(e, features)).features]


def training_sql(source: str, features: tuple[FeatureSpec, ...] = FEATURES) -> str:
    """One row per event of ``source``: its point-in-time-correct feature values."""
    plans = _plans(features)
    ctes = [f"_ev AS (SELECT {_EVENT_COLUMNS} FROM {source})"]
    for p in plans:
        ctes += p.ctes("_ev", None)
    joins = " ".join(f"JOIN {p.name}_vals {p.name[0]}_{p.name} ON {p.name[0]}_{p.name}.k = e.{p.key} "
                     f"AND {p.name[0]}_{p.name}.time = e.ts" for p in plans)
    cols = ", ".join(f"{f.entity.name[0]}_{f.entity.name}.{f.name}" for f in features)
    return (f"WITH {', '.join(ctes)}\nSELECT e.event_id, e.user_id, e.merchant_id, e.ts, {cols} "
            f"FROM _ev e {joins} ORDER BY e.event_id")


def spine_sql(source: str, spine: str, features: tuple[FeatureSpec, ...] = FEATURES) -> str:
    """Values for each probe ``(entity, id, as_of)`` of ``spine``, over the events of ``source``.

    A probe sees events with ``ts`` in ``[as_of - W, as_of)``. Give at most one probe per
    entity id (last-k counts rows, and two probes of one id would take each other's slot).
    """
    plans = _plans(features)
    ctes = [f"_ev AS (SELECT {_EVENT_COLUMNS} FROM {source})",
            f"_probes AS (SELECT entity, id, as_of FROM {spine})"]
    parts = []
    for p in plans:
        ctes += p.ctes("_ev", "_probes")
        cols = [f.name for f in p.features]
        parts.append(f"SELECT '{p.name}' AS entity, s.id, s.as_of, "
                     f"to_json(struct_pack({', '.join(f'{c} := v.{c}' for c in cols)})) AS vals "
                     f"FROM _probes s JOIN {p.name}_vals v ON v.k = s.id AND v.time = s.as_of "
                     f"WHERE s.entity = '{p.name}'")
    return f"WITH {', '.join(ctes)}\n" + "\nUNION ALL\n".join(parts) + "\nORDER BY entity, id"


def latest_spine_sql(source: str) -> str:
    """One probe per entity id at ``max(ts) + 1``: "right after its latest event", as online."""
    return " UNION ALL ".join(
        f"SELECT '{e.name}' AS entity, {e.key} AS id, max(ts) + 1 AS as_of FROM {source} GROUP BY {e.key}"
        for e in ENTITIES.values())


def as_of_spine_sql(source: str, as_of_ms: int) -> str:
    """One probe per entity id seen before ``as_of_ms``, all at ``as_of_ms``."""
    return " UNION ALL ".join(
        f"SELECT DISTINCT '{e.name}' AS entity, {e.key} AS id, {int(as_of_ms)}::BIGINT AS as_of "
        f"FROM {source} WHERE ts < {int(as_of_ms)}"
        for e in ENTITIES.values())


class BatchFeatures:
    """Batch execution over an Arrow table of events (or any DuckDB-readable relation)."""

    def __init__(self, events: pa.Table, con: duckdb.DuckDBPyConnection | None = None,
                 features: tuple[FeatureSpec, ...] = FEATURES, threads: int | None = None) -> None:
        self.con = con or duckdb.connect()
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        # Output order is set by ORDER BY; not keeping insertion order elsewhere frees the planner.
        self.con.execute("SET preserve_insertion_order = false")
        self.features = features
        self.con.register("_events_src", events)

    def training_table(self) -> pa.Table:
        return self.con.sql(training_sql("_events_src", self.features)).to_arrow_table()

    def snapshot(self, as_of_ms: int | None = None) -> dict[tuple[str, int], dict[str, object]]:
        """``{(entity, id): {feature: value}}`` as of ``as_of_ms``, or right after each id's latest event."""
        import orjson

        spine = (latest_spine_sql("_events_src") if as_of_ms is None
                 else as_of_spine_sql("_events_src", as_of_ms))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _spine AS {spine}")
        rows = self.con.execute(spine_sql("_events_src", "_spine", self.features)).fetchall()
        return {(entity, int(i)): orjson.loads(vals) for entity, i, _as_of, vals in rows}
