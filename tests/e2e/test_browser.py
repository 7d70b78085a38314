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

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_browser import (
    CHROMIUM,
    PAGE_TIMEOUT_MS,
    ROOT,
    assert_no_error,
    expect_charts,
    registered_pages,
    settle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed "
                                                  "(apt-get install chromium; .ci/run installs it)")]


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
        settle(page)
        assert_no_error(page, f"Model comparison, {option}", log)
        expect(page.get_by_test_id("stDataFrame").first).to_be_visible()  # metrics beside the published ones
        expect_charts(page, at_least=5)  # ROC, PR, calibration, decision curve, Kaplan–Meier
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
        settle(page)
        assert_no_error(page, title, log)
        if file == "pages/model_comparison.py":
            _check_model_comparison(page, log)
        elif file in PAGE_CONTENT:
            PAGE_CONTENT[file](page)
        expect(page.get_by_text("Not a medical device", exact=False).first).to_be_visible()  # the disclaimer
        settle(page)
        assert_no_error(page, title, log)


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
    expect_charts(page, at_least=1)
    settle(page)
    assert_no_error(page, "Case Explorer after Predict", log)
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
    settle(page)
    header = page.get_by_role("heading", name=re.compile(r"Result: sample case \S+ \(simulated\)"))
    expect(header).to_be_visible()  # the result names its case
    expect(page.get_by_role("button", name="Report (PDF)")).to_be_visible()  # ... and offers its report
    first = header.inner_text().split("sample case ")[1].split(" ")[0]
    page.get_by_test_id("stSelectbox").filter(has_text="Sample case (simulated patient)").click()
    page.get_by_role("option").filter(has_not_text=first).first.click()
    expect(page.get_by_text("Inputs changed since this prediction").first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    assert not _probability_shown(page), "the previous case's probability is still on screen"
    assert page.get_by_role("button", name="Report (PDF)").count() == 0
    assert page.locator(".js-plotly-plot").count() == 0
    assert_no_error(page, "Case Explorer after changing the case", log)


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
    settle(page)
    page.get_by_role("button", name="Predict").click()
    expect(page.get_by_text("Not predicted").first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    settle(page)
    assert not _probability_shown(page), "answered without the rejected PET"
