import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pfs_core import DISCLAIMER

ROOT = Path(__file__).resolve().parents[2]


def _registered_pages() -> set[str]:
    tree = ast.parse((ROOT / "app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "PAGES":
            return {elt.elts[0].value for elt in node.value.elts}
    raise AssertionError("app.py has no PAGES tuple")


def test_every_page_file_is_registered():
    files = {f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py") if not p.name.startswith("_")}
    assert files == _registered_pages()


@pytest.mark.slow
def test_every_page_shows_the_disclaimer(app_path):
    for page in sorted(_registered_pages()):
        at = AppTest.from_file(app_path, default_timeout=60)
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert any(DISCLAIMER in w.value for w in at.warning), page
