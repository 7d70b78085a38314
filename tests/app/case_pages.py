"""Opening the Case Explorer and pressing Predict in AppTest, for the Case Explorer's test files."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

PAGE = "pages/case_explorer.py"


def open_case_page(app_path: str, *, timeout_s: float = 180) -> AppTest:
    """The app switched to the Case Explorer, run once without an exception."""
    at = AppTest.from_file(app_path, default_timeout=timeout_s)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def press_predict(at: AppTest) -> AppTest:
    """Predict pressed and the page run again without an exception."""
    at.button(key="predict").click().run()
    assert not at.exception, at.exception
    return at
