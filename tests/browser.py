"""Headless Chromium through the system chromedriver, for the tests of earmark's HTML pages
(`earmark report`, review.html): skipped with a message where .ci/install-browser has not
run, required under CI."""
import contextlib
import os
import shutil

import pytest


@contextlib.contextmanager
def chromium(downloads=None):
    """A Selenium driver (1280×1600, browser console logged); with `downloads`, files the
    page saves land in that folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    driver_path, binary = shutil.which("chromedriver"), shutil.which("chromium")
    if not driver_path or not binary:
        message = ("chromium and chromedriver are not on PATH: run .ci/install-browser "
                   "(Debian packages chromium, chromium-driver)")
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: " + message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        if downloads:
            driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                   {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver
    finally:
        driver.quit()
