"""Row-major vs column-major, measured directly in memory.

Two views of the same idea as Parquet vs CSV: (1) a numpy matrix stored in C
(row-major) or Fortran (column-major) order, walked row by row or column by
column; (2) the same events held as Python row dicts or as Arrow/numpy columns,
answering one analytical question.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.figure import Figure

from dataflow_playground.app.lab.charts import grouped_panels
from dataflow_playground.app.lab.timing import measure
from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.producers.generator import GeneratorConfig, generate_table


@dataclass(frozen=True)
class LayoutConfig:
    side: int = 3_000  # the matrix is side x side float64: 72 MB per order
    rows: int = 200_000  # events for the rows-vs-columns question
    seed: int = 42
    repeats: int = 3


def _walk_rows(a: np.ndarray) -> float:
    return float(sum(a[i, :].sum() for i in range(a.shape[0])))


def _walk_columns(a: np.ndarray) -> float:
    return float(sum(a[:, j].sum() for j in range(a.shape[1])))


def fraud_total_rows(rows: list[dict[str, Any]]) -> float:
    """Total fraud amount, one Python dict at a time (how row-oriented code computes it)."""
    return sum(r["amount"] for r in rows if r["is_fraud"])


def fraud_total_columns(table: pa.Table) -> float:
    """Total fraud amount as two column operations (a mask and a sum)."""
    return float(pc.sum(pc.filter(table.column("amount"), table.column("is_fraud"))).as_py()
                 or 0.0)


def fraud_total_numpy(amount: np.ndarray, is_fraud: np.ndarray) -> float:
    return float(amount[is_fraud].sum())


def run_layout(cfg: LayoutConfig) -> dict[str, Any]:
    rng = np.random.default_rng(cfg.seed)
    c_order = rng.random((cfg.side, cfg.side))
    f_order = np.asfortranarray(c_order)
    matrix: dict[str, Any] = {}
    for label, arr in (("C (row-major)", c_order), ("F (column-major)", f_order)):
        matrix[label] = {
            "row_by_row_s": measure(lambda a=arr: _walk_rows(a), cfg.repeats).median_s,  # type: ignore[misc]
            "column_by_column_s": measure(lambda a=arr: _walk_columns(a), cfg.repeats).median_s,  # type: ignore[misc]
        }
    # Both orders hold the same numbers: the walk order, not the data, changes the time.
    assert np.isclose(_walk_rows(c_order), _walk_columns(f_order))

    table = generate_table(GeneratorConfig(events=cfg.rows, seed=cfg.seed))
    rows = table.to_pylist()
    amount = table.column("amount").to_numpy()
    is_fraud = table.column("is_fraud").to_numpy(zero_copy_only=False)
    answers = {"python rows": fraud_total_rows(rows), "arrow columns": fraud_total_columns(table),
               "numpy columns": fraud_total_numpy(amount, is_fraud)}
    ops = {
        "python rows": measure(lambda: fraud_total_rows(rows), cfg.repeats).median_s,
        "arrow columns": measure(lambda: fraud_total_columns(table), cfg.repeats).median_s,
        "numpy columns": measure(lambda: fraud_total_numpy(amount, is_fraud),
                                 cfg.repeats).median_s,
    }
    agree = bool(np.allclose(list(answers.values()), answers["numpy columns"]))
    return {"side": cfg.side, "rows": cfg.rows, "matrix": matrix, "fraud_total": ops,
            "fraud_total_answers": answers, "answers_agree": agree}


def takeaway(doc: dict[str, Any]) -> str:
    c, f = doc["matrix"]["C (row-major)"], doc["matrix"]["F (column-major)"]
    ops = doc["fraud_total"]
    return (
        f"Walking a {doc['side']}x{doc['side']} matrix along its storage order is "
        f"{c['column_by_column_s'] / c['row_by_row_s']:.1f}x faster than across it in C order "
        f"and {f['row_by_row_s'] / f['column_by_column_s']:.1f}x in F order. "
        f"Summing fraud amounts over {doc['rows']:,} events takes "
        f"{ops['python rows'] * 1e3:.1f} ms as Python rows and "
        f"{ops['numpy columns'] * 1e3:.2f} ms as numpy columns "
        f"({ops['python rows'] / ops['numpy columns']:.0f}x)."
    )


def write_layout_results(doc: dict[str, Any], results_dir: Path, cfg: LayoutConfig) -> dict[str, Path]:
    m = doc["matrix"]
    rows: list[list[Any]] = [[k, v["row_by_row_s"] * 1e3, v["column_by_column_s"] * 1e3]
                             for k, v in m.items()]
    table_md = markdown_table(["matrix order", "row by row ms", "column by column ms"], rows)
    table_md += "\n\n" + markdown_table(
        ["fraud total over events", "ms", "answer"],
        [[k, v * 1e3, f"{doc['fraud_total_answers'][k]:,.2f}"]
         for k, v in doc["fraud_total"].items()])

    def chart() -> Figure:
        return grouped_panels("Row-major vs column-major (lower is better)", {
            f"{doc['side']}x{doc['side']} float64 walk (ms)": (
                list(m), {"row by row": [v["row_by_row_s"] * 1e3 for v in m.values()],
                          "column by column": [v["column_by_column_s"] * 1e3
                                               for v in m.values()]}),
            f"fraud total over {doc['rows']:,} events (ms)": (
                list(doc["fraud_total"]), {"ms": [v * 1e3 for v in doc["fraud_total"].values()]}),
        }, ylabel="ms (log scale)")

    return write_results("layout", results_dir, title="Row-major vs column-major in memory",
                         parameters={"side": cfg.side, "rows": cfg.rows, "seed": cfg.seed},
                         data=doc, table_md=table_md, takeaway=takeaway(doc), chart=chart)
