"""Model comparison: the benchmark's metrics beside the study's published figures, curves, Kaplan–Meier,
and a model bundle explained over a cohort."""

import streamlit as st

from pfs_core.errors import PfsError
from pfs_core.results.comparison import find_results, load_results
from pfs_ui import cohort_view as cv
from pfs_ui import comparison_view as view
from pfs_ui.common import show_disclaimer, show_error

st.title("Model comparison")
show_disclaimer()
st.caption("Repeated cross-validation of the study's models on one cohort (`python -m pfs_core benchmark`), "
           "the shipped simulated benchmark or any run of the Your cohort page.")
sources = find_results(cv.results_dir(), cv.runs_dir())
if not sources:
    st.info("No benchmark results yet. Run `python -m pfs_core benchmark --cohort COHORT.csv --out results/NAME` "
            "or start a benchmark on the Your cohort page.")
    st.stop()
source = st.selectbox("Benchmark", sources, format_func=lambda s: s.label, key="results_source")
try:
    output = load_results(source.folder)
except PfsError as exc:
    show_error(exc)
    st.stop()

view.render_header(output)
view.render_table(output)
view.render_paired(output)
st.subheader("Curves")
view.render_curves(output)
st.subheader("Cohort-level explanation of a model bundle")
view.render_cohort_explanation(output)
