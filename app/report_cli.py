"""``playground report``: rebuild ``results/index.html`` from the results folder, print its path."""

from __future__ import annotations

import sys

from dataflow_playground.core.settings import get_settings


def report_command() -> None:
    """Rebuild results/index.html (every result by topic, beside its previous run); print its path."""
    from dataflow_playground.app.report_page import build_index

    path = build_index(get_settings().results_dir)
    sys.stdout.write(f"{path.resolve()}\n")
