"""End-to-end: the real app in headless Chromium (Debian's package; no browser download).

Starts ``streamlit run app.py`` on a free local port, loads the first sample case,
presses Predict, waits for the probability and saves a screenshot
(``$PFS_E2E_SCREENSHOT`` or the test's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed "
                                                  "(apt-get install chromium; .ci/run installs it)")]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_health(url: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {deadline_s} s")


@pytest.fixture
def app_url():
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(url, 60)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_sample_case_prediction_in_a_real_browser(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shot = Path(os.environ.get("PFS_E2E_SCREENSHOT", tmp_path / "case_explorer.png"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(app_url)
        expect(page.get_by_text("Case Explorer").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("simulated data").first).to_be_visible()
        page.get_by_role("button", name="Predict").click()
        expect(page.get_by_text("P(PFS ≤ 12 months)").first).to_be_visible(timeout=90_000)
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
