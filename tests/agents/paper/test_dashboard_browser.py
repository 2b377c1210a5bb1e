"""The dashboard of a running paper session in a real headless Chromium (Debian's chromium + chromium-driver).

One real session (`scripts/paper.py` in a subprocess, ``paper.dashboard=true``, a slow replay) and one
browser for the module: the page loads nothing from outside 127.0.0.1, the equity chart has one point per
settled step, the panel follows new bars, and the kill button is refused without the token and writes
``KILL`` with it; then Ctrl-C stops the session, which writes its report, and the token is in no file
of the paper folder but the log. Skipped, with the reason, only where no browser is installed (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agents.paper.killswitch import read_kill
from agents.paper.ledger import LEDGER_FILE, read_steps
from tests.agents.paper.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - selenium is in the test extra
    webdriver = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(webdriver is None, reason="selenium is not installed: pip install -e '.[test]'"),
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no headless Chromium: apt-get install chromium chromium-driver (.ci/run does)"),
]
#: bars of the slow replay: window_size - 1 of history, then about 30 settled steps
N_BARS = 64
SPEED = 8  # bars per second
LOG_LINE = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/) \| kill-switch token: (\S+)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--proxy-server=http://127.0.0.1:9"):
        o.add_argument(arg)  # any request not to the loopback (bypassed by default) goes to a dead proxy
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def session(tiny_run: Path, replay_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running slow replay with the dashboard on; yields its folder, URL, token and process."""
    root = tmp_path_factory.mktemp("dash_session")
    bars = root / "bars.parquet"
    pd.read_parquet(replay_file).iloc[:N_BARS].to_parquet(bars, index=False)
    paper_dir = root / "paper"
    env = {k: v for k, v in os.environ.items() if k != "QUANTGYM_DASHBOARD_TOKEN"}
    out = (root / "stdout.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "paper.py"), f"run_dir={tiny_run}", f"feed.path={bars}",
         f"paper.dir={paper_dir}", "paper.dashboard=true", "paper.dashboard_port=0", f"feed.speed={SPEED}"],
        cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        match = None
        while match is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            log = paper_dir / "paper.log"
            match = LOG_LINE.search(log.read_text()) if log.exists() else None
        assert match is not None, (root / "stdout.txt").read_text()[-3000:]
        yield {"dir": paper_dir, "url": match.group(1), "token": match.group(2), "proc": proc, "stdout": root / "stdout.txt"}
    finally:
        if proc.poll() is None:
            proc.terminate()  # only when a test failed before the SIGINT test
        proc.wait(timeout=60)
        out.close()


def _steps(paper_dir: Path) -> int:
    return len(read_steps(paper_dir)) if (paper_dir / LEDGER_FILE).exists() else 0


def _chart_points(browser: Any) -> tuple[int, int, int]:
    """(vertices of the equity polyline, its data-steps, the panel's data-steps)."""
    return browser.execute_script(
        "const s = document.getElementById('equity-chart');"
        "const pts = s.querySelector('polyline').getAttribute('points').trim();"
        "return [pts ? pts.split(/\\s+/).length : 0, Number(s.dataset.steps),"
        " Number(document.getElementById('panel-body').dataset.steps)];")


def test_dashboard_in_a_headless_browser(browser: Any, session: dict[str, Any]) -> None:
    paper_dir, url = session["dir"], session["url"]
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    wait.until(lambda _: _steps(paper_dir) >= 2)
    before = _steps(paper_dir)
    browser.get(url)
    after = _steps(paper_dir)
    points, chart_steps, shown = _chart_points(browser)
    assert points == chart_steps == shown and before <= points <= after  # one point per settled step

    # nothing but the dashboard's own origin was requested, and no element points elsewhere
    origin = url.rstrip("/")
    wait.until(lambda b: b.execute_script("return performance.getEntriesByType('resource').length") >= 2)
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any(r.endswith("/static/dashboard.js") for r in resources)
    assert all(r.startswith(origin + "/") for r in resources), resources
    linked = browser.execute_script(
        "return [...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href)")
    assert all(link.startswith(origin + "/") for link in linked), linked

    # the panel follows the ledger: the chart grows after a new bar settles
    wait.until(lambda b: _chart_points(b)[0] > points)
    points2, chart_steps2, shown2 = _chart_points(browser)
    assert points2 == chart_steps2 == shown2 <= _steps(paper_dir)

    # the kill button: refused without the right token, the KILL file with it
    kill = paper_dir / "KILL"
    result = browser.find_element(By.ID, "kill-result")
    browser.find_element(By.ID, "kill-reason").send_keys("browser test")
    browser.find_element(By.ID, "kill-token").send_keys("not-the-token")
    browser.find_element(By.ID, "kill-button").click()
    wait.until(lambda _: result.get_attribute("data-status") == "403")
    assert not kill.exists()
    browser.find_element(By.ID, "kill-token").send_keys(session["token"])
    browser.find_element(By.ID, "kill-button").click()
    wait.until(lambda _: result.get_attribute("data-status") == "200")
    assert read_kill(paper_dir) == "browser test"  # the risk controls consume it (the session may stop now)


def test_a_stopped_session_writes_its_report_and_the_token_is_only_in_the_log(session: dict[str, Any]) -> None:
    """Ctrl-C (SIGINT) mid-replay: the session stops early and still writes the evaluation report."""
    proc, paper_dir = session["proc"], session["dir"]
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    steps = _steps(paper_dir)
    assert 0 < steps < N_BARS // 2, "the session should have been stopped mid-replay"
    log = (paper_dir / "paper.log").read_text()
    lines = [x for x in log.splitlines() if "| decision latency " in x]
    assert len(lines) >= steps and all("| feed lag 0.0 s" in x for x in lines[-3:])
    report = paper_dir / "report" / "report.md"
    assert report.exists(), session["stdout"].read_text()[-3000:]  # the stop report
    assert f"over {steps} steps" in report.read_text()
    assert (paper_dir / "tb").is_dir()
    token = session["token"].encode()
    holders = sorted(str(p.relative_to(paper_dir)) for p in paper_dir.rglob("*") if p.is_file() and token in p.read_bytes())
    assert holders == ["paper.log"]
