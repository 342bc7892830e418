"""File formats measured on the same events: size, write, reads, lookup and fidelity."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from rich.progress import Progress

from dataflow_playground.app.lab.charts import grouped_panels
from dataflow_playground.app.lab.timing import Timing, measure, measure_pair
from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.producers.generator import GeneratorConfig, generate_table
from dataflow_playground.storage.formats import FormatCodec, Range, all_codecs
from dataflow_playground.storage.formats.fidelity import compare_tables, probe_table

# The lab's own Parquet/Arrow reads must stay this close to a direct pyarrow call.
HONESTY_TOLERANCE = 0.10
LOOKUP_KEY = "event_id"
COLUMN = "amount"
OPS = ("write", "read", "read_rows", "read_column", "read_filtered", "lookup")


@dataclass(frozen=True)
class FormatsConfig:
    rows: int = 100_000
    seed: int = 42
    repeats: int = 3
    # Fast operations repeat until they fill this many seconds (the honesty pairs 5x it).
    budget_s: float = 0.3


def _fidelity(codec: FormatCodec, table: pa.Table, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    losses: list[str] = []
    for label, original in (("events", table), ("probe", probe_table())):
        path = workdir / f"fidelity-{label}{codec.suffix}"
        codec.write(original, path)
        checks = compare_tables(original, codec.read_arrow(path))
        out[f"roundtrip_{label}_ok"] = all(c.ok for c in checks)
        out[f"roundtrip_{label}_columns"] = {c.column: c.detail for c in checks}
        losses += [f"{label}.{c.column}: {c.detail}" for c in checks if not c.ok]
    out["roundtrip_ok"] = not losses
    out["roundtrip_losses"] = losses
    return out


def measure_format(codec: FormatCodec, table: pa.Table, workdir: Path, repeats: int,
                   step: Callable[[], None] = lambda: None,
                   budget_s: float = 0.3) -> dict[str, Any]:
    """Every figure for one format; ``step`` is called after each operation (progress)."""
    path = workdir / f"events{codec.suffix}"
    ts = table.column("ts").to_numpy()
    where = Range("ts", low=int(np.percentile(ts, 99)))
    expected_filtered = int(pc.sum(where.mask(table)).as_py())
    target = table.num_rows // 2
    expected_sum = pc.sum(table.column(COLUMN)).as_py()

    timings: dict[str, Timing] = {}
    operations: dict[str, Callable[[], Any]] = {
        "write": lambda: codec.write(table, path),
        "read": lambda: codec.read_arrow(path),
        "read_rows": lambda: codec.read_rows(path),
        # Summing forces every value of the column to be materialised, even from a memory map.
        "read_column": lambda: pc.sum(codec.read_column(path, COLUMN)),
        "read_filtered": lambda: codec.read_filtered(path, where),
        "lookup": lambda: codec.lookup(path, LOOKUP_KEY, target),
    }
    for op, fn in operations.items():
        timings[op] = measure(fn, repeats, budget_s)
        step()

    hit = codec.lookup(path, LOOKUP_KEY, target)
    column_sum = pc.sum(codec.read_column(path, COLUMN)).as_py()
    size = path.stat().st_size
    result: dict[str, Any] = {
        "bytes": size,
        "bytes_per_row": size / max(1, table.num_rows),
        "binary": codec.binary, "columnar": codec.columnar, "pushdown": codec.pushdown,
        "self_describing": codec.self_describing,
        **{f"{op}_s": t.median_s for op, t in timings.items()},
        "filtered_rows": codec.read_filtered(path, where).num_rows,
        "filtered_rows_expected": expected_filtered,
        "lookup_ok": hit is not None and hit.get(LOOKUP_KEY) == target,
        "column_sum_ok": bool(np.isclose(column_sum, expected_sum, rtol=1e-12)),
        "repeats_s": {op: t.repeats_s for op, t in timings.items()},
    }
    result.update(_fidelity(codec, table, workdir))
    step()
    return result


def honesty_checks(workdir: Path, repeats: int, budget_s: float = 1.5) -> dict[str, Any]:
    """The lab's Parquet and Arrow reads against direct pyarrow calls, timed alternately.

    ``ratio`` is the median of per-pair ratios (lab / direct), robust to bursts of load.
    """
    from dataflow_playground.storage.formats import get_codec

    direct: dict[str, tuple[Callable[[Path], Any], Callable[[Path], Any]]] = {
        "parquet-snappy": (pq.read_table, lambda p: pq.read_table(p, columns=[COLUMN])),
        "parquet-zstd": (pq.read_table, lambda p: pq.read_table(p, columns=[COLUMN])),
        "arrow-ipc": (lambda p: pa.ipc.open_file(pa.memory_map(str(p))).read_all(),
                      lambda p: pa.ipc.open_file(pa.memory_map(str(p))).read_all()),
    }
    out: dict[str, Any] = {}
    for name, (read_all, read_col) in direct.items():
        codec = get_codec(name)
        path = workdir / f"events{codec.suffix}"
        read = measure_pair(lambda c=codec, p=path: c.read_arrow(p),  # type: ignore[misc]
                            lambda f=read_all, p=path: f(p),  # type: ignore[misc]
                            repeats, budget_s)
        column = measure_pair(
            lambda c=codec, p=path: pc.sum(c.read_column(p, COLUMN)),  # type: ignore[misc]
            lambda f=read_col, p=path: pc.sum(f(p).column(COLUMN)),  # type: ignore[misc]
            repeats, budget_s)
        for op, pair in (("read", read), ("read_column", column)):
            out[f"{name}.{op}"] = {
                "lab_s": pair.a.median_s, "direct_pyarrow_s": pair.b.median_s,
                "ratio": pair.ratio, "pairs": len(pair.a.repeats_s),
                "within_tolerance": abs(pair.ratio - 1) <= HONESTY_TOLERANCE}
    return out


def run_formats(cfg: FormatsConfig, progress: Progress | None = None) -> dict[str, Any]:
    table = generate_table(GeneratorConfig(events=cfg.rows, seed=cfg.seed))
    codecs = all_codecs()
    formats: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="formats-lab-") as tmp:
        workdir = Path(tmp)
        task = progress.add_task("formats", total=len(codecs) * (len(OPS) + 1) + 1) \
            if progress else None

        def step() -> None:
            if progress is not None and task is not None:
                progress.advance(task)

        for codec in codecs:
            if progress is not None and task is not None:
                progress.update(task, description=f"formats: {codec.name}")
            formats[codec.name] = measure_format(codec, table, workdir, cfg.repeats, step,
                                                 cfg.budget_s)
        if progress is not None and task is not None:
            progress.update(task, description="formats: honesty check")
        honesty = honesty_checks(workdir, cfg.repeats, 5 * cfg.budget_s)
        step()
    csv_bytes = formats["csv"]["bytes"]
    for f in formats.values():
        f["ratio_to_csv"] = f["bytes"] / csv_bytes
    return {"rows": cfg.rows, "seed": cfg.seed, "formats": formats, "honesty": honesty}


# --- reporting -----------------------------------------------------------------------------


def _fastest(formats: dict[str, Any], key: str) -> tuple[str, float]:
    name = min(formats, key=lambda n: formats[n][key])
    return name, formats[name][key]


def takeaway(doc: dict[str, Any]) -> str:
    f = doc["formats"]
    small = min(f, key=lambda n: f[n]["bytes"])
    col_name, col_s = _fastest(f, "read_column_s")
    slowest_col = max(f, key=lambda n: f[n]["read_column_s"])
    look_name, look_s = _fastest(f, "lookup_s")
    lossy = [n for n in f if not f[n]["roundtrip_ok"]]
    # Python-object cost, shown on a format whose Arrow read really decodes (not a memory map).
    pq_name = "parquet-snappy" if "parquet-snappy" in f else next(n for n in f if f[n]["columnar"])
    pq_f = f[pq_name]
    honest = doc.get("honesty", {})
    within = sum(1 for v in honest.values() if v["within_tolerance"])
    return (
        f"On {doc['rows']:,} events {small} is the smallest file "
        f"({f[small]['ratio_to_csv']:.2f}x the CSV size); reading one column takes "
        f"{col_s * 1e3:.2f} ms in {col_name} against "
        f"{f[slowest_col]['read_column_s'] * 1e3:.0f} ms in {slowest_col} "
        f"({f[slowest_col]['read_column_s'] / col_s:,.0f}x). "
        f"The one-row lookup is fastest in {look_name} ({look_s * 1e3:.2f} ms). "
        f"From {pq_name}, an Arrow table takes {pq_f['read_s'] * 1e3:.1f} ms but Python rows "
        f"{pq_f['read_rows_s'] * 1e3:.0f} ms ({pq_f['read_rows_s'] / pq_f['read_s']:.0f}x): "
        f"the cost is Python objects, not the format. "
        f"Formats that do not round-trip every type: {', '.join(lossy) or 'none'}. "
        f"Lab vs direct pyarrow reads: {within} of {len(honest)} within "
        f"{HONESTY_TOLERANCE:.0%}."
    )


def table_markdown(doc: dict[str, Any]) -> str:
    headers = ["format", "bytes", "B/row", "vs CSV", "write ms", "read→Arrow ms",
               "read→rows ms", "1 column ms", "filter ms", "lookup ms", "round-trip"]
    rows = []
    for name, f in doc["formats"].items():
        rows.append([name, f["bytes"], round(f["bytes_per_row"], 1), f"{f['ratio_to_csv']:.2f}",
                     f["write_s"] * 1e3, f["read_s"] * 1e3, f["read_rows_s"] * 1e3,
                     f["read_column_s"] * 1e3, f["read_filtered_s"] * 1e3, f["lookup_s"] * 1e3,
                     "ok" if f["roundtrip_ok"] else "lossy"])
    losses = ["", "What each format loses (round-trip of the events and of the probe table):", ""]
    for name, f in doc["formats"].items():
        losses.append(f"- **{name}**: " + ("nothing" if f["roundtrip_ok"]
                                           else "; ".join(f["roundtrip_losses"])))
    honesty = ["", "Honesty check (lab codec vs direct pyarrow call, same run, alternated):", ""]
    honesty.append(markdown_table(
        ["read", "lab ms", "direct pyarrow ms", "paired ratio", "within 10%"],
        [[k, v["lab_s"] * 1e3, v["direct_pyarrow_s"] * 1e3, f"{v['ratio']:.3f}",
          "yes" if v["within_tolerance"] else "NO"] for k, v in doc["honesty"].items()]))
    return markdown_table(headers, rows) + "\n" + "\n".join(losses + honesty)


def chart(doc: dict[str, Any]) -> Figure:
    f = doc["formats"]
    names = list(f)
    ms = lambda key: [f[n][key] * 1e3 for n in names]  # noqa: E731
    panels: dict[str, tuple[Sequence[str], dict[str, Sequence[float]]]] = {
        "write and full read": (names, {"write": ms("write_s"), "read → Arrow": ms("read_s"),
                                        "read → Python rows": ms("read_rows_s")}),
        "selective reads": (names, {"one column": ms("read_column_s"),
                                    "filtered (ts, top 1%)": ms("read_filtered_s"),
                                    "one-row lookup": ms("lookup_s")}),
        "size": (names, {"bytes/row": [f[n]["bytes_per_row"] for n in names]}),
        "round-trip losses": (names, {"columns changed": [len(f[n]["roundtrip_losses"]) for n in names]}),
    }
    return grouped_panels(
        f"File formats on {doc['rows']:,} events (time: log scale, lower is better)", panels,
        ylabel={"write and full read": "ms (log)", "selective reads": "ms (log)",
                "size": "bytes per row", "round-trip losses": "columns not read back equal (count)"},
        log={"write and full read": True, "selective reads": True, "size": False,
             "round-trip losses": False},
        kinds={n: "column-oriented" if f[n]["columnar"] else "row-oriented" for n in names},
    )


def write_formats_results(doc: dict[str, Any], results_dir: Path, cfg: FormatsConfig) -> dict[str, Path]:
    return write_results(
        "formats", results_dir, title=f"File formats on {doc['rows']:,} payment events",
        parameters={"rows": cfg.rows, "seed": cfg.seed, "repeats_min": cfg.repeats,
                    "budget_s": cfg.budget_s,
                    "filter": "ts >= 99th percentile", "lookup": f"{LOOKUP_KEY} = rows // 2",
                    "column": COLUMN},
        data=doc, table_md=table_markdown(doc), takeaway=takeaway(doc), chart=lambda: chart(doc))
