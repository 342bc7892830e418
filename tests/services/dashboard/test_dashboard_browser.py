"""The stack's dashboard in a real browser (headless Chromium through selenium), on the session
stack while events flow: components, topics and lag, live rates, the dead-letter browser, a
feature lookup and a result. ``make browser`` runs only these tests."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from dataflow_playground.app import stack
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.online_store import OnlineStoreReader, online_store_path
from dataflow_playground.features.parity import values_equal
from dataflow_playground.features.stream.worker import DEFAULT_APP_ID
from dataflow_playground.producers.continuous import PacedProducer, ProduceConfig, chunks
from dataflow_playground.producers.to_kafka import make_producer
from tests.helpers import fresh_event_time_ms
from tests.services.dashboard.browser import chromium, chromium_paths, console_errors

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_paths() is None,
                       reason="chromium and chromedriver are not installed (Debian: apt-get install "
                              "chromium chromium-driver; `make browser` installs them)"),
]
RATE = 300.0  # events/s offered while the page is watched
SECONDS = 20
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0, every_s: float = 0.3) -> T:
    """``probe()`` until it gives something truthy; fail naming ``what`` and its last answer."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as err:  # a stale element while the page redraws: try again
            last = err
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"{what} within {timeout_s:.0f}s; last: {last!r}")


@pytest.fixture
def producing(kafka_stack: Settings, seed: int) -> Iterator[tuple[ProduceConfig, list[Any]]]:
    """Seeded events (2 % malformed) into the stack's topic at RATE for SECONDS, in the background;
    the records sent. Stamped after the stream's event-time frontier, so none is late."""
    s = kafka_stack
    cfg = ProduceConfig(rate=RATE, events=int(RATE * SECONDS), malformed=0.02, seed=seed,
                        start_ms=fresh_event_time_ms(s))
    assert cfg.start_ms is not None
    records = [r for chunk in chunks(cfg, cfg.start_ms) for r in chunk]
    producer = make_producer(s.bootstrap_servers)
    paced = PacedProducer(producer, s.topic, cfg)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(totals=paced.run()), daemon=True)
    thread.start()
    try:
        yield cfg, records
    finally:
        paced.stop()
        thread.join(timeout=30)
        producer.close(timeout=5)
    totals = result["totals"]
    assert totals.failed == 0 and totals.sent == totals.acknowledged == len(records), totals.snapshot()


def _cells(driver: Any, row_css: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, row_css)]


def test_dashboard_shows_the_running_stack(kafka_stack: Settings, producing: tuple[ProduceConfig, list[Any]]
                                           ) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    s = kafka_stack
    _cfg, records = producing
    started = time.monotonic()
    url = f"http://{s.host}:{s.dashboard_port}/"
    assert stack.read_pid(s, "dashboard") is not None, "`up` starts the dashboard"

    with chromium() as driver:
        driver.get(url)
        assert driver.title == "dataflow-playground dashboard"

        # Components: every one of the stack, healthy, with its PID as `status` has it.
        expected = {c.name for c in stack.stack_components(s)}
        states = wait_for("every component healthy", lambda: (
            rows if (rows := {tr.get_attribute("data-component"): tr.get_attribute("data-state")
                              for tr in driver.find_elements(By.CSS_SELECTOR, "#components tbody tr")})
            and set(rows) == expected and set(rows.values()) == {"healthy"} else None), timeout_s=20)
        assert "dashboard" in states and "kafka" in states
        kafka_row = driver.find_element(By.CSS_SELECTOR, '#components tr[data-component="kafka"]')
        assert str(stack.read_pid(s, "kafka").pid) in kafka_row.text  # type: ignore[union-attr]

        # Topics: transactions with each partition and the sink's lag on it.
        rows = wait_for("the transactions partitions", lambda: _cells(
            driver, f'#topics tr[data-topic="{s.topic}"]') or None)
        assert len(rows) == s.partitions and rows[0][0] == s.topic
        assert [r[1] for r in rows] == [str(p) for p in range(s.partitions)]
        assert all("duckdb-sink=" in r[5] for r in rows), rows

        # Live rates: the chart into the topic moves, and shows events arriving at about the offered rate.
        def into() -> tuple[str, float] | None:
            fig = driver.find_element(By.ID, "chart-into")
            path = fig.find_elements(By.CSS_SELECTOR, "path[data-series=into_topic]")
            last = fig.get_attribute("data-last")
            return (path[0].get_attribute("d"), float(last)) if path and last not in (None, "null") else None

        first = wait_for("a rate point into the topic", into)
        moved = wait_for("the rate chart to move", lambda: (
            now if (now := into()) and now[0] != first[0] else None), timeout_s=10)
        rates = wait_for("events/s into the topic near the offered rate",
                         lambda: r if (r := into()) and r[1] > RATE * 0.3 else None, timeout_s=15)
        assert moved and rates[1] < RATE * 3
        wait_for("a rate through the sink", lambda: float(
            driver.find_element(By.ID, "chart-sink").get_attribute("data-last") or 0) > 0)

        # The dead letters: malformed records with the reason the sink gave.
        Select(driver.find_element(By.ID, "browse-topic")).select_by_value(s.sink_dead_letter_topic)
        n = driver.find_element(By.ID, "browse-n")
        n.clear()
        n.send_keys("50")

        def dead_letters() -> list[list[str]] | None:
            driver.find_element(By.CSS_SELECTOR, "#browse button").click()
            time.sleep(0.5)
            rows = _cells(driver, "#records tbody tr")
            ours = [r for r in rows if f"source=kafka:{s.topic}:" in r[3] and "reason=" in r[3]]
            return ours or None

        dead = wait_for("a dead letter with its reason in the message browser", dead_letters, timeout_s=30)
        assert all("stage=sink" in r[3] for r in dead)

        # Feature lookup: a user this run sent, once the stream has applied its events.
        sent = Counter(int(r.key) for r in records if r.event_id is not None)
        user = sent.most_common(1)[0][0]
        wait_for("the producer to finish", lambda: time.monotonic() - started > SECONDS + 2,
                 timeout_s=SECONDS + 10)
        wait_for("the stream to catch up", lambda: kafka_admin.group_lag(
            s.bootstrap_servers, DEFAULT_APP_ID, s.topic) == 0, timeout_s=30)
        Select(driver.find_element(By.ID, "lookup-entity")).select_by_value("user")
        field = driver.find_element(By.ID, "lookup-id")
        field.clear()
        field.send_keys(str(user))

        def looked_up() -> dict[str, Any] | None:
            driver.find_element(By.CSS_SELECTOR, "#lookup button").click()
            wait_for("the lookup answer", lambda: driver.find_element(By.ID, "lookup-status").text
                     == f"user {user}", timeout_s=20)
            summary = driver.find_element(By.ID, "lookup-summary").text
            if "online: as of" not in summary or "not yet applied" in summary:
                return None  # the stream is still writing this user's values
            def cell(tr: Any, side: str) -> Any:
                return json.loads(tr.find_element(By.CSS_SELECTOR, f"td.{side}").get_attribute("data-json"))

            return {tr.get_attribute("data-feature"): {
                "online": cell(tr, "online"), "batch": cell(tr, "batch"),
                "diff": "diff" in (tr.get_attribute("class") or "")}
                for tr in driver.find_elements(By.CSS_SELECTOR, "#features tbody tr")}

        shown = wait_for(f"user {user}'s values with every event applied", looked_up, timeout_s=30, every_s=1)
        reader = OnlineStoreReader(online_store_path(s))
        try:
            row = reader.get("user", user)
        finally:
            reader.close()
        assert row is not None
        assert set(shown) == set(row.values)
        for name, cell in shown.items():
            assert values_equal(cell["online"], row.values[name]), (name, cell, row.values[name])
            assert cell["diff"] == (not values_equal(cell["online"], cell["batch"])), (name, cell)
        assert shown["user_txn_count_1h"]["batch"] >= 1

        # A result: this run's measured rates, written as every lab writes its result.
        from dataflow_playground.app.results import write_results

        live = httpx.get(f"{url}api/live", timeout=10).json()
        into_rates = [p["into_topic"] for p in live["points"] if p["into_topic"]]
        write_results("dashboard_live_rates", s.results_dir,
                      title="Events/s into the topic, as the dashboard saw them",
                      parameters={"offered_per_s": RATE, "seconds": SECONDS},
                      data={"into_topic_per_s": into_rates},
                      table_md=f"| points |\n|---|\n| {len(into_rates)} |",
                      takeaway=f"{len(into_rates)} one-second points, peak {max(into_rates):,.0f} events/s "
                               f"at an offered {RATE:g} events/s.",
                      chart=lambda: _rates_chart(into_rates))
        driver.refresh()
        card = wait_for("the result on the page", lambda: driver.find_elements(
            By.CSS_SELECTOR, '#results [data-result="dashboard_live_rates"]'))[0]
        assert "Takeaway:" in card.text and "one-second points" in card.text
        img = card.find_element(By.TAG_NAME, "img")
        assert wait_for("its chart loaded", lambda: driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", img))

        s.results_dir.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(s.results_dir / "dashboard.png"))
        assert (s.results_dir / "dashboard.png").stat().st_size > 10_000
        errors = console_errors(driver)
        assert not errors, errors


def _rates_chart(rates: list[float]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(len(rates)), rates)
    ax.set_xlabel("second")
    ax.set_ylabel("events/s into the topic")
    return fig
