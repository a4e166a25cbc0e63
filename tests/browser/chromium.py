# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""Headless Chromium for end-to-end tests: Debian's `chromium` + `chromium-driver`, driven by Selenium.

Install: `apt-get install -y --no-install-recommends chromium chromium-driver` and `pip install selenium`.
Nothing is downloaded at run time (no Selenium Manager: both paths are given explicitly).

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

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")
INSTALL_HINT = ("install them with `apt-get install -y --no-install-recommends chromium chromium-driver` and "
                "`pip install selenium`")  # fmt: skip
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


class BrowserMissingError(RuntimeError):
    """Chromium, its driver or Selenium is not installed."""


def _first_executable(candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def find_browser() -> tuple[str, str]:
    """(chromium path, chromedriver path). Raises `BrowserMissingError` naming what is missing."""
    browser, driver = _first_executable(CHROMIUM_CANDIDATES), _first_executable(DRIVER_CANDIDATES)
    missing = [name for name, path in (("chromium", browser), ("chromedriver (chromium-driver)", driver)) if not path]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium Python package")
    if missing:
        raise BrowserMissingError(f"end-to-end browser test needs {', '.join(missing)}: {INSTALL_HINT}")
    return browser, driver


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
    return [url for url in urls if urlparse(url).scheme in ("http", "https", "ws", "wss")
            and urlparse(url).hostname not in LOOPBACK_HOSTS]  # fmt: skip


def save_screenshot(driver, path: str | os.PathLike) -> Path:
    """A PNG of the whole page (the window is resized to the page height first)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(height, 600))
    driver.execute_script("window.scrollTo(0, 0);")
    path = Path(path)
    driver.save_screenshot(str(path))
    return path
