"""Model card: the chosen bundle's manifest and MODEL_CARD.md, with the result of the hash check."""

import json

import streamlit as st

from pfs_core.errors import PfsError
from pfs_ui import cohort_view as cv
from pfs_ui.common import load_bundle_ui, show_disclaimer

st.title("Model card")
show_disclaimer()
bundles = cv.bundle_choices()
if not bundles:
    st.error("No model bundle found in models/.")
    st.stop()
path = st.selectbox("Model bundle", bundles, format_func=cv.bundle_label, key="bundle")
try:
    bundle = load_bundle_ui(path)
except PfsError as exc:
    st.error(f"Hash check failed, the bundle is not used: {exc}", icon=":material/gpp_bad:")
    st.stop()

files = bundle.manifest.get("files", {})
st.success(f"Hash check passed: all {len(files)} files match the sha256 in manifest.json, and the manifest's own "
           "fields match its bundle digest.", icon=":material/verified:")
st.markdown(f"Bundle digest (sha256): `{bundle.digest}`")
st.caption("One value over the manifest, which lists every file's sha256: it changes with any file or any field "
           "(such as whether the training data were simulated). Compare it with the digest the bundle's authors "
           "published to know this is their bundle.")
card = path / "MODEL_CARD.md"
if card.is_file():
    st.markdown(card.read_text())
else:
    st.info("This bundle has no MODEL_CARD.md.")
with st.expander("manifest.json"):
    st.code(json.dumps(bundle.manifest, indent=1), language="json")
