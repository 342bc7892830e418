"""results/index.html opened from disk in a real Chromium: every chart renders, no reference is
broken, and the previous run's figures sit beside the newest one's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.services.dashboard.browser import chromium, chromium_paths, console_errors

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium_paths() is None,
                                 reason="chromium and chromedriver are not installed (make test-deps)")]


def test_the_report_renders_every_chart_from_disk(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = dict(os.environ, PLAYGROUND_RESULTS_DIR=str(results), PLAYGROUND_DATA_DIR=str(tmp_path / "data"),
               COLUMNS="200")
    # Two real lab runs (the second gives the report a previous run to compare with) and a
    # second lab, all without a broker.
    for args in (("lab", "layout", "--side", "200", "--rows", "2000", "--repeats", "1"),
                 ("lab", "layout", "--side", "200", "--rows", "2000", "--repeats", "1", "--seed", "3"),
                 ("formats", "--rows", "2000", "--repeats", "1", "--budget", "0.01")):
        done = run_cli(env, *args, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    index = results / "index.html"
    assert index.is_file()

    with chromium() as driver:
        driver.get(index.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.getAttribute('src').slice(0, 22),"
            " i.complete, i.naturalWidth, i.naturalHeight]);")
        links = driver.execute_script(
            "return Array.from(document.querySelectorAll('[href],[src]'))"
            ".map(e => e.getAttribute('href') || e.getAttribute('src'));")
        text = driver.find_element("tag name", "body").text
        errors = console_errors(driver)

    assert errors == []
    # One chart per result at least, each decoded by the browser (a broken image has width 0).
    assert len(images) >= 2, images
    broken = [i for i in images if not (i[2] and i[3] > 0 and i[4] > 0)]
    assert broken == [], broken
    # Self-contained: nothing is fetched, neither from the network nor from beside the file.
    outside = [u for u in links if not (u.startswith(("data:", "#")))]
    assert outside == [], outside
    assert "previous" in text.lower(), text[:2000]
    for forbidden in ("None", "False", "nan"):
        assert f" {forbidden} " not in f" {text} ", forbidden
