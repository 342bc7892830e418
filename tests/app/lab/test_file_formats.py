"""The formats lab: every figure present and checked, takeaways computed, JSON on stdout alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow_playground.app.lab import file_formats as lab
from dataflow_playground.app.lab.layout import LayoutConfig, run_layout
from dataflow_playground.features.parity import REL_TOL

REQUIRED = {"bytes", "write_s", "read_s", "read_column_s", "roundtrip_ok", "read_rows_s",
            "read_filtered_s", "lookup_s", "ratio_to_csv", "bytes_per_row"}


@pytest.fixture(scope="module")
def doc() -> dict:  # type: ignore[type-arg]
    return lab.run_formats(lab.FormatsConfig(rows=2_000, repeats=1, budget_s=0.01))


def test_every_format_has_every_figure_and_passes_its_checks(doc: dict) -> None:  # type: ignore[type-arg]
    assert len(doc["formats"]) >= 7
    for name, f in doc["formats"].items():
        assert set(f) >= REQUIRED, name
        assert f["lookup_ok"] and f["column_sum_ok"], name
        assert f["filtered_rows"] == f["filtered_rows_expected"] > 0, name
        assert all(f[k] > 0 for k in ("write_s", "read_s", "read_column_s")), name
        assert f["roundtrip_ok"] or f["roundtrip_losses"], name  # a false is always explained
    assert doc["formats"]["csv"]["ratio_to_csv"] == pytest.approx(1.0, rel=REL_TOL)


def test_takeaway_follows_the_numbers(doc: dict) -> None:  # type: ignore[type-arg]
    text = lab.takeaway(doc)
    smallest = min(doc["formats"], key=lambda n: doc["formats"][n]["bytes"])
    assert smallest in text
    flipped = json.loads(json.dumps(doc))
    flipped["formats"]["csv"]["bytes"] = 1  # now CSV is the smallest file
    assert "csv is the smallest" in lab.takeaway(flipped)


def test_honesty_check_recorded(doc: dict) -> None:  # type: ignore[type-arg]
    assert {"parquet-snappy.read", "arrow-ipc.read", "parquet-zstd.read_column"} <= set(
        doc["honesty"])
    for v in doc["honesty"].values():
        assert v["lab_s"] > 0 and v["direct_pyarrow_s"] > 0 and v["ratio"] > 0


def test_layout_answers_agree() -> None:
    out = run_layout(LayoutConfig(side=300, rows=2_000, repeats=1))
    assert out["answers_agree"]
    assert set(out["matrix"]) == {"C (row-major)", "F (column-major)"}


@pytest.mark.slow
def test_cli_json_goes_to_stdout_alone(tmp_path: Path) -> None:
    env = dict(os.environ, PLAYGROUND_RESULTS_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", "from dataflow_playground.app.cli import main; main()",
         "formats", "--rows", "500", "--repeats", "1", "--budget", "0.01", "--json"],
        capture_output=True, text=True, env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # fails if anything else reached stdout
    assert out["rows"] == 500 and len(out["formats"]) >= 7
    for f in out["formats"].values():
        assert {"bytes", "write_s", "read_s", "read_column_s", "roundtrip_ok"} <= set(f)
    assert {p.name for p in tmp_path.iterdir()} == {"formats.json", "formats.md", "formats.png",
                                                    "index.html", "runs"}
