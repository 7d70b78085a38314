"""End-to-end: the real app in headless Chromium (Debian's package; no browser download).

The app runs from a copy of what a fresh clone holds (the files git tracks, plus new
files that are not ignored; no ``data/``, ``runs/`` or ``cache/``), so every page must
show its content from the committed files alone. ``streamlit run app.py`` starts once
on a free local port; one test visits every page registered in ``app.py`` and checks
its content and charts (no exception, no error box), the other loads the first sample
case, presses Predict, waits for the probability and saves a screenshot
(``$PFS_E2E_SCREENSHOT`` or the test's tmp folder).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed "
                                                  "(apt-get install chromium; .ci/run installs it)")]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Folders a fresh clone does not have (git-ignored); the copy must not hold them.
NOT_COMMITTED = ("data", "runs", "cache")
PAGE_TIMEOUT_MS = 90_000


def registered_pages() -> list[tuple[str, str]]:
    """(file, title) of every page in app.py's PAGES, read without running the app."""
    tree = ast.parse((ROOT / "app.py").read_text())
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or next(iter(getattr(node, "targets", [])), None)
        if isinstance(target, ast.Name) and target.id == "PAGES" and getattr(node, "value", None) is not None:
            return [(file, title) for file, title, _icon in ast.literal_eval(node.value)]
    raise AssertionError("app.py defines no PAGES")


def _committed_files(root: Path) -> list[str] | None:
    """Files git tracks or would add (not ignored) under ``root``; None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [name for name in out.decode().split("\0") if name and (root / name).is_file()]


def _copy_committed(root: Path, dest: Path) -> Path:
    files = _committed_files(root)
    if files is None:
        pytest.skip("not a git checkout: cannot tell the committed files")
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    return dest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_health(url: str, deadline_s: float, proc: subprocess.Popen[Any]) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {deadline_s} s")


@pytest.fixture(scope="module")
def fresh_tree(tmp_path_factory) -> Path:
    """A copy of the committed files: what a fresh clone holds (no data/, runs/, cache/, earlier runs)."""
    tree = _copy_committed(ROOT, tmp_path_factory.mktemp("fresh") / "clone")
    assert (tree / "app.py").is_file() and not any((tree / name).exists() for name in NOT_COMMITTED)
    return tree


@pytest.fixture(scope="module")
def app_server(fresh_tree, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(url, log file) of ``streamlit run app.py`` started in the fresh tree, with its own pfs_core/pfs_ui."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PFS_")}  # shipped models/results, no overrides
    env["PYTHONPATH"] = os.pathsep.join([str(fresh_tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    where = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('pfs_core').origin)"],
                           cwd=fresh_tree, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(fresh_tree), f"pfs_core comes from {where}, not from the fresh tree"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=fresh_tree, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(url, 60, proc)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1800})
        finally:
            browser.close()


def _settle(page: Any, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    """Wait until the script run is over: no running indicator, no stale (greyed) element left."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')"
        " && !document.querySelector('[data-testid=\"stElementContainer\"][data-stale=\"true\"]')",
        timeout=timeout_ms)


def _assert_no_error(page: Any, where: str, log: Path) -> None:
    errors = [page.locator(sel).all_inner_texts() for sel in ('[data-testid="stException"]',
                                                               '[data-testid="stAlertContentError"]')]
    assert not any(errors), f"{where}: {errors}\n--- streamlit log:\n{log.read_text()[-3000:]}"


def _expect_charts(page: Any, at_least: int) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    # a drawn plotly chart holds its SVG plot area
    expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible()
    assert page.locator(".js-plotly-plot").count() >= at_least


def _check_case_explorer(page: Any) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("button", name="Predict")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(page.get_by_text("simulated", exact=False).first).to_be_visible()


def _check_model_comparison(page: Any, log: Path) -> None:
    from playwright.sync_api import expect

    benchmark = page.get_by_test_id("stSelectbox").filter(has_text="Benchmark")
    benchmark.click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    assert {"shipped: sim116", "shipped: sim116_petonly", "shipped: sim116_ctonly"} <= set(options), options
    for option in options:
        if option not in benchmark.inner_text():
            benchmark.click()
            page.get_by_role("option", name=option, exact=True).click()
        name = option.removeprefix("shipped: ")
        cohort_csv = json.loads((ROOT / "results" / name / "results.json").read_text())["cohort_csv"]
        expect(page.get_by_text(cohort_csv).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        _settle(page)
        _assert_no_error(page, f"Model comparison, {option}", log)
        expect(page.get_by_test_id("stDataFrame").first).to_be_visible()  # metrics beside the published ones
        _expect_charts(page, at_least=5)  # ROC, PR, calibration, decision curve, Kaplan–Meier
        expect(page.get_by_text("Log-rank p").first).to_be_attached()


def _check_text(text: str) -> Callable[[Any], None]:
    def check(page: Any) -> None:
        from playwright.sync_api import expect

        expect(page.get_by_text(text, exact=False).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)

    return check


#: What each page shows without any input, from the committed files alone (pages not named here:
#: their title, no exception and no error box).
PAGE_CONTENT: dict[str, Callable[..., None]] = {
    "pages/case_explorer.py": _check_case_explorer,
    "pages/your_cohort.py": _check_text("No runs yet"),
    "pages/batch_scoring.py": _check_text("Score cohort"),
    "pages/model_card.py": _check_text("Hash check passed"),
}


def test_every_page_renders_from_the_committed_files(app_server, browser_page):
    from playwright.sync_api import expect

    url, log = app_server
    page = browser_page
    pages = registered_pages()
    assert len(pages) >= 5 and "pages/model_comparison.py" in dict(pages)
    page.goto(url)
    expect(page.get_by_role("heading", name=pages[0][1]).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    for file, title in pages:
        page.get_by_test_id("stSidebarNavLink").filter(has_text=title).first.click()
        expect(page.get_by_role("heading", name=title).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        _settle(page)
        _assert_no_error(page, title, log)
        if file == "pages/model_comparison.py":
            _check_model_comparison(page, log)
        elif file in PAGE_CONTENT:
            PAGE_CONTENT[file](page)
        expect(page.get_by_text("Not a medical device", exact=False).first).to_be_visible()  # the disclaimer
        _settle(page)
        _assert_no_error(page, title, log)


def test_sample_case_prediction_in_a_real_browser(app_server, browser_page, tmp_path):
    from playwright.sync_api import expect

    url, log = app_server
    page = browser_page
    shot = Path(os.environ.get("PFS_E2E_SCREENSHOT", tmp_path / "case_explorer.png"))
    page.goto(url)
    expect(page.get_by_text("Case Explorer").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("simulated data").first).to_be_visible()
    page.get_by_role("button", name="Predict").click()
    expect(page.get_by_text("P(PFS ≤ 12 months)").first).to_be_visible(timeout=90_000)
    _expect_charts(page, at_least=1)
    _settle(page)
    _assert_no_error(page, "Case Explorer after Predict", log)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def _probability_shown(page: Any) -> bool:
    """True when a probability metric is on screen (as the current result)."""
    return page.get_by_test_id("stMetricLabel").filter(has_text="P(PFS ≤ 12 months)").count() > 0


def test_changing_the_case_after_a_prediction_leaves_no_stale_result(app_server, browser_page):
    """Issue 24, item 8: another sample case picked without Predict shows no probability of the previous one."""
    from playwright.sync_api import expect

    url, log = app_server
    page = browser_page
    page.goto(url)
    page.get_by_role("button", name="Predict").click()
    expect(page.get_by_text("P(PFS ≤ 12 months)").first).to_be_visible(timeout=90_000)
    _settle(page)
    header = page.get_by_role("heading", name=re.compile(r"Result: sample case \S+ \(simulated\)"))
    expect(header).to_be_visible()  # the result names its case
    first = header.inner_text().split("sample case ")[1].split(" ")[0]
    page.get_by_test_id("stSelectbox").filter(has_text="Sample case (simulated patient)").click()
    page.get_by_role("option").filter(has_not_text=first).first.click()
    expect(page.get_by_text("Inputs changed since this prediction").first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    assert not _probability_shown(page), "the previous case's probability is still on screen"
    assert page.get_by_text("Download tumour-board report").count() == 0
    assert page.locator(".js-plotly-plot").count() == 0
    _assert_no_error(page, "Case Explorer after changing the case", log)


def test_a_png_uploaded_as_the_pet_is_named_and_not_predicted(app_server, browser_page, tmp_path):
    """Issue 24, item 8: the browser does not drop the file with a red icon; the page names it and refuses."""
    from playwright.sync_api import expect

    url, _log = app_server
    page = browser_page
    png = tmp_path / "scan.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    page.goto(url)
    expect(page.get_by_role("button", name="Predict")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    page.get_by_text("Upload PET/CT").click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="PET (SUVbw")
    uploader.locator('input[type="file"]').set_input_files(str(png))
    rejection = page.get_by_test_id("stAlertContentError").filter(has_text="PET: scan.png is not")
    expect(rejection.first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    assert "PNG image" in rejection.first.inner_text()
    _settle(page)
    page.get_by_role("button", name="Predict").click()
    expect(page.get_by_text("Not predicted").first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    _settle(page)
    assert not _probability_shown(page), "answered without the rejected PET"
