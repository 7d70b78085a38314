"""Time the dashboard as a user sees it, in headless Chromium (Debian's package).

    python benchmarks/bench_app.py [--repeats 3]

1. cold start: from launching ``streamlit run app.py`` to the Case Explorer's Predict
   button being visible in the browser (target: at most 15 s on 2 CPU cores);
2. a sample case: from clicking Predict to the probability and the charts being
   visible (target: at most 8 s), repeated on the same warm server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: Chromium not found; install Debian's chromium package")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                                   str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                                   "--browser.gatherUsageStats", "false"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    page.goto(url, timeout=2000)
                    break
                except Exception:  # server not listening yet
                    time.sleep(0.2)
            expect(page.get_by_role("button", name="Predict")).to_be_visible(timeout=60_000)
            cold = time.perf_counter() - started
            clicks = []
            for i in range(args.repeats):
                if i:  # a fresh browser session each time, on the warm server
                    page.reload()
                    expect(page.get_by_role("button", name="Predict")).to_be_visible(timeout=60_000)
                t0 = time.perf_counter()
                page.get_by_role("button", name="Predict").click()
                expect(page.get_by_text("P(PFS ≤ 12 months)").first).to_be_visible(timeout=120_000)
                expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=120_000)
                clicks.append(time.perf_counter() - t0)
        finally:
            server.terminate()
            server.wait(timeout=20)
            browser.close()
    print(json.dumps({"cold_start_s": round(cold, 2), "predict_click_to_results_s": [round(c, 2) for c in clicks],
                      "median_click_s": round(statistics.median(clicks), 2),
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}, indent=1))


if __name__ == "__main__":
    main()
