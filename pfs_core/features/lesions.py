"""The lesion measurements the image models read, and each lesion's share of them.

Since issue 23 every image model reads the measurements of :func:`pfs_core.measure.case.measure_case`
(lesions delineated on the native PET/CT grids against the patient's own liver) instead of
read-outs of the 12-mm model grid. Two blocks, one per image branch:

- PET (:data:`PET_LESION_FEATURES`): SSTR-positive disease: volume, volume-weighted and maximal
  tumour-to-liver ratio, uptake heterogeneity, number of lesions;
- CT (:data:`CT_LESION_FEATURES`): liver tumour fraction and SSTR-negative disease (liver lesions
  seen on the CT without uptake above the liver): volume and number.

Both need the PET and the CT (SSTR status is the PET uptake of a lesion seen on either); a
patient without one of them has neither block, and the models use their "missing" input.
Model scale: log(1 + x) of volumes, ratios and counts; fractions and heterogeneity as they are.

:func:`lesion_shares` says how much of each feature each lesion makes up, so that a feature's
SHAP value can be handed on to the lesions that produced it (:mod:`pfs_core.explain.lesions`).
Measuring a cohort: :mod:`pfs_core.measure.features`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PET_LESION_FEATURES: tuple[str, ...] = (
    "sstr_positive_volume_ml", "tumour_to_liver_mean", "tumour_to_liver_max", "heterogeneity",
    "sstr_positive_count",
)
CT_LESION_FEATURES: tuple[str, ...] = ("liver_tumour_fraction", "sstr_negative_volume_ml", "sstr_negative_count")
LESION_FEATURES: tuple[str, ...] = PET_LESION_FEATURES + CT_LESION_FEATURES
#: Columns of each image branch's block in :data:`LESION_FEATURES`.
FEATURE_BLOCKS: dict[str, tuple[str, ...]] = {"pet": PET_LESION_FEATURES, "ct": CT_LESION_FEATURES}
#: Plain labels for the interface.
FEATURE_LABELS: dict[str, str] = {
    "sstr_positive_volume_ml": "SSTR-positive tumour volume",
    "tumour_to_liver_mean": "Tumour-to-liver ratio (volume-weighted)",
    "tumour_to_liver_max": "Tumour-to-liver ratio (hottest lesion)",
    "heterogeneity": "Uptake heterogeneity",
    "sstr_positive_count": "Number of SSTR-positive lesions",
    "liver_tumour_fraction": "Liver tumour fraction",
    "sstr_negative_volume_ml": "SSTR-negative tumour volume",
    "sstr_negative_count": "Number of SSTR-negative lesions",
}
#: Units of the measurements in their own scale (:func:`raw_features`).
FEATURE_UNITS: dict[str, str] = {
    "sstr_positive_volume_ml": "mL", "tumour_to_liver_mean": "× liver", "tumour_to_liver_max": "× liver",
    "heterogeneity": "SD / mean", "sstr_positive_count": "", "liver_tumour_fraction": "of the liver",
    "sstr_negative_volume_ml": "mL", "sstr_negative_count": "",
}
_AS_IS = ("liver_tumour_fraction", "heterogeneity")
FEATURE_VERSION = "1"


def raw_features(measured: dict[str, float], lesions: pd.DataFrame) -> dict[str, float]:
    """The features of :data:`LESION_FEATURES` in their own units (mL, ratio, count, fraction)."""
    out = {name: float(measured.get(name, np.nan)) for name in LESION_FEATURES}
    out["sstr_positive_count"] = float((lesions["sstr_status"] == "SSTR-positive").sum())
    if not np.isfinite(out["liver_tumour_fraction"]):
        out["liver_tumour_fraction"] = 0.0
    return out


def model_scale(raw: dict[str, float]) -> np.ndarray:
    """(len(LESION_FEATURES),) float32: log(1 + x), fractions as they are."""
    values = [raw[n] if n in _AS_IS else np.log1p(max(raw[n], 0.0)) for n in LESION_FEATURES]
    return np.asarray(values, dtype=np.float32)


def from_model_scale(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`model_scale`: (len(LESION_FEATURES),) measurements in their own units."""
    values = np.asarray(values, dtype=np.float64)
    return np.array([v if n in _AS_IS else np.expm1(v) for n, v in zip(LESION_FEATURES, values, strict=True)])


def lesion_shares(lesions: pd.DataFrame) -> pd.DataFrame:
    """Each lesion's share (0..1) of each feature: rows = ``lesion_id``, columns = :data:`LESION_FEATURES`.

    Volumes and the liver tumour fraction by volume; the volume-weighted ratio by volume × SUVmean
    (its numerator); heterogeneity by volume × heterogeneity; the maximal ratio all to the hottest
    lesion; counts equally. A column sums to 1 over the lesions that make up the feature, or to 0
    when none does (e.g. no SSTR-negative lesion).
    """
    ids = lesions["lesion_id"].to_numpy(int)
    pos = (lesions["sstr_status"] == "SSTR-positive").to_numpy()
    neg = (lesions["sstr_status"] == "SSTR-negative").to_numpy()
    liver = (lesions["site"] == "liver").to_numpy()
    vol = lesions["volume_ml"].to_numpy(float)
    suv = lesions["suv_mean"].to_numpy(float)
    het = np.nan_to_num(lesions["heterogeneity"].to_numpy(float))
    hottest = np.zeros(len(ids), bool)
    if pos.any():
        hottest[np.flatnonzero(pos)[np.argmax(lesions["tumour_to_liver"].to_numpy(float)[pos])]] = True
    weights = {
        "sstr_positive_volume_ml": vol * pos, "tumour_to_liver_mean": vol * suv * pos,
        "tumour_to_liver_max": hottest.astype(float), "heterogeneity": vol * het * pos,
        "sstr_positive_count": pos.astype(float), "liver_tumour_fraction": vol * liver,
        "sstr_negative_volume_ml": vol * neg, "sstr_negative_count": neg.astype(float),
    }
    shares = {name: _normalised(w) for name, w in weights.items()}
    return pd.DataFrame(shares, index=pd.Index(ids, name="lesion_id"))[list(LESION_FEATURES)]


def _normalised(weights: np.ndarray) -> np.ndarray:
    total = float(weights.sum())
    return weights / total if total > 0 else np.zeros_like(weights, dtype=float)
