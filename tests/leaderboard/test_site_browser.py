"""The built site in headless Chromium (Selenium): no console errors, header click sorts, screenshot saved.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the ``selenium`` Python package;
skipped with the reason on a developer machine without them, a failure under CI (tests/inputs.py).
Screenshots go to ``<repo>/test-artifacts/``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench.leaderboard.site import build_site

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,900")

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False



@pytest.fixture(scope="module")
def browser():
    from inputs import require

    require(bool(CHROMIUM and CHROMEDRIVER), "headless browser test needs Debian packages 'chromium' and "
            "'chromium-driver' (/usr/bin/chromium, /usr/bin/chromedriver)", ci_only=True)
    require(HAVE_SELENIUM, "headless browser test needs the Python package 'selenium' (pip install selenium)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def column_texts(driver, table, index: int) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.find_elements(By.TAG_NAME, "td")[index].text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]


def test_front_page_loads_and_task_table_sorts(browser, tmp_path, site_records) -> None:
    from selenium.webdriver.common.by import By

    out = tmp_path / "site"
    build_site([site_records(tmp_path / "records")], out, generated="2026-11-23T12:00:00Z")
    browser.get((out / "index.html").as_uri())
    assert browser.title.startswith("Leaderboard")
    tasks = browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
    assert {row.find_element(By.TAG_NAME, "a").text for row in tasks} == {"seg-aug", "lowcontrast"}
    assert severe(browser) == []
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "leaderboard-front-page.png"))

    browser.find_element(By.LINK_TEXT, "seg-aug").click()
    assert browser.title.startswith("Task seg-aug")
    table = browser.find_element(By.CSS_SELECTOR, "table.leaderboard")
    headers = table.find_elements(By.CSS_SELECTOR, "thead th")
    dice = next(i for i, th in enumerate(headers) if th.text.startswith("dice"))
    assert column_texts(browser, table, 1) == ["classic-aug", "real-only"]  # ranked by dice: 0.82 > 0.78
    headers[dice].click()
    assert column_texts(browser, table, 1) == ["real-only", "classic-aug"]
    assert headers[dice].get_attribute("aria-sort") == "ascending"
    headers[dice].click()
    assert column_texts(browser, table, 1) == ["classic-aug", "real-only"]
    assert headers[dice].get_attribute("aria-sort") == "descending"
    headers[1].click()
    assert column_texts(browser, table, 1) == ["classic-aug", "real-only"]  # text sort, ascending
    assert severe(browser) == []
    browser.save_screenshot(str(ARTIFACTS / "leaderboard-task-page.png"))
    assert (ARTIFACTS / "leaderboard-task-page.png").stat().st_size > 10_000

    browser.find_element(By.LINK_TEXT, "Paper tables").click()
    assert browser.title.startswith("Paper tables") and severe(browser) == []


def test_the_seg_aug_page_ranks_entries_with_gain_ci_and_verified_mark_without_horizontal_scroll(browser, tmp_path):
    """The shipped seg-aug records (one stamped as verified) at 1366 x 900: a reader can read a ranking."""
    from selenium.webdriver.common.by import By

    from bench.leaderboard.submit import default_leaderboard_dir

    records = tmp_path / "records"
    records.mkdir()
    for path in default_leaderboard_dir().glob("seg-aug__*"):
        shutil.copy(path, records / path.name)
    first = sorted(records.glob("seg-aug__didgen__*.json"))[0]
    for verified in records.glob(f"seg-aug__didgen__*__{first.stem.rsplit('__', 1)[1]}.json"):  # every seed of its entry
        (records / f"{verified.stem}.verified.yaml").write_text(
            "matched: true\nexact: true\ndate: '2026-12-05'\nenvironment: test\n")
    out = tmp_path / "site"
    build_site([records], out, generated="2026-12-05T00:00:00Z")
    browser.set_window_size(1366, 900)
    browser.get((out / "task-seg-aug.html").as_uri())
    table = browser.find_element(By.CSS_SELECTOR, "table.leaderboard")
    ranks = column_texts(browser, table, 0)
    assert ranks == [str(i) for i in range(1, len(ranks) + 1)] and len(ranks) >= 5
    dice = [float(v.split("±")[0]) for v in column_texts(browser, table, 3)]  # "mean ± std" over seeds
    assert dice == sorted(dice, reverse=True)  # ranked by the task's headline metric
    gains = column_texts(browser, table, 4)
    assert sum("%" in g and "[" in g for g in gains) == len(gains) - 1  # every entry but real-only has a CI
    assert len(browser.find_elements(By.CSS_SELECTOR, "span.verified")) == 1
    assert browser.find_elements(By.CSS_SELECTOR, "span.self-reported")
    widths = browser.execute_script(
        "return {page: document.documentElement.scrollWidth, window: window.innerWidth,"
        " tables: Array.from(document.querySelectorAll('table.leaderboard')).map("
        "t => [t.scrollWidth, t.parentElement.clientWidth])}")
    assert widths["page"] <= widths["window"], widths
    assert all(table_w <= box_w for table_w, box_w in widths["tables"]), widths
    assert severe(browser) == []
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "leaderboard-seg-aug-1366x900.png"))
