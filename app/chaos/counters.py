"""Cross-checks from Prometheus: scrape the live processes' counters (``core.metrics``).

A process's counters start at zero with the process, so after a SIGKILL they cover only the
life of its successor; the scenarios therefore count from the store and the topics, and add
the scraped figures as a second view of the last process life.
"""

from __future__ import annotations

import httpx

from dataflow_playground.core.metrics import metrics_targets
from dataflow_playground.core.settings import Settings
from dataflow_playground.services.dashboard.metrics_scrape import LOSS_COUNTERS, Scrape, parse


def scrape(settings: Settings, timeout_s: float = 3.0) -> dict[str, dict[str, float]]:
    """``component -> {counter: value}`` of every live process that serves metrics."""
    out: dict[str, dict[str, float]] = {}
    for component, url in metrics_targets(settings).items():
        try:
            text = httpx.get(url, timeout=timeout_s).text
        except httpx.HTTPError:
            continue
        found = Scrape()
        parse(text, found)
        values: dict[str, float] = {}
        for (metric, _label), value in found.counters.items():
            if metric in LOSS_COUNTERS:
                name = metric.removeprefix("playground_").removesuffix("_total")
                values[name] = values.get(name, 0.0) + value
        out[component] = values
    return out
