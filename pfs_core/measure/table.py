"""Per-lesion table and per-patient features from delineated lesions.

SUV in SUVbw, volumes in mL, HU, centres in world mm (RAS+, the CT's NIfTI convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from pfs_core.io.organs import ORGANS

LESION_COLUMNS = (
    "lesion_id", "site", "sstr_status", "volume_ml", "suv_max", "suv_mean", "suv_peak", "tumour_to_liver",
    "heterogeneity", "mean_hu", "centre_x_mm", "centre_y_mm", "centre_z_mm",
)
SITES = ("liver", "bone", "pancreas", "soft_tissue", "other_organ")
BONE_HU = 150.0  # median attenuation above this: the lesion lies in bone (trabecular bone ≥ ~150 HU)
PEAK_ML = 1.0  # SUVpeak: mean of the 1 cm³ sphere with the highest mean (PERCIST; Lodge, JNM 2012)


@dataclass(frozen=True)
class LesionVoxels:
    """One lesion's voxels: values sampled at their centres and the grid they came from."""

    suv: np.ndarray  # SUVbw per voxel
    hu: np.ndarray  # CT attenuation per voxel (HU)
    organ: np.ndarray  # organ code per voxel (:data:`ORGANS`, 0 = none)
    world: np.ndarray  # (N, 3) voxel centres (mm)
    voxel_ml: float
    suv_peak: float


def sphere_kernel(spacing_mm: tuple[float, float, float], volume_ml: float = PEAK_ML) -> np.ndarray:
    """Normalised spherical averaging kernel of ``volume_ml`` on a grid of ``spacing_mm``."""
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    half = [max(int(radius // s), 0) for s in spacing_mm]
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, spacing_mm, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    ball = (x**2 + y**2 + z**2 <= radius**2).astype(np.float32)
    return ball / ball.sum()


def suv_peak(pet: np.ndarray, lesion: np.ndarray, kernel: np.ndarray) -> float:
    """Highest 1-mL sphere mean whose centre lies in ``lesion`` (same grid as ``pet``, SUVbw)."""
    box = ndimage.find_objects(lesion.astype(np.uint8))[0]
    pad = [k // 2 for k in kernel.shape]
    grown = tuple(slice(max(s.start - p, 0), s.stop + p) for s, p in zip(box, pad, strict=True))
    local = ndimage.convolve(pet[grown], kernel, mode="constant", cval=0.0)
    return float(local[lesion[grown]].max())


def _site(v: LesionVoxels) -> str:
    codes = np.bincount(v.organ, minlength=len(ORGANS) + 1)
    top = int(np.argmax(codes))
    if codes[top] * 2 >= len(v.organ) and top > 0:
        name = ORGANS[top]
        return name if name in ("liver", "pancreas") else "other_organ"
    return "bone" if float(np.median(v.hu)) > BONE_HU else "soft_tissue"


def lesion_row(lesion_id: int, status: str, v: LesionVoxels, liver_suv: float) -> dict[str, object]:
    """One row of :data:`LESION_COLUMNS`."""
    mean = float(v.suv.mean())
    centre = v.world.mean(axis=0)
    return {
        "lesion_id": lesion_id, "site": _site(v), "sstr_status": status,
        "volume_ml": round(len(v.suv) * v.voxel_ml, 3), "suv_max": round(float(v.suv.max()), 2),
        "suv_mean": round(mean, 2), "suv_peak": round(v.suv_peak, 2),
        "tumour_to_liver": round(float(v.suv.max()) / liver_suv, 3),
        "heterogeneity": round(float(v.suv.std()) / mean, 3) if mean > 0 else math.nan,
        "mean_hu": round(float(v.hu.mean()), 1),
        "centre_x_mm": round(float(centre[0]), 1), "centre_y_mm": round(float(centre[1]), 1),
        "centre_z_mm": round(float(centre[2]), 1),
    }


def patient_features(table: pd.DataFrame, *, liver_suv: float, liver_volume_ml: float) -> dict[str, float]:
    """Per-patient summary of the lesion table (names documented in docs/measure.md)."""
    pos = table[table["sstr_status"] == "SSTR-positive"]
    neg = table[table["sstr_status"] == "SSTR-negative"]
    vol = pos["volume_ml"].to_numpy(float)
    total = float(vol.sum())
    liver_lesions = float(table.loc[table["site"] == "liver", "volume_ml"].sum())
    features: dict[str, float] = {
        "sstr_positive_volume_ml": round(total, 3),
        "total_lesion_uptake": round(float((vol * pos["suv_mean"]).sum()), 2),
        "tumour_to_liver_mean": round(float((vol * pos["suv_mean"]).sum()) / total / liver_suv, 3) if total else 0.0,
        "tumour_to_liver_max": round(float(pos["tumour_to_liver"].max()), 3) if len(pos) else 0.0,
        "sstr_negative_volume_ml": round(float(neg["volume_ml"].sum()), 3),
        "sstr_negative_count": float(len(neg)),
        "liver_tumour_fraction": round(min(liver_lesions / liver_volume_ml, 1.0), 4) if liver_volume_ml else math.nan,
        "heterogeneity": round(float((vol * pos["heterogeneity"]).sum()) / total, 3) if total else 0.0,
        "liver_suv_reference": round(liver_suv, 3),
        "liver_volume_ml": round(liver_volume_ml, 1),
    }
    for site in SITES:
        features[f"lesions_{site}"] = float((table["site"] == site).sum())
    return features
