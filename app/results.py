"""The results contract: ``results/<name>.json``, ``.md`` and ``.png`` for every comparison.

JSON holds the machine, library versions, parameters, raw repeats and medians;
Markdown holds the table and a takeaway computed from the numbers; PNG the chart, titled,
with the takeaway printed under it. Each write is also kept as a run under
``results/runs/`` (:mod:`run_history`) and refreshes the report ``results/index.html``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from dataflow_playground.app.run_history import archive_run

LIBRARIES = ("kafka-python", "duckdb", "pyarrow", "fastavro", "protobuf", "grpcio",
             "faust-streaming", "fastapi", "uvicorn", "httpx", "numpy", "pydantic", "orjson")


def machine_info() -> dict[str, Any]:
    import psutil

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores_logical": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed_repeats(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        # Python's None/True/False are not words a reader should meet in a table.
        if v is None or (isinstance(v, float) and v != v):
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, results_dir: Path, *, title: str, parameters: dict[str, Any],
                  data: dict[str, Any], table_md: str, takeaway: str,
                  chart: Callable[[], Figure] | None = None) -> dict[str, Path]:
    """Write the three files of one comparison; return their paths."""
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: results_dir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    doc = {
        "name": name,
        "title": title,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "libraries": library_versions(),
        "parameters": parameters,
        **data,
        "takeaway": takeaway,
    }
    paths["json"].write_text(json.dumps(doc, indent=2, default=str))
    md = [f"# {title}", "", table_md, "", f"**Takeaway:** {takeaway}", ""]
    if chart is not None:
        md.insert(2, f"![{title}]({name}.png)\n")
    md.append(f"Parameters: `{json.dumps(parameters, default=str)}`; machine: "
              f"{doc['machine']['cores_logical']} cores, {doc['machine']['memory_gib']} GiB, "
              f"Python {doc['machine']['python']}.")
    paths["md"].write_text("\n".join(md) + "\n")
    if chart is not None:
        fig = chart()
        finish_chart(fig, title, takeaway)
        fig.savefig(paths["png"], dpi=110)
        plt.close(fig)
    else:
        paths.pop("png")
        paths_png = results_dir / f"{name}.png"
        paths_png.unlink(missing_ok=True)  # a chart of an earlier run would not match these figures
    archive_run(results_dir, name, paths.values())
    _refresh_report(results_dir)
    return paths


def finish_chart(fig: Figure, title: str, takeaway: str) -> None:
    """Give a chart its title (unless it has one) and print the takeaway under it."""
    has_title = bool(fig.get_suptitle()) or (
        len(fig.axes) == 1 and bool(fig.axes[0].get_title()))
    if not has_title:
        fig.suptitle(title)
    shown = " ".join([fig.get_suptitle(), *(t.get_text() for t in fig.texts)]).split()
    if " ".join(takeaway.split()[:12]) in " ".join(shown):  # the chart prints its takeaway itself
        fig.tight_layout()
        return
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(f"Takeaway: {takeaway}", width=max(60, int(width * 15)))
    extra = 0.17 * len(lines) + 0.15
    fig.set_size_inches(width, height + extra)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, ha="left", va="bottom", color="#333333")
    fig.tight_layout(rect=(0.0, extra / (height + extra), 1.0, 1.0))


def _refresh_report(results_dir: Path) -> None:
    """Rebuild index.html; a report that cannot be built never costs the run its results."""
    from dataflow_playground.app.report_page import build_index

    try:
        build_index(results_dir)
    except Exception as err:  # the result files are written already
        print(f"warning: results/index.html not refreshed ({err}); run `playground report`",
              file=sys.stderr)
