"""Explanations of one prediction: lab SHAP values, modality contributions, Grad-CAM maps.

:func:`explain_case` is the one call the ``explain`` command and the Case Explorer
page make. Each part is checked against the simulator's known truth by
``benchmarks/explain_truth.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pfs_core.explain.gradcam import GRADCAM_NOTE, gradcam_on_ct_grid
from pfs_core.explain.lesions import LesionContributions, lesion_contributions
from pfs_core.explain.readout_map import READOUT_MAP_NOTE, readout_maps_on_ct_grid
from pfs_core.explain.shapley import LabShap, ModalityShapley, lab_columns, lab_shap, modality_shapley
from pfs_core.inference import (
    case_data,
    case_device,
    case_lesion_features,
    case_measurement,
    predict_case,
    prepare_images,
    reads_lesions,
)
from pfs_core.io.labs import validate_labs
from pfs_core.io.organs import OrganMasks
from pfs_core.measure.case import Measurement

if TYPE_CHECKING:
    import nibabel as nib

    from pfs_core.inference import Prediction
    from pfs_core.io import Volume
    from pfs_core.models.bundle import Bundle
    from pfs_core.preprocessing.model_grid import PreparedCase


BACKGROUND_FILE = "background_labs.csv"


__all__ = ["Explanation", "explain_case", "lab_background", "LabShap", "ModalityShapley"]


GRADCAM_LINEAR_NOTE = ("zero everywhere: nothing this model read from the image raised the predicted risk (its "
                       "convolutional part adds nothing, as training kept every fold network at its logistic start, "
                       "epoch 0; what it reads are the liver-referenced read-outs, and none of them raised the risk; "
                       "Grad-CAM shows only evidence for a higher risk)")


GRADCAM_EMPTY_NOTE = ("zero everywhere: no region of this image raised the predicted risk (Grad-CAM shows only "
                      "evidence for a higher risk)")


@dataclass
class Explanation:
    """Everything shown for one case: the prediction and why."""

    prediction: Prediction
    lab_shap: LabShap | None
    modalities: ModalityShapley
    gradcam: dict[str, nib.Nifti1Image]
    prepared: PreparedCase | None
    timings_s: dict[str, float] = field(default_factory=dict)
    #: Branches whose Grad-CAM is zero everywhere: Grad-CAM keeps only evidence for a higher risk
    #: (ReLU), so nothing in that image raised this prediction. Said so, not drawn as an empty map.
    gradcam_empty: list[str] = field(default_factory=list)
    #: False when every fold network kept epoch 0 (its logistic start): the conv trunk then adds nothing.
    convolution_used: bool = True
    #: Where the liver-referenced read-outs were measured (:mod:`pfs_core.explain.readout_map`), on the CT grid;
    #: only for bundles that read them (before issue 23).
    readout_maps: dict[str, nib.Nifti1Image] = field(default_factory=dict)
    #: The case's lesion measurement and each lesion's share of the risk (models that read lesions).
    measurement: Measurement | None = None
    lesions: LesionContributions | None = None

    def gradcam_note(self, modality: str) -> str | None:
        """Why the Grad-CAM of ``modality`` is empty (None when it is not)."""
        if modality not in self.gradcam_empty:
            return None
        return GRADCAM_EMPTY_NOTE if self.convolution_used else GRADCAM_LINEAR_NOTE

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the ``explanation.json`` of the ``explain`` command)."""
        return {
            "prediction": self.prediction.to_dict(),
            "probability": self.prediction.probability,
            "interval": list(self.prediction.interval),
            "lab_shap": self.lab_shap.to_dict() if self.lab_shap is not None else None,
            "modality_contributions": self.modalities.to_dict(),
            "gradcam": {m: f"on the original CT grid, scaled 0-1: {GRADCAM_NOTE}" for m in self.gradcam},
            "gradcam_notes": {m: self.gradcam_note(m) for m in self.gradcam_empty},
            "readout_maps": {m: READOUT_MAP_NOTE for m in self.readout_maps},
            "lesion_contributions": self.lesions.to_dict() if self.lesions is not None else None,
            "timings_s": self.timings_s,
            "disclaimer": self.prediction.disclaimer,
        }


def lab_background(bundle: Bundle) -> pd.DataFrame:
    """SHAP background of the bundle: ``background_labs.csv`` (k-means centroids of the training labs).

    Bundles written before it existed fall back to one row of all-missing labs,
    i.e. the training medians (baseline Shapley values).
    """
    path = Path(bundle.path) / BACKGROUND_FILE
    columns = lab_columns(bundle)
    if BACKGROUND_FILE in bundle.manifest.get("files", {}) and path.is_file():
        frame = pd.read_csv(path)
        return frame.reindex(columns=columns)
    return pd.DataFrame([dict.fromkeys(columns)])


def explain_case(
    bundle: Bundle,
    *,
    pet: Volume | None,
    ct: Volume | None,
    labs: Mapping[str, float | str | None],
    device: str | None = None,
    gradcam: bool = True,
    gradcam_depth: int | None = None,
    shap_samples: int = 2048,
    threads: int | None = None,
    organs: OrganMasks | None = None,
    measurement: Measurement | None = None,
) -> Explanation:
    """Predict and explain one case (see the module docstrings of the parts for the methods).

    ``measurement``: the case's lesion measurement when already made (else made here, with ``organs``
    when given, for a model that reads lesion measurements).

    ``threads``: torch CPU threads (default :func:`pfs_core.models.device.cpu_threads`; the dashboard uses 1,
    see :func:`pfs_core.inference.case_device`).
    """

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    torch_device = case_device(device, threads=threads)
    prepared = prepare_images(bundle, pet, ct)
    lap("preprocess")
    measurement = case_measurement(bundle, pet, ct, organs=organs, measurement=measurement)
    lap("measure")
    prediction = predict_case(bundle, pet=pet, ct=ct, labs=labs, device=str(torch_device), prepared=prepared,
                              threads=threads, measurement=measurement)
    data = case_data(bundle, validate_labs(labs), prepared)
    data.lesion_features = case_lesion_features(bundle, measurement)
    lap("predict")
    shap_part = lab_shap(bundle, data, background=lab_background(bundle), device=torch_device,
                         n_samples=shap_samples)
    lap("lab_shap")
    modalities = modality_shapley(bundle, data, device=torch_device)
    lap("modality_shapley")
    lesion_part = lesion_contributions(bundle, data, measurement.lesions, device=torch_device) \
        if measurement is not None else None
    lap("lesion_shap")
    maps = {}
    convolution_used = any(m.info.get("best_epoch", 1) > 0 for m in bundle.members)
    body = ct.data > bundle.preprocess.body_threshold_hu if ct is not None and gradcam else None
    # Grad-CAM only of a convolutional part that is active: at epoch 0 everywhere it shows nothing the model uses.
    active = convolution_used or not reads_lesions(bundle)
    if gradcam and active and prepared is not None and bundle.spec.kind == "torch":
        maps = gradcam_on_ct_grid(bundle, data, prepared, depth=gradcam_depth, device=torch_device, body_mask=body)
    lap("gradcam")
    readouts = {}
    if gradcam and prepared is not None and not reads_lesions(bundle):
        readouts = readout_maps_on_ct_grid(prepared, tuple(m for m in ("pet", "ct") if m in bundle.spec.modalities),
                                           body_mask=body)
    lap("readout_maps")
    timings["total"] = round(sum(timings.values()), 4)
    empty = [m for m, image in maps.items() if not np.asarray(image.dataobj).any()]
    return Explanation(prediction=prediction, lab_shap=shap_part, modalities=modalities, gradcam=maps,
                       prepared=prepared, timings_s=timings, gradcam_empty=empty, readout_maps=readouts,
                       convolution_used=convolution_used, measurement=measurement, lesions=lesion_part)
