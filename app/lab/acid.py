"""ACID, shown rather than claimed, in both engines.

Atomicity: a multi-statement transaction fails halfway (a duplicate key) and
leaves nothing behind. Durability: a child process commits a row, opens a
second transaction, and is SIGKILLed; reopening shows the committed row and
not the uncommitted one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from dataflow_playground.app.lab import LabError
from dataflow_playground.storage.relational import ENGINES, crash_writer
from dataflow_playground.storage.relational.base import INSERT_TX

CHILD_TIMEOUT_S = 60.0
_SEED_ROWS = (("INSERT INTO users VALUES (0, 'US')", ()),
              ("INSERT INTO merchants VALUES (0, 'grocery', 'US')", ()))


def atomicity(engine_name: str, path: Path, existing_tx: int, new_tx: int) -> dict[str, Any]:
    """Insert a new row, then a duplicate of ``existing_tx``, in one transaction."""
    with ENGINES[engine_name](path) as engine:
        before = engine.count_transactions()
        row = (new_tx, 0, 0, 1.0, "EUR", 1_767_225_600_000, False)
        dup = (existing_tx, 0, 0, 1.0, "EUR", 1_767_225_600_000, False)
        error = None
        try:
            engine.run_transaction([(INSERT_TX, row), (INSERT_TX, dup)])
        except Exception as err:  # each driver raises its own constraint error type
            error = f"{type(err).__name__}: {str(err).splitlines()[0]}"
        after = engine.count_transactions()
        first_row_visible = bool(engine.point_lookup(new_tx))
    return {"failed_as_expected": error is not None, "error": error, "rows_before": before,
            "rows_after": after, "first_insert_visible": first_row_visible,
            "ok": error is not None and before == after and not first_row_visible}


def durability(engine_name: str, path: Path, tx_id: int = 1_000_000_000) -> dict[str, Any]:
    """A child commits ``tx_id``, opens ``tx_id + 1`` and is SIGKILLed; what is left?"""
    with ENGINES[engine_name](path) as engine:
        engine.create_schema()
        engine.run_transaction(_SEED_ROWS)
    child = subprocess.Popen(
        [sys.executable, "-m", crash_writer.__name__, engine_name, str(path), str(tx_id)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().strip() if child.stdout else ""
        if line != "committed":
            err = child.stderr.read() if child.stderr else ""
            raise LabError(f"{engine_name} crash writer did not commit (said {line!r}): {err[-500:]}")
        os.kill(child.pid, signal.SIGKILL)  # no clean shutdown, no flush, no atexit
        code = child.wait(timeout=CHILD_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with ENGINES[engine_name](path) as engine:
        committed = bool(engine.point_lookup(tx_id))
        uncommitted = bool(engine.point_lookup(tx_id + 1))
    return {"child_exit_code": code, "killed_by_sigkill": code == -signal.SIGKILL,
            "committed_row_survived": committed, "uncommitted_row_present": uncommitted,
            "ok": code == -signal.SIGKILL and committed and not uncommitted}
