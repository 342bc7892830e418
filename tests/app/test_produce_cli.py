"""Number arguments of `produce`, `topics tail`, `logs` and `bench kafka` are refused clearly."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dataflow_playground.app.cli import app


@pytest.mark.parametrize(("args", "message"), [
    (["produce", "--rate", "0"], "rate must be more than 0"),
    (["produce", "--rate", "-5"], "rate must be more than 0"),
    (["produce", "--rate", "1e12"], "at most 1,000,000 events/s"),
    (["produce", "--events", "0"], "events must be at least 1"),
    (["produce", "--duration", "0s"], "must be more than 0"),
    (["produce", "--duration", "soon"], "is not a duration"),
    (["produce", "--events", "10", "--duration", "5s"], "not both"),
    (["produce", "--malformed", "2"], "malformed must be a fraction"),
    (["bench", "kafka", "--events", "0"], "--events must be between 1 and"),
    (["bench", "kafka", "--repeats", "0"], "--repeats must be between 1 and"),
    (["topics", "tail", "transactions", "-n", "0"], "-n must be between 1 and"),
    (["logs", "kafka", "-n", "0"], "--lines must be between 1 and"),
])
def test_bad_numbers_are_refused_with_a_clear_message(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split()), result.output
