"""Real liver tumours on a real CT: are they found, with their volume, under a PET placed on the real organs?

    python benchmarks/real_liver_tumours.py --ct CT.nii.gz --organs MASKS_DIR --tumours T1.nii.gz T2.nii.gz ... \
        [--vessels V.nii.gz ...] [--organ-source given|network] [--out results/real_liver_tumours.json]

The simulator's lesions are spheres painted on simulated livers; a real CT with expert tumour masks asks
the CT side of the measurement something the simulator cannot: real hypodense metastases among real
vessels, noise and enhancement. No SSTR PET exists for such a CT, so one is placed on its organs
(:mod:`pfs_core.synth.placed`: liver 7, spleen 24, kidneys 15 SUVbw, FWHM 6 mm, 4-mm grid, seed 11),
and the CT is left as it is. Two scenarios:

- ``negative``: every tumour without SSTR expression (uptake 0.5 × liver): found by the CT (hypodense)
  or as a photopenic defect, and called SSTR-negative;
- ``positive``: every tumour SSTR-avid (3 × liver): found by the PET, its volume the 45 % isocontour's.

Per tumour: found (at least 10 % of its voxels in one measured lesion, as ``measure_truth.py``), the
status and volume of the lesion holding most of it; per scenario: measured lesions touching no tumour
(false positives, with how much of them lies on the given vessels), and spleen or kidney voxels counted
as lesion. Organs from ``--organs`` (a folder of ``<organ>.nii.gz``; docs/organ_input.md) or, with
``--organ-source network``, from the organ network. The CT and masks must share one grid.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pfs_core.io import Volume, load_ct
from pfs_core.io.organ_files import read_organ_masks
from pfs_core.io.organs import ORGAN_CODE, OrganMasks
from pfs_core.measure import MeasureSettings, find_organs, measure_case
from pfs_core.measure.case import MEASURE_VERSION
from pfs_core.synth.placed import ORGAN_SUV, organ_activity, simulate_pet

SCENARIOS = {"negative": 0.5, "positive": 3.0}  # tumour uptake × liver
FOUND_FRACTION = 0.10
PET_SEED = 11


def read_mask(path: Path, ct: Volume) -> np.ndarray:
    img: Any = nib.load(str(path))
    if tuple(img.shape[:3]) != ct.shape or not np.allclose(img.affine, ct.affine, atol=1e-3):
        raise SystemExit(f"error: {path}: not on the grid of the CT; resample it onto the CT first")
    return np.asarray(img.dataobj) > 0


def tumour_rows(labels: np.ndarray, table: dict[int, dict[str, Any]], tumours: dict[str, np.ndarray],
                voxel_ml: float) -> list[dict[str, object]]:
    """One row per tumour: true volume, found, and the lesion holding most of it."""
    rows = []
    for name, mask in tumours.items():
        ids = labels[mask]
        hit = ids[ids > 0]
        row: dict[str, object] = {"tumour": name, "true_ml": round(float(mask.sum() * voxel_ml), 2), "found": False}
        if hit.size:
            best = int(np.bincount(hit).argmax())
            lesion = table[best]
            row.update(found=bool((hit == best).sum() >= FOUND_FRACTION * mask.sum()), lesion_id=best,
                       status=lesion["sstr_status"], measured_ml=round(float(lesion["volume_ml"]), 2),
                       share_of_tumour_in_lesion=round(float((hit == best).sum() / mask.sum()), 3))
        rows.append(row)
    return rows


def false_positives(labels: np.ndarray, table: dict[int, dict[str, Any]], tumours: np.ndarray,
                    vessels: np.ndarray) -> list[dict[str, object]]:
    """Measured lesions touching no tumour, with the share of their CT voxels on the given vessels."""
    out = []
    for lesion_id, row in table.items():
        voxels = labels == lesion_id
        if voxels.any() and not (voxels & tumours).any():
            out.append({"lesion_id": lesion_id, "site": row["site"], "status": row["sstr_status"],
                        "volume_ml": round(float(row["volume_ml"]), 2),
                        "share_on_vessels": round(float((voxels & vessels).sum() / voxels.sum()), 3)})
    return out


def scenario(ct: Volume, organs: OrganMasks, measure_organs: OrganMasks | None, tumours: dict[str, np.ndarray],
             vessels: np.ndarray, ratio: float, settings: MeasureSettings) -> dict[str, object]:
    activity = organ_activity(ct, organs)
    union = np.zeros(ct.shape, dtype=bool)
    for mask in tumours.values():
        union |= mask
    activity[union] = ratio * ORGAN_SUV["liver"]
    pet = simulate_pet(ct, activity, seed=PET_SEED)
    start = time.perf_counter()
    m = measure_case(pet, ct, organs=measure_organs if measure_organs is not None else organs, settings=settings)
    seconds = time.perf_counter() - start
    table = {int(r["lesion_id"]): r for r in m.lesions.to_dict("records")}
    voxel_ml = float(np.prod(ct.spacing_mm)) / 1000.0
    hot = np.isin(organs.labels, [ORGAN_CODE[n] for n in ("spleen", "kidney_right", "kidney_left")])
    return {"tumour_uptake_x_liver": ratio, "liver_reference_suv": round(float(m.liver.mean), 3),
            "tumours": tumour_rows(m.lesion_labels, table, tumours, voxel_ml),
            "false_positives": false_positives(m.lesion_labels, table, union, vessels),
            "spleen_or_kidney_voxels_in_lesions": int((hot & (m.lesion_labels > 0)).sum()),
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ct", type=Path, required=True)
    parser.add_argument("--organs", type=Path, required=True, help="folder of <organ>.nii.gz on the CT's grid")
    parser.add_argument("--tumours", type=Path, nargs="+", required=True, help="one mask per tumour")
    parser.add_argument("--vessels", type=Path, nargs="*", default=[], help="vessel masks (to describe false positives)")
    parser.add_argument("--organ-source", choices=("given", "network"), default="given")
    parser.add_argument("--name", default="real CT")
    parser.add_argument("--settings", type=json.loads, default={},
                        help='MeasureSettings fields to override, as JSON, e.g. \'{"cold_grow_mm": 0}\'')
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = replace(MeasureSettings(), **args.settings)

    ct = load_ct(args.ct)
    organs = read_organ_masks(args.organs, ct=ct)
    tumours = {p.name.split(".")[0]: read_mask(p, ct) for p in args.tumours}
    vessels = np.zeros(ct.shape, dtype=bool)
    for p in args.vessels:
        vessels |= read_mask(p, ct)
    measure_organs = find_organs(ct) if args.organ_source == "network" else None
    result = {"name": args.name, "organ_source": organs.source if measure_organs is None else measure_organs.source,
              "command": shlex.join(["python", *sys.argv]), "measure_version": MEASURE_VERSION,
              "settings": args.settings,
              "scenarios": {name: scenario(ct, organs, measure_organs, tumours, vessels, ratio, settings)
                            for name, ratio in SCENARIOS.items()}}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        stored = json.loads(args.out.read_text()) if args.out.is_file() else {}
        stored[f"{args.name} ({args.organ_source} organs)"] = result
        args.out.write_text(json.dumps(stored, indent=1) + "\n")


if __name__ == "__main__":
    main()
