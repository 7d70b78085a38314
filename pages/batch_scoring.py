"""Batch scoring: score the usable rows of a cohort table with a chosen bundle and download the results."""

import streamlit as st

from pfs_ui import cohort_view as cv
from pfs_ui.common import load_bundle_ui, show_disclaimer

st.title("Batch scoring")
show_disclaimer()
st.caption("Scores every usable row of a cohort.csv (simulator columns; pfs_months/progressed optional) with a "
           "model bundle: probability of PFS ≤ 12 months with its 90 % interval (docs/uncertainty.md), risk group and "
           "warnings. Rows with problems are listed with their row number and left out. With outcomes "
           "(pfs_months, progressed) the scores are validated against them: AUROC, C-index, calibration, Brier "
           "and decision curve with 95 % bootstrap intervals. To upload a table, upload the zip of its images "
           "with it. Command-line twin: `python -m pfs_core score` (`--outcomes-report FILE.json`).")
bundles = cv.bundle_choices()
if not bundles:
    st.error("No model bundle found in models/ or in finished training runs. Train one on the Your cohort page "
             "(or with `python -m pfs_core train` on the server).")
    st.stop()
path = st.selectbox("Model bundle", bundles, format_func=cv.bundle_label, key="bundle")
bundle = cv.guarded(lambda: load_bundle_ui(path))
if bundle is None:
    st.stop()

source = cv.cohort_source_widgets()
if st.button("Score cohort", type="primary", key="score_button", disabled=not source.given):
    cv.guarded(lambda: cv.score_source(bundle, source))
cv.render_scores(bundle, source)
