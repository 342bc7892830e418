"""What the dashboard is given by whoever starts it, so this layer never imports the app layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentView:
    """One stack component as the page shows it (what ``playground status`` prints)."""

    name: str
    running: bool
    healthy: bool
    pid: int | None
    port: int
    uptime_s: float | None
    crashed: bool
    log_tail: str | None = None  # the last lines of its log, for a crashed component

    @property
    def state(self) -> str:
        if self.running:
            return "healthy" if self.healthy else "unhealthy"
        return "crashed" if self.crashed else "stopped"


@dataclass(frozen=True)
class DashboardProviders:
    """``components``: the stack's components now (the app layer passes ``stack.status``, mapped).
    ``log_tail(name, lines)``: the last lines of a component's log, None if it has none."""

    components: Callable[[], list[ComponentView]]
    log_tail: Callable[[str, int], str | None]
