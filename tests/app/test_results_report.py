"""The results contract: run history, the self-contained report page, and what the text says."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from dataflow_playground.app.report_page import build_index, topic_of
from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.app.run_history import archive_run, runs


def _chart(value: float) -> Figure:
    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.bar(["a", "b"], [value, 2.0])
    ax.set_ylabel("events/s")
    return fig


def _write(results: Path, name: str, value: float, now_note: str) -> dict[str, Path]:
    return write_results(
        name, results, title=f"{name} title", parameters={"events": 10},
        data={"events_per_s": value, "lost": None, "ok": True},
        table_md=markdown_table(["mode", "events/s", "lost", "ok"], [["x", value, None, True]]),
        takeaway=f"{name} moved {value:,.0f} events/s ({now_note})",
        chart=lambda: _chart(value))


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.refs: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for k, v in attrs:
            if k == "src" and tag == "img":
                self.imgs.append(v or "")
            elif k in {"src", "href"}:
                self.refs.append(v or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_index_is_self_contained_grouped_and_shows_the_previous_run(tmp_path: Path) -> None:
    for run in ("first", "second"):
        _write(tmp_path, "formats", 100.0 if run == "first" else 150.0, run)
        _write(tmp_path, "flow_db", 10.0 if run == "first" else 12.0, run)
    index = build_index(tmp_path)
    page_html = index.read_text()
    page = _Page()
    page.feed(page_html)
    assert len(page.imgs) >= 4  # newest and previous chart of each result
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert all(r.startswith("#") for r in page.refs), page.refs  # in-page links only
    assert {"script", "link", "iframe"}.isdisjoint(page.tags)
    assert "http://" not in re.sub(r"data:[^\"']+", "", page_html)
    assert "https://" not in re.sub(r"data:[^\"']+", "", page_html)
    text = " ".join(page.text)
    assert "Dataflow modes" in text and "Formats and storage engines" in text
    first_runs = {name: runs(tmp_path, name)[0] for name in ("formats", "flow_db")}
    for name, run in first_runs.items():
        assert f"Previous run, {run.written_at}" in text
        assert f"{name} moved" in text and "(first)" in text and "(second)" in text
    assert "+50.0%" in text  # formats events/s, newest vs previous
    assert "None" not in text and "True" not in text


def test_write_results_keeps_each_run_and_bounds_the_history(tmp_path: Path) -> None:
    paths = _write(tmp_path, "demo", 5.0, "one")
    [run] = runs(tmp_path, "demo")
    assert sorted(p.name for p in run.path.iterdir()) == ["demo.json", "demo.md", "demo.png"]
    assert run.doc()["takeaway"] == "demo moved 5 events/s (one)"
    assert (tmp_path / "index.html").is_file()
    for i in range(5):
        archive_run(tmp_path, "demo", paths.values(), keep=3, now=2_000_000_000 + i)
    kept = runs(tmp_path, "demo")
    assert len(kept) == 3
    # the newest three survive, oldest first
    assert [r.stamp for r in kept] == ["20330518T033322.000Z", "20330518T033323.000Z", "20330518T033324.000Z"]
    archive_run(tmp_path, "other", paths.values(), keep=3)
    assert len(runs(tmp_path, "demo")) == 3 and len(runs(tmp_path)) == 4


def test_topics_follow_the_book() -> None:
    assert topic_of("flow_rpc") == "Dataflow modes"
    assert topic_of("batch_vs_stream") == "Batch vs stream, and features"
    assert topic_of("parity") == "Batch vs stream, and features"
    assert topic_of("etl_vs_elt") == "Formats and storage engines"
    assert topic_of("bench_kafka") == "Kafka and throughput"
    assert topic_of("chaos_broker_kill") == "Reliability and chaos"
    assert topic_of("sampling") == "Training data"


def test_markdown_tables_never_show_python_literals() -> None:
    md = markdown_table(["a", "b", "c", "d"], [[None, True, False, float("nan")]])
    assert md.splitlines()[-1] == "| - | yes | no | - |"


def test_console_shows_the_chart_path_not_an_emoji_and_the_title_once(tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    from dataflow_playground.app.console import show_results

    paths = _write(tmp_path, "layout", 3.0, "x")
    buf = StringIO()
    show_results(paths, Console(file=buf, width=200))
    out = buf.getvalue()
    assert "🌆" not in out
    assert out.count("layout title") == 1
    assert str(tmp_path / "layout.png") in out


def test_piped_output_is_wide_enough_for_wide_tables() -> None:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    from dataflow_playground.app.console import PIPED_WIDTH, output_width

    assert output_width(is_tty=True) is None
    assert output_width(is_tty=False, columns="") == PIPED_WIDTH
    assert output_width(is_tty=False, columns="132") == 132
    table = Table()
    headers = [f"column-{i}" for i in range(14)]
    for h in headers:
        table.add_column(h, overflow="fold")
    table.add_row(*[f"{i * 1234567:,}" for i in range(14)])
    buf = StringIO()
    Console(file=buf, width=output_width(is_tty=False, columns="")).print(table)
    assert all(h in buf.getvalue() for h in headers)
    assert f"{13 * 1234567:,}" in buf.getvalue()


# --- computed text ----------------------------------------------------------------------------


def _flow(mode: str, lost: int = 0, duplicated: int = 0, sent: int = 20_000) -> Any:
    from dataflow_playground.app.flow.report import FlowResult

    return FlowResult(mode=mode, sent=sent, received=sent - lost, lost=lost, duplicated=duplicated,
                      events_per_s=1000.0, p50_ms=1.0, p95_ms=None, p99_ms=2.0, cpu_s=0.1)


def test_flow_takeaway_never_says_exactly_once_beside_a_duplicate() -> None:
    from dataflow_playground.app.flow.compare import takeaway

    text = takeaway([_flow("rest"), _flow("rpc"), _flow("rpc+service-down", duplicated=6000),
                     _flow("rest+service-down")])
    assert "without a fault every mode delivered every event exactly once" in text
    assert "rpc+service-down lost 0 and duplicated 6,000 of 20,000" in text
    assert "rest+service-down still delivered exactly once" in text
    assert "every run" not in text
    clean = takeaway([_flow("rest"), _flow("rest+service-down")])
    assert "every run, the faulted ones too, delivered every event exactly once" in clean
    bad = takeaway([_flow("rest", lost=3)])
    assert "FAILED for rest (lost 3, duplicated 0)" in bad


_LITERALS = re.compile(r"\b(None|True|False|nan)\b")


def test_written_markdown_has_no_python_literals(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from dataflow_playground.app.bench.batch_vs_stream import FRESHNESS_TARGET_LOAD
    from dataflow_playground.app.bench.batch_vs_stream import _write as bvs_write
    from dataflow_playground.app.flow.compare import write as flow_write
    from dataflow_playground.app.parity_results import write_parity_results
    from dataflow_playground.core.settings import Settings

    ctx: Any = SimpleNamespace(settings=SimpleNamespace(results_dir=tmp_path))
    flows = [_flow("rest"), _flow("kafka-pubsub"), _flow("rpc+service-down", duplicated=5)]
    written = [flow_write(ctx, flows, {"events": 20_000, "fault": None}, name="flow_rest")["paths"]["md"]]
    feature = {"mismatch_rate": 0.0, "missing_rate": 0.0, "extra_rate": 0.0, "smape": 0.0}
    doc = {"events": 500, "engine": "faust", "stream_path": "faust worker", "dead_letter_records": 0,
           "features": {"f1": feature, "f2": {**feature, "mismatch_rate": 0.01}},
           "final_state": {"f1": {**feature, "mismatches": 0, "entities": 10},
                           "f2": {**feature, "mismatches": 2, "entities": 10}},
           "final_state_mismatches": 2, "stream_counters": {"late_accepted": 1}, "parameters": {"seed": 1}}
    written.append(str(write_parity_results([doc, {**doc, "engine": "kafka-python"}], tmp_path)["md"]))
    fresh = [{"offered_events_per_s": FRESHNESS_TARGET_LOAD, "share_of_max": 0.5,
              "achieved_events_per_s": 1999.0, "p50_ms": 10.0, "p99_ms": 900.0, "max_ms": None}]
    settings = Settings(results_dir=tmp_path, data_dir=tmp_path / "data")
    written.append(str(bvs_write(
        settings, {"events_per_s": 10.0, "wall_s": 1.0, "events": 10},
        {"faust": {"events_per_s": 5.0, "cpu_s_per_1m_events": 2.0, "wall_s": 1.0}},
        {"faust": fresh}, {"loadavg_1_5_15_before": (1, 1, 1), "loadavg_1_5_15_after": (1, 1, 1)},
        {"events": 10})["md"]))
    for md in written:
        text = Path(md).read_text()
        assert not _LITERALS.search(text), (md, _LITERALS.findall(text))
    assert "Targets: batch not met" in Path(written[-1]).read_text()


# --- command-line friction --------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from typer.testing import CliRunner

    from dataflow_playground.app.cli import app

    monkeypatch.setenv("PLAYGROUND_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("PLAYGROUND_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.mark.parametrize("args, option", [
    (("formats", "--rows", "-5"), "--rows"),
    (("formats", "--rows", "0"), "--rows"),
    (("lab", "layout", "--side", "0"), "--side"),
    (("demo", "--events", "0"), "--events"),
    (("flow", "db", "--events", "0"), "--events"),
    (("flow", "rest", "--batch", "-1"), "--batch"),
    (("features", "parity", "--events", "0"), "--events"),
    (("features", "parity", "--out-of-order", "1.5"), "--out-of-order"),
    (("features", "parity", "--max-lateness", "soon"), "soon"),
    (("train", "sampling", "--seeds", "0"), "--seeds"),
    (("bench", "batch-vs-stream", "--repeats", "0"), "--repeats"),
])
def test_bad_numbers_are_refused_with_a_message(cli: Any, args: tuple[str, ...], option: str,
                                                tmp_path: Path) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists()  # nothing ran, nothing was overwritten


def test_report_command_rebuilds_the_page_and_prints_its_path(cli: Any, tmp_path: Path) -> None:
    _write(tmp_path / "results", "engines", 7.0, "x")
    (tmp_path / "results" / "index.html").unlink()
    result = cli("report")
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path == (tmp_path / "results" / "index.html").resolve() and path.is_file()
    assert "engines title" in path.read_text()


def test_features_list_prints_json(cli: Any) -> None:
    import json

    result = cli("features", "list", "--json")
    assert result.exit_code == 0, result.output
    assert {"name", "entity", "window_ms"} <= set(json.loads(result.output)[0])


def test_every_chart_gets_a_title_and_its_takeaway_once() -> None:
    from dataflow_playground.app.results import finish_chart

    fig = _chart(1.0)
    finish_chart(fig, "The title", "batch is 40x faster than the stream at 1,000,000 events")
    assert fig.get_suptitle() == "The title"
    captions = [" ".join(t.get_text().split()) for t in fig.texts if t.get_text().startswith("Takeaway")]
    assert captions == ["Takeaway: batch is 40x faster than the stream at 1,000,000 events"]
    own = _chart(1.0)
    own.suptitle("Own title\nbatch is 40x faster than the stream at 1,000,000 events")
    finish_chart(own, "The title", "batch is 40x faster than the stream at 1,000,000 events")
    assert own.get_suptitle().startswith("Own title")
    assert not any(t.get_text().startswith("Takeaway") for t in own.texts)


def test_a_single_mode_takeaway_ranks_nothing() -> None:
    from dataflow_playground.app.flow.compare import takeaway

    text = takeaway([_flow("db")])
    assert text.startswith("db moved 1,000 events/s with a p99 of 2.0 ms")
    assert "fastest" not in text and "1.0x" not in text
