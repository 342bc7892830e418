"""Three data models over the same payments, all queried in DuckDB.

Relational: normalised tables joined at query time. Document: one nested
record per user holding their transactions (a LIST of STRUCTs). Graph: users
and merchants as nodes, payments as edges, walked k hops by a recursive CTE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from matplotlib.figure import Figure

from dataflow_playground.app.lab.charts import grouped_bars
from dataflow_playground.app.lab.relational_data import relational_dataset
from dataflow_playground.app.lab.timing import measure
from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.storage.relational.base import DDL

RELATIONAL_QUERY = """
SELECT m.category, count(*) AS fraud_payments, round(sum(t.amount), 2) AS fraud_amount
FROM transactions t JOIN merchants m ON m.merchant_id = t.merchant_id
WHERE t.is_fraud GROUP BY m.category ORDER BY fraud_amount DESC"""

DOCUMENTS = """
CREATE TABLE user_docs AS
SELECT u.user_id, u.home_country,
       list(struct_pack(tx_id := t.tx_id, merchant_id := t.merchant_id, amount := t.amount,
                        ts := t.ts, is_fraud := t.is_fraud) ORDER BY t.ts) AS transactions
FROM users u JOIN transactions t ON t.user_id = u.user_id
GROUP BY u.user_id, u.home_country"""
# The document answers "everything about this user" with one read, no join.
DOCUMENT_FETCH = "SELECT * FROM user_docs WHERE user_id = ?"
RELATIONAL_FETCH = """
SELECT u.user_id, u.home_country, t.tx_id, t.merchant_id, t.amount, t.ts, t.is_fraud
FROM users u JOIN transactions t ON t.user_id = u.user_id WHERE u.user_id = ? ORDER BY t.ts"""
DOCUMENT_QUERY = """
SELECT user_id, len(list_filter(transactions, lambda x: x.is_fraud)) AS frauds
FROM user_docs WHERE len(list_filter(transactions, lambda x: x.is_fraud)) >= 3 ORDER BY frauds DESC"""

EDGES = """
CREATE TABLE edges AS
SELECT DISTINCT user_id, merchant_id FROM transactions
WHERE merchant_id NOT IN (SELECT merchant_id FROM hubs)"""
# Users reachable from a fraudster through shared merchants, each at its shortest hop count.
K_HOP = """
WITH RECURSIVE reach(user_id, hops) AS (
    SELECT ?::BIGINT, 0
    UNION
    SELECT e2.user_id, r.hops + 1
    FROM reach r
    JOIN edges e1 ON e1.user_id = r.user_id
    JOIN edges e2 ON e2.merchant_id = e1.merchant_id
    WHERE r.hops < ?
)
SELECT hops, count(*) AS users FROM (SELECT user_id, min(hops) AS hops FROM reach GROUP BY user_id)
GROUP BY hops ORDER BY hops"""

FITS = {
    "relational": "fits when many questions cut across entities (joins on demand, no duplication).",
    "document": "fits when the access unit is one whole entity (a user's profile and history in one "
                "read); cross-document questions need unnesting.",
    "graph": "fits when the question is about relationships and paths (k hops, rings of "
             "fraudsters); in SQL it takes recursion and can explode through hubs.",
}


@dataclass(frozen=True)
class ModelsConfig:
    rows: int = 50_000
    seed: int = 42
    repeats: int = 3
    hops: int = 2
    hub_quantile: float = 0.99  # merchants above this degree are hubs, left out of the graph


def build(cfg: ModelsConfig) -> duckdb.DuckDBPyConnection:
    data = relational_dataset(cfg.rows, cfg.seed)
    con = duckdb.connect()
    for ddl in DDL:
        con.execute(ddl)
    for name in ("users", "merchants", "transactions"):
        con.register("incoming", getattr(data, name))
        con.execute(f"INSERT INTO {name} SELECT * FROM incoming")
        con.unregister("incoming")
    con.execute(DOCUMENTS)
    con.execute(f"""CREATE TABLE hubs AS SELECT merchant_id FROM (
        SELECT merchant_id, count(DISTINCT user_id) AS degree FROM transactions GROUP BY 1)
        WHERE degree > (SELECT quantile_cont(degree, {cfg.hub_quantile}) FROM (
            SELECT count(DISTINCT user_id) AS degree FROM transactions GROUP BY merchant_id))""")
    con.execute(EDGES)
    return con


def known_fraudster(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT user_id FROM transactions WHERE is_fraud GROUP BY user_id "
                      "ORDER BY count(*) DESC, user_id LIMIT 1").fetchone()
    return int(row[0]) if row else 0


def run_models(cfg: ModelsConfig) -> dict[str, Any]:
    con = build(cfg)
    fraudster = known_fraudster(con)
    users = int(con.execute("SELECT count(*) FROM users").fetchone()[0])  # type: ignore[index]
    queries = {
        "relational: fraud by merchant category (join)": (RELATIONAL_QUERY, ()),
        "relational: one user's history (join)": (RELATIONAL_FETCH, (fraudster,)),
        "document: one user's history (one read)": (DOCUMENT_FETCH, (fraudster,)),
        "document: users with >= 3 frauds (list_filter)": (DOCUMENT_QUERY, ()),
        f"graph: users within {cfg.hops} hops of the fraudster": (K_HOP, (fraudster, cfg.hops)),
    }
    out: dict[str, Any] = {}
    for label, (sql, params) in queries.items():
        t = measure(lambda s=sql, p=params: con.execute(s, list(p)).fetchall(),  # type: ignore[misc]
                    cfg.repeats)
        result = con.execute(sql, list(params)).fetchall()
        out[label] = {"model": label.split(":")[0], "median_s": t.median_s,
                      "repeats_s": t.repeats_s, "result_rows": len(result),
                      "sample": [list(r) for r in result[:3]] if "history" not in label else None}
    hops = {int(h): int(n) for h, n in con.execute(K_HOP, [fraudster, cfg.hops]).fetchall()}
    doc_json = con.execute("SELECT to_json(d) FROM user_docs d WHERE user_id = ?",
                           [fraudster]).fetchone()
    hubs = int(con.execute("SELECT count(*) FROM hubs").fetchone()[0])  # type: ignore[index]
    edges = int(con.execute("SELECT count(*) FROM edges").fetchone()[0])  # type: ignore[index]
    con.close()
    return {"rows": cfg.rows, "users": users, "fraudster": fraudster, "queries": out,
            "graph": {"hops": cfg.hops, "reached_by_hop": hops, "edges": edges,
                      "hubs_left_out": hubs,
                      "reached_share": sum(v for k, v in hops.items() if k > 0) / users},
            "document_json_bytes": len(str(doc_json[0])) if doc_json else 0, "fits": FITS}


def takeaway(doc: dict[str, Any]) -> str:
    q = doc["queries"]
    rel = next(v for k, v in q.items() if k.startswith("relational: one user"))
    dd = next(v for k, v in q.items() if k.startswith("document: one user"))
    g = doc["graph"]
    return (
        f"Fetching the fraudster's whole history takes {dd['median_s'] * 1e3:.2f} ms as one "
        f"document vs {rel['median_s'] * 1e3:.2f} ms as a relational join "
        f"({rel['median_s'] / dd['median_s']:.1f}x). Through shared merchants "
        f"(the {g['hubs_left_out']} busiest left out) the fraudster reaches "
        f"{g['reached_by_hop'].get(1, 0):,} users in 1 hop and "
        f"{g['reached_share']:.0%} of all {doc['users']:,} users within {g['hops']} hops."
    )


def write_models_results(doc: dict[str, Any], results_dir: Path, cfg: ModelsConfig) -> dict[str, Path]:
    q = doc["queries"]
    rows = [[k, v["median_s"] * 1e3, v["result_rows"]] for k, v in q.items()]
    table_md = markdown_table(["query", "ms", "rows"], rows)
    table_md += "\n\n" + "\n".join(f"- **{m}** {s}" for m, s in doc["fits"].items())
    table_md += "\n\nUsers reached by hop: " + ", ".join(
        f"{h}: {n:,}" for h, n in doc["graph"]["reached_by_hop"].items())

    def chart() -> Figure:
        return grouped_bars("Data models in DuckDB: query time", list(q),
                            {"ms": [v["median_s"] * 1e3 for v in q.values()]},
                            ylabel="ms, log scale (lower is better)", log=True)

    return write_results("models", results_dir, title="Relational, document and graph models",
                         parameters=vars(cfg), data=doc, table_md=table_md,
                         takeaway=takeaway(doc), chart=chart)
