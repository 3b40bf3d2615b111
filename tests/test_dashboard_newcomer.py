"""What a newcomer sees: the dashboard over the shipped runs, every page of the app's page list with the default
selection, in headless Chromium 1500 px wide. Set TDS_SCREENSHOTS to a folder to keep one screenshot a page."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from browser_helpers import NEEDS_CHROMIUM, chromium, streamlit_server
from dashboard_helpers import ROOT

from dashboard import featured, names, pages

SHIPPED = ROOT / "artifacts"
WIDTH = 1500
SCREENSHOTS = os.environ.get("TDS_SCREENSHOTS")

pytestmark = NEEDS_CHROMIUM

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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {key: value for key, value in os.environ.items() if key != "TDS_ARTIFACTS_DIR"}  # the shipped runs
    with streamlit_server(env, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium"), WIDTH, 1600) as driver:
        yield driver


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
