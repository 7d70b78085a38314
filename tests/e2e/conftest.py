"""Fixtures of the browser tests: the committed files, the app server and a Chromium page (e2e_browser.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NOT_COMMITTED,
    ROOT,
    copy_committed,
    free_port,
    wait_for_health,
)


@pytest.fixture(scope="module")
def fresh_tree(tmp_path_factory) -> Path:
    """A copy of the committed files: what a fresh clone holds (no data/, runs/, cache/, earlier runs)."""
    tree = copy_committed(ROOT, tmp_path_factory.mktemp("fresh") / "clone")
    assert (tree / "app.py").is_file() and not any((tree / name).exists() for name in NOT_COMMITTED)
    return tree


@pytest.fixture(scope="module")
def app_server(fresh_tree, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(url, log file) of ``streamlit run app.py`` started in the fresh tree, with its own pfs_core/pfs_ui."""
    port = free_port()
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
        wait_for_health(url, 60, proc)
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


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for a test file; each test opens its own pages (screen sizes) in it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
