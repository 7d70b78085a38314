"""Time the dashboard as a user sees it, in headless Chromium (Debian's package).

    python benchmarks/bench_app.py [--repeats 3]

1. cold start: from launching ``streamlit run app.py`` to the Case Explorer's Predict
   button being visible in the browser (target: at most 15 s on 2 CPU cores);
2. a sample case: from clicking Predict to the probability and both charts of the
   first result tab (SHAP bars, modality contributions) being visible (target: at most
   8 s), repeated on the same warm server, each time in a fresh browser session; also
   until the run has finished and every tab's chart is on the page (3D view, slices,
   cohort: ``..._all_tabs_s``).

The machine may be shared, so the JSON also gives the load average before and after
and the CPU seconds the server process used in each phase (all its threads).
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
#: Plotly charts of a sample case's result: SHAP, modalities, 3D, slice, MIP, risk histogram, Kaplan-Meier.
ALL_CHARTS = 7
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc), e.g. the browser's processes below this script."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _browser_cpu_s(server_pid: int) -> float:
    """CPU seconds of this script's descendants except the server (the browser and playwright's driver)."""
    return sum(_cpu_s(p) for p in _descendants(os.getpid()) if p != server_pid)


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
    load_before = os.getloadavg()
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
            listening = time.perf_counter() - started
            expect(page.get_by_role("button", name="Predict")).to_be_visible(timeout=60_000)
            cold = time.perf_counter() - started
            cold_cpu = _cpu_s(server.pid)
            clicks, click_cpu, browser_cpu, all_tabs = [], [], [], []
            for i in range(args.repeats):
                if i:  # a fresh browser session each time, on the warm server
                    page.reload()
                    expect(page.get_by_role("button", name="Predict")).to_be_visible(timeout=60_000)
                t0, c0, b0 = time.perf_counter(), _cpu_s(server.pid), _browser_cpu_s(server.pid)
                page.get_by_role("button", name="Predict").click()
                expect(page.get_by_text("P(PFS ≤ 12 months)").first).to_be_visible(timeout=120_000)
                for k in range(2):  # the Why tab: SHAP bars and modality contributions
                    expect(page.locator(".js-plotly-plot").nth(k)).to_be_visible(timeout=120_000)
                clicks.append(time.perf_counter() - t0)
                click_cpu.append(_cpu_s(server.pid) - c0)
                browser_cpu.append(_browser_cpu_s(server.pid) - b0)
                expect(page.locator(".js-plotly-plot")).to_have_count(ALL_CHARTS, timeout=120_000)
                expect(page.locator("[data-testid^='stStatusWidgetRunning']")).to_have_count(0, timeout=120_000)
                all_tabs.append(time.perf_counter() - t0)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            browser.close()
    print(json.dumps({"cold_start_s": round(cold, 2), "server_listening_s": round(listening, 2),
                      "cold_start_server_cpu_s": round(cold_cpu, 2),
                      "predict_click_to_results_s": [round(c, 2) for c in clicks],
                      "predict_click_to_all_tabs_s": [round(c, 2) for c in all_tabs],
                      "predict_server_cpu_s": [round(c, 2) for c in click_cpu],
                      "predict_browser_cpu_s": [round(c, 2) for c in browser_cpu],
                      "median_click_s": round(statistics.median(clicks), 2),
                      "load_average_1_5_15_before": [round(v, 2) for v in load_before],
                      "load_average_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}))


if __name__ == "__main__":
    main()
