"""Cross-checks from Prometheus: scrape the live processes' counters (``core.metrics``).

A process's counters start at zero with the process, so after a SIGKILL they cover only the
life of its successor; the scenarios therefore count from the store and the topics, and add
the scraped figures as a second view of the last process life.
"""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from dataflow_playground.core.metrics import metrics_targets
from dataflow_playground.core.settings import Settings

COUNTERS = ("playground_events_received_total", "playground_events_stored_total",
            "playground_events_sent_total", "playground_events_acknowledged_total",
            "playground_dead_letters_total", "playground_duplicates_total", "playground_retries_total")


def scrape(settings: Settings, timeout_s: float = 3.0) -> dict[str, dict[str, float]]:
    """``component -> {counter: value}`` of every live process that serves metrics."""
    out: dict[str, dict[str, float]] = {}
    for component, url in metrics_targets(settings).items():
        try:
            text = httpx.get(url, timeout=timeout_s).text
        except httpx.HTTPError:
            continue
        values: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in COUNTERS:
                    values[sample.name.removeprefix("playground_").removesuffix("_total")] += sample.value
        out[component] = dict(values)
    return out
