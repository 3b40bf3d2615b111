"""What a newcomer sees: the dashboard over the shipped runs, every page of the app's page list with the default
selection, in headless Chromium 1500 px wide. Set TDS_SCREENSHOTS to a folder to keep one screenshot a page."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dashboard_helpers import APP, ROOT

from dashboard import featured, names, pages

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHIPPED = ROOT / "artifacts"
WIDTH = 1500
SCREENSHOTS = os.environ.get("TDS_SCREENSHOTS")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)

# Every Plotly chart on the page, measured: its height and width, the plot area's size, its margins (where the
# tick labels, axis titles and a legend below go), the percent axes' ranges and the y labels of every bar trace.
MEASURE = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => {
  const layout = el._fullLayout, size = layout._size;
  const axes = Object.keys(layout).filter(k => /^[xy]axis\\d*$/.test(k)).map(k => layout[k]);
  return {
    title: String((layout.title && layout.title.text) || el.layout && el.layout.title && el.layout.title.text || ''),
    height: layout.height, width: layout.width, plot_h: size.h, plot_w: size.w, b: size.b, l: size.l,
    percent_ranges: axes.filter(a => String(a.tickformat || '').includes('%')).map(a => a.range.map(Number)),
    bar_labels: el._fullData.filter(d => d.type === 'bar').map(d => Array.from(d.orientation === 'h' ? d.y : d.x)),
  };
});
"""


def page_list() -> list[str]:
    """The url paths of the app's pages, from its one page list (the first opens at /)."""
    return [page.slug for page in pages.PAGES]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "TDS_ARTIFACTS_DIR"}  # the shipped runs
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.port", str(port)]
    cmd += ["--browser.gatherUsageStats", "false"]
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
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
    flags += f" --disable-component-update --disable-sync --window-size={WIDTH},1600"
    for flag in flags.split():
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def visit(driver, url: str, page: str, first: bool) -> str:
    """Open a page in a fresh session (the default selection), wait for its script and charts, return its text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.set_window_size(WIDTH, 1600)
    driver.delete_all_cookies()
    driver.get(url if first else f"{url}/{page}")
    wait = WebDriverWait(driver, 240, poll_frequency=0.25)
    ready = '[data-testid="stApp"][data-test-script-state="notRunning"] h2'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid^="stSkeleton"]'))
    time.sleep(1)  # Plotly lays a chart out after it mounts
    if SCREENSHOTS:
        height = driver.execute_script(
            "const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 1600;"
        )
        driver.set_window_size(WIDTH, min(int(height) + 120, 12000))
        time.sleep(1)
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"{page}.png"))
    return driver.find_element(By.TAG_NAME, "body").text


def test_every_page_as_a_newcomer_sees_it(server, browser):
    from selenium.webdriver.common.by import By

    pages = page_list()
    listed = featured.declared(SHIPPED)
    assert listed, f"{SHIPPED / featured.FILE} lists no runs"
    expected = names.short_names([(name, None) for name in listed])
    problems = []
    for i, page in enumerate(pages):
        text = visit(browser, server, page, first=i == 0)
        errors = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], .stException')
        if errors:
            problems.append(f"{page}: {errors[0].text[:200]}")
        if found := re.search(r"\bnan\b", text, re.IGNORECASE):
            problems.append(f"{page}: shows nan: …{text[max(0, found.start() - 60) :][:120]}…")
        charts = browser.execute_script(MEASURE)
        for chart in charts:
            where = f"{page}: chart {chart['title']!r}"
            if chart["b"] > chart["height"] / 3:
                problems.append(f"{where}: labels below the plot take {chart['b']} of {chart['height']} px")
            if chart["l"] > chart["width"] / 3:
                problems.append(f"{where}: labels beside the plot take {chart['l']} of {chart['width']} px")
            for low, _ in chart["percent_ranges"]:
                if low < -1e-9:
                    problems.append(f"{where}: a share axis starts at {low:.0%}")
            for labels in chart["bar_labels"]:
                if any(not str(label).strip() for label in labels):
                    problems.append(f"{where}: a bar without a name")
        if i == 0:
            assert "Opened on the runs featured.txt lists" in text, "the sidebar does not say it opened on them"
            shares = next((c for c in charts if "Shift categories" in c["title"]), None)
            assert shares, [c["title"] for c in charts]
            assert shares["bar_labels"][0] == expected, shares["bar_labels"][0]
            assert re.search(r"In the \d+ runs shown, [\d.]+% to [\d.]+% of the answer positions", text), text[:500]
    assert not problems, "\n".join(problems)


def test_a_click_on_a_token_opens_it(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    visit(browser, server, "examples", first=False)
    assert "Token at t = " in browser.find_element(By.TAG_NAME, "body").text
    token_map = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")[0]
    boxes = token_map.find_elements(By.CSS_SELECTOR, "g.trace.bars g.point path")
    assert len(boxes) > 5
    ActionChains(browser).move_to_element(boxes[5]).click().perform()
    WebDriverWait(browser, 60).until(lambda d: "Token at t = 5:" in d.find_element(By.TAG_NAME, "body").text)
