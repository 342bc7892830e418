"""``results/parity.{json,md,png}``: batch vs stream feature parity, one row per engine and feature."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from dataflow_playground.app.lab.charts import grouped_bars
from dataflow_playground.app.results import markdown_table, write_results

COLUMNS = ("engine", "feature", "mismatch %", "missing %", "extra %", "SMAPE",
           "final-state mismatches", "entities")


def table_markdown(docs: list[dict[str, Any]]) -> str:
    rows = []
    for d in docs:
        for name, m in d["features"].items():
            fs = d["final_state"][name]
            rows.append([d["engine"], name, m["mismatch_rate"] * 100, m["missing_rate"] * 100,
                         m["extra_rate"] * 100, f"{m['smape']:.2e}", fs["mismatches"], fs["entities"]])
    counters = ["", "Stream counters:", ""]
    for d in docs:
        c = d["stream_counters"]
        counters.append(
            f"- **{d['engine']}** ({d['stream_path']}): late accepted {c.get('late_accepted', 0):,}, "
            f"late dropped {c.get('late_dropped', 0):,}, corrections {c.get('corrections', 0):,}, "
            f"dead-lettered {c.get('dead_lettered', 0):,} ({d.get('dead_letter_records', 0):,} records "
            f"on the dead-letter topic)")
    return markdown_table(COLUMNS, rows) + "\n" + "\n".join(counters)


def takeaway(docs: list[dict[str, Any]]) -> str:
    parts = []
    for d in docs:
        worst = max(d["features"], key=lambda n: d["features"][n]["mismatch_rate"])
        rate = d["features"][worst]["mismatch_rate"]
        entities = sum(fs["entities"] for fs in d["final_state"].values())
        bad = d["final_state_mismatches"]
        per_event = ("every per-event value matched batch" if rate == 0
                     else f"the most per-event mismatches were in {worst} ({rate:.2%} of events)")
        final = (f"its final online state equals the batch snapshot in all {entities:,} values" if not bad
                 else f"its final online state differs from the batch snapshot in {bad:,} of "
                      f"{entities:,} values")
        parts.append(f"{d['engine']}: {per_event}; {final}")
    head = f"On {docs[0]['events']:,} events with batch (DuckDB SQL) as the reference, "
    return head + "; ".join(parts) + "."


def chart(docs: list[dict[str, Any]]) -> Figure:
    features = list(docs[0]["features"])
    series: dict[str, Sequence[float]] = {
        d["engine"]: [d["features"][f]["mismatch_rate"] * 100 for f in features] for d in docs}
    return grouped_bars("Per-event feature parity, stream vs batch", features, series,
                        ylabel="events whose value differs from batch (%)")


def write_parity_results(docs: list[dict[str, Any]], results_dir: Path) -> dict[str, Path]:
    params = dict(docs[0].get("parameters", {}))
    params["engines"] = [d["engine"] for d in docs]
    return write_results(
        "parity", results_dir, title=f"Batch vs stream feature parity on {docs[0]['events']:,} events",
        parameters=params,
        data={"engines": {d["engine"]: {k: v for k, v in d.items() if k != "parameters"} for d in docs}},
        table_md=table_markdown(docs), takeaway=takeaway(docs), chart=lambda: chart(docs))
