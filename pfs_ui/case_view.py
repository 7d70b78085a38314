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

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from pfs_core import DISCLAIMER, schema
from pfs_core.errors import InputError, PfsError
from pfs_ui import lesion_view, viewer
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
    show_chart,
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
    #: The report's default case id: the sample id, or the uploaded CT's (else PET's) file name without extensions.
    case_id: str = "case"
    #: New for every prediction: the keys of this result's own widgets (case id, note), so they start empty.
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
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
                                             signature=input_signature(bundle, inputs, entry), title=inputs.title,
                                             case_id=default_case_id(inputs)))


def default_case_id(inputs: CaseInputs) -> str:
    """The sample id, or the uploaded CT's (else PET's) file name without its extensions; "case" without either."""
    if inputs.key != "upload":
        return str(inputs.key)
    upload = inputs.ct_upload or inputs.pet_upload
    name = str(getattr(upload, "name", "") or "case")
    for suffix in (".nii.gz", ".nii", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "case"
    return name


#: The parts of a result, in the order of the selector above them; one is drawn at a time.
VIEWS: tuple[str, ...] = ("Why", "PET/CT viewer", "Lesions", "3D view", "Outlook and cohort", "Run details")
VIEW_KEY = "result_view"


def render_result(bundle: Any, inputs: CaseInputs, entry: LabEntry) -> None:
    """Show the stored result when it was computed from the inputs now on screen, else say it is out of date.

    One part of the result is drawn at a time, chosen with a selector whose value is a widget key: unlike
    ``st.tabs`` (which the browser keeps, and which fell back to the first tab when a widget in another tab
    changed), a change inside a part never moves the page to another part.
    """
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
    with guarded("drawing the result"):
        _headline(bundle, result)
    with guarded("preparing the report"):
        _report(result)
    view = st.segmented_control("Show", VIEWS, default=VIEWS[0], required=True, key=VIEW_KEY)
    parts = {"Why": lambda: _why(result),
             "PET/CT viewer": lambda: viewer.render_viewer(result),
             "Lesions": lambda: lesion_view.render_lesions(result),
             "3D view": lambda: _scene(result),
             "Outlook and cohort": lambda: _cohort(bundle, result),
             "Run details": lambda: _run_info(result)}
    with guarded(f"drawing {str(view or VIEWS[0]).lower()}"):  # a failing part leaves the rest on screen
        parts[str(view or VIEWS[0])]()


def outlook_of(bundle: Any, result: CaseResult) -> Any:
    """The patient's predicted PFS curve (:func:`pfs_core.outlook.patient_outlook`), once per result; None (with
    the reason in the result's memo) for a bundle whose training predictions cannot fit a survival model."""
    from pfs_core.outlook import patient_outlook

    def build() -> Any:
        try:
            return patient_outlook(bundle, result.explanation.prediction.probability)
        except PfsError as exc:
            result.memo["outlook_problem"] = str(exc)
            return None

    return result.remember("outlook", build)


def _headline(bundle: Any, result: CaseResult) -> None:
    from pfs_core.results.report import missing_and_warnings

    p = result.explanation.prediction
    low, high = p.interval
    level = getattr(p, "interval_level", None)
    cols = st.columns(4)
    cols[0].metric("P(PFS ≤ 12 months)", f"{p.probability:.0%}", help="mean over the fold models of the bundle")
    cols[1].metric(f"{level * 100:.0f} % interval" if level else "Interval", f"{low:.0%}–{high:.0%}", help=p.interval_method)
    cols[2].metric("Risk group", p.risk_group, help=f"high when ≥ {p.risk_threshold:.0%} (training median)")
    cols[3].metric("Percentile in training", f"{p.percentile_in_training:.0f}",
                   help="share of the training cohort's out-of-fold probabilities at or below this one")
    sentence = getattr(p, "interval_sentence", "")
    if sentence:
        st.markdown(sentence)
    _outlook_metrics(bundle, result)
    missing, warnings = missing_and_warnings(p)
    st.info("**Missing inputs:** " + " ".join(missing), icon=":material/input:")
    for warning in warnings:
        st.warning(warning, icon=":material/warning:")
    st.caption(DISCLAIMER)


def _outlook_metrics(bundle: Any, result: CaseResult) -> None:
    """P(progression or death) by 6, 12 and 24 months from the patient's PFS curve, with its sentence and the
    note on why its 12-month figure differs from the classifier's probability."""
    outlook = outlook_of(bundle, result)
    if outlook is None:
        st.caption(f"No PFS outlook for this model: {result.memo.get('outlook_problem', '')}")
        return
    for col, months in zip(st.columns(4), sorted(outlook.at), strict=False):
        interval = outlook.at_interval.get(months)
        band = "" if interval is None else f"95 % band {interval[0]:.0%}–{interval[1]:.0%}. "
        col.metric(f"Progressed by {months} months", f"{outlook.at[months]:.0%}", help=band + outlook.method)
    if outlook.sentence:
        st.markdown(outlook.sentence + " The curve is under *Outlook and cohort*.")
    if outlook.note:
        st.caption(outlook.note)


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
    left, right = st.columns(2)
    if e.lab_shap is not None:
        s = e.lab_shap
        if figures["shap"] is not None:
            show_chart(left, figures["shap"], key="shap_chart", name="lab_shap")
        else:
            left.info("No lab value was given: nothing to attribute; the model used the training medians.")
        left.caption(f"SHAP values ({s.method}); base {s.base_value:.3f} + sum = {s.output:.3f}.")
        missing = [schema.label(n) for n, imputed in zip(s.names, s.imputed, strict=True) if imputed]
        if missing:
            left.caption(f"Not measured, imputed with the training median (no attribution of their own; their "
                         f"effect is in the base value): {', '.join(missing)}.")
    else:
        left.info("This model uses no lab values.")
    show_chart(right, figures["modality"], key="modality_chart", name="modality_contributions")
    right.caption("Exact Shapley values over the modalities; an absent modality is replaced by the model's "
                  "'missing' input (images) or the training medians (labs).")
    if e.lesions is not None:
        first, second = st.columns(2)  # a row of its own: the lesion labels are long
        show_chart(first, figures["lesion_features"], key="lesion_feature_chart", name="lesion_measurement_shap")
        show_chart(second, figures["lesions"], key="lesion_chart", name="lesion_shares")
        second.caption(f"Each lesion's share of the risk: {e.lesions.method}. 'Not a lesion' is the part of "
                      "measurements no lesion makes up (e.g. no SSTR-negative disease lowers the risk). Drawn on "
                      "the PET/CT viewer and the 3D view as 'Lesion contribution'.")
    else:
        _measurements(right, e.prediction.image_measurements)


def _measurements(where: Any, values: dict[str, float]) -> None:
    """What the model read of the images, with plain labels and units (lesion measurements or older read-outs)."""
    from pfs_core.features.readouts import MEASUREMENT_UNITS
    from pfs_core.results.report import FEATURE_LABELS

    if not values:
        return
    labels = [FEATURE_LABELS.get(k, (k.replace("_", " "), MEASUREMENT_UNITS.get(k, ""))) for k in values]
    where.dataframe(pd.DataFrame({"measurement": [label for label, _unit in labels], "value": list(values.values()),
                                  "unit": [unit for _label, unit in labels]}), hide_index=True)
    where.caption("What the model measured on the PET and CT.")


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


def _scene(result: CaseResult) -> None:
    from pfs_core.viz import mesh as geometry
    from pfs_core.viz.scene import mesh3d_figure

    maps = result.remember("scene_maps", lambda: viewer.overlay_maps(result.explanation))
    if result.ct is None or not maps:
        st.info("No lesion contribution, Grad-CAM or read-out map for this model or case (they need a model that "
                "reads an image, and a CT).")
        return
    c1, c2, c3 = st.columns(3)
    label = c1.radio("Map", list(maps), horizontal=True, key="cam_branch", format_func=viewer.map_name)
    level = c2.slider("Map level", 0.1, 0.95, 0.5, 0.05, key="cam_level")
    suv = c3.slider("PET hotspot SUV", 2.0, 30.0, 8.0, 0.5, key="suv_level")
    show_lesions, show_organs = _layer_toggles(result, prefix="scene")
    viewer.map_note(result.explanation, label)
    key = (label, level, suv)
    if key not in result.meshes:
        cam = maps[label]
        pet = result.pet
        result.meshes[key] = geometry.case_scene(
            result.ct.data, result.ct.affine, None if pet is None else pet.data, None if pet is None else pet.affine,
            np.asarray(cam.dataobj), cam.affine, suv_level=suv, cam_level=level, map_name=viewer.map_name(label))
    extra = lesion_view.surfaces(result, lesions=show_lesions, organs=show_organs)
    title = f"Body, PET > SUV {suv:g}, {viewer.map_name(label)} ≥ {level}"
    show_chart(st, mesh3d_figure([*result.meshes[key], *extra], title=title), key="scene_chart", name="scene_3d")


def _layer_toggles(result: CaseResult, *, prefix: str) -> tuple[bool, bool]:
    """Check boxes for the lesion outlines/surfaces and the optional organ layer (off without a measurement)."""
    measured = lesion_view.current(result) is not None
    c1, c2 = st.columns(2)
    lesions = c1.checkbox("Lesions (SSTR-positive / SSTR-negative)", value=True, disabled=not measured,
                          key=f"{prefix}_lesions", help="automatic delineation; see the Lesions tab")
    organs = c2.checkbox("Organs", value=False, disabled=not measured, key=f"{prefix}_organs")
    return lesions and measured, organs and measured


def _cohort(bundle: Any, result: CaseResult) -> None:
    from pfs_core.viz.curves import km_figure, patient_pfs_figure, risk_distribution_figure

    p = result.explanation.prediction
    oof = bundle.training_oof
    probs = oof["oof_probability"].to_numpy(float)
    times, events = oof["pfs_months"].to_numpy(float), oof["progressed"].to_numpy(int)

    def build() -> tuple[Any, Any, Any, float]:
        groups = np.where(probs >= bundle.risk_threshold, "high", "low").tolist()
        km, p_value = km_figure(times, events, groups, highlight=p.risk_group, title="Training cohort by risk group")
        outlook = outlook_of(bundle, result)
        curve = None if outlook is None else patient_pfs_figure(outlook, cohort=(times, events))
        return curve, risk_distribution_figure(probs, p.probability, threshold=p.risk_threshold), km, p_value

    curve, dist, km, p_value = result.remember("cohort_figures", build)
    outlook = outlook_of(bundle, result)
    left, right = st.columns(2)
    if outlook is None:
        left.info(f"No PFS curve for this model: {result.memo.get('outlook_problem', '')}")
    else:
        show_chart(left, curve, key="pfs_curve_chart", name="patient_pfs_curve")
        left.caption(outlook.method + (f" {outlook.note}" if outlook.note else ""))
    show_chart(right, km, key="km_chart", name="training_kaplan_meier")
    right.caption(f"Kaplan–Meier of the training cohort (out-of-fold risk groups), numbers at risk below; log-rank "
                  f"p = {p_value:.3g}. This patient's group ({p.risk_group}) is highlighted.")
    show_chart(st, dist, key="dist_chart", name="risk_distribution")


#: Plain names of the explanation's timing stages.
STAGE_NAMES = {"predict": "prediction", "lab_shap": "lab SHAP values", "modalities": "modality Shapley values",
               "gradcam": "Grad-CAM", "lesions": "lesion contributions", "readout_maps": "read-out maps",
               "measure": "lesion measurement", "total": "total"}


def _run_info(result: CaseResult) -> None:
    p, e = result.explanation.prediction, result.explanation
    st.write(f"**Device:** {device_label()} (torch device `{p.device}`) · **Model:** {p.model_name} "
             f"v{p.model_version} · sha256 `{p.bundle_sha256[:16]}…`")
    timings = pd.DataFrame({"stage": [STAGE_NAMES.get(k, k.replace("_", " ")) for k in e.timings_s],
                            "seconds": list(e.timings_s.values())})
    st.dataframe(timings, hide_index=True)
    st.caption(f"From the click to the result: {result.seconds:.2f} s (loading images included).")


def _report(result: CaseResult) -> None:
    """The tumour-board report (PDF and HTML), next to the result: case id, a note, two download buttons.

    The files are built when a button is pressed (Streamlit runs the callable then), from what is on screen,
    and kept in this result's memory for the other button; nothing is written to disk.
    """
    with st.container(border=True):
        st.markdown("**Tumour-board report**")
        left, middle, right = st.columns([2, 4, 2], vertical_alignment="bottom")
        case_id = left.text_input("Case id", value=result.case_id, key=f"report_case_id_{result.token}", max_chars=64,
                                  help="printed on the report; use the board's pseudonymous case number")
        note = middle.text_area("Note for the board", key=f"report_note_{result.token}", height=68, max_chars=4000,
                                placeholder="e.g. question to the board, clinical context (printed on the report)")
        build = _report_builder(result, case_id.strip() or result.case_id, note)
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in (case_id.strip() or result.case_id))
        right.download_button("Report (PDF)", lambda: build().pdf, file_name=f"pfs_report_{stem}.pdf",
                              mime="application/pdf", key="report_pdf", on_click="ignore", type="primary",
                              icon=":material/picture_as_pdf:")
        right.download_button("Report (HTML)", lambda: build().html, file_name=f"pfs_report_{stem}.html",
                              mime="text/html", key="report_html", on_click="ignore", icon=":material/html:")
        st.caption("Case id, model, probability with its interval, the outlook, missing inputs, the key images (PET "
                   "MIP and the slices of the top lesions with outlines), the lesion table and measurements, the "
                   "explanation charts and your note.")


def _report_builder(result: CaseResult, case_id: str, note: str) -> Any:
    """A function that builds (once per case id and note) the report of ``result``."""
    from pfs_core.results.report import case_report

    measurement = lesion_view.measurement_of(result)
    outlook = result.memo.get("outlook")
    key = f"report::{case_id}::{hash(note)}::{id(measurement)}"

    def build() -> Any:
        return result.remember(key, lambda: case_report(
            result.explanation, labs=result.labs, inputs=result.inputs, case_id=case_id, pet=result.pet,
            ct=result.ct, measurement=measurement, outlook=None if outlook is None else outlook.at, note=note))

    return build
