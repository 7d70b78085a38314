"""Streamlit entry point: registers the pages (each page shows the disclaimer first).

Run with ``streamlit run app.py`` (or ``make run``).
"""

import streamlit as st

from pfs_ui.common import warm_up
from pfs_ui.unexpected import guarded

# (file, title, icon); tests check every file in pages/ is registered here.
PAGES: tuple[tuple[str, str, str], ...] = (
    ("pages/case_explorer.py", "Case Explorer", ":material/person_search:"),
    ("pages/model_comparison.py", "Model comparison", ":material/leaderboard:"),
    ("pages/your_cohort.py", "Your cohort", ":material/group:"),
    ("pages/batch_scoring.py", "Batch scoring", ":material/table:"),
    ("pages/model_card.py", "Model card", ":material/description:"),
)

st.set_page_config(page_title="PFS before PRRT — decision support (research)", layout="wide")
navigation = st.navigation(
    [st.Page(path, title=title, icon=icon, default=(i == 0)) for i, (path, title, icon) in enumerate(PAGES)]
)
with guarded("showing this page"):  # a bug in a page: a short message and an error id, not a traceback
    navigation.run()
warm_up()  # after the page is drawn: the first Predict then finds the explanation stack ready
