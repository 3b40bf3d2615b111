"""The dashboard in a real browser: `streamlit run` in a subprocess, headless Chromium through Selenium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_helpers import NEEDS_CHROMIUM, chromium, streamlit_server
from dashboard_helpers import BOLD, MATH, XSS, small_runs

from dashboard.pages import SLUGS as PAGES

SCREENSHOTS = os.environ.get("TDS_SCREENSHOTS")  # a directory to save one screenshot a page in, when set

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    small_runs(runs)
    with streamlit_server({**os.environ, "TDS_ARTIFACTS_DIR": str(runs)}, runs.parent / "streamlit.log", 30) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium"), 1400, 2000) as driver:
        yield driver


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
