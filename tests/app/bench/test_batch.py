"""``playground bench batch``: options, the takeaway's arithmetic, and one real run per engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from dataflow_playground.app.bench.batch import (
    BatchBenchError,
    parse_engines,
    parse_sizes,
    takeaway,
)
from dataflow_playground.app.cli import app
from tests.helpers import run_cli


def test_sizes_and_engines_parse() -> None:
    assert parse_sizes("1000000,100_000,100000") == (100_000, 1_000_000)
    assert [e.value for e in parse_engines("spark,duckdb,spark")] == ["spark", "duckdb"]


@pytest.mark.parametrize("bad", ["", "0", "10,x", "-5", "99999999999"])
def test_bad_sizes_are_refused(bad: str) -> None:
    with pytest.raises(BatchBenchError, match="--events"):
        parse_sizes(bad)


@pytest.mark.parametrize("args", [["--events", "0"], ["--engine", "flink"], ["--repeats", "0"]])
def test_cli_validates_before_running(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["bench", "batch", *args])
    assert result.exit_code == 2, result.output


def _entry(engine: str, events: int, compute: float, startup: float, rss: float) -> dict[str, object]:
    return {"engine": engine, "events": events, "compute_s": compute, "startup_s": startup,
            "first_result_s": compute + startup, "events_per_s": events / compute, "peak_rss_mb": rss}


def test_takeaway_is_computed_from_the_numbers() -> None:
    entries = [_entry("duckdb", 100_000, 0.1, 0.0, 200), _entry("duckdb", 1_000_000, 1.0, 0.0, 700),
               _entry("spark", 100_000, 2.0, 5.0, 900), _entry("spark", 1_000_000, 8.0, 5.0, 1200)]
    text = takeaway(entries, memory_mb=4_000)
    assert "At 1,000,000 events duckdb gives the first result in 1.0 s, 13.0x sooner than spark" in text
    # duckdb: 10x the events took 10x the time (linear); spark 4x.
    assert "duckdb: 1,000,000 events/s at 1,000,000 events; from 100,000 to 1,000,000 its compute " \
           "time grew 10.0x per 10x events, so 10x more (10,000,000) would take about 10 s" in text
    assert "grew 4.0x per 10x events, so 10x more (10,000,000) would take about 32 s" in text
    assert "about 7,000 MB if it scales with the input, which exceeds this machine's 4,000 MB" in text


@pytest.mark.spark
def test_a_run_writes_results_for_both_engines(tmp_path: Path) -> None:
    env = dict(os.environ, PLAYGROUND_DATA_DIR=str(tmp_path / "data"),
               PLAYGROUND_RESULTS_DIR=str(tmp_path / "results"))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = run_cli(env, "bench", "batch", "--events", "3000", "--engine", "duckdb,spark",
                     "--repeats", "1", "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    runs = {r["engine"]: r for r in summary["runs"]}
    assert set(runs) == {"duckdb", "spark"}
    for r in runs.values():
        assert r["events"] == 3000 and r["events_per_s"] > 0 and r["peak_rss_mb"] > 20
        assert r["repeats"][0]["rows"] == 3000
    assert runs["duckdb"]["startup_s"] == 0 < runs["spark"]["startup_s"]
    assert runs["spark"]["peak_rss_mb"] > runs["duckdb"]["peak_rss_mb"]  # the JVM is counted
    for ext in ("json", "md", "png"):
        assert (tmp_path / "results" / f"batch.{ext}").stat().st_size > 0
    assert "Takeaway" in (tmp_path / "results" / "batch.md").read_text()
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"bench batch left processes behind: {left}"
