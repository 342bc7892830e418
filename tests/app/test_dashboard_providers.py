"""What the stack gives its dashboard: `status` rows as the page shows them, and log tails."""

from __future__ import annotations

from pathlib import Path

from dataflow_playground.app import dashboard, stack
from dataflow_playground.core.settings import Settings
from tests.helpers import free_ports


def _settings(tmp_path: Path) -> Settings:
    k, c, r, g, d = free_ports(5)
    return Settings(data_dir=tmp_path, kafka_port=k, kafka_controller_port=c, rest_port=r, rpc_port=g,
                    dashboard_port=d)


def test_a_crashed_component_comes_with_its_log_tail(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    log = stack.log_file(s, "sink")
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(40)) + "Traceback: the sink died\n")
    stack.crash_file(s, "sink").write_text("{}")
    views = {v.name: v for v in dashboard.component_views(s)}
    assert set(views) == {c.name for c in stack.stack_components(s)} and "dashboard" in views
    assert views["sink"].state == "crashed" and views["sink"].log_tail is not None
    assert views["sink"].log_tail.endswith("Traceback: the sink died")
    assert len(views["sink"].log_tail.splitlines()) == 15
    assert views["kafka"].state == "stopped" and views["kafka"].log_tail is None
    assert views["dashboard"].port == s.dashboard_port


def test_log_tail_only_for_the_stacks_components(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    log = stack.log_file(s, "rest")
    log.parent.mkdir(parents=True)
    log.write_text("a\nb\nc\n")
    providers = dashboard.providers(s)
    assert providers.log_tail("rest", 2) == "b\nc"
    assert providers.log_tail("rpc", 5) == "(no log)"
    assert providers.log_tail("not-a-component", 5) is None
