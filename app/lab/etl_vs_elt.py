"""ETL vs ELT: the same raw JSON records, with some malformed, into DuckDB two ways.

ETL validates and transforms in Python (``dataflow_playground.core.validation.decode_event``,
the pydantic ``Event``) and loads only clean rows, plus a reject table with the
reason and payload. ELT loads every raw record as-is, then transforms in SQL;
the raw table stays, so the transform can be rerun with new rules later.
The SQL rules mirror ``Event``; the lab counts any record the two disagree on.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from matplotlib.figure import Figure

from dataflow_playground.app.lab.charts import grouped_bars
from dataflow_playground.app.results import markdown_table, median, write_results
from dataflow_playground.core.schema import (
    CURRENCIES,
    DEVICES,
    FIELD_NAMES,
    MAX_AMOUNT,
    MAX_FUTURE_SKEW_MS,
    MIN_TS_MS,
    Event,
    arrow_schema,
    duckdb_ddl,
)
from dataflow_playground.core.validation import decode_event
from dataflow_playground.producers.generator import GeneratorConfig, wire_records

REJECTS_DDL = "CREATE TABLE rejects (raw_id BIGINT, field VARCHAR, reason VARCHAR, payload BLOB)"
RAW_DDL = "CREATE TABLE raw_events (raw_id BIGINT, payload BLOB, loaded_at TIMESTAMP)"


@dataclass(frozen=True)
class EtlConfig:
    events: int = 100_000
    malformed_rate: float = 0.01
    seed: int = 42
    repeats: int = 3


def raw_input(cfg: EtlConfig) -> list[bytes]:
    return [r.value for r in wire_records(GeneratorConfig(
        events=cfg.events, seed=cfg.seed, malformed_rate=cfg.malformed_rate))]


# --- ETL -----------------------------------------------------------------------------------


def run_etl(raw: list[bytes], db: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    good: list[Event] = []
    bad: list[dict[str, Any]] = []
    for i, payload in enumerate(raw):
        result = decode_event(payload)
        if isinstance(result, Event):
            good.append(result)
        else:
            bad.append({"raw_id": i, "field": result.field, "reason": result.reason,
                        "payload": payload})
    clean = pa.Table.from_pylist([e.model_dump() for e in good], schema=arrow_schema())
    rejects = pa.Table.from_pylist(bad, schema=pa.schema([
        ("raw_id", pa.int64()), ("field", pa.string()), ("reason", pa.string()),
        ("payload", pa.binary())]))
    t1 = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute(duckdb_ddl("events"))
    con.execute(REJECTS_DDL)
    con.register("clean", clean)
    con.register("bad", rejects)
    con.execute("INSERT INTO events SELECT * FROM clean")
    con.execute("INSERT INTO rejects SELECT * FROM bad")
    con.close()
    t2 = time.perf_counter()
    return {"transform_s": t1 - t0, "load_s": t2 - t1, "total_s": t2 - t0}


# --- ELT -----------------------------------------------------------------------------------


def _is_int(path: str) -> str:
    return f"coalesce(json_type(j, '{path}') IN ('UBIGINT', 'BIGINT'), false)"


def _elt_transform_sql() -> str:
    """The Event rules in SQL: the first failing rule names the field, as pydantic does."""
    currencies = ", ".join(f"'{c}'" for c in CURRENCIES)
    devices = ", ".join(f"'{d}'" for d in DEVICES)
    keys = ", ".join(f"'{k}'" for k in sorted(FIELD_NAMES))
    num = "coalesce(json_type(j, '$.amount') IN ('UBIGINT', 'BIGINT', 'DOUBLE'), false)"
    amount = "TRY_CAST(j->>'$.amount' AS DOUBLE)"
    checks = [
        ("<record>", "j IS NULL", "not valid UTF-8 JSON"),
        ("<record>", f"list_sort(json_keys(j)) <> [{keys}]", "missing or unexpected fields"),
        ("event_id", f"NOT {_is_int('$.event_id')} OR TRY_CAST(j->>'$.event_id' AS BIGINT) < 0",
         "not a non-negative integer"),
        ("user_id", f"NOT {_is_int('$.user_id')} OR TRY_CAST(j->>'$.user_id' AS BIGINT) < 0",
         "not a non-negative integer"),
        ("merchant_id", f"NOT {_is_int('$.merchant_id')} OR "
                        "TRY_CAST(j->>'$.merchant_id' AS BIGINT) < 0", "not a non-negative integer"),
        ("amount", f"NOT {num} OR NOT isfinite({amount}) OR {amount} <= 0 "
                   f"OR {amount} > {MAX_AMOUNT}", "not a finite amount in (0, max]"),
        ("currency", f"json_type(j, '$.currency') <> 'VARCHAR' OR j->>'$.currency' "
                     f"NOT IN ({currencies})", "unknown currency"),
        ("country", "json_type(j, '$.country') <> 'VARCHAR' OR "
                    "NOT regexp_full_match(j->>'$.country', '[A-Z]{2}')", "not two upper-case letters"),
        ("device", f"json_type(j, '$.device') NOT IN ('NULL', 'VARCHAR') OR "
                   f"(json_type(j, '$.device') = 'VARCHAR' AND j->>'$.device' NOT IN ({devices}))",
         "unknown device"),
        ("ts", f"NOT {_is_int('$.ts')} OR TRY_CAST(j->>'$.ts' AS BIGINT) < {MIN_TS_MS} "
               f"OR TRY_CAST(j->>'$.ts' AS BIGINT) > $now_ms + {MAX_FUTURE_SKEW_MS}",
         "out of range"),
        ("is_fraud", "json_type(j, '$.is_fraud') <> 'BOOLEAN'", "not a boolean"),
    ]
    case = "CASE " + " ".join(f"WHEN {cond} THEN '{field}: {why}'"
                              for field, cond, why in checks) + " END"
    return f"""
CREATE TEMP TABLE staged AS
WITH parsed AS (
    SELECT raw_id, TRY(decode(payload)) AS txt FROM raw_events
), typed AS (
    SELECT raw_id, CASE WHEN json_valid(txt) THEN txt::JSON END AS j FROM parsed
)
SELECT raw_id, j, {case} AS reject_reason FROM typed;
CREATE TABLE events AS
SELECT (j->>'$.event_id')::BIGINT AS event_id, (j->>'$.user_id')::BIGINT AS user_id,
       (j->>'$.merchant_id')::BIGINT AS merchant_id, (j->>'$.amount')::DOUBLE AS amount,
       j->>'$.currency' AS currency, j->>'$.country' AS country, j->>'$.device' AS device,
       (j->>'$.ts')::BIGINT AS ts, (j->>'$.is_fraud')::BOOLEAN AS is_fraud
FROM staged WHERE reject_reason IS NULL;
CREATE TABLE reject_reasons AS
SELECT raw_id, reject_reason FROM staged WHERE reject_reason IS NOT NULL;
CREATE VIEW rejects AS
SELECT raw_id, reject_reason, payload FROM reject_reasons JOIN raw_events USING (raw_id);
"""


def run_elt(raw: list[bytes], db: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute(RAW_DDL)
    con.register("incoming", pa.table({"raw_id": pa.array(range(len(raw)), pa.int64()),
                                       "payload": pa.array(raw, pa.binary())}))
    con.execute("INSERT INTO raw_events SELECT raw_id, payload, now() FROM incoming")
    t1 = time.perf_counter()
    # One statement at a time: DuckDB's prepared parameters apply to a single statement.
    now_ms = int(time.time() * 1000)
    for statement in _elt_transform_sql().split(";"):
        if statement.strip():
            con.execute(statement, {"now_ms": now_ms} if "$now_ms" in statement else None)
    con.close()
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "transform_s": t2 - t1, "total_s": t2 - t0}


# --- the comparison ------------------------------------------------------------------------


def _inspect(db: Path, raw_table: bool) -> dict[str, Any]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        def one(sql: str) -> Any:
            row = con.execute(sql).fetchone()
            return row[0] if row else None

        out = {"events": int(one("SELECT count(*) FROM events")),
               "rejects": int(one("SELECT count(*) FROM rejects")),
               "raw_kept": int(one("SELECT count(*) FROM raw_events")) if raw_table else 0,
               "event_ids": {int(r[0]) for r in con.execute("SELECT event_id FROM events").fetchall()},
               "reject_raw_ids": {int(r[0]) for r in con.execute("SELECT raw_id FROM rejects").fetchall()},
               "tables": sorted(r[0] for r in con.execute("SHOW TABLES").fetchall())}
    finally:
        con.close()
    out["file_bytes"] = db.stat().st_size
    return out


def run_etl_vs_elt(cfg: EtlConfig) -> dict[str, Any]:
    raw = raw_input(cfg)
    phases: dict[str, list[dict[str, float]]] = {"etl": [], "elt": []}
    with tempfile.TemporaryDirectory(prefix="etl-lab-") as tmp:
        # One untimed warm-up each, then alternate so machine noise hits both alike.
        for i in range(cfg.repeats + 1):
            for name, pipeline in (("etl", run_etl), ("elt", run_elt)):
                db = Path(tmp) / f"{name}-{i}.duckdb"
                timing = pipeline(raw, db)
                if i:
                    phases[name].append(timing)
        etl = _inspect(Path(tmp) / f"etl-{cfg.repeats}.duckdb", raw_table=False)
        elt = _inspect(Path(tmp) / f"elt-{cfg.repeats}.duckdb", raw_table=True)
    malformed = sum(1 for r in wire_records(GeneratorConfig(
        events=cfg.events, seed=cfg.seed, malformed_rate=cfg.malformed_rate)) if r.malformed)
    disagree_events = len(etl["event_ids"] ^ elt["event_ids"])
    disagree_rejects = len(etl["reject_raw_ids"] ^ elt["reject_raw_ids"])
    pipelines = {}
    for name, info in (("etl", etl), ("elt", elt)):
        pipelines[name] = {
            "median_s": {k: median([p[k] for p in phases[name]]) for k in phases[name][0]},
            "repeats": phases[name],
            **{k: v for k, v in info.items() if k not in ("event_ids", "reject_raw_ids")},
        }
    return {"events": cfg.events, "malformed_generated": malformed, "pipelines": pipelines,
            "disagreements": {"events": disagree_events, "rejects": disagree_rejects},
            "where_bad_records_go": {
                "etl": "bad records go to a rejects table (reason + payload); good records' raw "
                       "bytes are not kept",
                "elt": "bad records stay in raw_events, flagged in reject_reasons (the rejects "
                       "view adds the payload); every raw record is kept, so the transform can "
                       "be rerun"}}


def takeaway(doc: dict[str, Any]) -> str:
    p = doc["pipelines"]
    etl, elt = p["etl"]["median_s"]["total_s"], p["elt"]["median_s"]["total_s"]
    faster, ratio = ("ELT", etl / elt) if elt < etl else ("ETL", elt / etl)
    agree = ("agree on every record" if not any(doc["disagreements"].values()) else
             f"disagree on {doc['disagreements']['events']} events")
    etl_t, elt_t = p["etl"]["median_s"]["transform_s"], p["elt"]["median_s"]["transform_s"]
    speed = (f"{faster} is {ratio:.1f}x faster end to end" if ratio >= 1.1 else
             f"ETL and ELT take about as long end to end ({faster} ahead by {ratio:.2f}x)")
    return (
        f"On {doc['events']:,} raw records ({doc['malformed_generated']} malformed) {speed} "
        f"(ETL {etl:.2f} s, of which {etl_t:.2f} s validating "
        f"in Python; ELT {elt:.2f} s, of which {elt_t:.2f} s in SQL). "
        f"ETL keeps {p['etl']['events']:,} events + {p['etl']['rejects']} rejects "
        f"({p['etl']['file_bytes'] / 2**20:.1f} MiB); ELT also keeps all {p['elt']['raw_kept']:,} raw "
        f"records ({p['elt']['file_bytes'] / 2**20:.1f} MiB). The Python and SQL rules {agree}."
    )


def write_etl_results(doc: dict[str, Any], results_dir: Path, cfg: EtlConfig) -> dict[str, Path]:
    p = doc["pipelines"]
    rows = []
    for name in ("etl", "elt"):
        m = p[name]["median_s"]
        rows.append([name.upper(), m.get("transform_s", 0) * 1e3, m.get("load_s", 0) * 1e3,
                     m["total_s"] * 1e3, p[name]["events"], p[name]["rejects"], p[name]["raw_kept"],
                     round(p[name]["file_bytes"] / 2**20, 2)])
    table_md = markdown_table(["pipeline", "transform ms", "load ms", "total ms", "events",
                               "rejects", "raw kept", "DB MiB"], rows)
    table_md += "\n\n" + "\n".join(f"- **{k.upper()}**: {v}."
                                    for k, v in doc["where_bad_records_go"].items())

    def chart() -> Figure:
        return grouped_bars("ETL vs ELT into DuckDB (lower is better)", ["ETL", "ELT"],
                            {"transform": [p[n]["median_s"]["transform_s"] for n in ("etl", "elt")],
                             "load": [p[n]["median_s"]["load_s"] for n in ("etl", "elt")],
                             "total": [p[n]["median_s"]["total_s"] for n in ("etl", "elt")]},
                            ylabel="seconds")

    return write_results("etl_vs_elt", results_dir, title="ETL vs ELT on the same raw records",
                         parameters=vars(cfg), data=doc, table_md=table_md,
                         takeaway=takeaway(doc), chart=chart)
