"""Streamlit glue of the Model comparison page: the metrics table beside the published figures,
the curves from the out-of-fold predictions, and a bundle explained over a cohort.

Computation lives in :mod:`pfs_core.results.comparison`, figures in :mod:`pfs_core.viz`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from pfs_core.errors import PfsError, UsageError
from pfs_core.results.published import CITATION, COHORT, SHORT_CITATION
from pfs_ui import cohort_view as cv
from pfs_ui.common import (
    compute_slot,
    load_bundle_ui,
    session_value,
    set_session_value,
    show_chart,
    show_error,
)

# Heavy imports (torch, MONAI, shap, pyvista, the models) sit inside the functions that need them, so a
# page paints before they load (pfs_ui.common warms them up in the background).

EXPLAIN_KEY = "cohort_explanation"
#: Width of the model column of the metrics table (pixels): "lab_pet_ct_pretrained" in full.
MODEL_COLUMN_PX = 190


def render_header(output: Any) -> None:
    """What was run on which cohort, labelled simulated / not simulated."""
    doc = output.doc
    settings, cohort = doc.get("settings", {}), doc.get("cohort", {})
    if output.simulated:
        kind = "**SIMULATED** cohort (not patients)"
    elif output.simulated is False:
        kind = "cohort without the simulator's ground truth (your data?)"
    else:
        kind = "cohort of unknown origin"
    st.info(f"This benchmark: {kind}, {cohort.get('n', '?')} patients ({cohort.get('n_short_pfs', '?')} short "
            f"PFS, {cohort.get('n_long_pfs', '?')} long, {cohort.get('n_censored_before_12_months', '?')} "
            f"censored ≤ 12 months); {settings.get('folds', '?')} folds × {settings.get('repeats', '?')} repeats, "
            f"seed {settings.get('seed', '?')}; post-baseline prrt_cycles "
            f"{'INCLUDED' if settings.get('include_post_baseline') else 'excluded'}.", icon=":material/science:")
    if doc.get("command"):
        st.caption(f"Command: `{doc['command']}` · wall time {doc.get('wall_time_s', 0) / 60:.1f} min")


def render_table(output: Any) -> None:
    """Metrics (mean ± sd over repeats) of this benchmark and the published AUROC/AUPRC, side by side;
    reference rows (simulated cohorts) below the models, marked in the first column."""
    from pfs_core.results.comparison import REFERENCE_ROW, metrics_table

    origin = "simulated" if output.simulated else "this cohort"
    table = metrics_table(output)
    table["kind"] = table["kind"].map(lambda kind: "REFERENCE (not a model)" if kind == REFERENCE_ROW else "model")
    config = {label: st.column_config.TextColumn(f"{label} ({origin})") for label in ("AUROC", "AUPRC", "Brier",
                                                                                      "C-index")}
    config["kind"] = st.column_config.TextColumn("row", width=175,
                                                 help="model of the study, or a reference row (not a model)")
    # wide enough for the longest name (lab_pet_ct_pretrained) at 1280 px, and kept in view when scrolling
    config["model"] = st.column_config.TextColumn("model", width=MODEL_COLUMN_PX, pinned=True)
    config |= {"published AUROC": st.column_config.TextColumn(f"AUROC (published, {SHORT_CITATION})"),
               "published AUPRC": st.column_config.TextColumn("AUPRC (published)")}
    st.dataframe(table, hide_index=True, column_config=config, key="metrics_table")
    spread = ("1 repeat: no spread — each cell is the single cross-validation value" if output.repeats == 1
              else "mean ± sd over repeats")
    st.caption(f"Left: this benchmark, {spread} (Brier: lower is better). Right: published "
               f"figures of real patients ({COHORT}) — {CITATION} The two are not the same cohort and are not "
               "directly comparable.")
    if output.references:
        st.caption("REFERENCE rows are not models: fixed yardsticks fitted on the same splits from the "
                   "simulator's ground truth — a logistic regression on the labs (ref_labs), on the labs and the "
                   "image read-outs (ref_readouts), on the labs and the true image quantities (ref_oracle), and the "
                   "true probability itself (ref_bayes, the most any model can reach).")


def render_paired(output: Any) -> None:
    """Paired ΔAUROC of each model against each reference and the best single-modality model (error bars),
    when this benchmark has them (outputs written before them show nothing)."""
    from pfs_core.results.comparison import paired_delta_table
    from pfs_core.viz import curves

    table = paired_delta_table(output)
    if table.empty:
        return
    method = output.doc.get("paired_delta_auroc_method", {})
    st.subheader("Paired differences in AUROC")
    _plot(lambda: curves.paired_delta_figure(output.doc["paired_delta_auroc"], title="Paired ΔAUROC, 95 % interval"),
          key="paired_delta", name="paired_delta_auroc")
    st.caption(f"AUROC of the model minus that of the comparator on the same patients (OOF probability averaged "
               f"over repeats, {method.get('n_patients', '?')} labelled patients); bars: 95 % interval of "
               f"{method.get('n_boot', '?')} patient-bootstrap resamples. Best single-modality model: "
               f"{output.doc.get('best_single_modality') or 'none'}. P(Δ ≤ 0): share of resamples where the model "
               "did not rank better.")
    config = {"delta": st.column_config.NumberColumn("Δ AUROC", format="%+.3f"),
              "low": st.column_config.NumberColumn("2.5 %", format="%+.3f"),
              "high": st.column_config.NumberColumn("97.5 %", format="%+.3f"),
              "p_le_0": st.column_config.NumberColumn("P(Δ ≤ 0)", format="%.3f")}
    st.dataframe(table, hide_index=True, column_config=config, key="paired_table")


def render_curves(output: Any) -> None:
    """ROC, PR, calibration, decision curve and Kaplan–Meier tabs (OOF probability averaged over repeats)."""
    from pfs_core.results.comparison import curve_inputs
    from pfs_core.viz import curves

    try:
        pairs = curve_inputs(output)
    except PfsError as exc:
        show_error(exc)
        return
    st.caption(f"Out-of-fold probabilities averaged over repeats; {len(next(iter(pairs.values()))[0])} patients "
               "with a binary label (censored ≤ 12 months left out; they are kept in the Kaplan–Meier curves).")
    tabs = st.tabs(["ROC", "Precision–recall", "Calibration", "Decision curve", "Kaplan–Meier"])
    figures = (lambda: curves.roc_figure(pairs), lambda: curves.pr_figure(pairs),
               lambda: curves.calibration_figure(pairs, n_bins=5), lambda: curves.decision_curve_figure(pairs))
    for tab, make, key in zip(tabs[:4], figures, ("roc", "pr", "calibration", "decision_curve"), strict=True):
        with tab:
            _plot(make, key=f"curve_{key}", name=key)
    with tabs[4]:
        _km(output, curves)


def _plot(make: Any, *, key: str, name: str, where: Any = None) -> None:
    """Draw ``make()`` with :func:`pfs_ui.common.show_chart` (SVG export); a figure that cannot be drawn is a
    warning."""
    try:
        show_chart(where or st, make(), key=key, name=name)
    except (PfsError, ValueError) as exc:
        st.warning(f"Figure not drawn: {exc}")


def _km(output: Any, curves: Any) -> None:
    from pfs_core.results.comparison import risk_groups

    model = st.selectbox("Risk groups of model", output.models, key="km_model")
    time_months, event, group = risk_groups(output, model)
    fig, p_value = curves.km_figure(time_months, event, group, highlight="high",
                                    title=f"{model}: PFS by risk group (median split)")
    st.metric("Log-rank p", "n/a" if not np.isfinite(p_value) else f"{p_value:.3g}")
    show_chart(st, fig, key="curve_km", name=f"kaplan_meier_{model}")


# ----------------------------------------------------------------------------- a bundle over a cohort


def default_cohort(output: Any) -> str:
    """The benchmark's cohort table when it is on this machine, else ""."""
    from pfs_core.results.comparison import cohort_table_path

    path = cohort_table_path(output)
    return str(path) if path is not None else ""


def render_cohort_explanation(output: Any) -> None:
    """Pick a bundle and a cohort; on request, mean |modality Shapley| and the fused-feature embedding."""
    bundles = cv.bundle_choices()
    if not bundles:
        st.info("No model bundle found (models/ or finished training runs).")
        return
    path = st.selectbox("Model bundle", bundles, format_func=cv.bundle_label, key="explain_bundle")
    cohort = st.text_input("Cohort table", value=default_cohort(output), key="explain_cohort")
    left, right = st.columns(2)
    n_sample = int(left.number_input("Patients sampled for the contributions", 5, 500, 30, key="explain_n"))
    method = right.radio("Embedding", ["pca", "umap"], horizontal=True, key="embed_method",
                         format_func=str.upper)
    signature = (str(path), cohort, n_sample, method)
    if st.button("Compute", key="explain_button", disabled=not cohort.strip()):
        try:
            set_session_value(EXPLAIN_KEY, (signature, _explain(path, Path(cohort.strip()), n_sample, method)))
        except PfsError as exc:
            show_error(exc)
    stored = session_value(EXPLAIN_KEY)
    if stored is not None and stored[0] == signature:
        _render_explanation(stored[1])


def _explain(path: Path, cohort: Path, n_sample: int, method: str) -> dict[str, Any]:
    from pfs_core.explain.cohort import fused_embedding, mean_abs_contributions, modality_contributions
    from pfs_core.inference import load_cohort_for_bundle

    bundle = load_bundle_ui(path)
    # Only a shipped simulated cohort reads and fills the shared cache: a user's patients leave nothing on disk.
    with compute_slot(), st.spinner("Loading the cohort and computing exact modality Shapley values..."):
        data = load_cohort_for_bundle(bundle, cohort, cache_dir=cv.shared_cache_for(cohort))
        contributions = modality_contributions(bundle, data, n_sample=n_sample, seed=0)
        embedding: Any  # the embedding, or why there is none
        try:
            embedding = fused_embedding(bundle, data, method=method, seed=0)
        except UsageError as exc:
            embedding = str(exc)
    return {"model": bundle.name, "n": len(data), "contributions": contributions,
            "mean_abs": mean_abs_contributions(contributions), "embedding": embedding}


def _render_explanation(result: dict[str, Any]) -> None:
    from pfs_core.viz.explain import modality_importance_figure

    left, right = st.columns(2)
    with left:
        st.markdown(f"**Modality contributions** ({result['model']}, {len(result['contributions'])} of "
                    f"{result['n']} patients)")
        show_chart(st, modality_importance_figure(result["mean_abs"]), key="modality_importance",
                   name="modality_contributions")
        st.caption("Mean |exact Shapley value| per modality, in probability points: how much the prediction "
                   "moves on average when the modality is added (absent = the model's 'missing' input).")
    with right:
        embedding = result["embedding"]
        if isinstance(embedding, str):
            st.info(embedding)
            return
        st.markdown(f"**Fused features** ({embedding.method.upper()} of {embedding.n_features} dimensions)")
        _embedding_plot(embedding)


def _embedding_plot(embedding: Any) -> None:
    from pfs_core.viz.scene import embedding_figure

    method = embedding.method.upper()
    show_chart(st, embedding_figure(
        embedding.points, embedding.labels, title=f"{method} of fused embeddings, by outcome",
        hover=[f"patient {pid}" for pid in embedding.patient_ids], axis_titles=(f"{method} 1", f"{method} 2")),
        key="embedding", name=f"embedding_{embedding.method}")
