"""Headless Chromium through selenium: Debian's ``chromium`` driven by its ``chromedriver``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = ("chromium", "chromium-browser")
DRIVER = "chromedriver"


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) if both are installed (``make browser`` installs them with apt)."""
    browser = next((p for p in (shutil.which(n) for n in CHROMIUM) if p), None)
    driver = shutil.which(DRIVER)
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(width: int = 1400, height: int = 1800) -> Iterator[Any]:
    """A headless Chromium with its console log readable (``driver.get_log("browser")``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    assert paths is not None, "chromium and chromedriver are not installed"
    browser, driver_path = paths
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    """The page's console errors (SEVERE) since the last call."""
    return [f"{e.get('level')}: {e.get('message')}" for e in driver.get_log("browser")
            if e.get("level") == "SEVERE"]


def screenshot(url: str, path: Path, settle_s: float = 4.0) -> Path:
    """Open ``url``, let it poll a few times, save a full-page PNG to ``path``."""
    import time

    with chromium() as driver:
        driver.get(url)
        time.sleep(settle_s)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, max(900, int(height)))
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
    return path
