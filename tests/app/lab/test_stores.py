"""SQLite vs DuckDB: same answers, and ACID shown for real (a failed transaction, a SIGKILL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflow_playground.app.lab.acid import atomicity, durability
from dataflow_playground.app.lab.relational_data import relational_dataset
from dataflow_playground.app.lab.stores import EnginesConfig, _answers_agree, _load, _workload
from dataflow_playground.storage.relational import ENGINES
from dataflow_playground.storage.relational.base import EngineError


@pytest.fixture
def data(seed: int):  # type: ignore[no-untyped-def]
    return relational_dataset(3_000, seed)


def test_normalised_tables_are_consistent(data) -> None:  # type: ignore[no-untyped-def]
    tx = data.transactions
    assert set(tx.column("user_id").to_pylist()) <= set(data.users.column("user_id").to_pylist())
    assert set(tx.column("merchant_id").to_pylist()) == set(
        data.merchants.column("merchant_id").to_pylist())
    assert data.users.num_rows == len(set(data.users.column("user_id").to_pylist()))


def test_both_engines_give_the_same_answers(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = EnginesConfig(rows=data.transactions.num_rows, repeats=1, inserts=5, lookups=10)
    answers = {}
    for name, cls in ENGINES.items():
        with cls(tmp_path / f"{name}.db") as engine:
            _load(engine, data)
            result = _workload(engine, data, cfg)
            assert result["lookup_found"]
            assert engine.count_transactions() == data.transactions.num_rows + cfg.inserts
        answers[name] = result["answers"]
    assert _answers_agree(answers["sqlite"], answers["duckdb"])
    # ...and the comparison can say no.
    tampered = dict(answers["duckdb"], range_scan=(answers["duckdb"]["range_scan"][0] + 1,
                                                  answers["duckdb"]["range_scan"][1]))
    assert not _answers_agree(answers["sqlite"], tampered)


@pytest.mark.parametrize("name", list(ENGINES))
def test_failed_transaction_leaves_nothing_behind(name: str, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{name}.db"
    with ENGINES[name](path) as engine:
        _load(engine, data)
    result = atomicity(name, path, existing_tx=0, new_tx=10**9)
    assert result["failed_as_expected"], result
    assert result["rows_before"] == result["rows_after"] == data.transactions.num_rows
    assert not result["first_insert_visible"]
    assert result["ok"]


@pytest.mark.parametrize("name", list(ENGINES))
def test_committed_row_survives_sigkill(name: str, tmp_path: Path) -> None:
    result = durability(name, tmp_path / f"{name}-crash.db")
    assert result["killed_by_sigkill"], result
    assert result["committed_row_survived"]
    assert not result["uncommitted_row_present"]


def test_engine_used_before_connect_says_so(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="not connected"):
        ENGINES["sqlite"](tmp_path / "x.db").count_transactions()
