"""``playground features backfill``: the training set as Parquet, on both engines.

The file is keyed by event_id (sorted, unique), holds the label and every feature, and the
two engines write the same values (floats within the project's tolerance).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dataflow_playground.app.backfill import (
    LABEL,
    BackfillConfig,
    BackfillError,
    BatchEngine,
    output_schema,
    run_backfill,
)
from dataflow_playground.app.features_cli import features_app
from dataflow_playground.features.definitions import FEATURES, feature_names
from dataflow_playground.features.parity import values_equal
from dataflow_playground.producers.generator import GeneratorConfig, generate_table
from tests.helpers import run_cli

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

EVENTS = 2_000


def check_training_file(path: Path, events: pa.Table) -> pa.Table:
    """The file has the agreed columns, one row per event keyed by event_id, and its labels."""
    table = pq.read_table(path)
    assert table.schema.equals(output_schema())
    assert table.column_names == ["event_id", "user_id", "merchant_id", "ts", LABEL, *feature_names()]
    ids = table["event_id"].to_pylist()
    assert ids == sorted(set(ids)) == sorted(events["event_id"].to_pylist())
    assert table[LABEL].to_pylist() == events.sort_by("event_id")[LABEL].to_pylist()
    return table


def assert_same_values(a: pa.Table, b: pa.Table) -> None:
    bad = {f.name: sum(not values_equal(x, y) for x, y in
                       zip(a[f.name].to_pylist(), b[f.name].to_pylist(), strict=True)) for f in FEATURES}
    assert bad == dict.fromkeys(bad, 0)


def test_duckdb_backfill_of_generated_events(tmp_path: Path) -> None:
    out = tmp_path / "out" / "training.parquet"
    r = CliRunner().invoke(features_app, ["backfill", "--events", str(EVENTS), "--seed", "5",
                                          "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"{EVENTS:,} rows" in r.output
    check_training_file(out, generate_table(GeneratorConfig(events=EVENTS, seed=5, rate=2.0)))


def test_duckdb_backfill_of_an_input_file(tmp_path: Path) -> None:
    events = generate_table(GeneratorConfig(events=EVENTS, seed=6, rate=2.0))
    shuffled = events.take(pa.array(range(EVENTS - 1, -1, -1)))  # the input need not be sorted
    pq.write_table(shuffled, tmp_path / "events.parquet")
    r = CliRunner().invoke(features_app, ["backfill", "--input", str(tmp_path / "events.parquet"),
                                          "--out", str(tmp_path / "training.parquet")])
    assert r.exit_code == 0, r.output
    check_training_file(tmp_path / "training.parquet", events)


@pytest.mark.spark
def test_spark_backfill_writes_what_duckdb_writes(spark: SparkSession, tmp_path: Path) -> None:
    """Both engines from the CLI on one input file (Spark on the test run's local[2] session)."""
    events = generate_table(GeneratorConfig(events=EVENTS, seed=7, rate=2.0))
    pq.write_table(events, tmp_path / "events.parquet")
    tables = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.parquet"
        r = CliRunner().invoke(features_app, ["backfill", "--engine", engine, "--input",
                                              str(tmp_path / "events.parquet"), "--out", str(out)])
        assert r.exit_code == 0, r.output
        tables[engine] = check_training_file(out, events)
    assert "spark on local[2]" in r.output
    assert_same_values(tables["duckdb"], tables["spark"])
    assert not spark.sparkContext._jsc.sc().isStopped()  # lent, not stopped by the backfill


@pytest.mark.parametrize(("args", "message"), [
    (["--events", "0"], "--events must be between 1 and"),
    (["--input", "missing.parquet"], "input file missing.parquet does not exist"),
    (["--events", "10", "--input", "x.parquet"], "either --events N (generate) or --input"),
    ([], "either --events N (generate) or --input"),
    (["--events", "10", "--master", "local[2]"], "--master applies to --engine spark only"),
    (["--events", "10", "--engine", "spark", "--driver-memory", "lots"], "driver memory 'lots' is not"),
    (["--events", "10", "--engine", "spark", "--master", "yarn"], "master 'yarn' is not"),
])
def test_bad_options_give_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    r = run_cli(dict(os.environ), "features", "backfill", *args, "--out", str(tmp_path / "t.parquet"))
    assert r.returncode == 2
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0] and "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "t.parquet").exists()


def test_input_that_is_not_events(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"event_id": [1, 2], "ts": ["a", "b"]}), bad)
    with pytest.raises(BackfillError, match="lacks the event columns user_id, merchant_id, amount"):
        run_backfill(BackfillConfig(out=tmp_path / "t.parquet", input=bad))
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(BackfillError, match="cannot read"):
        run_backfill(BackfillConfig(out=tmp_path / "t.parquet", input=tmp_path / "text.parquet"))


def test_repeated_event_ids_are_refused(tmp_path: Path) -> None:
    events = generate_table(GeneratorConfig(events=100, seed=1))
    pq.write_table(pa.concat_tables([events, events.slice(0, 3)]), tmp_path / "e.parquet")
    with pytest.raises(BackfillError, match="repeats 3 event ids"):
        run_backfill(BackfillConfig(out=tmp_path / "t.parquet", input=tmp_path / "e.parquet",
                                    engine=BatchEngine.DUCKDB))
    assert not (tmp_path / "t.parquet").exists()
