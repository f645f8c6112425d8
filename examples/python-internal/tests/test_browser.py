"""The page in a real headless Chromium (Debian's chromium and chromedriver, driven by
Selenium): it loads, walks the six steps one click at a time, shows each result and the check
that the revoked family is inactive, resets; it shows a step out of order, the sidecar down
(502) and a wrong secret (401) the way a user can act on. Screenshots go to
target/python-internal/ (a CI artifact).

Without chromium and chromedriver these tests are skipped with a notice, unless
REQUIRE_BROWSER=1 (as .ci/run sets), when they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, RunningApp, app_env, closed_port_url

SHOTS = REPO / "target" / "python-internal"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    reason = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(reason + ", and REQUIRE_BROWSER=1", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TIMEOUT = 20


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
    ]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def app(stack: dict[str, str]) -> Iterator[RunningApp]:
    running = RunningApp(app_env(stack))
    yield running
    running.stop()


def open_page(browser: webdriver.Chrome, url: str) -> None:
    browser.delete_all_cookies()
    browser.get(url)
    WebDriverWait(browser, TIMEOUT).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true"
    )


def card(browser: webdriver.Chrome, step: str):
    return browser.find_element(By.ID, f"step-{step}")


def click_and_wait(browser: webdriver.Chrome, step: str) -> str:
    """Clicks the step's button and waits until its card shows a result; returns its class."""
    card(browser, step).find_element(By.CSS_SELECTOR, "button.run").click()
    WebDriverWait(browser, TIMEOUT).until(
        lambda d: any(c in card(d, step).get_attribute("class").split() for c in ("ok", "failed", "warn"))
    )
    return card(browser, step).get_attribute("class")


def screenshot(browser: webdriver.Chrome, name: str) -> Path:
    """The whole page, beyond the window (Chrome DevTools' captureBeyondViewport)."""
    import base64

    SHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1},
        },
    )
    path = SHOTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def test_the_page_walks_the_six_steps_shows_the_check_and_resets(
    browser: webdriver.Chrome, app: RunningApp, stack: dict[str, str]
) -> None:
    open_page(browser, app.url)
    assert browser.find_element(By.ID, "setting-sidecar").text == stack["SIDECAR_URL"]
    assert browser.find_element(By.ID, "setting-trust").text.startswith("pinned")
    assert "next" in card(browser, "1").get_attribute("class")

    # Out of order first: the card says what comes first, nothing breaks.
    assert "warn" in click_and_wait(browser, "3")
    assert "needs step 1" in card(browser, "3").text

    for step in ["1", "2", "3", "4", "5", "6"]:
        classes = click_and_wait(browser, step)
        assert "ok" in classes.split(), card(browser, step).text
        assert "HTTP 200" in card(browser, step).text
    assert '"signature": "verified"' in card(browser, "1").text
    assert "<secret hidden>" in card(browser, "2").text
    assert '"active": true' in card(browser, "3").text
    assert '"subject": "' + stack["SUBJECT"] + '"' in card(browser, "4").text
    assert '"revoked": true' in card(browser, "6").text
    # Step 6 runs the check by itself.
    WebDriverWait(browser, TIMEOUT).until(lambda d: "ok" in card(d, "check").get_attribute("class").split())
    check = card(browser, "check").text
    assert "The revoked family is inactive" in check
    answer = card(browser, "check").find_element(By.CSS_SELECTOR, "pre.answer").text
    assert answer.count('"active": false') == 2, answer
    assert "revoked family is inactive" in browser.find_element(By.ID, "banner").text
    page = browser.find_element(By.TAG_NAME, "body").text
    assert stack["CLIENT_SECRET"] not in page
    path = screenshot(browser, "screenshot.png")
    assert path.stat().st_size > 10_000

    browser.find_element(By.ID, "reset").click()
    WebDriverWait(browser, TIMEOUT).until(lambda d: "next" in card(d, "1").get_attribute("class").split())
    for step in ["1", "2", "3", "4", "5", "6", "check"]:
        assert card(browser, step).find_element(By.CLASS_NAME, "result").text == ""
    assert "starts again at step 1" in browser.find_element(By.ID, "banner").text
    # And the journey goes again after the reset, with the "Run next step" button this time.
    browser.find_element(By.ID, "run-next").click()
    WebDriverWait(browser, TIMEOUT).until(lambda d: "ok" in card(d, "1").get_attribute("class").split())


def test_the_sidecar_down_shows_a_clear_502(browser: webdriver.Chrome, stack: dict[str, str]) -> None:
    url = closed_port_url()
    running = RunningApp(app_env(stack, SIDECAR_URL=url))
    try:
        open_page(browser, running.url)
        assert "failed" in click_and_wait(browser, "1").split()
        text = card(browser, "1").text
        assert "HTTP 502" in text and "sidecar_unreachable" in text
        assert f"cannot reach the sidecar at {url}" in text
        assert "the sidecar is not running" in text
        screenshot(browser, "sidecar-down.png")
    finally:
        running.stop()


def test_a_wrong_secret_shows_401(browser: webdriver.Chrome, stack: dict[str, str]) -> None:
    running = RunningApp(app_env(stack, CLIENT_SECRET="not-the-secret"))
    try:
        open_page(browser, running.url)
        assert "ok" in click_and_wait(browser, "1").split()
        assert "failed" in click_and_wait(browser, "2").split()
        text = card(browser, "2").text
        assert "HTTP 401" in text and "invalid_client" in text
        assert "check CLIENT_ID and CLIENT_SECRET" in text
        assert "not-the-secret" not in browser.find_element(By.TAG_NAME, "body").text
        screenshot(browser, "wrong-secret.png")
    finally:
        running.stop()
