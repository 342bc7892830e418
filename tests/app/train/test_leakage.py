"""Splits and leakage: the leaky frames really leak, the lab's verdict holds on seeded data, and
``playground train leakage`` writes its results and a servable model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from dataflow_playground.app.train import leakage_cli
from dataflow_playground.app.train.leakage import (
    LeakageConfig,
    feature_table,
    leak_verdicts,
    leaky_training_sql,
    run_leakage,
)
from dataflow_playground.features.batch_sql import training_sql
from dataflow_playground.features.model import load_model, model_features


def _events(rows: list[tuple[int, int, float, int]]) -> pa.Table:
    """(event_id, user_id, amount, ts) rows; one merchant."""
    return pa.table({"event_id": [r[0] for r in rows], "user_id": [r[1] for r in rows],
                     "merchant_id": [1] * len(rows), "amount": [r[2] for r in rows],
                     "ts": [r[3] for r in rows]})


def test_leaky_frames_see_what_the_correct_one_must_not() -> None:
    events = _events([(0, 1, 10.0, 0), (1, 1, 20.0, 1_000), (2, 1, 900.0, 2_000)])
    specs = model_features()
    by_variant = {v: feature_table(events, v, specs).to_pylist() for v in
                  ("correct", "leaky_self", "leaky_future")}
    # Event 1 (ts 1 s): the correct window holds event 0 only; with itself: events 0-1; with the
    # future: all three, including the large payment a second later.
    assert by_variant["correct"][1]["user_txn_count_1h"] == 1
    assert by_variant["leaky_self"][1]["user_txn_count_1h"] == 2
    assert by_variant["leaky_future"][1]["user_txn_count_1h"] == 3
    assert by_variant["correct"][1]["user_amount_max_24h"] == 10.0
    assert by_variant["leaky_self"][1]["user_amount_max_24h"] == 20.0
    assert by_variant["leaky_future"][1]["user_amount_max_24h"] == 900.0
    assert by_variant["leaky_future"][0]["user_large_txn_count_24h"] == 1


def test_the_production_sql_is_not_the_leaky_sql() -> None:
    specs = tuple(model_features())
    correct = training_sql("t", specs)
    assert "FOLLOWING" not in correct and "EXCLUDE GROUP" in correct
    assert "FOLLOWING" in leaky_training_sql("t", "leaky_future", specs)
    con = duckdb.connect()
    con.register("t", _events([(0, 1, 5.0, 0)]))
    assert con.execute(leaky_training_sql("t", "leaky_self", specs)).fetchone() is not None


@pytest.fixture(scope="module")
def lab() -> dict[str, Any]:
    return run_leakage(LeakageConfig(events=30_000, seed=42))


def test_future_leak_looks_better_offline_and_is_worse_later(lab: dict[str, Any]) -> None:
    """Seeded (30,000 events, seed 42): on both splits, the future-window model beats the correct
    one offline and loses to it on the later period scored with correct features."""
    for split in ("random", "time"):
        ok, leak = lab["runs"][f"correct/{split}"], lab["runs"][f"leaky_future/{split}"]
        assert leak["auc_pr"] > ok["auc_pr"], (split, leak["auc_pr"], ok["auc_pr"])
        assert leak["later_auc_pr"] < ok["later_auc_pr"] - 0.02, (split, leak, ok)
        v = leak_verdicts(lab)[f"leaky_future/{split}"]
        assert v["offline_better"] and v["later_not_better"]


def test_model_beats_the_baselines_later(lab: dict[str, Any]) -> None:
    zero = lab["baselines"]["zero_rule"]
    assert zero["later_auc_roc"] == 0.5
    assert zero["later_auc_pr"] == pytest.approx(lab["periods"]["later_positives"]
                                                 / lab["periods"]["later_rows"])
    best_rule = max(b["later_auc_pr"] for b in lab["baselines"].values())
    assert lab["served_model"]["later"]["auc_pr"] > best_rule
    assert 0.5 < lab["runs"]["correct/time"]["later_auc_roc"] <= 1.0


def test_periods_do_not_overlap(lab: dict[str, Any]) -> None:
    p = lab["periods"]
    assert p["early_ts"][1] < p["cut_ts"] <= p["later_ts"][0]
    assert p["early_rows"] + p["later_rows"] == lab["events"] == 30_000


def test_same_seed_same_figures() -> None:
    a = run_leakage(LeakageConfig(events=3_000, seed=5, max_iter=10))
    b = run_leakage(LeakageConfig(events=3_000, seed=5, max_iter=10))
    assert json.dumps(a["runs"]) == json.dumps(b["runs"])


# --- the command ---------------------------------------------------------------------------

cli = typer.Typer()
cli.command("leakage")(leakage_cli.command)
cli.command("other")(lambda: None)  # two commands: "leakage" is then a sub-command, as registered


def test_command_json_results_and_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PLAYGROUND_RESULTS_DIR", str(tmp_path / "results"))
    r = CliRunner().invoke(cli, ["leakage", "--events", "4000", "--seed", "3", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # one object, nothing else on stdout
    assert set(doc["runs"]) == {f"{v}/{s}" for v in ("correct", "leaky_self", "leaky_future")
                                for s in ("random", "time")}
    for run in doc["runs"].values():
        assert {"auc_pr", "auc_roc", "later_auc_pr", "later_auc_roc"} <= set(run)
    for ext in ("json", "md", "png"):
        assert (tmp_path / "results" / f"leakage.{ext}").stat().st_size > 0
    md = (tmp_path / "results" / "leakage.md").read_text()
    assert "Takeaway:" in md and f"{doc['runs']['correct/time']['auc_pr']:.3f}" in md
    model = load_model(Path(doc["model"]["path"]))
    assert model.features == tuple(doc["features"]) and model.version == doc["model"]["version"]
    assert np.isfinite(model.score(dict.fromkeys(model.features, 1.0)))


@pytest.mark.parametrize("args", [["--events", "10"], ["--seed", "-1"], ["--events", "many"]])
def test_command_refuses_bad_options(args: list[str]) -> None:
    r = CliRunner().invoke(cli, ["leakage", *args])
    assert r.exit_code == 2
