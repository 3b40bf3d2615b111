"""The dashboard in a real browser: `streamlit run` in a subprocess, headless Chromium through Selenium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dashboard_helpers import APP, BOLD, MATH, ROOT, XSS, small_runs

from dashboard.pages import SLUGS as PAGES

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = os.environ.get("TDS_SCREENSHOTS")  # a directory to save one screenshot a page in, when set

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    small_runs(runs)
    port = free_port()
    env = {**os.environ, "TDS_ARTIFACTS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.port", str(port)]
    cmd += ["--browser.gatherUsageStats", "false"]
    log = runs.parent / "streamlit.log"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("streamlit did not come up: " + log.read_text(errors="replace")[-2000:])
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
    flags += " --disable-component-update --disable-sync --window-size=1400,2000"
    for flag in flags.split():
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def load_page(driver, url: str, page: str) -> str:
    """Open a page, wait until its script has finished, return the visible text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{url}/{page}" if page != "overview" else url)
    wait = WebDriverWait(driver, 60, poll_frequency=0.25)
    wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"][data-test-script-state="notRunning"] h2')
    )
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid^="stSkeleton"]'))  # charts drawn
    if SCREENSHOTS:
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"{page}.png"))
    return driver.find_element(By.TAG_NAME, "body").text


def test_every_page_renders_without_exception(server, browser):
    from selenium.webdriver.common.by import By

    for page in PAGES:
        text = load_page(browser, server, page)
        errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], .stException')
        assert not errors, f"{page}: {errors[0].text}"
        assert "Traceback" not in text, page


def test_examples_page_shows_token_text_literally(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    load_page(browser, server, "examples")
    # ex-a sorts first (most shifted); pick ex-b, which holds the tricky tokens.
    browser.find_element(By.CSS_SELECTOR, '[data-testid="stSelectbox"] input[aria-label="Example"]').click()
    options = browser.find_elements(By.CSS_SELECTOR, '[role="option"]')
    next(option for option in options if option.text.startswith("ex-b")).click()
    WebDriverWait(browser, 60).until(lambda d: XSS in d.find_element(By.TAG_NAME, "body").text)
    text = browser.find_element(By.TAG_NAME, "body").text
    for token in (XSS, BOLD, MATH):
        assert token in text, token
    assert not browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]'), "a token was read as HTML"
    assert browser.execute_script("return document.querySelectorAll('.katex').length") == 0, "a token was read as math"
