"""What a chaos scenario reports, and the checks every one of them shares.

Two balances must hold for every scenario, whatever failed:

- producer side: ``sent = acknowledged + unacknowledged``;
- consumer side: ``received = stored + dead_lettered + duplicates``.

``lost`` counts acknowledged events that are not stored; ``duplicated`` counts events
stored more than once. A scenario passes when its own condition holds *and* both
balances do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Outcome:
    """The figures of one scenario run."""

    scenario: str
    sent: int = 0
    acknowledged: int = 0
    unacknowledged: int = 0
    received: int = 0
    stored: int = 0
    dead_lettered: int = 0
    duplicates: int = 0  # valid records seen again and not stored (counted by the consumer)
    lost: int = 0  # acknowledged, not stored
    duplicated: int = 0  # stored more than once
    recovery_s: list[float] = field(default_factory=list)
    condition: str = ""  # the scenario's own pass condition, in words
    condition_met: bool = False
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def balance_errors(self) -> list[str]:
        """The accounting identities that do not hold (empty when the counters balance)."""
        errors = []
        if self.sent != self.acknowledged + self.unacknowledged:
            errors.append(f"sent {self.sent:,} != acknowledged {self.acknowledged:,} + "
                          f"unacknowledged {self.unacknowledged:,}")
        if self.received != self.stored + self.dead_lettered + self.duplicates:
            errors.append(f"received {self.received:,} != stored {self.stored:,} + dead-lettered "
                          f"{self.dead_lettered:,} + duplicates {self.duplicates:,}")
        return errors

    @property
    def passed(self) -> bool:
        return self.condition_met and not self.balance_errors()

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["passed"] = self.passed
        doc["balance_errors"] = self.balance_errors()
        return doc


def failed(scenario: str, condition: str, error: BaseException, elapsed_s: float) -> Outcome:
    """The outcome of a scenario that could not run to its end (it did not pass)."""
    return Outcome(scenario=scenario, condition=condition, elapsed_s=elapsed_s,
                   notes=[f"did not finish: {type(error).__name__}: {error}"])


def recovery_summary(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}s"
    return f"{min(values):.1f}-{max(values):.1f}s ({len(values)} faults)"


def takeaway(outcomes: Sequence[Outcome]) -> str:
    """One sentence from the figures: how many passed, what was lost, the slowest recovery."""
    if not outcomes:
        return "No scenario ran."
    passed = [o for o in outcomes if o.passed]
    acknowledged = sum(o.acknowledged for o in outcomes)
    lost = sum(o.lost for o in outcomes)
    duplicated = sum(o.duplicated for o in outcomes)
    head = f"{len(passed)} of {len(outcomes)} scenarios passed"
    body = (f"{lost:,} of {acknowledged:,} acknowledged events lost and {duplicated:,} stored twice "
            "across all faults")
    slowest = max(((max(o.recovery_s), o.scenario) for o in outcomes if o.recovery_s), default=None)
    tail = f"; slowest recovery {slowest[0]:.1f}s ({slowest[1]})" if slowest else ""
    failing = [o for o in outcomes if not o.passed]
    if failing:
        why = "; ".join(f"{o.scenario}: {_why(o)}" for o in failing)
        return f"{head}: {body}{tail}. Failed: {why}."
    return f"{head}: {body}{tail}."


def _why(o: Outcome) -> str:
    reasons = o.balance_errors()
    if not o.condition_met:
        reasons.insert(0, f"not met: {o.condition}")
    return ", ".join(reasons)
