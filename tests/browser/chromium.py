# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Headless Chromium for end-to-end tests: Debian's `chromium` + `chromium-driver`, driven by Selenium.

Install: `apt-get install -y --no-install-recommends chromium chromium-driver` and `pip install selenium`
(`make test` runs `install-chromium.sh` here, which does the first where it can).
Nothing is downloaded at run time (no Selenium Manager: both paths are given explicitly).
A test calls `require_browser()`: without the browser it skips naming what is missing, or fails when
`QFACE_REQUIRE_BROWSER=1` (CI sets it, so there the browser test always runs).

The browser can reach only the loopback addresses: every other host name resolves to nothing
(`--host-resolver-rules`), and `requested_urls` lets a test check that the page asked for nothing else.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")
INSTALL_HINT = (
    "install them with `apt-get install -y --no-install-recommends chromium chromium-driver` and `pip install selenium`"
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # runs as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    # Only loopback names resolve: a page that tries to reach any other host fails instead of leaving the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
REQUIRE_BROWSER_VARIABLE = "QFACE_REQUIRE_BROWSER"


class BrowserMissingError(RuntimeError):
    """Chromium, its driver or Selenium is not installed."""


def _first_executable(candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def selenium_installed() -> bool:
    return importlib.util.find_spec("selenium") is not None


def find_browser() -> tuple[str, str]:
    """(chromium path, chromedriver path). Raises `BrowserMissingError` naming what is missing."""
    browser, driver = _first_executable(CHROMIUM_CANDIDATES), _first_executable(DRIVER_CANDIDATES)
    missing = [name for name, path in (("chromium", browser), ("chromedriver (chromium-driver)", driver)) if not path]
    if not selenium_installed():
        missing.append("the selenium Python package")
    if missing:
        raise BrowserMissingError(f"end-to-end browser test needs {', '.join(missing)}: {INSTALL_HINT}")
    return browser, driver


def browser_required() -> bool:
    """`QFACE_REQUIRE_BROWSER=1`: a missing browser fails the test instead of skipping it (CI)."""
    return os.environ.get(REQUIRE_BROWSER_VARIABLE, "").strip() not in ("", "0")


def require_browser() -> tuple[str, str]:
    """`find_browser()` for a test: when something is missing the test skips with the reason, or fails with it
    under `QFACE_REQUIRE_BROWSER=1`, so a fresh machine passes while CI can never silently skip the browser test."""
    try:
        return find_browser()
    except BrowserMissingError as error:
        if browser_required():
            pytest.fail(f"{error} ({REQUIRE_BROWSER_VARIABLE}=1: the browser test must run)")
        pytest.skip(f"{error} (set {REQUIRE_BROWSER_VARIABLE}=1 to make this a failure)")


@contextlib.contextmanager
def headless_chromium(window_size: tuple[int, int] = (1280, 1600)) -> Iterator:
    """A Selenium WebDriver on a fresh headless Chromium profile; the browser is always quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_browser()
    profile = tempfile.mkdtemp(prefix="qface-chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path, log_output=os.devnull))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver) -> list[str]:
    """Every URL the page has requested so far (from Chromium's performance log; reading it empties it)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def non_loopback(urls: list[str]) -> list[str]:
    """The URLs (http, https, ws, wss) whose host is not a loopback address."""
    return [
        url
        for url in urls
        if urlparse(url).scheme in ("http", "https", "ws", "wss") and urlparse(url).hostname not in LOOPBACK_HOSTS
    ]


def save_screenshot(driver, path: str | os.PathLike) -> Path:
    """A PNG of the whole page (the window is resized to the page height first)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(height, 600))
    driver.execute_script("window.scrollTo(0, 0);")
    path = Path(path)
    driver.save_screenshot(str(path))
    return path
