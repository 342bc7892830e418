"""Compile the feature definitions to Spark SQL: the distributed batch engine.

The same :data:`~dataflow_playground.features.definitions.FEATURES` list and the same
semantics as :mod:`~dataflow_playground.features.batch_sql`, whose engine-neutral pieces
(each aggregation's SQL, each feature's value expression) this module imports: the value for
an event aggregates the events of its entity with ``ts`` in ``[e.ts - W, e.ts)``.

What Spark needs differently. It has no ``EXCLUDE GROUP`` and no ``count(DISTINCT ..) OVER``,
and it recomputes a sliding ``RANGE`` frame from scratch for every row (no segment tree), which
is quadratic in a busy entity's window. So no frame here slides:

- count, sum, avg, min, max and time-since-last split ``[ts - W, ts)`` at the block boundary
  ``floor(ts / W) * W`` into two running aggregates, which Spark updates row by row
  (:func:`_split_sql`);
- a distinct count is a running sum of +1/-1 markers (:func:`_distinct_sql`);
- ``last_k`` reads a frame of ``k`` rows (:func:`_last_k_sql`).

:func:`spark_session` is the one way to get a session: loopback-bound by default, UI off,
small memory, and stopped afterwards together with the JVM it started.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.features.batch_sql import scalar_aggregate_sql, value_expr
from dataflow_playground.features.definitions import FEATURES, Agg, FeatureSpec

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

_EVENT_COLUMNS = ("event_id", "user_id", "merchant_id", "amount", "ts")
_MASTER = re.compile(r"^(local(\[(\d+|\*)\])?|spark://[^\s/:,]+:\d+(,[^\s/:,]+:\d+)*)$")


class SparkEngineError(PlaygroundError):
    """Spark could not start, reach its master or run the query."""


@dataclass(frozen=True)
class SparkConfig:
    """Where and how the session runs. ``master``: ``local[N]`` or ``spark://HOST:PORT``."""

    master: str = "local[2]"
    # The address the driver binds to and executors call back on: loopback unless the
    # executors run on other machines.
    driver_host: str = "127.0.0.1"
    driver_memory: str = "2g"  # a heap limit, not an allocation; 1M events need about 2g
    executor_memory: str = "512m"  # per executor on a cluster; fits a small worker
    shuffle_partitions: int = 8
    app_name: str = "dataflow-playground-features"
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not _MASTER.match(self.master):
            raise SparkEngineError(f"master {self.master!r} is not local, local[N], local[*] "
                                   "or spark://HOST:PORT")
        for name in ("driver_memory", "executor_memory"):
            if not re.fullmatch(r"\d+[kmgt]", getattr(self, name).lower()):
                raise SparkEngineError(f"{name.replace('_', ' ')} {getattr(self, name)!r} is not "
                                       "a JVM size such as 512m or 2g")
        if self.shuffle_partitions < 1:
            raise SparkEngineError("shuffle_partitions must be at least 1")

    @property
    def is_local(self) -> bool:
        return self.master.startswith("local")


# --- the SQL -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Part:
    """One running aggregate of a feature, computed on each side of its window's split."""

    name: str
    spec: FeatureSpec  # what :func:`scalar_aggregate_sql` compiles


def _parts(f: FeatureSpec) -> tuple[_Part, ...]:
    # An average is a sum and a count; every other split aggregate is itself on each side.
    if f.agg == Agg.AVG:
        return (_Part("sum", replace(f, agg=Agg.SUM)), _Part("count", replace(f, agg=Agg.COUNT, column=None)))
    return (_Part(f.agg.value, f),)


def _combine(f: FeatureSpec, i: int) -> str:
    """The feature from its parts: ``_b`` over ``[ts - W, block start)``, ``_a`` over
    ``[block start, ts)``."""
    a, b = (f"_a{i}_{f.agg.value}", f"_b{i}_{f.agg.value}")
    match f.agg:
        case Agg.COUNT | Agg.SUM:
            return f"{a} + {b}"
        case Agg.MIN | Agg.TIME_SINCE_LAST:  # ts - max(ts) is smallest where max(ts) is largest
            return f"least({a}, {b})"
        case Agg.MAX:
            return f"greatest({a}, {b})"
        case Agg.AVG:
            return f"(_a{i}_sum + _b{i}_sum) / nullif(_a{i}_count + _b{i}_count, 0)"
    raise ValueError(f"feature {f.name}: {f.agg} is not split")


def _split_sql(entity_key: str, window_ms: int, feats: list[tuple[int, FeatureSpec]]) -> str:
    """Parts of the features of one (entity, window): one row per event_id.

    Each event row sits at ``pos = ts`` in its block ``floor(ts / W)``, and a probe row for it at
    ``pos = ts - W`` in the block before. A running aggregate up to ``pos`` (exclusive) on the
    event row covers ``[block start, ts)``; one from the block's end down to ``pos`` (inclusive)
    on the probe row covers ``[ts - W, block end)``; together exactly ``[ts - W, ts)``.
    """
    w = window_ms
    values = ", ".join(f"{value_expr(f)} AS _v{i}" for i, f in feats)
    nulls = ", ".join(f"NULL AS _v{i}" for i, _ in feats)
    after = "(PARTITION BY _key, _blk ORDER BY pos RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
    before = ("(PARTITION BY _key, _blk ORDER BY pos DESC, kind "
              "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)")
    running, pivot = [], []
    for i, f in feats:
        for part in _parts(f):
            for side, window, kind in (("a", after, 0), ("b", before, 1)):
                col = f"_{side}{i}_{part.name}"
                running.append(f"{scalar_aggregate_sql(part.spec, f'_v{i}', window)} AS {col}")
                pivot.append(f"max(CASE WHEN kind = {kind} THEN {col} END) AS {col}")
    return f"""(
    SELECT event_id, {", ".join(pivot)}
    FROM (
      SELECT event_id, kind, {", ".join(running)}
      FROM (
        SELECT *, (pos - pmod(pos, {w})) div {w} AS _blk
        FROM (SELECT event_id, {entity_key} AS _key, ts, ts AS pos, 0 AS kind, {values} FROM _base
              UNION ALL
              SELECT event_id, {entity_key}, ts, ts - {w}, 1, {nulls} FROM _base)))
    GROUP BY event_id)"""


def _distinct_sql(f: FeatureSpec) -> str:
    """A distinct count as a running sum of +1/-1 markers: one value ``v`` at time ``t`` is in
    the window of the events with ``ts`` in ``(t, min(t + W, next t of v)]``."""
    key, w = f.entity.key, f.window_ms
    return f"""(
    SELECT event_id, CAST(n AS BIGINT) AS {f.name}
    FROM (
      SELECT event_id, kind, sum(d) OVER (PARTITION BY _key ORDER BY pos, kind
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n
      FROM (
        SELECT event_id, {key} AS _key, ts AS pos, 0 AS kind, 0 AS d FROM _base
        UNION ALL
        SELECT NULL, _key, pos, 1, d FROM (
          SELECT _key, ts, least(coalesce(lead(ts) OVER (PARTITION BY _key, v ORDER BY ts), ts + {w}),
                                 ts + {w}) AS stop
          FROM (SELECT DISTINCT {key} AS _key, {value_expr(f)} AS v, ts FROM _base)
          WHERE v IS NOT NULL)
        LATERAL VIEW inline(array(struct(ts AS pos, 1 AS d), struct(stop AS pos, -1 AS d))) m AS pos, d))
    WHERE kind = 0)"""


def _last_k_sql(f: FeatureSpec) -> str:
    """The ``k`` rows before the first row of the event's ``(key, ts)`` peer group (which has
    exactly the rows with a smaller ts before it), sorted, then those inside the window."""
    key = f.entity.key
    raw = (f"collect_list(named_struct('t', ts, 'e', event_id, 'a', {f.column})) "
           f"OVER (PARTITION BY {key} ORDER BY ts, event_id ROWS BETWEEN {f.k} PRECEDING AND 1 PRECEDING)")
    return f"""(
    SELECT event_id, transform(filter(array_sort(first_raw),
                               x -> x.a IS NOT NULL AND x.t >= ts - {f.window_ms}), x -> x.a) AS {f.name}
    FROM (SELECT event_id, ts, first(raw) OVER (PARTITION BY {key}, ts ORDER BY event_id) AS first_raw
          FROM (SELECT event_id, {key}, ts, {raw} AS raw FROM _base)))"""


def training_sql(source: str, features: tuple[FeatureSpec, ...] = FEATURES,
                 passthrough: Sequence[str] = ()) -> str:
    """Spark SQL giving one row per event of the view ``source``, in ``event_id`` order:
    ``event_id, user_id, merchant_id, ts``, the ``passthrough`` columns (e.g. the label), then
    every feature, as :func:`~dataflow_playground.features.batch_sql.training_sql` does."""
    extra = "".join(f", {c}" for c in passthrough)
    groups: dict[tuple[str, int], list[tuple[int, FeatureSpec]]] = {}
    joins, cols = [], []
    for i, f in enumerate(features):
        if f.agg == Agg.DISTINCT:
            joins.append(_distinct_sql(f))
            cols.append(f.name)
        elif f.agg == Agg.LAST_K:
            joins.append(_last_k_sql(f))
            cols.append(f.name)
        else:
            groups.setdefault((f.entity.key, f.window_ms), []).append((i, f))
            cols.append(f"{_combine(f, i)} AS {f.name}")
    joins += [_split_sql(key, w, feats) for (key, w), feats in groups.items()]
    from_sql = "_base" + "".join(f"\n  JOIN {j} AS j{n} USING (event_id)" for n, j in enumerate(joins))
    return f"""
WITH _base AS (SELECT {", ".join(_EVENT_COLUMNS)}{extra}, FALSE AS _probe FROM {source})
SELECT event_id, user_id, merchant_id, ts{extra}, {", ".join(cols)}
FROM {from_sql}
ORDER BY event_id"""


def training_frame(spark: SparkSession, events: DataFrame,
                   features: tuple[FeatureSpec, ...] = FEATURES,
                   passthrough: Sequence[str] = ()) -> DataFrame:
    """The point-in-time-correct training table of ``events`` as a (lazy) Spark DataFrame."""
    events.createOrReplaceTempView("_events_src")
    return spark.sql(training_sql("_events_src", features, passthrough))


def training_table(spark: SparkSession, events: pa.Table | str,
                   features: tuple[FeatureSpec, ...] = FEATURES,
                   passthrough: Sequence[str] = ()) -> pa.Table:
    """The training table of ``events`` (an Arrow table, or a Parquet path every executor can
    read), computed by Spark and collected as Arrow."""
    frame = (spark.read.parquet(events) if isinstance(events, str)
             else spark.createDataFrame(events))
    try:
        return training_frame(spark, frame, features, passthrough).toArrow()
    except Exception as err:  # py4j and Spark analysis errors: keep the cause, say where
        raise SparkEngineError(f"Spark could not compute the training table: "
                               f"{str(err).splitlines()[0]}") from err


# --- the session -------------------------------------------------------------------------------

def _check_master_reachable(config: SparkConfig) -> None:
    """Fail in seconds, not after Spark's minute of retries, when no master listens."""
    if config.is_local:
        return
    for hostport in config.master.removeprefix("spark://").split(","):
        host, port = hostport.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=config.connect_timeout_s).close()
            return
        except OSError:
            continue
    raise SparkEngineError(f"no Spark master answers at {config.master}; start one "
                           "(README: Batch engines) or pass --master local[2]")


def _stop_gateway() -> None:
    """Stop the JVM pyspark launched: it outlives ``SparkSession.stop()`` otherwise."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    if proc is not None:
        if proc.stdin is not None:
            proc.stdin.close()  # the gateway JVM exits when its stdin closes
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
            proc.wait(timeout=10)
    SparkContext._gateway = None
    SparkContext._jvm = None


@contextmanager
def spark_session(config: SparkConfig | None = None) -> Iterator[SparkSession]:
    """A SparkSession on ``config.master``; stopped, with its JVM, when the block ends.

    A session this process already runs on the same master is lent, not stopped: its owner
    (the block that started it) stops it.
    """
    config = config or SparkConfig()
    _check_master_reachable(config)
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise SparkEngineError("pyspark is not installed: pip install -e . (it is a dependency)"
                               ) from err
    from pyspark import SparkContext

    running = SparkContext._active_spark_context
    if running is not None:
        if running.master != config.master:
            raise SparkEngineError(f"this process already runs Spark on {running.master}, "
                                   f"not {config.master}; one SparkContext per process")
        yield SparkSession.builder.getOrCreate()
        return
    builder = (SparkSession.builder.master(config.master).appName(config.app_name)
               .config("spark.driver.host", config.driver_host)
               .config("spark.driver.bindAddress", config.driver_host)
               .config("spark.driver.memory", config.driver_memory)
               .config("spark.executor.memory", config.executor_memory)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.log.level", "ERROR"))
    # The JVM reads SPARK_LOCAL_IP at launch; without it Spark binds its services to the
    # host's first non-loopback address.
    saved = os.environ.get("SPARK_LOCAL_IP")
    os.environ["SPARK_LOCAL_IP"] = config.driver_host
    try:
        spark = builder.getOrCreate()
    except Exception as err:
        _stop_gateway()
        raise SparkEngineError(f"Spark did not start on {config.master} (Java 17+ on PATH?): "
                               f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                               ) from err
    finally:
        if saved is None:
            os.environ.pop("SPARK_LOCAL_IP", None)
        else:
            os.environ["SPARK_LOCAL_IP"] = saved
    try:
        yield spark
    finally:
        spark.stop()
        _stop_gateway()
