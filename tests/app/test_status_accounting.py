"""`playground status` shows each process's loss accounting, read from its /metrics text."""

from __future__ import annotations

from dataflow_playground.app.stack_report import accounting_rows
from dataflow_playground.services.dashboard.metrics_scrape import Scrape, parse

EXPOSITION = """\
# TYPE playground_events_received_total counter
playground_events_received_total{component="sink"} 1000.0
playground_events_received_total{component="rest"} 10.0
playground_events_received_total{component="features-w0"} 1900.0
# TYPE playground_events_stored_total counter
playground_events_stored_total{component="sink"} 990.0
playground_events_stored_total{component="rest"} 8.0
playground_events_stored_total{component="features-w0"} 990.0
# TYPE playground_dead_letters_total counter
playground_dead_letters_total{component="sink",reason="malformed_json"} 6.0
playground_dead_letters_total{component="sink",reason="missing_field"} 1.0
playground_dead_letters_total{component="rest",reason="wrong_type"} 1.0
# TYPE playground_duplicates_total counter
playground_duplicates_total{component="sink"} 3.0
# TYPE playground_events_sent_total counter
playground_events_sent_total{component="producer"} 500.0
# TYPE playground_events_acknowledged_total counter
playground_events_acknowledged_total{component="producer"} 499.0
"""


def test_rows_sum_reasons_and_tell_which_books_balance() -> None:
    found = Scrape()
    parse(EXPOSITION, found)
    rows = {r["component"]: r for r in accounting_rows(found)}
    assert set(rows) == {"features-w0", "producer", "rest", "sink"}
    sink = rows["sink"]
    assert (sink["received"], sink["stored"], sink["dead letters"], sink["duplicates"]) == (1000, 990, 7, 3)
    assert sink["balanced"] == "yes"
    # REST: 10 received, 8 stored, 1 dead letter: one record unaccounted for.
    assert rows["rest"]["balanced"] == "no" and rows["rest"]["duplicates"] is None
    # A stream worker receives a record once per stage: no balance is claimed for it.
    assert rows["features-w0"]["balanced"] is None
    producer = rows["producer"]
    assert (producer["sent"], producer["acknowledged"], producer["received"]) == (500, 499, None)
    assert producer["balanced"] is None
