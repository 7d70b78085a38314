"""Case Explorer parts: choosing the case, running one prediction, and showing the result.

One :func:`pfs_core.explain.explain_case` call does the work; this module only
collects inputs and renders what comes back. The result (with the case's volumes
and its lesion measurement, :mod:`pfs_ui.lesion_view`) lives in this browser
session's memory only and is gone when the session ends.

A result always belongs to its inputs: it keeps the signature of the case, files, labs
and model it was computed from, and while the inputs on screen differ it is hidden
behind an "inputs changed" note (its probability, explanations, lesion table and report
alike). An upload that is not an image the loader can read is named with its reason as
soon as it is given, and Predict does not answer while one is given.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from pfs_core import DISCLAIMER, schema
from pfs_core.errors import InputError, PfsError
from pfs_ui import lesion_view
from pfs_ui.case_inputs import (  # noqa: F401 (re-exported: the Case Explorer's inputs moved to case_inputs)
    IMAGE_FORMATS,
    KNOWN_SIGNATURES,
    CaseInputs,
    case_source_widgets,
    upload_problem,
)
from pfs_ui.common import (
    PREDICTION_STARTED,
    case_threads,
    compute_slot,
    device_label,
    session_value,
    set_session_value,
    show_error,
    uploaded_files,
    without_folders,
)
from pfs_ui.labs_form import LabEntry
from pfs_ui.unexpected import guarded

# Heavy imports (torch, MONAI, shap, pyvista, the models) sit inside the functions that need them, so a
# page paints before they load (pfs_ui.common warms them up in the background).

RESULT_KEY = "case_result"


def input_signature(bundle: Any, inputs: CaseInputs, labs: LabEntry) -> tuple[Any, ...]:
    """Everything a result depends on: model, case and files, options and the labs as entered."""
    return bundle.sha256, inputs.signature(), labs.signature()


@dataclass
class CaseResult:
    """One explained case, kept in session memory for re-rendering (sliders, tabs)."""

    explanation: Any
    pet: Any
    ct: Any
    labs: dict[str, Any]
    inputs: dict[str, str]
    bundle_sha256: str
    seconds: float
    #: :func:`input_signature` of what it was computed from: shown only while the inputs on screen are the same.
    signature: tuple[Any, ...] = ()
    #: The case in words (:attr:`CaseInputs.title`).
    title: str = ""
    #: Simulated organ masks shipped with a sample case (None for an upload: the organ network or the user's masks).
    sample_organs: Path | None = None
    organ_uploads: list[Any] = field(default_factory=list)
    meshes: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    #: Parts that every rerun (a slider, a tab's radio) would otherwise rebuild: figures, the PET on the CT grid.
    memo: dict[str, Any] = field(default_factory=dict)

    def remember(self, key: str, build: Any) -> Any:
        """``build()`` once per result; later reruns of the page reuse it."""
        if key not in self.memo:
            self.memo[key] = build()
        return self.memo[key]


def _load_volumes(inputs: CaseInputs) -> tuple[Any, Any, dict[str, str]]:
    from pfs_core.preprocessing.model_grid import load_case

    if inputs.pet_path is not None or inputs.ct_path is not None:
        pet, ct = load_case(inputs.pet_path, inputs.ct_path)
        return pet, ct, {"case": f"sample case {inputs.key} (simulated)"}
    with uploaded_files(pet=inputs.pet_upload, ct=inputs.ct_upload) as paths:
        if not paths:
            raise _NoImages()
        try:
            pet, ct = load_case(paths.get("pet"), paths.get("ct"), weight_kg=inputs.weight_kg,
                                dose_mbq=inputs.dose_mbq)
        except PfsError as exc:
            raise InputError(without_folders(str(exc), paths)) from None
    names = {k: getattr(getattr(inputs, f"{k}_upload"), "name", "not given") for k in ("pet", "ct")}
    return pet, ct, {"PET file": names["pet"], "CT file": names["ct"]}


class _NoImages(PfsError):
    def __init__(self) -> None:
        super().__init__("no PET or CT uploaded: upload a PET and a CT (NIfTI or zipped DICOM), "
                         "or pick a sample case")


def run_prediction(bundle: Any, inputs: CaseInputs, entry: LabEntry) -> None:
    """Load, predict and explain; store the result (with its inputs' signature) or show an error box.

    Nothing runs while an upload or a lab value has a problem (each is already named on the page).
    """
    set_session_value(RESULT_KEY, None)
    if inputs.problems or entry.problems:
        st.error("Not predicted: fix the problems named above first (or remove the file, or empty the field).",
                 icon=":material/error:")
        return
    with guarded("predicting and explaining this case") as outcome:
        _predict(bundle, inputs, entry)
    if outcome.failed:
        set_session_value(RESULT_KEY, None)


def _predict(bundle: Any, inputs: CaseInputs, entry: LabEntry) -> None:
    from pfs_core.explain import explain_case

    started = time.perf_counter()
    labs = entry.values
    PREDICTION_STARTED.set()  # the background warm-up (pfs_ui.common.warm_up) has nothing left to win
    try:
        with (st.status("Loading images...", expanded=False) as status,
              compute_slot(status, label="Loading images...")):  # heavy work waits its turn in the server's fair queue
            pet, ct, described = _load_volumes(inputs) if bundle.spec.uses_images else (None, None, {})
            if pet is not None:
                described["PET units"] = pet.suv_note
            organs = lesion_view.case_organs(inputs, ct) if ct is not None else None
            status.update(label="Measuring lesions, predicting and explaining (SHAP, lesion contributions, "
                                "modality Shapley values)...")
            explanation = explain_case(bundle, pet=pet, ct=ct, labs=labs, threads=case_threads(), organs=organs)
            status.update(label="Done", state="complete")
    except PfsError as exc:
        show_error(exc)
        return
    set_session_value(RESULT_KEY, CaseResult(explanation=explanation, pet=pet, ct=ct, labs=labs, inputs=described,
                                             bundle_sha256=bundle.sha256, seconds=time.perf_counter() - started,
                                             sample_organs=inputs.organs_path, organ_uploads=inputs.organ_uploads,
                                             signature=input_signature(bundle, inputs, entry), title=inputs.title))


def render_result(bundle: Any, inputs: CaseInputs, entry: LabEntry) -> None:
    """Show the stored result when it was computed from the inputs now on screen, else say it is out of date."""
    result: CaseResult | None = session_value(RESULT_KEY)
    if result is None:
        return
    if result.signature != input_signature(bundle, inputs, entry):
        st.warning(f"Inputs changed since this prediction (of {result.title}, model "
                   f"{result.explanation.prediction.model_name}): press Predict again. Its result is hidden so that "
                   "it is not read as the result of the inputs now on screen.", icon=":material/update:")
        return
    p = result.explanation.prediction
    st.subheader(f"Result: {result.title}")
    st.caption(f"Model {p.model_name} v{p.model_version} (bundle {bundle.name}, sha256 {p.bundle_sha256[:12]}…); "
               "the labs and files as entered above.")
    _headline(p)
    parts = [("Why", "the Why tab", lambda: _why(result)),
             # measured first: the 3D view, the slices and the report draw its outlines and numbers
             ("Lesions", "the Lesions tab", lambda: lesion_view.render_lesions(result)),
             ("3D view", "the 3D view", lambda: _scene(result)),
             ("Slices", "the slices", lambda: _slices(result)),
             ("Cohort", "the Cohort tab", lambda: _cohort(bundle, result)),
             ("Run and report", "the report", lambda: _run_and_report(bundle, result))]
    for tab, (_title, doing, draw) in zip(st.tabs([t for t, _d, _f in parts]), parts, strict=True):
        with tab, guarded(f"drawing {doing}"):  # one failing part leaves the others on screen
            draw()


def _run_and_report(bundle: Any, result: CaseResult) -> None:
    _run_info(result)
    _report(bundle, result)


def _headline(p: Any) -> None:
    cols = st.columns(4)
    cols[0].metric("P(PFS ≤ 12 months)", f"{p.probability:.0%}", help="mean over the fold models of the bundle")
    cols[1].metric("Ensemble range", f"{p.interval[0]:.0%} – {p.interval[1]:.0%}", help=p.interval_method)
    cols[2].metric("Risk group", p.risk_group, help=f"high when ≥ {p.risk_threshold:.0%} (training median)")
    cols[3].metric("Percentile in training cohort", f"{p.percentile_in_training:.0f}")
    for warning in p.warnings:
        st.warning(warning, icon=":material/warning:")
    st.caption(DISCLAIMER)


def _why_figures(result: CaseResult) -> dict[str, Any]:
    """The SHAP bars (None without labs) and the modality bars, shared by the Why tab and the report."""
    from pfs_core.viz.explain import modality_bar_figure, shap_bar_figure

    def build() -> dict[str, Any]:
        e, s = result.explanation, result.explanation.lab_shap
        # Measured labs only: an imputed one has no attribution of its own (its effect is in the base value).
        shown = [] if s is None else [i for i, imputed in enumerate(s.imputed) if not imputed]
        shap_figure = None if s is None or not shown else shap_bar_figure(
            [s.names[i] for i in shown], [s.shap_values[i] for i in shown], [s.values[i] for i in shown],
            [s.units[i] for i in shown], base_value=s.base_value, output_space=s.output_space)
        figures = {"shap": shap_figure,
                   "modality": modality_bar_figure(e.modalities.contributions, output_space="probability")}
        if e.lesions is not None:
            figures.update(lesion_figures(e.lesions))
        return figures

    return result.remember("why_figures", build)


def _why(result: CaseResult) -> None:
    e = result.explanation
    figures = _why_figures(result)
    left, right = st.columns([3, 2])
    if e.lab_shap is not None:
        s = e.lab_shap
        if figures["shap"] is not None:
            left.plotly_chart(figures["shap"], key="shap_chart")
        else:
            left.info("No lab value was given: nothing to attribute; the model used the training medians.")
        left.caption(f"SHAP values ({s.method}); base {s.base_value:.3f} + sum = {s.output:.3f}.")
        missing = [_label(n) for n, imputed in zip(s.names, s.imputed, strict=True) if imputed]
        if missing:
            left.caption(f"Not measured, imputed with the training median (no attribution of their own; their "
                         f"effect is in the base value): {', '.join(missing)}.")
    else:
        left.info("This model uses no lab values.")
    right.plotly_chart(figures["modality"], key="modality_chart")
    right.caption("Exact Shapley values over the modalities; an absent modality is replaced by the model's "
                  "'missing' input (images) or the training medians (labs).")
    if e.lesions is not None:
        first, second = st.columns(2)  # a row of its own: the lesion labels are long
        first.plotly_chart(figures["lesion_features"], key="lesion_feature_chart")
        second.plotly_chart(figures["lesions"], key="lesion_chart")
        second.caption(f"Each lesion's share of the risk: {e.lesions.method}. 'Not a lesion' is the part of "
                      "measurements no lesion makes up (e.g. no SSTR-negative disease lowers the risk). Drawn on "
                      "the slices and the 3D view as 'Lesion contributions'.")
    else:
        _measurements(right, e.prediction.image_measurements)


def _label(name: str) -> str:
    """The on-screen label of a lab column."""
    feature = schema.NUMERIC_BY_NAME.get(name) or schema.CATEGORICAL_BY_NAME.get(name)
    return feature.label if feature is not None else name


def _measurements(where: Any, values: dict[str, float]) -> None:
    from pfs_core.features.readouts import MEASUREMENT_UNITS

    if not values:
        return
    where.dataframe(pd.DataFrame({"measure": list(values), "value": list(values.values()),
                                  "unit": [MEASUREMENT_UNITS.get(k, "") for k in values]}), hide_index=True)
    where.caption("What the model measured against the liver on the PET and CT (12-mm model grid, no "
                  "segmentation; lesions outside the liver are not in these numbers).")


def lesion_figures(contributions: Any) -> dict[str, Any]:
    """SHAP bars of the lesion measurements and each lesion's share of the risk (the 12 largest)."""
    from pfs_core.viz.explain import modality_bar_figure, shap_bar_figure

    f = contributions.features
    features = shap_bar_figure(f["label"].tolist(), f["shap"].to_numpy(), f["measured"].round(2).tolist(),
                               f["unit"].tolist(), base_value=contributions.base_value,
                               output_space="probability", title="Why: lesion measurements")
    table = contributions.lesions.reindex(contributions.lesions["contribution"].abs().sort_values(
        ascending=False).index)
    shares = {f"lesion {int(r.lesion_id)} ({r.sstr_status}, {r.site}, {r.volume_ml:.1f} mL)": float(r.contribution)
              for r in table.head(12).itertuples()}
    if len(table) > 12:
        shares[f"{len(table) - 12} other lesions"] = float(table["contribution"].iloc[12:].sum())
    shares["not a lesion"] = contributions.unattributed
    return {"lesion_features": features,
            "lesions": modality_bar_figure(shares, output_space="probability",
                                           title="Each lesion's share of the risk")}


def _maps(e: Any) -> dict[str, Any]:
    """Overlay maps on the CT grid by label: lesion contributions, Grad-CAM per branch, then the read-out maps."""
    maps = {}
    if e.lesions is not None and e.measurement is not None:
        maps["Lesion contributions"] = _positive_contributions(e)
    maps.update({f"Grad-CAM {m.upper()}": image for m, image in sorted(e.gradcam.items())})
    maps.update({f"Read-outs {m.upper()}": image for m, image in sorted(e.readout_maps.items())})
    return maps


def _positive_contributions(e: Any) -> Any:
    """The lesions that raise the risk, each filled with its share scaled to the largest (0-1, CT grid)."""
    import nibabel as nib

    from pfs_core.explain.lesions import contribution_map

    image = contribution_map(e.measurement, e.lesions)
    values = np.clip(np.asarray(image.dataobj, dtype=np.float32), 0.0, None)
    top = float(values.max())
    return nib.Nifti1Image(values / top if top > 0 else values, image.affine)


def _map_note(e: Any, label: str) -> None:
    from pfs_core.explain.gradcam import GRADCAM_NOTE
    from pfs_core.explain.readout_map import READOUT_MAP_NOTE

    if label == "Lesion contributions":
        st.caption("Lesion contribution map: each lesion that raises the risk, filled with its share of the risk "
                   "relative to the largest (1 = the lesion that raises it most); lesions that lower it are not "
                   "filled. The shares are listed in the Why and Lesions tabs.")
        return
    modality = label.split()[-1].lower()
    note = e.gradcam_note(modality)
    if label.startswith("Grad-CAM") and note:
        st.info(f"Grad-CAM of the {modality.upper()} branch is {note}.")
    elif label.startswith("Grad-CAM"):
        st.caption(f"Grad-CAM: {GRADCAM_NOTE}.")
    elif label.startswith("Read-outs"):
        st.caption(f"Read-out map: {READOUT_MAP_NOTE}.")


def _scene(result: CaseResult) -> None:
    from pfs_core.viz import mesh as geometry
    from pfs_core.viz.scene import mesh3d_figure

    maps = _maps(result.explanation)
    if result.ct is None or not maps:
        st.info("No lesion contribution, Grad-CAM or read-out map for this model or case (they need a model that "
                "reads an image, and a CT).")
        return
    c1, c2, c3 = st.columns(3)
    label = c1.radio("Map", list(maps), horizontal=True, key="cam_branch")
    level = c2.slider("Map level", 0.1, 0.95, 0.5, 0.05, key="cam_level")
    suv = c3.slider("PET hotspot SUV", 2.0, 30.0, 8.0, 0.5, key="suv_level")
    show_lesions, show_organs = _layer_toggles(result, prefix="scene")
    _map_note(result.explanation, label)
    key = (label, level, suv)
    if key not in result.meshes:
        cam = maps[label]
        pet = result.pet
        result.meshes[key] = geometry.case_scene(
            result.ct.data, result.ct.affine, None if pet is None else pet.data, None if pet is None else pet.affine,
            np.asarray(cam.dataobj), cam.affine, suv_level=suv, cam_level=level)
    extra = lesion_view.surfaces(result, lesions=show_lesions, organs=show_organs)
    st.plotly_chart(mesh3d_figure([*result.meshes[key], *extra], title=f"Body, PET > SUV {suv:g}, {label} ≥ {level}"),
                    key="scene_chart")


def _layer_toggles(result: CaseResult, *, prefix: str) -> tuple[bool, bool]:
    """Check boxes for the lesion outlines/surfaces and the optional organ layer (off without a measurement)."""
    measured = lesion_view.current(result) is not None
    c1, c2 = st.columns(2)
    lesions = c1.checkbox("Lesions (SSTR-positive / SSTR-negative)", value=True, disabled=not measured,
                          key=f"{prefix}_lesions", help="automatic delineation; see the Lesions tab")
    organs = c2.checkbox("Organs", value=False, disabled=not measured, key=f"{prefix}_organs")
    return lesions and measured, organs and measured


def _slices(result: CaseResult) -> None:
    from pfs_core.viz.images import mip_figure, slice_count, slice_figure

    if result.ct is None:
        st.info("Slices need a CT.")
        return
    maps = _maps(result.explanation)
    c1, c2, c3 = st.columns(3)
    label = c1.radio("Overlay", ["none", *maps], horizontal=True, key="slice_branch")
    axis = c2.radio("View", ["axial", "coronal", "sagittal"], horizontal=True, key="slice_axis")
    opacity = c3.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="slice_opacity")
    show_lesions, show_organs = _layer_toggles(result, prefix="slice")
    drawn = lesion_view.outlines(result, organs=show_organs) if show_lesions or show_organs else None
    if drawn is not None and not show_lesions:
        drawn = dataclasses.replace(drawn, lesions=None, lesion_status={})
    if label != "none":
        _map_note(result.explanation, label)
    ct = result.ct
    overlay = None if label == "none" else np.asarray(maps[label].dataobj)
    n = slice_count(ct.data.shape, ct.affine, axis)
    index = st.slider("Slice", 0, n - 1, n // 2, key=f"slice_index_{axis}")
    left, right = st.columns(2)
    left.plotly_chart(slice_figure(ct.data, overlay, affine=ct.affine, axis=axis, index=index, opacity=opacity,
                                   background_kind="ct", outlines=drawn), key="slice_chart")
    if result.pet is not None:
        pet_on_ct = _pet_on_ct(result)
        right.plotly_chart(mip_figure(pet_on_ct, overlay, affine=ct.affine, opacity=opacity, outlines=drawn),
                           key="mip_chart")


def _pet_on_ct(result: CaseResult) -> Any:
    from pfs_core.preprocessing.resample import resample_onto

    ct = result.ct
    return result.remember("pet_on_ct", lambda: resample_onto(result.pet, affine=ct.affine, shape=ct.data.shape))


def _cohort(bundle: Any, result: CaseResult) -> None:
    from pfs_core.viz.curves import km_figure, risk_distribution_figure

    p = result.explanation.prediction
    oof = bundle.training_oof
    probs = oof["oof_probability"].to_numpy(float)

    def build() -> tuple[Any, Any, float]:
        groups = np.where(probs >= bundle.risk_threshold, "high", "low")
        km, p_value = km_figure(oof["pfs_months"].to_numpy(float), oof["progressed"].to_numpy(int), groups,
                                highlight=p.risk_group, title="Training cohort by predicted risk group")
        return risk_distribution_figure(probs, p.probability, threshold=p.risk_threshold), km, p_value

    dist, fig, p_value = result.remember("cohort_figures", build)
    left, right = st.columns(2)
    left.plotly_chart(dist, key="dist_chart")
    right.plotly_chart(fig, key="km_chart")
    right.caption(f"Kaplan–Meier of the training cohort (out-of-fold risk groups); log-rank p = {p_value:.3g}. "
                  f"This patient's group ({p.risk_group}) is highlighted.")


def _run_info(result: CaseResult) -> None:
    p, e = result.explanation.prediction, result.explanation
    st.write(f"**Device:** {device_label()} (torch device `{p.device}`) · **Model:** {p.model_name} "
             f"v{p.model_version} · sha256 `{p.bundle_sha256[:16]}…`")
    timings = pd.DataFrame({"stage": list(e.timings_s), "seconds": list(e.timings_s.values())})
    st.dataframe(timings, hide_index=True)
    st.caption(f"From the click to the result: {result.seconds:.2f} s (loading images included).")


def _report(bundle: Any, result: CaseResult) -> None:
    from pfs_core.results.report import case_report_html

    e = result.explanation
    why = _why_figures(result)
    figures = [] if why["shap"] is None else [("Lab SHAP values", why["shap"])]
    figures.append(("Modality contributions", why["modality"]))
    if "lesions" in why:
        figures += [("Lesion measurements (SHAP)", why["lesion_features"]), ("Each lesion's share", why["lesions"])]
    state = lesion_view.current_state(result)
    measurement = None if state is None else state.measurement
    if state is not None and measurement is not None and result.pet is not None:
        figures.append(("PET maximum-intensity projection with the lesion outlines",
                        state.remember("report_mip", lambda: _outlined_mip(result))))
    html = result.remember(f"report_html_{None if state is None else state.signature}", lambda: case_report_html(
        e, labs=result.labs, inputs=result.inputs, figures=figures, measurement=measurement))
    if measurement is not None:
        st.caption("The report holds the lesion measurements: features, the lesion table and the organ source.")
    st.download_button("Download tumour-board report (HTML)", html, file_name=f"pfs_report_{bundle.name}.html",
                       mime="text/html", key="report_button")


def _outlined_mip(result: CaseResult) -> Any:
    from pfs_core.viz.images import mip_figure

    return mip_figure(_pet_on_ct(result), None, affine=result.ct.affine, outlines=lesion_view.outlines(result, organs=False),
                      title="PET maximum-intensity projection (coronal) with the lesion outlines")
