"""Data models (document and graph answers checked against plain Python) and ETL vs ELT."""

from __future__ import annotations

from collections import defaultdict

from dataflow_playground.app.lab.data_models import K_HOP, ModelsConfig, build, known_fraudster
from dataflow_playground.app.lab.etl_vs_elt import EtlConfig, raw_input, run_etl_vs_elt


def test_document_holds_what_the_join_returns(seed: int) -> None:
    con = build(ModelsConfig(rows=3_000, seed=seed))
    user = known_fraudster(con)
    docs = con.execute("SELECT len(transactions) FROM user_docs WHERE user_id = ?",
                       [user]).fetchone()
    joined = con.execute("SELECT count(*) FROM transactions WHERE user_id = ?", [user]).fetchone()
    assert docs is not None and joined is not None and docs[0] == joined[0] > 0
    total = con.execute("SELECT sum(len(transactions)) FROM user_docs").fetchone()
    assert total is not None and total[0] == 3_000


def test_k_hop_cte_matches_breadth_first_search(seed: int) -> None:
    con = build(ModelsConfig(rows=2_000, seed=seed))
    start = known_fraudster(con)
    edges = con.execute("SELECT user_id, merchant_id FROM edges").fetchall()
    by_user, by_merchant = defaultdict(set), defaultdict(set)
    for u, m in edges:
        by_user[u].add(m)
        by_merchant[m].add(u)
    seen, frontier, expected = {start}, {start}, {0: 1}
    for hop in (1, 2):
        nxt = {v for u in frontier for m in by_user[u] for v in by_merchant[m]} - seen
        seen |= nxt
        frontier = nxt
        if nxt:
            expected[hop] = len(nxt)
    got = {int(h): int(n) for h, n in con.execute(K_HOP, [start, 2]).fetchall()}
    assert got == expected


def test_etl_and_elt_agree_and_keep_different_things(seed: int) -> None:
    cfg = EtlConfig(events=2_000, malformed_rate=0.05, seed=seed, repeats=1)
    doc = run_etl_vs_elt(cfg)
    etl, elt = doc["pipelines"]["etl"], doc["pipelines"]["elt"]
    assert doc["disagreements"] == {"events": 0, "rejects": 0}
    assert doc["malformed_generated"] > 0
    assert etl["rejects"] == elt["rejects"] == doc["malformed_generated"]
    assert etl["events"] + etl["rejects"] == cfg.events
    assert etl["raw_kept"] == 0 and elt["raw_kept"] == cfg.events
    assert "raw_events" in elt["tables"] and "raw_events" not in etl["tables"]


def test_raw_input_is_seeded(seed: int) -> None:
    cfg = EtlConfig(events=200, malformed_rate=0.1, seed=seed)
    assert raw_input(cfg) == raw_input(cfg)
