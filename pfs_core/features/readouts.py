"""Liver-referenced quantitative read-outs of PET and CT on the model grid, without segmentation.

A reader of a somatostatin-receptor PET grades lesion uptake against the liver
(Krenning score; tumour-to-liver ratio) and notes how much of the liver is replaced
by tumour; on the CT, how much of the liver is hypodense. These functions measure
the same on the model grid (torch, batched, no parameters), for the ``classic``
model's features and as fixed read-outs of the networks' PET and CT branches.

PET (SUVbw):

- liver reference: median SUVbw of the voxels in :data:`LIVER_SUV_WINDOW`, in SSTR
  PET dominated by the liver, the largest organ of moderate uptake (spleen, kidneys
  and urine are hotter; muscle, fat and bowel colder). On the simulated cohorts its
  rank correlation with the true liver SUV is 0.997.
- hepatic region: voxels within ``LIVER_BAND`` of the liver reference, closed with a
  3-voxel cube, so that lesions inside the liver (hotter or colder) up to two model
  voxels across are enclosed; of that, the largest 26-connected part. A larger cube
  measured worse: it joins the liver to the spleen and kidneys. Without the largest-part
  step, the shells where the blurred edge of the spleen, a kidney or the urinary bladder
  passes through the liver's uptake were enclosed too and counted as hot hepatic voxels.
- hot hepatic lesions: region voxels above ``HOT_FACTOR`` × liver; their mean
  SUV / liver is the hepatic tumour-to-liver ratio. The factor is 1.4, not the band's
  1.25: the PET reaches the 12-mm grid without a second smoothing, so the liver's own
  voxels scatter by about ±15 % (5th-95th percentile 0.85-1.23 × liver, 99th 1.32) and at
  1.25 a few per cent of them counted as hot lesion. Being the dimmest "lesion" voxels they
  lowered the measured ratio, and Grad-CAM of the read-out layer put its maximum on them,
  2-6 cm from any lesion.
- cold hepatic lesions: voxels below ``COLD_FACTOR`` × liver one voxel inside the region
  (SSTR-negative or necrotic tumour). Counting them anywhere in the region took in the
  fat at the liver's edge, where a 12-mm voxel is half fat.

Measured on ``synth --n 400 --seed 7`` (12-mm grid; ``benchmarks/readout_signal.py``):
the hepatic tumour-to-liver ratio has a rank correlation of 0.59 with the true
volume-weighted ratio of SSTR-positive lesions (0.56 with the factor 1.25), the hepatic
lesion fraction 0.78 with the true liver tumour fraction (0.81), and the cold hepatic
volume 0.69 with the true SSTR-negative volume (0.41 when the liver's edge counted).
A logistic regression on the labs and these read-outs (``benchmarks/linear_reference.py``)
scores the same as with the former ones on 400 patients (AUROC 0.745 against 0.741) and
0.015 lower on 116 (0.639 against 0.654, within the spread of repeated CV). With PET-only
signal (``synth --n 400 --seed 11 --signal labs=0,pet=1,ct=0``; ``benchmarks/readout_variants.py``)
the PET read-outs alone score 0.631 against 0.647: the factor 1.4 drops the blurred edges of
low-uptake lesions, which carry the risk (0.649 at 1.25 with the inset). At 1.33, just above
the scatter's 99th percentile, they score 0.651, but the PET Grad-CAM of a ``lab_pet_ct``
bundle trained with it (this constant set to 1.33, ``train --cohort data/sim400/cohort.csv
--model lab_pet_ct --seed 2026``) peaked in a lesion in 10 of 16 short-PFS test cases against
12 at 1.4 (``benchmarks/explain_truth.py`` on ``synth --n 40 --seed 99``). Extra-hepatic
lesions are not measured; an organ whose rim touches the liver's is still joined to it.

CT (HU; unenhanced or low-dose CT of a PET/CT, where the liver is 50-70 HU):

- liver reference: median HU of the voxels in :data:`LIVER_HU_WINDOW`.
- hepatic region: voxels within ``CT_LIVER_BAND_HU`` of it, closed with a 3-voxel
  cube, then eroded by one voxel (the liver's rim mixes with fat on a 12-mm grid).
- hypodense voxels: region voxels more than ``HYPODENSE_HU`` below the reference.

Measured on ``synth --n 400 --seed 7``: the hypodense fraction has a rank
correlation of 0.62 with the true liver tumour fraction and 0.49 with the simulator's
CT risk part. After contrast the liver is brighter than the window: the reference
then falls back to :data:`LIVER_HU_FALLBACK` and the read-outs mean little.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms.utils import get_largest_connected_component_mask
from torch.nn import functional

#: SUVbw window that holds the liver in SSTR PET.
LIVER_SUV_WINDOW: tuple[float, float] = (4.0, 12.0)
LIVER_SUV_FALLBACK = 7.0  # typical liver SUVbw, used when no voxel lies in the window
LIVER_BAND = (0.8, 1.25)  # hepatic parenchyma, × liver reference
HOT_FACTOR = 1.4  # above the scatter of the liver's own 12-mm voxels (module docstring)
COLD_FACTOR = 0.6
COLD_INSET_VOXELS = 1  # cold voxels are counted this many voxels inside the region (module docstring)
#: Names (and order) of :func:`hepatic_readout`'s columns.
READOUT_NAMES: tuple[str, ...] = ("hepatic_tlr", "hepatic_hot_ml", "hepatic_cold_ml", "hepatic_lesion_fraction")
#: HU window that holds the liver on an unenhanced CT; the liver band and the hypodensity step (HU).
LIVER_HU_WINDOW: tuple[float, float] = (50.0, 75.0)
LIVER_HU_FALLBACK = 60.0
CT_LIVER_BAND_HU = 6.0
HYPODENSE_HU = 7.0
#: Channels of :func:`hepatic_maps` (the PET branch's read-out layer).
PET_MAP_NAMES: tuple[str, ...] = ("hot", "hot_suv_ratio", "cold", "hepatic_region")
#: Names (and order) of :func:`ct_hepatic_readout`'s columns.
CT_READOUT_NAMES: tuple[str, ...] = ("ct_hypodense_ml", "ct_hypodense_fraction")
#: Channels of :func:`ct_hepatic_maps` (the CT branch's read-out layer).
CT_MAP_NAMES: tuple[str, ...] = ("hypodense", "hepatic_region")
#: Units of :func:`measurements` (the keys), for display.
MEASUREMENT_UNITS: dict[str, str] = {"liver_suv": "SUVbw", "hepatic_tlr": "ratio", "hepatic_hot_ml": "mL",
                                     "hepatic_cold_ml": "mL", "hepatic_lesion_fraction": "fraction of liver",
                                     "liver_hu": "HU", "ct_hypodense_ml": "mL",
                                     "ct_hypodense_fraction": "fraction of liver"}


def _window_median(values: torch.Tensor, window: tuple[float, float], fallback: float) -> torch.Tensor:
    """(B, ...) → (B,) median of the values inside ``window`` (``fallback`` where none is)."""

    flat = values.flatten(1)
    inside = (flat >= window[0]) & (flat <= window[1])
    median = torch.nanmedian(torch.where(inside, flat, torch.nan), dim=1).values
    return torch.nan_to_num(median, nan=fallback)


def liver_suv(suv: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) SUVbw → (B,) liver reference SUVbw."""
    return _window_median(suv, LIVER_SUV_WINDOW, LIVER_SUV_FALLBACK)


def liver_hu(hu: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) HU → (B,) liver reference HU."""
    return _window_median(hu, LIVER_HU_WINDOW, LIVER_HU_FALLBACK)


def _dilate(mask: torch.Tensor, size: int = 3) -> torch.Tensor:
    return functional.max_pool3d(mask, size, 1, size // 2)


def _erode(mask: torch.Tensor, size: int = 3) -> torch.Tensor:
    return -_dilate(-mask, size)


def _closing(mask: torch.Tensor, size: int = 3) -> torch.Tensor:
    return _erode(_dilate(mask, size), size)


def _inset(region: torch.Tensor) -> torch.Tensor:
    return _erode(region, 2 * COLD_INSET_VOXELS + 1)


def ct_hepatic_masks(hu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 1, D, H, W) HU → liver reference HU (B, 1, 1, 1, 1), hepatic region and hypodense hepatic
    voxels (each 0/1, the shape of ``hu``)."""

    with torch.no_grad():
        liver = liver_hu(hu)[:, None, None, None, None]
        band = ((hu - liver).abs() <= CT_LIVER_BAND_HU).to(hu.dtype)
        region = _erode(_closing(band))
        return liver, region, region * (hu < liver - HYPODENSE_HU).to(hu.dtype)


def ct_hepatic_maps(hu: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) HU → (B, 2, D, H, W) voxel maps :data:`CT_MAP_NAMES` (hypodense hepatic voxels,
    hepatic region; 0/1), from which :func:`pool_ct_maps` gives the read-outs."""

    _, region, hypodense = ct_hepatic_masks(hu)
    return torch.cat([hypodense, region], dim=1)


def pool_ct_maps(maps: torch.Tensor, voxel_ml: float) -> torch.Tensor:
    """(B, 2, D, H, W) :func:`ct_hepatic_maps` → (B, 2) columns :data:`CT_READOUT_NAMES`; differentiable in ``maps``."""

    n_cold, n_region = maps.sum(dim=(2, 3, 4)).unbind(dim=1)
    return torch.stack([n_cold * voxel_ml, n_cold / n_region.clamp(min=1.0)], dim=1)


def ct_hepatic_readout(hu: torch.Tensor, voxel_ml: float) -> torch.Tensor:
    """(B, 1, D, H, W) HU → (B, 2) columns :data:`CT_READOUT_NAMES` (hypodense hepatic mL, fraction), >= 0."""
    return pool_ct_maps(ct_hepatic_maps(hu), voxel_ml)


def _largest_component(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) 0/1 → the largest 26-connected component of each sample (all 0 where the mask is)."""

    return torch.stack([get_largest_connected_component_mask(sample[0])[None] for sample in mask]).to(mask)


def hepatic_masks(suv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 1, D, H, W) SUVbw → liver reference SUVbw (B, 1, 1, 1, 1), hepatic region, hot and cold
    hepatic voxels (each 0/1, the shape of ``suv``).

    The region is the largest connected part of the closed band (the liver: the shells
    where the blurred edge of the spleen, a kidney or the bladder passes through the
    liver's uptake lie apart from it unless they touch it).
    """

    with torch.no_grad():
        liver = liver_suv(suv)[:, None, None, None, None]
        band = ((suv >= LIVER_BAND[0] * liver) & (suv <= LIVER_BAND[1] * liver)).to(suv.dtype)
        region = _largest_component(_closing(band))
        hot = region * (suv > HOT_FACTOR * liver).to(suv.dtype)
        return liver, region, hot, _inset(region) * (suv < COLD_FACTOR * liver).to(suv.dtype)


def hepatic_maps(suv: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) SUVbw → (B, 4, D, H, W) voxel maps :data:`PET_MAP_NAMES`: hot hepatic voxels (0/1),
    their SUV / liver SUV (0 elsewhere), cold hepatic voxels and the hepatic region (0/1)."""

    with torch.no_grad():
        liver, region, hot, cold = hepatic_masks(suv)
        return torch.cat([hot, hot * suv / liver, cold, region], dim=1)


def pool_hepatic_maps(maps: torch.Tensor, voxel_ml: float) -> torch.Tensor:
    """(B, 4, D, H, W) :func:`hepatic_maps` → (B, 4) columns :data:`READOUT_NAMES`; differentiable in ``maps``.

    ``hepatic_tlr``: mean SUV / liver of the hot hepatic voxels (0 without any);
    ``hepatic_hot_ml`` / ``hepatic_cold_ml``: their volumes (mL);
    ``hepatic_lesion_fraction``: (hot + cold) / hepatic region.
    """

    n_hot, ratio_sum, n_cold, n_region = maps.sum(dim=(2, 3, 4)).unbind(dim=1)
    tlr = ratio_sum / n_hot.clamp(min=1e-6)
    fraction = (n_hot + n_cold) / n_region.clamp(min=1.0)
    return torch.stack([tlr, n_hot * voxel_ml, n_cold * voxel_ml, fraction], dim=1)


def hepatic_readout(suv: torch.Tensor, voxel_ml: float) -> torch.Tensor:
    """(B, 1, D, H, W) SUVbw → (B, 4) columns :data:`READOUT_NAMES`, all >= 0 (see :func:`pool_hepatic_maps`)."""
    return pool_hepatic_maps(hepatic_maps(suv), voxel_ml)


def measurements(pet: np.ndarray | None, ct: np.ndarray | None, *, suv_max: float, ct_window_hu: tuple[float, float],
                 voxel_ml: float) -> dict[str, float]:
    """One case's liver references and hepatic read-outs from its model-grid PET and CT (D, H, W) in [0, 1].

    Either may be None (its keys are then left out). Keys and units:
    :data:`MEASUREMENT_UNITS`. These are what the image branches (and the
    ``classic`` model) measured; shown beside a prediction.
    """

    out: dict[str, float] = {}
    if pet is not None:
        suv = torch.from_numpy(np.asarray(pet, dtype=np.float32))[None, None] * float(suv_max)
        values = hepatic_readout(suv, voxel_ml)[0].tolist()
        out.update(liver_suv=round(float(liver_suv(suv)[0]), 3),
                   **{name: round(float(v), 4) for name, v in zip(READOUT_NAMES, values, strict=True)})
    if ct is not None:
        hu = to_hu(torch.from_numpy(np.asarray(ct, dtype=np.float32))[None, None], ct_window_hu)
        values = ct_hepatic_readout(hu, voxel_ml)[0].tolist()
        out.update(liver_hu=round(float(liver_hu(hu)[0]), 2),
                   **{name: round(float(v), 4) for name, v in zip(CT_READOUT_NAMES, values, strict=True)})
    return out


def to_hu(ct: torch.Tensor, window: tuple[float, float]) -> torch.Tensor:
    """Model-grid CT in [0, 1] (windowed to ``window`` HU) back to HU."""
    return ct * (window[1] - window[0]) + window[0]
