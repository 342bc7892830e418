"""Read the stack's Prometheus endpoints: counters summed per component, freshness buckets."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

EVENTS_STORED = "playground_events_stored_total"
EVENTS_RECEIVED = "playground_events_received_total"
DEAD_LETTERS = "playground_dead_letters_total"
FRESHNESS = "playground_freshness_seconds"
# The loss-accounting counters, in the order a record passes them (``status``, chaos).
LOSS_COUNTERS = ("playground_events_sent_total", "playground_events_acknowledged_total", EVENTS_RECEIVED,
                 EVENTS_STORED, DEAD_LETTERS, "playground_duplicates_total", "playground_retries_total")
SINK = "sink"
STREAM_PREFIX = "features-"  # the stream workers' components: features-w0, features-w1, ...


def group_of(component: str) -> str | None:
    """Which line of the dashboard a component's series feed: the sink, the stream workers, or none."""
    if component == SINK:
        return "sink"
    if component.startswith(STREAM_PREFIX):
        return "stream"
    return None


@dataclass
class Scrape:
    """One pass over every target: counter totals by (metric, component) and freshness buckets."""

    counters: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    # group -> upper bound -> cumulative count, summed over the group's components
    freshness: dict[str, dict[float, float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def total(self, metric: str, group: str) -> float:
        return sum(v for (m, comp), v in self.counters.items() if m == metric and group_of(comp) == group)


def parse(text: str, into: Scrape) -> None:
    """Add one endpoint's exposition text to ``into``."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            component = sample.labels.get("component", "")
            if family.type == "counter" and sample.name == family.name + "_total":
                into.counters[(sample.name, component)] += sample.value
            elif family.name == FRESHNESS and sample.name == FRESHNESS + "_bucket":
                group = group_of(component)
                if group is not None:
                    bound = float(sample.labels["le"])
                    buckets = into.freshness.setdefault(group, {})
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value


def scrape(targets: dict[str, str], client: httpx.Client) -> Scrape:
    """Fetch every target; one that does not answer is named in ``errors``, never fatal."""
    out = Scrape()
    for component, url in sorted(targets.items()):
        try:
            resp = client.get(url)
            resp.raise_for_status()
            parse(resp.text, out)
        except (httpx.HTTPError, ValueError) as err:
            out.errors[component] = f"{url}: {err}"
    return out


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The ``q`` quantile of what was observed between two cumulative bucket snapshots, interpolated
    within the bucket as Prometheus' ``histogram_quantile`` does; None if nothing was observed."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cum in zip(bounds, counts, strict=True):
        if cum >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = cum - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cum
    return lower
