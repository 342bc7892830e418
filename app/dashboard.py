"""The dashboard as the stack runs it: the services' web app given this stack's view of itself."""

from __future__ import annotations

from dataflow_playground.app import stack
from dataflow_playground.core.settings import Settings
from dataflow_playground.services.dashboard.app import LOG_TAIL_LINES, Sources, create_app
from dataflow_playground.services.dashboard.providers import ComponentView, DashboardProviders


def component_views(settings: Settings) -> list[ComponentView]:
    """``stack.status`` as the page shows it; a crashed component with the tail of its log."""
    return [ComponentView(name=r.name, running=r.running, healthy=r.healthy, pid=r.pid, port=r.port,
                          uptime_s=r.uptime_s, crashed=r.crashed,
                          log_tail=stack.tail_log(r.log, LOG_TAIL_LINES) if r.crashed and r.log else None)
            for r in stack.status(settings)]


def log_tail(settings: Settings, name: str, lines: int) -> str | None:
    """The last ``lines`` of component ``name``'s log; None for a name the stack does not have."""
    if name not in {c.name for c in stack.stack_components(settings)}:
        return None
    return stack.tail_log(stack.log_file(settings, name), lines)


def providers(settings: Settings) -> DashboardProviders:
    return DashboardProviders(components=lambda: component_views(settings),
                              log_tail=lambda name, lines: log_tail(settings, name, lines))


def serve(settings: Settings, port: int | None = None, sources: Sources | None = None) -> None:
    """Serve the dashboard in the foreground until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings, providers(settings), sources), host=settings.bind_host,
                port=port or settings.dashboard_port, log_level="warning")
