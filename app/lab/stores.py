"""Row store vs column store on the same normalised data: SQLite against DuckDB."""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rich.progress import Progress

from dataflow_playground.app.lab.acid import atomicity, durability
from dataflow_playground.app.lab.charts import grouped_bars
from dataflow_playground.app.lab.relational_data import Relational, relational_dataset
from dataflow_playground.app.lab.timing import measure
from dataflow_playground.app.results import markdown_table, median, write_results
from dataflow_playground.storage.relational import ENGINES, RelationalEngine

WORKLOAD = ("insert_one", "point_lookup", "range_scan", "group_by", "join")
LABELS = {"insert_one": "single-row insert txn", "point_lookup": "point lookup by key",
          "range_scan": "range scan (10% of ts)", "group_by": "group-by aggregate",
          "join": "3-table join + group-by"}


@dataclass(frozen=True)
class EnginesConfig:
    rows: int = 200_000
    seed: int = 42
    repeats: int = 3
    inserts: int = 300  # committed single-row transactions per engine
    lookups: int = 300  # point lookups per timed batch


def _load(engine: RelationalEngine, data: Relational) -> float:
    t0 = time.perf_counter()
    engine.create_schema()
    engine.bulk_load("users", data.users)
    engine.bulk_load("merchants", data.merchants)
    engine.bulk_load("transactions", data.transactions)
    return time.perf_counter() - t0


def _workload(engine: RelationalEngine, data: Relational, cfg: EnginesConfig) -> dict[str, Any]:
    rng = np.random.default_rng(cfg.seed)
    n = data.transactions.num_rows
    keys = [int(k) for k in rng.integers(0, n, cfg.lookups)]
    ts = data.transactions.column("ts").to_numpy()
    low, high = int(np.percentile(ts, 45)), int(np.percentile(ts, 55))
    user0, merchant0 = data.users.column("user_id")[0].as_py(), data.merchants.column(
        "merchant_id")[0].as_py()

    # Each insert is its own committed transaction; time them one by one.
    insert_times = []
    for i in range(cfg.inserts):
        row = (n + i, user0, merchant0, 10.0 + i, "EUR", int(ts[-1]) + i, False)
        t0 = time.perf_counter()
        engine.insert_one(row)
        insert_times.append(time.perf_counter() - t0)

    lookup = measure(lambda: [engine.point_lookup(k) for k in keys], cfg.repeats)
    scan = measure(lambda: engine.range_scan(low, high), cfg.repeats)
    group = measure(engine.group_by, cfg.repeats)
    join = measure(engine.join, cfg.repeats)
    return {
        "median_s": {"insert_one": median(insert_times),
                     "point_lookup": lookup.median_s / len(keys),
                     "range_scan": scan.median_s, "group_by": group.median_s,
                     "join": join.median_s},
        "insert_txn_per_s": 1.0 / median(insert_times),
        "lookups_per_s": len(keys) / lookup.median_s,
        "repeats_s": {"insert_one": insert_times, "point_lookup_batch": lookup.repeats_s,
                      "range_scan": scan.repeats_s, "group_by": group.repeats_s,
                      "join": join.repeats_s},
        "answers": {"range_scan": engine.range_scan(low, high)[0],
                    "group_by_groups": len(engine.group_by()), "join": engine.join()},
        "lookup_found": all(engine.point_lookup(k) for k in keys[:20]),
    }


def _answers_agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    (ca, sa), (cb, sb) = a["range_scan"], b["range_scan"]
    joins_agree = len(a["join"]) == len(b["join"]) and all(
        ra[:3] == rb[:3] and math.isclose(ra[3], rb[3], rel_tol=1e-9) and ra[4] == rb[4]
        for ra, rb in zip(a["join"], b["join"], strict=True))
    return ca == cb and math.isclose(sa, sb, rel_tol=1e-9) and \
        a["group_by_groups"] == b["group_by_groups"] and joins_agree


def run_engines(cfg: EnginesConfig, progress: Progress | None = None) -> dict[str, Any]:
    data = relational_dataset(cfg.rows, cfg.seed)
    task = progress.add_task("engines", total=len(ENGINES) * 3) if progress else None

    def step(text: str) -> None:
        if progress is not None and task is not None:
            progress.update(task, advance=1, description=f"engines: {text}")

    engines: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="engines-lab-") as tmp:
        for name, cls in ENGINES.items():
            path = Path(tmp) / f"{name}.db"
            with cls(path) as engine:
                load_s = _load(engine, data)
                step(f"{name} loaded")
                result = _workload(engine, data, cfg)
            result["bulk_load_s"] = load_s
            result["storage"] = cls.storage
            step(f"{name} workload")
            result["acid"] = {
                "atomicity": atomicity(name, path, existing_tx=0, new_tx=cfg.rows * 10),
                "durability": durability(name, Path(tmp) / f"{name}-crash.db"),
            }
            step(f"{name} ACID")
            engines[name] = result
    sq, dk = engines["sqlite"]["median_s"], engines["duckdb"]["median_s"]
    ratios = {op: sq[op] / dk[op] for op in WORKLOAD}  # > 1: DuckDB faster
    answers = _answers_agree(engines["sqlite"]["answers"], engines["duckdb"]["answers"])
    for e in engines.values():
        e["answers"]["join"] = len(e["answers"]["join"])  # keep the JSON small
    return {"rows": cfg.rows, "users": data.users.num_rows, "merchants": data.merchants.num_rows,
            "engines": engines, "sqlite_over_duckdb": ratios, "answers_agree": answers}


def takeaway(doc: dict[str, Any]) -> str:
    r = doc["sqlite_over_duckdb"]
    e = doc["engines"]

    def who(op: str) -> str:
        return (f"SQLite {1 / r[op]:.1f}x faster" if r[op] < 1 else f"DuckDB {r[op]:.1f}x faster")

    acid_ok = all(e[n]["acid"][k]["ok"] for n in e for k in ("atomicity", "durability"))
    return (
        f"On {doc['rows']:,} transactions: single-row insert transactions {who('insert_one')} "
        f"({e['sqlite']['insert_txn_per_s']:,.0f} vs {e['duckdb']['insert_txn_per_s']:,.0f} txn/s), "
        f"point lookups {who('point_lookup')}, range scan {who('range_scan')}, "
        f"group-by {who('group_by')}, join {who('join')}. "
        f"ACID checks (failed transaction leaves nothing; committed row survives SIGKILL): "
        f"{'passed in both engines' if acid_ok else 'FAILED somewhere, see the table'}."
    )


def table_markdown(doc: dict[str, Any]) -> str:
    e, r = doc["engines"], doc["sqlite_over_duckdb"]
    rows = [[LABELS[op], e["sqlite"]["median_s"][op] * 1e3, e["duckdb"]["median_s"][op] * 1e3,
             f"{r[op]:.2f}"] for op in WORKLOAD]
    rows.append(["bulk load (all tables)", e["sqlite"]["bulk_load_s"] * 1e3,
                 e["duckdb"]["bulk_load_s"] * 1e3,
                 f"{e['sqlite']['bulk_load_s'] / e['duckdb']['bulk_load_s']:.2f}"])
    main = markdown_table(["operation", "SQLite ms", "DuckDB ms", "SQLite / DuckDB"], rows)
    acid_rows = []
    for name, v in e.items():
        a, d = v["acid"]["atomicity"], v["acid"]["durability"]
        acid_rows.append([name, f"{a['rows_before']} → {a['rows_after']}",
                          "no" if not a["first_insert_visible"] else "YES",
                          "yes" if d["committed_row_survived"] else "NO",
                          "no" if not d["uncommitted_row_present"] else "YES",
                          "pass" if a["ok"] and d["ok"] else "FAIL"])
    acid = markdown_table(["engine", "rows around failed txn", "half of it visible",
                           "committed row after SIGKILL", "uncommitted row after SIGKILL",
                           "ACID check"], acid_rows)
    agree = "agree" if doc["answers_agree"] else "DISAGREE"
    return f"{main}\n\nBoth engines' query answers {agree}.\n\n{acid}"


def write_engines_results(doc: dict[str, Any], results_dir: Path, cfg: EnginesConfig) -> dict[str, Path]:
    def chart() -> Figure:
        e = doc["engines"]
        return grouped_bars("SQLite (row store) vs DuckDB (column store), ms, log scale",
                            [LABELS[op] for op in WORKLOAD],
                            {n: [e[n]["median_s"][op] * 1e3 for op in WORKLOAD] for n in e},
                            ylabel="ms per operation (lower is better)", log=True)

    return write_results("engines", results_dir,
                         title=f"Row store vs column store on {doc['rows']:,} transactions",
                         parameters=vars(cfg), data=doc, table_md=table_markdown(doc),
                         takeaway=takeaway(doc), chart=chart)
