"""A real headless browser for the console's tests: Debian's ``chromium`` driven by
Selenium through Debian's ``chromium-driver`` (``bin/test`` installs both when missing).

Where neither can be found the test is skipped with the reason (``pytest.skip``: the
skip and its reason show in the summary), never passed silently.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

BROWSERS = ("chromium", "chromium-browser")
DRIVER = "chromedriver"


@contextmanager
def headless_chromium(width: int = 412, height: int = 915) -> Iterator[webdriver.Chrome]:
    """A headless Chromium, a phone's width by default (412 px)."""
    binary = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver_path = shutil.which(DRIVER)
    if binary is None or driver_path is None:
        pytest.skip(
            "no browser: Debian's chromium and chromium-driver are not installed "
            "(bin/ensure-debian-packages chromium:chromium chromium-driver:chromedriver)"
        )
    options = Options()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
