"""The dashboard in a real headless browser (Debian's chromium + chromium-driver, driven
by selenium): the page loads with no request leaving the server, shows a function that
was just given jobs, looks up a job, and its Retry button brings a dead letter back."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gearshift import Client

from .conftest import HttpServer, call, working

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them)")


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def _fail(job: object) -> bytes:
    raise RuntimeError("disk full")


def test_dashboard_shows_jobs_and_retries_a_dead_letter(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    with HttpServer(extra_args=("--retry", "dash_fails=1")) as proc, \
            Client([proc.address], timeout=10) as client:
        handles = [client.submit_background("dash_queue", b"%d" % i) for i in range(3)]
        with working(proc.address, {"dash_fails": _fail}):
            dead_handle = client.submit_background("dash_fails", b"payload").decode()
            assert wait_for(lambda: call(proc.http_port, "GET", "/api/dead").json())

        browser.get(f"http://127.0.0.1:{proc.http_port}/")
        assert browser.title == "gearshift"

        def function_row() -> list[str] | None:
            for row in browser.find_elements(By.CSS_SELECTOR, "#functions tbody tr"):
                cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
                if cells and cells[0] == "dash_queue":
                    return cells
            return None

        row = wait_for(function_row)
        assert row is not None, browser.page_source[:2000]
        assert row[1:4] == ["3", "0", "0"]  # queued, running, workers

        browser.find_element(By.ID, "handle").send_keys(handles[0].decode())
        browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
        assert wait_for(lambda: '"state": "queued"' in browser.find_element(By.ID, "job").text)

        retry = wait_for(lambda: browser.find_elements(
            By.CSS_SELECTOR, f'#dead button[data-action="retry"][data-handle="{dead_handle}"]'))
        if os.environ.get("GEARSHIFT_DASHBOARD_SCREENSHOT"):
            browser.save_screenshot(os.environ["GEARSHIFT_DASHBOARD_SCREENSHOT"])
        retry[0].click()
        # Retried: the dead letter is gone and the job is queued again, with no worker.
        assert wait_for(lambda: call(proc.http_port, "GET", "/api/dead").json() == [])
        functions = {f["function"]: f for f in call(proc.http_port, "GET",
                                                    "/api/functions").json()}
        assert functions["dash_fails"]["queued"]["normal"] == 1
        assert wait_for(lambda: "No dead letters." in
                        browser.find_element(By.ID, "dead").text)
        # Nothing was fetched from anywhere but the server (no CDN).
        hosts = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).host)")
        assert set(hosts) <= {f"127.0.0.1:{proc.http_port}"}
        logs = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert logs == []


def test_dashboard_asks_for_a_token_when_the_server_has_an_acl(
        browser: Any, tmp_path: Any) -> None:
    from selenium.webdriver.common.by import By

    token = "dashboard-token-0123456789"
    acl = tmp_path / "acl.toml"
    acl.write_text(f'[identity.ops]\ntokens = ["{token}"]\nadmin = "read"\n'
                   '[anonymous]\nsubmit = ["*"]\n')
    with HttpServer(extra_args=("--acl", str(acl))) as proc, \
            Client([proc.address], timeout=10) as client:
        client.submit_background("dash_acl", b"x")
        browser.get(f"http://127.0.0.1:{proc.http_port}/")
        login = browser.find_element(By.ID, "login")
        assert wait_for(login.is_displayed), "no token form after the API's 401"
        assert "dash_acl" not in browser.find_element(By.ID, "functions").text
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        assert wait_for(lambda: "dash_acl" in browser.find_element(By.ID, "functions").text)
        assert not login.is_displayed()
        # Kept for the tab: a reload needs no second login.
        browser.refresh()
        assert wait_for(lambda: "dash_acl" in browser.find_element(By.ID, "functions").text)
        assert not browser.find_element(By.ID, "login").is_displayed()
