"""Case Explorer, lesions: the case's organ masks, its lesion measurement, the lesion table and each lesion's share.

Organ masks come from an upload beside the PET/CT (when given), else from the simulated masks shipped
beside a sample case, else from the organ network. A model that reads lesion measurements measures the
case in :func:`pfs_core.explain.explain_case` with them, and this tab shows that measurement; for other
models one :func:`pfs_core.measure.measure_case` call here does it. The measurement lives in the case's
result in this browser session's memory only; an uploaded mask file is written to a private temporary
folder that is deleted as soon as it is read, and no patient value is logged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from pfs_core.errors import InputError, PfsError
from pfs_ui.common import show_error, uploaded_files

# Heavy imports (torch, MONAI, pyvista, the measurement) sit inside the functions that need them.

STATE_KEY = "lesions"  # in CaseResult.memo
UPLOAD_KEY = "organ_up"
#: Names the organ-mask uploader takes. Checked here, not by the browser (no type list), which would drop another
#: file with only a red icon and leave the organ network to delineate the organs without a word.
ORGAN_SUFFIXES = (".nii", ".nii.gz", ".json", ".dcm", ".zip")
NO_NETWORK = ("Organ network not installed; upload organ masks (below) to measure the lesions of this case. "
              "Liver, spleen and kidneys are needed: a TotalSegmentator output folder as .zip, a multi-label "
              "NIfTI with a JSON of label names, or a DICOM SEG / RTSTRUCT.")


@dataclass
class LesionState:
    """The measurement of one case for one organ source (or why there is none), with figures built from it."""

    signature: tuple[Any, ...]
    measurement: Any = None
    error: str | None = None
    no_network: str | None = None
    memo: dict[str, Any] = field(default_factory=dict)

    def remember(self, key: str, build: Any) -> Any:
        if key not in self.memo:
            self.memo[key] = build()
        return self.memo[key]


def organ_upload_problem(upload: Any) -> str | None:
    """Why an uploaded organ-mask file is not one the organ reader takes (from its name), or None."""
    if str(upload.name).lower().endswith(ORGAN_SUFFIXES):
        return None
    return (f"Organ masks: {upload.name} is not a NIfTI (.nii, .nii.gz), a JSON of label names, a DICOM SEG / "
            "RTSTRUCT (.dcm) or a TotalSegmentator folder as .zip; upload one of these, or remove it to let the "
            "organ network delineate the organs.")


def case_organs(inputs: Any, ct: Any) -> Any:
    """Organ masks of the case's inputs (upload, then shipped sample masks), or None for the organ network."""
    return _given_organs(ct, list(getattr(inputs, "organ_uploads", []) or []), getattr(inputs, "organs_path", None))


def _given_organs(ct: Any, uploads: list[Any], shipped: Path | None) -> Any:
    if uploads:
        return _uploaded_organs(ct, uploads)
    if shipped is not None:
        return _shipped_organs(ct, shipped)
    return None


def current(result: Any) -> Any:
    """The measurement of ``result`` made by :func:`render_lesions` in this run, or None."""
    state: LesionState | None = result.memo.get(STATE_KEY)
    return None if state is None else state.measurement


def current_state(result: Any) -> LesionState | None:
    return result.memo.get(STATE_KEY)


def measurement_of(result: Any) -> Any:
    """The measurement shown: the Lesions tab's (:func:`current`), else the model's own, else None."""
    measured = current(result)
    return measured if measured is not None else getattr(result.explanation, "measurement", None)


def render_lesions(result: Any) -> None:
    """The Lesions tab: organ source, key features, the lesion table with each lesion's share of the risk."""
    from pfs_core.results.report import DELINEATION_CAVEAT, feature_rows, lesion_display_table

    if result.pet is None or result.ct is None:
        st.info("Lesion measurement needs both a PET and a CT (and a model that reads images, so that they are "
                "loaded).")
        return
    state = _measure(result, list(result.organ_uploads or []))
    if state.no_network:
        st.info(state.no_network, icon=":material/info:")
    if state.error:
        show_error(InputError(state.error))
    m = state.measurement
    if m is None:
        return
    st.caption(f"Organ masks: {m.organs.source}.")
    if m.organs.from_network:
        st.warning("The organ network is trained on simulated CTs only and is not yet reliable on real CT "
                   "(docs/organ_seg.md): check the organ outlines, or upload organ masks (e.g. TotalSegmentator "
                   "output) with the PET/CT and predict again.", icon=":material/warning:")
    _key_features(m.features)
    lesions = result.explanation.lesions
    table = lesion_display_table(m.lesions if lesions is None else lesions.lesions)
    if lesions is not None:
        st.caption("'share of the risk': each lesion's part of the predicted probability, in percentage points "
                   "(Why tab; the 'Lesion contributions' map on the slices and in the 3D view).")
    if len(table):
        st.dataframe(table, hide_index=True, key="lesion_table")
    else:
        st.info("No lesion was found.")
    with st.expander("All per-patient features"):
        st.dataframe({"feature": [r[0] for r in feature_rows(m.features)],
                      "value": [r[1] for r in feature_rows(m.features)],
                      "unit": [r[2] for r in feature_rows(m.features)]}, hide_index=True, key="feature_table")
    st.caption(DELINEATION_CAVEAT)


def _key_features(f: dict[str, float]) -> None:
    cols = st.columns(3)
    cols[0].metric("SSTR-positive volume", f"{f['sstr_positive_volume_ml']:.1f} mL",
                   help="sum of the SSTR-positive lesions' volumes")
    cols[1].metric("Tumour-to-liver, max / mean", f"{f['tumour_to_liver_max']:.2f} / {f['tumour_to_liver_mean']:.2f}",
                   help="SUVmax of the hottest lesion / volume-weighted SUVmean, each divided by the liver "
                        f"reference (SUV {f['liver_suv_reference']:.2f})")
    cols[2].metric("Liver tumour fraction", f"{100.0 * f['liver_tumour_fraction']:.1f} %",
                   help="lesion volume in the liver / liver volume")
    cols = st.columns(3)
    cols[0].metric("SSTR-negative lesions", f"{f['sstr_negative_count']:.0f}",
                   help="liver lesions seen on the CT with uptake below the liver's")
    cols[1].metric("SSTR-negative volume", f"{f['sstr_negative_volume_ml']:.1f} mL")
    cols[2].metric("Total lesion uptake", f"{f['total_lesion_uptake']:.0f} SUV·mL",
                   help="sum over SSTR-positive lesions of volume × SUVmean")


# ----------------------------------------------------------------------------- measuring


def _signature(uploads: list[Any]) -> tuple[Any, ...]:
    return tuple((getattr(u, "file_id", None) or u.name, getattr(u, "size", None) or len(u.getvalue()))
                 for u in uploads)


def _measure(result: Any, uploads: list[Any]) -> LesionState:
    """The stored state when the organ source is unchanged, else a new measurement (or the reason for none)."""
    signature = _signature(uploads)
    state: LesionState | None = result.memo.get(STATE_KEY)
    if state is not None and state.signature == signature:
        return state
    state = LesionState(signature=signature)
    if result.explanation.measurement is not None:  # the model's own measurement: the one it read
        state.measurement = result.explanation.measurement
        result.memo[STATE_KEY] = state
        return state
    with st.spinner("Delineating organs and lesions..."):
        try:
            state.measurement = _measure_case(result, _organs(result, uploads))
        except _NoNetwork as exc:
            state.no_network = str(exc)
        except PfsError as exc:
            state.error = str(exc)
    result.memo[STATE_KEY] = state
    return state


class _NoNetwork(Exception):
    """No organ source: no upload, no shipped masks, and no (complete) organ network installed."""


def _measure_case(result: Any, organs: Any) -> Any:
    from pfs_core.measure import measure_case

    try:
        return measure_case(result.pet, result.ct, organs=organs)
    except PfsError:
        raise
    except Exception as exc:  # noqa: BLE001 - an odd image must give an error box, never a traceback
        raise InputError(f"lesion measurement failed on this case ({type(exc).__name__}); check that the PET "
                         "and CT are of the same patient and study") from None


def _organs(result: Any, uploads: list[Any]) -> Any:
    """OrganMasks from the upload, the shipped sample masks or the organ network (else :class:`_NoNetwork`)."""
    from pfs_core.errors import BundleError
    from pfs_core.measure import find_organs

    given = _given_organs(result.ct, uploads, result.sample_organs)
    if given is not None:
        return given
    try:
        return find_organs(result.ct)
    except ImportError:
        raise _NoNetwork(NO_NETWORK) from None
    except BundleError as exc:  # no (complete) organ network bundle
        raise _NoNetwork(f"{NO_NETWORK} ({exc})") from None


def _shipped_organs(ct: Any, path: Path) -> Any:
    """The simulated organ masks of a sample case (label names in the header, as TotalSegmentator writes them)."""
    from pfs_core.measure import find_organs

    organs = find_organs(ct, organs=path)
    present = len(organs.present)
    return dataclasses.replace(organs, source=f"simulated organ masks shipped with sample case "
                                              f"'{path.name}' ({present} organ{'s' if present != 1 else ''})")


def _uploaded_organs(ct: Any, uploads: list[Any]) -> Any:
    """Read the uploaded organ masks onto the CT grid; every problem is an InputError naming the user's file."""
    from pfs_core.io.dicom import unzipped
    from pfs_core.measure import find_organs

    names = [u for u in uploads if u.name.lower().endswith(".json")]
    masks = [u for u in uploads if not u.name.lower().endswith(".json")]
    if len(masks) != 1 or len(names) > 1:
        raise InputError(f"organ masks: upload one mask file (or one .zip of a TotalSegmentator folder) and at most "
                         f"one JSON of label names, not {len(masks)} mask file(s) and {len(names)} JSON file(s)")
    files = {"organs": masks[0], **({"names": names[0]} if names else {})}
    with uploaded_files(**files) as paths:
        hidden = {str(path.parent): "" for path in paths.values()}
        try:
            if paths["organs"].suffix.lower() == ".zip":
                if names:
                    raise InputError(f"{names[0].name}: label names apply to a multi-label NIfTI, not to a .zip "
                                     "folder; leave the JSON out")
                with unzipped(paths["organs"]) as folder:
                    top = _single_folder(folder)
                    hidden[str(folder)] = hidden[folder.name] = masks[0].name
                    organs = find_organs(ct, organs=top)
                    source = _hide(organs.source, hidden)
                    return dataclasses.replace(organs, source=f"{source} from '{masks[0].name}'")
            organs = find_organs(ct, organs=paths["organs"], label_names=paths.get("names"))
            return dataclasses.replace(organs, source=_hide(organs.source, hidden))
        except PfsError as exc:
            raise InputError(_hide(str(exc), hidden)) from None
        except Exception as exc:  # noqa: BLE001 - a broken upload must give an error box, never a traceback
            raise InputError(f"{masks[0].name}: cannot read these organ masks ({type(exc).__name__})") from None


def _single_folder(folder: Path) -> Path:
    """The folder itself, or its only subfolder when the zip holds one folder (``segmentations/...``)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def _hide(text: str, folders: dict[str, str]) -> str:
    """``text`` with each private temporary folder (a path, or a unique name) replaced by what the user knows."""
    for folder, shown in sorted(folders.items(), key=lambda item: len(item[0]), reverse=True):
        text = text.replace(f"{folder}/", f"{shown}/" if shown else "").replace(folder, shown or "upload")
    return text


# ----------------------------------------------------------------------------- figures' inputs


def outlines(result: Any, *, organs: bool) -> Any:
    """:class:`pfs_core.viz.images.Outlines` on the CT grid for the slices, or None without a measurement."""
    from pfs_core.io.organs import ORGANS
    from pfs_core.viz.images import Outlines

    m = measurement_of(result)
    if m is None:
        return None
    state = current_state(result)

    def build() -> dict[int, str]:
        return dict(zip(m.lesions["lesion_id"].astype(int).tolist(), m.lesions["sstr_status"].tolist(), strict=True))

    if state is not None and state.measurement is m:
        status = state.remember("status", build)
    else:  # not measured in the Lesions tab: the model's own measurement, kept with the result
        status = result.remember("lesion_status", build)
    names = {c: n for c, n in ORGANS.items() if n in m.organs.present}
    return Outlines(lesions=m.lesion_labels, lesion_status=status, organs=m.organs.labels if organs else None,
                    organ_names=names if organs else {})


def surfaces(result: Any, *, lesions: bool, organs: bool) -> list[Any]:
    """Lesion surfaces by SSTR status and (optionally) organ surfaces, built once per measurement."""
    from pfs_core.io.organs import ORGANS
    from pfs_core.viz import mesh as geometry

    state = current_state(result)
    if state is None or state.measurement is None:
        return []
    m = state.measurement
    ct = result.ct
    meshes = []
    if lesions:
        spec = outlines(result, organs=False)
        meshes += state.remember("lesion_meshes", lambda: geometry.lesion_surfaces(
            m.lesion_labels, ct.affine, spec.lesion_status))
    if organs:
        meshes += state.remember("organ_meshes", lambda: geometry.organ_surfaces(
            m.organs.labels, ct.affine, {c: n for c, n in ORGANS.items() if n in m.organs.present}))
    return meshes
