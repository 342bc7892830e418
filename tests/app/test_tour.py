"""`playground demo`, the tour: one line per lesson from the figures, the report, nothing left running."""

from __future__ import annotations

import os
import re

import psutil
import pytest

from dataflow_playground.app import tour
from tests.helpers import free_ports, run_cli


def test_kafka_line_says_when_the_counts_do_not_balance() -> None:
    summary = {"events_sent": 100, "consume_events_per_s": 5000.0, "rows_stored": 90,
               "dead_letters": 5, "duplicates": 0, "duplicate_rows": 0}
    assert "NOT balanced" in tour.kafka_line(summary)
    assert "every event accounted for" in tour.kafka_line({**summary, "rows_stored": 95})


def test_flow_line_names_the_modes_that_lost_or_doubled() -> None:
    doc = {"modes": {"db": {"events_per_s": 1000.0, "lost": 0, "duplicated": 0},
                     "rest": {"events_per_s": 2000.0, "lost": 3, "duplicated": 0},
                     "kafka-pubsub": {"events_per_s": 9000.0, "lost": 0, "duplicated": 0}}}
    line = tour.flow_line(doc)
    assert "database 1,000" in line and "Kafka 9,000" in line
    assert "lost or doubled events in: rest" in line
    clean = {"modes": {k: {**v, "lost": 0} for k, v in doc["modes"].items()}}
    assert "every mode delivered each event once" in tour.flow_line(clean)


def test_parity_and_formats_lines_take_the_worst_and_the_best() -> None:
    parity = {"events": 500, "engine": "faust", "final_state_mismatches": 2,
              "features": {"a": {"mismatch_rate": 0.01}, "b": {"mismatch_rate": 0.25}}}
    assert "2 final-state mismatches" in tour.parity_line(parity)
    assert "25.00% (b)" in tour.parity_line(parity)
    fmts = {"rows": 10, "formats": {
        "csv": {"bytes": 600, "read_column_s": 0.004, "roundtrip_ok": False},
        "parquet-zstd": {"bytes": 100, "read_column_s": 0.001, "roundtrip_ok": True}}}
    line = tour.formats_line(fmts)
    assert "smallest file parquet-zstd, 6.0x smaller than CSV" in line
    assert "round-trip losses in 1 of 2 formats" in line


@pytest.mark.kafka
def test_the_tour_runs_every_lesson_writes_the_report_and_stops_what_it_started(tmp_path) -> None:
    kafka, controller, rest, rpc, dashboard = free_ports(5)
    env = dict(os.environ)
    env.update({
        "PLAYGROUND_DATA_DIR": str(tmp_path / "data"),
        "PLAYGROUND_RESULTS_DIR": str(tmp_path / "results"),
        "PLAYGROUND_KAFKA_PORT": str(kafka), "PLAYGROUND_KAFKA_CONTROLLER_PORT": str(controller),
        "PLAYGROUND_REST_PORT": str(rest), "PLAYGROUND_RPC_PORT": str(rpc),
        "PLAYGROUND_DASHBOARD_PORT": str(dashboard),
        "PLAYGROUND_KAFKA_HEAP": "384m", "PLAYGROUND_STREAM_ENGINE": "kafka-python",
    })
    try:
        out = run_cli(env, "demo", "--events", "2000", "--flow-events", "300", "--parity-events", "300",
                      "--format-rows", "500", timeout=420)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        lines = out.stdout
        for topic in ("Kafka -> DuckDB", "Dataflow modes", "Batch vs stream features", "Formats"):
            assert re.search(rf"^{re.escape(topic)} \(\d+ s\): ", lines, re.MULTILINE), lines[-2000:]
        assert "2,000 events through Kafka into DuckDB" in lines
        assert "0 final-state mismatches" in lines
        index = tmp_path / "results" / "index.html"
        assert index.exists() and str(index.resolve()) in lines.replace("\n", "")
        for name in ("demo", "flow", "parity", "formats"):
            assert (tmp_path / "results" / f"{name}.json").exists(), name
        run_dir = tmp_path / "data" / "run"
        assert not list(run_dir.glob("*.pid")), f"left running: {list(run_dir.glob('*.pid'))}"
    finally:
        leftover = _processes_of(str(tmp_path))
        for p in leftover:  # only processes of this test's own data folder
            p.kill()
    assert not leftover, f"the tour left processes behind: {leftover}"


def _processes_of(folder: str) -> list[psutil.Process]:
    """Live processes whose command line or PLAYGROUND_DATA_DIR points into ``folder``."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(folder in arg for arg in p.info["cmdline"] or ()) or \
                    p.environ().get("PLAYGROUND_DATA_DIR", "").startswith(folder):
                found.append(p)
        except psutil.Error:
            continue
    return found
