"""``measure_case`` on real anatomy: the TotalSegmentator example CT and its organ masks, with a simulated SSTR PET.

The PET (4-mm grid, its own origin; ``pfs_core.synth.placed``) is simulated from the real organ masks: liver SUV 7,
spleen 24, kidneys 15, adrenals 7, pancreas 3, body 1, air 0, blurred with a Gaussian of FWHM 6 mm, with a seeded
Poisson-like noise.
Three liver lesions are placed inside the liver, at least 10 mm from its edge (the scan's edge included): SSTR-positive 6.9 mL at
3.5 × liver and 3.3 mL at 4.5 × liver, and an SSTR-negative 5.5 mL sphere at 0.5 × liver whose CT is 35 HU
lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from pfs_core.io import Volume, load_ct
from pfs_core.io.organ_files import read_organ_masks
from pfs_core.io.organs import ORGAN_CODE, OrganMasks
from pfs_core.measure import find_organs, measure_case
from pfs_core.synth.placed import ORGAN_SUV, organ_activity, simulate_pet

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"
TOTALSEG = REAL / "totalseg_ct"
pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not (TOTALSEG / "example_ct.nii.gz").is_file() or not (TOTALSEG / "organs").is_dir(),
                       reason=f"real CT and TotalSegmentator masks not present at {TOTALSEG}"),
]

LIVER_SUV = ORGAN_SUV["liver"]
EDGE_MM = 10.0  # lesion surface to liver edge, at least
APART_MM = 20.0  # lesion surface to lesion surface, at least


@dataclass(frozen=True)
class Placed:
    volume_ml: float
    suv_ratio: float  # × liver
    hu_delta: float


PLACED = (Placed(6.9, 3.5, 0.0), Placed(3.3, 4.5, 0.0), Placed(5.5, 0.5, -35.0))


def radius_mm(volume_ml: float) -> float:
    return (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


def place_centres(liver: np.ndarray, spacing: tuple[float, float, float]) -> list[np.ndarray]:
    """CT voxel centres of the three lesions: deep in the liver (≥ EDGE_MM from its edge), ≥ APART_MM apart edge to edge."""
    inside = np.pad(liver, 1)  # the scan's edge is an edge of the liver too
    depth = ndimage.distance_transform_edt(inside, sampling=spacing)[1:-1, 1:-1, 1:-1]
    order = np.argsort(-depth, axis=None, kind="stable")
    candidates = np.column_stack(np.unravel_index(order[: int((depth > 0).sum())], liver.shape))
    centres: list[np.ndarray] = []
    for lesion in PLACED:
        r = radius_mm(lesion.volume_ml)
        for at in candidates:
            if depth[tuple(at)] < r + EDGE_MM:
                raise AssertionError("the liver has no room for the lesions")
            if all(np.linalg.norm((at - c) * spacing) >= r + radius_mm(p.volume_ml) + APART_MM
                   for c, p in zip(centres, PLACED, strict=False)):
                centres.append(at)
                break
    return centres


def placed_case() -> tuple[Volume, Volume, OrganMasks, list[np.ndarray]]:
    """The real CT with the placed lesions, its simulated PET, the TotalSegmentator masks, the lesion spheres."""
    ct = load_ct(TOTALSEG / "example_ct.nii.gz")
    organs = read_organ_masks(TOTALSEG / "organs", ct=ct)
    activity = organ_activity(ct, organs)
    grid = np.indices(ct.shape, sparse=True)
    spacing = np.asarray(ct.spacing_mm)
    ct_data = ct.data.copy()
    spheres = []
    for lesion, centre in zip(PLACED, place_centres(organs.mask("liver"), ct.spacing_mm), strict=True):
        sphere = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True)) \
            <= radius_mm(lesion.volume_ml) ** 2
        assert (sphere <= organs.mask("liver")).all()
        activity[sphere] = lesion.suv_ratio * LIVER_SUV
        ct_data[sphere] += lesion.hu_delta
        spheres.append(sphere)
    pet = simulate_pet(ct, activity, seed=11)
    ct = Volume(data=ct_data, affine=ct.affine, source=ct.source, modality="CT", units="HU")
    return pet, ct, organs, spheres


def test_real_anatomy_liver_lesions_found_and_organs_never_labelled():
    pet, ct, organs, spheres = placed_case()
    m = measure_case(pet, ct, organs=organs)

    table, labels = m.lesions.set_index("lesion_id"), m.lesion_labels
    assert m.liver.mean == pytest.approx(LIVER_SUV, rel=0.05)
    for lesion, sphere in zip(PLACED, spheres, strict=True):
        ids = labels[sphere]
        assert (ids > 0).any(), f"placed {lesion} not found; lesions:\n{m.lesions}"
        row = table.loc[int(np.bincount(ids[ids > 0]).argmax())]
        assert row["site"] == "liver"
        assert abs(row["volume_ml"] - lesion.volume_ml) <= 0.30 * lesion.volume_ml, (lesion, row["volume_ml"])
        expected = "SSTR-negative" if lesion.suv_ratio <= 1.0 else "SSTR-positive"
        assert row["sstr_status"] == expected, (lesion, row)
    # the PET is simulated: its only PET-found lesions are the two placed (none at organ rims or adrenals); the
    # hypodense region this real liver holds (uptake at the liver's) is CT-found, with no SUVpeak
    pet_found = m.lesions["suv_peak"].notna()
    assert (pet_found & (m.lesions["sstr_status"] == "SSTR-positive")).sum() == 2, m.lesions
    hot_organs = np.isin(organs.labels, [ORGAN_CODE[n] for n in ("spleen", "kidney_right", "kidney_left")])
    assert not (hot_organs & (labels > 0)).any(), "a lesion covers spleen or kidney voxels"
    # the liver lesions' ids hold no spleen or kidney voxel, and no lesion lies in the spleen or kidneys
    assert not set(table.index[table["site"] == "other_organ"]) & set(np.unique(labels[hot_organs]))


@pytest.mark.xfail(strict=True, reason="organ network 1.2.1 misplaces the kidneys of this real CT (Dice 0.52/0.00, "
                                       "docs/organ_seg.md), so kidney uptake is counted as lesions")
def test_real_anatomy_with_the_organ_network_counts_no_kidney_or_spleen():
    pet, ct, organs, _ = placed_case()
    m = measure_case(pet, ct, organs=find_organs(ct))
    hot_organs = np.isin(organs.labels, [ORGAN_CODE[n] for n in ("spleen", "kidney_right", "kidney_left")])
    assert not (hot_organs & (m.lesion_labels > 0)).any()
