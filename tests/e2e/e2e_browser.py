"""Shared parts of the browser tests (fixtures in conftest.py): a copy of the committed files, ``streamlit run app.py`` on a free port,
headless Chromium (Debian's package; no browser download) through Playwright, and checks on what the page shows.
"""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
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


def copy_committed(root: Path, dest: Path) -> Path:
    files = _committed_files(root)
    if files is None:
        pytest.skip("not a git checkout: cannot tell the committed files")
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    return dest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, deadline_s: float, proc: subprocess.Popen[Any]) -> None:
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


def settle(page: Any, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    """Wait until the script run is over: no running indicator, no stale (greyed) element left."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')"
        " && !document.querySelector('[data-testid=\"stElementContainer\"][data-stale=\"true\"]')",
        timeout=timeout_ms)


def choose(page: Any, selectbox: Any, option: str, attempts: int = 3) -> None:
    """Open ``selectbox`` (a locator) and click its ``option``; on a busy machine the first click can land while
    the page is still re-rendering and open nothing, so the list is opened again (up to ``attempts`` times)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    item = page.get_by_role("option", name=option, exact=True)
    for attempt in range(attempts):
        settle(page)
        selectbox.click()
        try:
            item.wait_for(state="visible", timeout=10_000)
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            continue
        item.click()
        return


def upload(page: Any, uploader: Any, path: Path, attempts: int = 3) -> None:
    """Give ``uploader`` (a locator) the file ``path`` and wait until its name shows; on a busy machine the file
    can land on an uploader that the running rerun then replaces, so it is given again (up to ``attempts``)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        settle(page)
        uploader.locator('input[type="file"]').set_input_files(str(path))
        try:
            uploader.get_by_text(path.name).first.wait_for(state="visible", timeout=15_000)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise


def assert_no_error(page: Any, where: str, log: Path) -> None:
    errors = [page.locator(sel).all_inner_texts() for sel in ('[data-testid="stException"]',
                                                               '[data-testid="stAlertContentError"]')]
    assert not any(errors), f"{where}: {errors}\n--- streamlit log:\n{log.read_text()[-3000:]}"


def expect_charts(page: Any, at_least: int) -> None:
    from playwright.sync_api import expect

    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    # a drawn plotly chart holds its SVG plot area
    expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible()
    assert page.locator(".js-plotly-plot").count() >= at_least


#: The two screen sizes of issue 25 (a laptop and a tumour-board room's display).
SCREENS: dict[str, dict[str, int]] = {"1280x720": {"width": 1280, "height": 720},
                                      "1920x1080": {"width": 1920, "height": 1080}}

#: Every chart text (titles, axis titles, colour-bar titles, legend entries, annotations) that leaves its
#: chart's box, every metric value shortened with an ellipsis, and every heading wider than its box.
_CUT_OFF_JS = """() => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const box = plot.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const texts = plot.querySelectorAll('.gtitle, .g-xtitle text, .g-ytitle text, .cbtitle text, .legendtext, '
                                        + '.annotation-text, .xtick text, .ytick text');
    for (const t of texts) {
      const r = t.getBoundingClientRect();
      if (r.width === 0 || !t.textContent.trim()) continue;
      if (r.left < box.left - 2 || r.right > box.right + 2 || r.top < box.top - 2 || r.bottom > box.bottom + 2)
        out.push('chart text "' + t.textContent.slice(0, 60) + '" leaves its chart');
    }
  }
  for (const el of document.querySelectorAll('[data-testid="stMetricValue"] div, [data-testid="stMetricLabel"] p')) {
    if (el.scrollWidth > el.clientWidth + 1) out.push('metric "' + el.textContent.slice(0, 60) + '" is cut off');
  }
  return out;
}"""


def cut_off(page: Any) -> list[str]:
    """What is cut off on the page now (:data:`_CUT_OFF_JS`); empty when nothing is."""
    return list(page.evaluate(_CUT_OFF_JS))


def screenshot(page: Any, name: str, folder: Path) -> Path:
    """A PNG ``folder/name.png`` of the whole page (the folder is made).

    Streamlit scrolls its main block, not the document, so a full-page screenshot would hold one screen: the
    window is made as tall as the content for the picture, at the same width (the layout depends on the width
    only), and set back after.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("() => Math.max(document.body.scrollHeight, ...Array.from("
                           "document.querySelectorAll('[data-testid=\"stMain\"], section.main'), e => e.scrollHeight))")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 12_000))})
    try:
        settle(page)
        # every chart drawn (plotly's SVG in it; Streamlit shows a grey placeholder until then), then a moment
        # for plotly to redraw at the new size
        page.wait_for_function("() => Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
                               ".every(e => e.querySelector('.main-svg'))", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    _shrink(path)
    assert path.stat().st_size > 10_000, f"{path} is nearly empty"
    return path


def _shrink(path: Path) -> None:
    """256 colours: a third of the size, so that docs/screenshots stays small in the repository."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def screenshot_folder(tmp_path: Path) -> Path:
    """``$PFS_SCREENSHOT_DIR`` (``make screenshots`` sets docs/screenshots), else the test's tmp folder."""
    given = os.environ.get("PFS_SCREENSHOT_DIR")
    return Path(given) if given else tmp_path / "screenshots"
