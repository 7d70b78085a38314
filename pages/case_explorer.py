"""Case Explorer: one patient's PET/CT and labs → risk of PFS ≤ 12 months, and why."""

import streamlit as st

from pfs_core.errors import PfsError
from pfs_ui import case_inputs as inputs_ui
from pfs_ui import case_view
from pfs_ui.common import list_bundles, load_bundle_ui, sample_cases, show_disclaimer, show_error
from pfs_ui.labs_form import lab_import, labs_form, show_lab_problems

st.title("Case Explorer")
show_disclaimer()
st.caption("Probability of progression-free survival ≤ 12 months after 177Lu-DOTATOC PRRT, from SSTR PET/CT and labs.")
# A reload of the page starts a new session: this browser's inputs, kept in the server's memory, come back first.
inputs_ui.restore_case()

bundles = list_bundles()
if not bundles:
    st.error("No model bundle found in models/. Train one with `python -m pfs_core train` (see README).")
    st.stop()
if "bundle" in st.session_state and st.session_state["bundle"] not in bundles:
    del st.session_state["bundle"]  # a kept choice of a bundle that is gone
left, right = st.columns([3, 1])
bundle_path = left.selectbox("Model bundle", bundles, format_func=lambda p: p.name, key="bundle")
right.page_link("pages/model_card.py", label="Model card", icon=":material/description:")
try:
    bundle = load_bundle_ui(bundle_path)
except PfsError as exc:
    show_error(exc)
    st.stop()
if bundle.manifest.get("training_cohort", {}).get("simulated"):
    st.info("This model was trained on a **simulated** cohort: its numbers illustrate the method, "
            "they are not clinical estimates.", icon=":material/info:")

left, right = st.columns([4, 1], vertical_alignment="bottom")
source = left.radio("Case", list(inputs_ui.SOURCES), horizontal=True, key="source")
inputs_ui.clear_case_button(right)
samples = sample_cases()
case_inputs = case_view.case_source_widgets(source, samples)

st.subheader("Laboratory and clinical values")
st.caption("Empty fields are allowed: the model imputes the training median and says so.")
lab_prefix = inputs_ui.lab_key_prefix(case_inputs.key)
lab_import(key_prefix=lab_prefix, show_post_baseline=bundle.post_baseline_used,
           uploader_key=inputs_ui.uploader_key("lab_import"))
labs = labs_form(case_inputs.lab_defaults, key_prefix=lab_prefix, show_post_baseline=bundle.post_baseline_used)
show_lab_problems(labs)
inputs_ui.keep_case(case_inputs)
# A button, not a form: the page must see every change of a lab to mark an earlier result out of date.
if st.button("Predict", type="primary", key="predict"):
    case_view.run_prediction(bundle, case_inputs, labs)

case_view.render_result(bundle, case_inputs, labs)
