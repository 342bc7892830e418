"""The chaos suite's bookkeeping without a broker: balances, pass/fail, the takeaway, names."""

from __future__ import annotations

import pytest

from dataflow_playground.app.chaos.accounting import Outcome, failed, recovery_summary, takeaway
from dataflow_playground.app.chaos.cli import SCENARIO_NAMES
from dataflow_playground.app.chaos.runner import SCENARIOS, UnknownScenarioError, parse_scenarios


def _ok(name: str = "sink-kill", **kw: object) -> Outcome:
    base = {"sent": 100, "acknowledged": 98, "unacknowledged": 2, "received": 98, "stored": 95,
            "dead_lettered": 2, "duplicates": 1, "condition_met": True, "recovery_s": [1.5, 4.0]}
    return Outcome(scenario=name, condition="c", **{**base, **kw})  # type: ignore[arg-type]


def test_balanced_counters_and_met_condition_pass() -> None:
    o = _ok()
    assert o.balance_errors() == []
    assert o.passed
    assert o.to_json()["passed"] is True


def test_a_send_neither_acknowledged_nor_failed_breaks_the_producer_balance() -> None:
    o = _ok(unacknowledged=1)
    assert o.balance_errors() == ["sent 100 != acknowledged 98 + unacknowledged 1"]
    assert not o.passed


def test_a_record_received_but_not_accounted_for_breaks_the_consumer_balance() -> None:
    o = _ok(stored=94)
    assert o.balance_errors() == ["received 98 != stored 94 + dead-lettered 2 + duplicates 1"]
    assert not o.passed


def test_condition_not_met_fails_even_when_balanced() -> None:
    assert not _ok(condition_met=False).passed


def test_takeaway_is_computed_from_the_figures() -> None:
    text = takeaway([_ok(), _ok("rest-kill", lost=3, recovery_s=[9.25])])
    assert text == ("2 of 2 scenarios passed: 3 of 196 acknowledged events lost and 0 stored twice "
                    "across all faults; slowest recovery 9.2s (rest-kill).")


def test_takeaway_names_the_failed_scenarios_and_why() -> None:
    broken = failed("poison", "no consumer stops", RuntimeError("boom"), 1.0)
    text = takeaway([_ok(), broken])
    assert text.startswith("1 of 2 scenarios passed")
    assert "Failed: poison: not met: no consumer stops." in text
    assert broken.notes == ["did not finish: RuntimeError: boom"]
    assert takeaway([]) == "No scenario ran."


def test_recovery_summary() -> None:
    assert recovery_summary([]) == "-"
    assert recovery_summary([2.0]) == "2.0s"
    assert recovery_summary([3.0, 1.0, 2.5]) == "1.0-3.0s (3 faults)"


def test_scenario_names_repeatable_and_comma_separated_in_suite_order() -> None:
    assert parse_scenarios(None) == list(SCENARIOS) == list(SCENARIO_NAMES)
    assert parse_scenarios(["rest-kill,sink-kill", " poison "]) == ["sink-kill", "rest-kill", "poison"]
    with pytest.raises(UnknownScenarioError, match=r"nope.*choose from"):
        parse_scenarios(["sink-kill,nope"])
