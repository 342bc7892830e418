"""A child process for the durability check: commit a row, start another, then wait to be killed.

Run by the lab as ``python -m dataflow_playground.storage.relational.crash_writer ENGINE PATH TX_ID``. It
prints ``committed`` once the first row's transaction has committed and the second
row's transaction is open but not committed, then sleeps until the parent SIGKILLs it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dataflow_playground.storage.relational import ENGINES
from dataflow_playground.storage.relational.base import INSERT_TX


def main(argv: list[str]) -> None:
    engine_name, path, tx_id = argv[0], Path(argv[1]), int(argv[2])
    engine = ENGINES[engine_name](path)
    engine.connect()
    engine.run_transaction([(INSERT_TX, (tx_id, 0, 0, 9.99, "EUR", 1_767_225_600_000, False))])
    # Open a second transaction and leave it uncommitted: the kill must erase it.
    begin = "BEGIN" if engine_name == "sqlite" else "BEGIN TRANSACTION"
    engine.execute(begin)
    engine.execute(INSERT_TX, (tx_id + 1, 0, 0, 1.0, "EUR", 1_767_225_600_000, False))
    print("committed", flush=True)
    while True:  # wait for SIGKILL; never exits by itself
        time.sleep(60)


if __name__ == "__main__":
    main(sys.argv[1:])
