"""``playground features backfill``: the point-in-time-correct training set, written as Parquet.

Either engine computes the same table (``tests/features/test_batch_spark.py`` holds them to 0
mismatches): DuckDB on this machine, or Spark on ``local[N]`` or a standalone cluster
(``spark://HOST:PORT``). The file has one row per event, sorted and keyed by ``event_id``:
``event_id, user_id, merchant_id, ts``, the label ``is_fraud``, then every feature of
:data:`~dataflow_playground.features.definitions.FEATURES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.schema import arrow_schema
from dataflow_playground.features.definitions import FEATURES, Agg, FeatureSpec
from dataflow_playground.producers.generator import GeneratorConfig, generate_table

LABEL = "is_fraud"
KEY_COLUMNS = ("event_id", "user_id", "merchant_id", "ts")
MAX_EVENTS = 100_000_000


class BatchEngine(StrEnum):
    DUCKDB = "duckdb"
    SPARK = "spark"


class BackfillError(PlaygroundError):
    """The backfill's input or options are unusable."""


@dataclass(frozen=True)
class BackfillConfig:
    out: Path
    engine: BatchEngine = BatchEngine.DUCKDB
    events: int | None = None  # generate this many events ...
    seed: int = 42
    rate: float = 2.0  # ... at this mean rate (events per second of event time)
    input: Path | None = None  # ... or read them from this Parquet file
    master: str | None = None  # Spark only; default local[2]
    driver_memory: str | None = None  # Spark only; default SparkConfig's
    executor_memory: str | None = None  # Spark only, on a cluster; default SparkConfig's
    driver_host: str | None = None  # Spark only: where remote executors reach the driver

    def __post_init__(self) -> None:
        if (self.events is None) == (self.input is None):
            raise BackfillError("give either --events N (generate) or --input FILE.parquet, not both")
        if self.events is not None and not 1 <= self.events <= MAX_EVENTS:
            raise BackfillError(f"--events must be between 1 and {MAX_EVENTS:,}, got {self.events}")
        if not self.rate > 0:
            raise BackfillError(f"--rate must be positive, got {self.rate}")
        if self.input is not None and not self.input.is_file():
            raise BackfillError(f"input file {self.input} does not exist (or is not a file)")
        spark_only = {"--master": self.master, "--driver-memory": self.driver_memory,
                      "--executor-memory": self.executor_memory, "--driver-host": self.driver_host}
        given = [name for name, value in spark_only.items() if value is not None]
        if given and self.engine != BatchEngine.SPARK:
            raise BackfillError(f"{', '.join(given)} applies to --engine spark only")
        if self.out.is_dir():
            raise BackfillError(f"--out {self.out} is a directory; give a file name, e.g. training.parquet")


@dataclass(frozen=True)
class BackfillResult:
    out: Path
    rows: int
    engine: str
    master: str | None
    startup_s: float  # Spark session start (0 for DuckDB)
    compute_s: float  # features computed and collected
    total_s: float  # everything, reading and writing included


def output_schema(features: tuple[FeatureSpec, ...] = FEATURES) -> pa.Schema:
    """The file's schema: the same on both engines (counts int64, values float64)."""
    def feature_type(f: FeatureSpec) -> pa.DataType:
        if f.agg in (Agg.COUNT, Agg.DISTINCT, Agg.TIME_SINCE_LAST):
            return pa.int64()
        return pa.list_(pa.float64()) if f.is_list else pa.float64()

    events = arrow_schema()
    return pa.schema([events.field(c) for c in (*KEY_COLUMNS, LABEL)]
                     + [pa.field(f.name, feature_type(f)) for f in features])


def _check_input(path: Path) -> None:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise BackfillError(f"cannot read {path} as Parquet: {err}") from err
    want = arrow_schema()
    needed = (*KEY_COLUMNS, "amount", LABEL)
    missing = [c for c in needed if c not in schema.names]
    if missing:
        raise BackfillError(f"{path} lacks the event columns {', '.join(missing)} "
                            "(the event schema: README, The event)")
    wrong = [f"{c} is {schema.field(c).type}, not {want.field(c).type}" for c in needed
             if not schema.field(c).type.equals(want.field(c).type)]
    if wrong:
        raise BackfillError(f"{path}: {'; '.join(wrong)} (ts is int64 UTC milliseconds)")


def _with_label(training: pa.Table, events: pa.Table) -> pa.Table:
    """Add the label to DuckDB's table; both are keyed by event_id (unique, checked later)."""
    labels = events.select(["event_id", LABEL])
    ids = labels["event_id"]
    if len(ids) > 1 and not pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py():
        labels = labels.sort_by("event_id")  # inputs usually come in event_id order: no sort then
    if not training["event_id"].equals(labels["event_id"]):
        raise BackfillError("the training table's event ids differ from the input's")
    return training.append_column(LABEL, labels[LABEL])


def _conform(table: pa.Table, features: tuple[FeatureSpec, ...]) -> pa.Table:
    schema = output_schema(features)
    dupes = table.num_rows - pc.count_distinct(table["event_id"]).as_py()
    if dupes:
        raise BackfillError(f"the input repeats {dupes:,} event ids; the training set is keyed by "
                            "event_id, so each must be unique")
    return pa.table([table[f.name].cast(f.type) for f in schema], schema=schema)


def _generate(cfg: BackfillConfig) -> pa.Table:
    return generate_table(GeneratorConfig(events=cfg.events or 0, seed=cfg.seed, rate=cfg.rate))


def _duckdb_table(cfg: BackfillConfig, features: tuple[FeatureSpec, ...],
                  on_stage: Callable[[str], None]) -> tuple[pa.Table, float]:
    from dataflow_playground.features.batch_sql import BatchFeatures

    # The clock covers reading the input, as Spark's does (its executors read the file).
    if cfg.input is not None:
        on_stage("reading events")
        t0 = time.perf_counter()
        events = pq.read_table(cfg.input)
    else:
        on_stage(f"generating {cfg.events:,} events")
        events = _generate(cfg)
        t0 = time.perf_counter()
    on_stage(f"computing {len(features)} features with DuckDB")
    table = _with_label(BatchFeatures(events, features=features).training_table(), events)
    return table, time.perf_counter() - t0


def _spark_table(cfg: BackfillConfig, features: tuple[FeatureSpec, ...], on_stage: Callable[[str], None]
                 ) -> tuple[pa.Table, float, float, str]:
    from dataflow_playground.features.batch_spark import SparkConfig, spark_session, training_table

    spark_cfg = SparkConfig(master=cfg.master or SparkConfig.master,
                            driver_memory=cfg.driver_memory or SparkConfig.driver_memory,
                            executor_memory=cfg.executor_memory or SparkConfig.executor_memory,
                            driver_host=cfg.driver_host or SparkConfig.driver_host)
    # A file is read by the executors themselves (so it must be at the same path on each);
    # generated events are sent to them from the driver.
    source: pa.Table | str
    if cfg.input is not None:
        source = str(cfg.input.resolve())
    else:
        on_stage(f"generating {cfg.events:,} events")
        source = _generate(cfg)
    on_stage(f"starting Spark ({spark_cfg.master})")
    t0 = time.perf_counter()
    with spark_session(spark_cfg) as spark:
        startup_s = time.perf_counter() - t0
        on_stage(f"computing {len(features)} features with Spark on {spark_cfg.master}")
        t1 = time.perf_counter()
        table = training_table(spark, source, features, passthrough=(LABEL,))
        compute_s = time.perf_counter() - t1
    return table, compute_s, startup_s, spark_cfg.master


def run_backfill(cfg: BackfillConfig, features: tuple[FeatureSpec, ...] = FEATURES,
                 on_stage: Callable[[str], None] = lambda _: None) -> BackfillResult:
    """Compute the training table with ``cfg.engine`` and write it to ``cfg.out``."""
    start = time.perf_counter()
    if cfg.input is not None:
        _check_input(cfg.input)
    startup_s, master = 0.0, None
    if cfg.engine == BatchEngine.DUCKDB:
        table, compute_s = _duckdb_table(cfg, features, on_stage)
    else:
        table, compute_s, startup_s, master = _spark_table(cfg, features, on_stage)
    on_stage(f"writing {cfg.out}")
    table = _conform(table, features)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, cfg.out)
    return BackfillResult(out=cfg.out, rows=table.num_rows, engine=cfg.engine.value, master=master,
                          startup_s=startup_s, compute_s=compute_s, total_s=time.perf_counter() - start)
