"""Compile the feature definitions to DuckDB SQL: point-in-time correct, by window functions.

For every event the frame is ``RANGE BETWEEN W PRECEDING AND CURRENT ROW EXCLUDE GROUP``
over the integer millisecond ``ts`` (``1 PRECEDING`` instead of the excluded group for
distinct counts; see :func:`_frame`), i.e. exactly ``[e.ts - W, e.ts)``: equal-``ts``
events are outside it, as :mod:`dataflow_playground.features.definitions` specifies.

``last_k`` cannot use a RANGE frame cheaply (the list would hold the whole window),
so it takes the ``k`` rows before the *first* row of the event's ``ts`` peer group
(rows ordered by ``ts, event_id``), then drops those older than the window; every
row of a peer group reuses that list, since they share one history.

This SQL is the readable reference. ``BatchFeatures.training_table()`` runs the same
definitions as a vectorised numpy pass (:mod:`~dataflow_playground.features.batch_numpy`),
which window frames cannot match on speed; hypothesis tests prove the two tables equal.

Snapshots (values "as of T" for entities) reuse the same query: a spine of probe
rows ``(entity, id, as_of)`` is unioned with the events; probes carry no values, so
every aggregate ignores them, and only the probes' rows are returned.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from dataflow_playground.features import batch_numpy
from dataflow_playground.features.definitions import ENTITIES, FEATURES, Agg, FeatureSpec

_EVENT_COLUMNS = "event_id, user_id, merchant_id, amount, ts"


def _window_name(spec: FeatureSpec) -> str:
    # Distinct counts keep the ``1 PRECEDING`` frame: DuckDB's distinct window aggregate is
    # pathologically slow with ``EXCLUDE GROUP`` (minutes at 1M rows), fine without it.
    suffix = "_d" if spec.agg == Agg.DISTINCT else ""
    return f"w_{spec.entity.name}_{spec.window_ms}{suffix}"


def _frame(spec: FeatureSpec) -> str:
    """``[ts - W, ts)``: ``W PRECEDING`` to the current row's peer group, excluded.

    ``CURRENT ROW EXCLUDE GROUP`` and ``1 PRECEDING`` select the same rows for integer ``ts``,
    but DuckDB computes the former 2-3x faster (the peer-group end is known from the sort;
    ``1 PRECEDING`` searches for it per row).
    """
    if spec.agg == Agg.DISTINCT:
        return f"RANGE BETWEEN {spec.window_ms} PRECEDING AND 1 PRECEDING"
    return f"RANGE BETWEEN {spec.window_ms} PRECEDING AND CURRENT ROW EXCLUDE GROUP"


def value_expr(spec: FeatureSpec) -> str:
    """The per-row expression the aggregate sees: NULL for probes and filtered-out rows."""
    col = {Agg.COUNT: "1", Agg.TIME_SINCE_LAST: "ts"}.get(spec.agg, spec.column)
    cond = "NOT _probe" + (f" AND {spec.where.sql()}" if spec.where else "")
    return f"CASE WHEN {cond} THEN {col} END"


def scalar_aggregate_sql(spec: FeatureSpec, value: str, window: str) -> str:
    """The SQL of ``spec``'s aggregation of ``value`` over ``window`` (a window name or a
    parenthesised window definition); every aggregation but the list-valued ``last_k``."""
    match spec.agg:
        case Agg.COUNT:
            return f"count({value}) OVER {window}"
        case Agg.SUM:
            return f"coalesce(sum({value}) OVER {window}, 0.0)"
        case Agg.AVG | Agg.MIN | Agg.MAX:
            return f"{spec.agg.value}({value}) OVER {window}"
        case Agg.DISTINCT:
            return f"count(DISTINCT {value}) OVER {window}"
        case Agg.TIME_SINCE_LAST:
            return f"ts - max({value}) OVER {window}"
    raise ValueError(f"feature {spec.name}: {spec.agg} is not a scalar aggregation")


def _aggregate(spec: FeatureSpec) -> str:
    if spec.agg == Agg.LAST_K:
        key = spec.entity.key
        return (f"list(CASE WHEN NOT _probe THEN struct_pack(t := ts, a := {spec.column}) END) "
                f"OVER (PARTITION BY {key} ORDER BY ts, _ord, event_id "
                f"ROWS BETWEEN {spec.k} PRECEDING AND 1 PRECEDING)")
    return scalar_aggregate_sql(spec, value_expr(spec), _window_name(spec))


def _features_sql(base: str, features: tuple[FeatureSpec, ...]) -> str:
    windows = {}
    for f in features:
        if f.agg != Agg.LAST_K:
            windows[_window_name(f)] = f"(PARTITION BY {f.entity.key} ORDER BY ts {_frame(f)})"
    inner_cols = ",\n    ".join(
        f"{_aggregate(f)} AS {'_raw_' if f.is_list else ''}{f.name}" for f in features)
    window_sql = ("WINDOW " + ",\n  ".join(f"{name} AS {frame}" for name, frame in windows.items())
                  if windows else "")
    outer = []
    for f in features:
        if f.is_list:
            # The first row of the (key, ts) peer group has exactly the rows with a smaller ts
            # before it; peers share its history.
            first = (f"first_value(_raw_{f.name}) OVER (PARTITION BY {f.entity.key}, ts "
                     f"ORDER BY _ord, event_id)")
            outer.append(f"coalesce([x.a FOR x IN {first} IF x.a IS NOT NULL "
                         f"AND x.t >= ts - {f.window_ms}], []) AS {f.name}")
        else:
            outer.append(f.name)
    return f"""
SELECT event_id, user_id, merchant_id, ts, _probe, _entity, {", ".join(outer)}
FROM (
  SELECT *, {inner_cols}
  FROM {base}
  {window_sql}
)"""


def training_sql(source: str, features: tuple[FeatureSpec, ...] = FEATURES) -> str:
    """One row per event of ``source``: its point-in-time-correct feature values."""
    base = f"(SELECT {_EVENT_COLUMNS}, FALSE AS _probe, 1 AS _ord, NULL::VARCHAR AS _entity FROM {source})"
    cols = ", ".join(f.name for f in features)
    return (f"SELECT event_id, user_id, merchant_id, ts, {cols} FROM ({_features_sql(base, features)}) "
            "ORDER BY event_id")


def spine_sql(source: str, spine: str, features: tuple[FeatureSpec, ...] = FEATURES) -> str:
    """Values for each probe ``(entity, id, as_of)`` of ``spine``, over the events of ``source``.

    A probe sees events with ``ts`` in ``[as_of - W, as_of)``. Give at most one probe per
    entity id (last-k counts rows, and two probes of one id would take each other's slot).
    """
    probes = " UNION ALL ".join(
        f"SELECT NULL::BIGINT, "
        f"{'id' if e.key == 'user_id' else 'NULL::BIGINT'}, "
        f"{'id' if e.key == 'merchant_id' else 'NULL::BIGINT'}, "
        f"NULL::DOUBLE, as_of, TRUE, 0, entity FROM {spine} WHERE entity = '{e.name}'"
        for e in ENTITIES.values())
    base = (f"(SELECT {_EVENT_COLUMNS}, FALSE AS _probe, 1 AS _ord, NULL::VARCHAR AS _entity "
            f"FROM {source} UNION ALL {probes})")
    parts = []
    for name, entity in ENTITIES.items():
        cols = [f.name for f in features if f.entity.name == name]
        if cols:
            parts.append(f"SELECT '{name}' AS entity, {entity.key} AS id, ts AS as_of, "
                         f"to_json(struct_pack({', '.join(f'{c} := {c}' for c in cols)})) AS vals "
                         f"FROM feats WHERE _probe AND _entity = '{name}'")
    return (f"WITH feats AS ({_features_sql(base, features)})\n"
            + "\nUNION ALL\n".join(parts) + "\nORDER BY entity, id")


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
        self.events = events
        self.threads = threads
        self.features = features
        self.con.register("_events_src", events)

    def training_table(self, reference: bool = False) -> pa.Table:
        """One row per event in ``event_id`` order: its point-in-time-correct feature values.

        By default the vectorised pass of :mod:`~dataflow_playground.features.batch_numpy`
        (docs/features.md has the figures). ``reference=True``, and events that pass does not
        cover, run the SQL of :func:`training_sql`: the readable reference it is tested against.
        """
        if (not reference and isinstance(self.events, pa.Table)
                and batch_numpy.supports(self.events, self.features)):
            return batch_numpy.training_table(self.events, self.features, threads=self.threads or 2)
        return self.con.sql(training_sql("_events_src", self.features)).to_arrow_table()

    def snapshot(self, as_of_ms: int | None = None) -> dict[tuple[str, int], dict[str, object]]:
        """``{(entity, id): {feature: value}}`` as of ``as_of_ms``, or right after each id's latest event."""
        import orjson

        spine = (latest_spine_sql("_events_src") if as_of_ms is None
                 else as_of_spine_sql("_events_src", as_of_ms))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _spine AS {spine}")
        rows = self.con.execute(spine_sql("_events_src", "_spine", self.features)).fetchall()
        return {(entity, int(i)): orjson.loads(vals) for entity, i, _as_of, vals in rows}
