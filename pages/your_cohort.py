"""Your cohort: check a cohort table row by row, then benchmark or train on its usable rows in the background."""

import streamlit as st

from pfs_ui import cohort_view as cv
from pfs_ui.common import show_disclaimer

st.title("Your cohort")
show_disclaimer()
st.caption("Point to a cohort.csv (same columns as the simulator writes: patient_id, pet, ct, labs, pfs_months, "
           "progressed) with its images on this machine. Every row is checked; rows with problems are listed "
           "with their row number and left out, the others go on. Runs continue in the background and are "
           "kept in the runs folder (they survive a page reload). Command-line twins: "
           "`python -m pfs_core validate / benchmark / train`. A cohort with few patients or events gets a warning "
           "to confirm before a run starts.")

source = cv.cohort_source_widgets()
if st.button("Check cohort", type="primary", key="check_cohort", disabled=not source.given):
    cv.guarded(lambda: cv.validate_source(source))

report = cv.current_report(source)
if report is not None:
    cv.render_report(report)
    if report.n_good:
        st.subheader(f"Run on the {report.n_good} usable rows")
        options = cv.run_option_widgets()
        confirmed = cv.small_cohort_confirmed(report, options)
        if st.button("Start in the background", type="primary", key="start_run", icon=":material/play_arrow:",
                     disabled=not confirmed):
            run = cv.guarded(lambda: cv.start_background_run(report, options))
            if run is not None:
                st.toast(f"Run {run.run_id} started")

st.subheader("Runs")
cv.runs_panel()
st.subheader("Two runs side by side")
cv.compare_runs_panel()
