"""The serving lab on the session's real stack: batch vs stream scores, and POST /score latency."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from typer.testing import CliRunner

from dataflow_playground.app.train import serving as lab
from dataflow_playground.app.train.serving_cli import command
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.model import model_path


def test_serving_measures_skew_and_latency_on_the_stack(kafka_stack: Settings, tmp_path: Path) -> None:
    cfg = lab.ServingConfig(events=1_500, seed=7, out_of_order=0.05, max_lateness_ms=30_000,
                            rate=50.0, seconds=3.0, pool_events=300, train_events=5_000)
    had_model = model_path(kafka_stack).exists()
    doc = lab.run_serving(kafka_stack, cfg, Console(stderr=True, quiet=True))

    assert model_path(kafka_stack).exists()
    assert doc["model"]["trained_now"] is (not had_model)
    assert doc["stack_started"] == []  # the session stack was up: nothing started, nothing stopped

    ino, ooo = doc["skew"]["in_order"], doc["skew"]["out_of_order"]
    # In order the stream's per-event values equal batch (parity: 0 mismatches), so do the scores.
    assert ino["feature_mismatches"] == 0
    assert ino["events"] == 1_500 and ino["missing_in_stream"] == 0
    assert ino["mean_abs_diff"] < 1e-9 and ino["max_abs_diff"] < 1e-9 and ino["over_0_01"] == 0
    # Out of order: late events change some features; the skew is measured on every event.
    assert ooo["events"] > 0 and ooo["over_0_01"] >= 0
    assert 0.0 <= ooo["share_over_0_01"] <= 1.0
    assert ooo["over_0_01"] == round(ooo["share_over_0_01"] * ooo["events"])
    assert ooo["feature_mismatches"] > 0  # 5 % of events late: the stream did not see them in time

    lat = doc["latency"]
    assert lat["requests"] == 150 and lat["errors"] == 0, lat["status_codes"]
    assert lat["max_ms"] >= lat["p99_ms"] >= lat["p95_ms"] >= lat["p50_ms"] > 0
    assert 25 <= lat["rate"] <= 60  # paced near the offered 50/s

    paths = lab.write_serving_results(doc, tmp_path)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"serving.{ext}").stat().st_size > 0
    written = json.loads(paths["json"].read_text())
    assert written["takeaway"] == lab.takeaway(doc) and "p99" in written["takeaway"]
    summary = lab.json_summary(doc)
    assert set(summary["skew"]) == {"in_order", "out_of_order"}
    for run in summary["skew"].values():
        assert {"mean_abs_diff", "over_0_01", "share_over_0_01", "events"} <= set(run)
    assert {"p50_ms", "p95_ms", "p99_ms", "max_ms", "rate", "requests", "errors"} <= set(summary["latency"])
    json.dumps(summary)  # one JSON object


def test_number_options_are_validated() -> None:
    app = typer.Typer()
    app.command()(command)
    runner = CliRunner()
    for args in (["--rate", "0"], ["--seconds", "0"], ["--events", "10"], ["--out-of-order", "1.5"],
                 ["--max-lateness", "soon"], ["--max-in-flight", "0"], ["--engine", "nope"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
