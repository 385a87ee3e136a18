"""Headless Chromium driven by selenium, for the console's browser tests and benchmarks/console.py.

Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``), installed
by ``.ci/run`` with apt. Selenium is given both paths, so it never looks for (or downloads) a driver or a
browser of its own. ``DURABLE_CHROMIUM`` / ``DURABLE_CHROMEDRIVER`` point elsewhere.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Optional

CHROMIUM = os.environ.get("DURABLE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DURABLE_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1360,1000")


class NoBrowser(Exception):
    """No browser can be driven here; the message says why and what to install."""


def missing() -> Optional[str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements-dev.txt)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) and os.access(path, os.X_OK)):
            return f"{path} not found: install Debian's {package} (apt-get install chromium chromium-driver; .ci/run does)"
    return None


def start() -> tuple[Any, str]:
    """A new headless Chromium with a fresh profile: (driver, profile directory). Close with ``stop``."""
    why = missing()
    if why:
        raise NoBrowser(why)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium's driver manager, were it ever asked: never download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="durable-console-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start here
        shutil.rmtree(profile, ignore_errors=True)
        raise NoBrowser(f"headless Chromium did not start: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    driver.set_page_load_timeout(30)
    return driver, profile


def stop(driver: Any, profile: str) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
