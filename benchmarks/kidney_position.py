"""Where the kidneys lie relative to the spine: simulated cohorts against a real CT with organ masks.

For each kidney: its centroid (world mm, RAS) minus the centroid of the vertebra in the axial CT slice
through the kidney's centroid (the largest connected bone region, HU > 250: vertebral body and arch).
Reported per kidney as lateral (mm from the vertebra's centroid away from the midline) and anterior
(+ = in front) offsets. This is the measurement behind the simulator's "varied" anatomy
(docs/simulator.md) and the organ network's kidney failure on real CT (docs/organ_seg.md).

    python benchmarks/kidney_position.py --cohort data/sim400_dev101 --cohort /tmp/organseg/s111 --n 40 \\
        --real /work/shared/data/real/totalseg_ct [--extra NAME=CT.nii.gz:MASK_FOLDER] --out results/kidney_position.json

``--extra`` adds a further real CT with organ masks (a folder of ``<organ>.nii.gz``), e.g. one whose licence
keeps it out of the repository (docs/organ_seg.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from pfs_core.io import load_ct
from pfs_core.io.organ_files import read_organ_masks
from pfs_core.io.organs import OrganMasks
from pfs_core.io.volume import Volume

BONE_HU = 250.0
KIDNEYS = ("kidney_right", "kidney_left")


def kidney_offsets(ct: Volume, organs: OrganMasks) -> dict[str, list[float]]:
    """Per kidney name: [lateral, anterior] offset (mm) of its centroid from the vertebra's."""
    out = {}
    affine = ct.affine
    for name in KIDNEYS:
        mask = organs.mask(name)
        if not mask.any():
            continue
        centre = np.array(ndimage.center_of_mass(mask))
        k = int(round(centre[2]))
        bone, n = ndimage.label(ct.data[:, :, k] > BONE_HU)
        if n == 0:
            continue
        sizes = ndimage.sum(np.ones_like(bone), bone, range(1, n + 1))
        vert = np.array([*ndimage.center_of_mass(bone == int(np.argmax(sizes)) + 1), k])
        d = (affine[:3, :3] @ centre + affine[:3, 3]) - (affine[:3, :3] @ vert + affine[:3, 3])
        side = 1.0 if name == "kidney_right" else -1.0  # RAS: the right kidney lies at +x
        out[name] = [round(float(side * d[0]), 1), round(float(d[1]), 1)]
    return out


def offsets_of(ct_path: Path, organs_path: Path) -> dict[str, list[float]]:
    """One CT and its organ masks (any format ``read_organ_masks`` reads)."""
    ct = load_ct(ct_path)
    return kidney_offsets(ct, read_organ_masks(organs_path, ct=ct))


def simulated(cohort: Path, n: int) -> list[dict[str, list[float]]]:
    return [offsets_of(ct, ct.with_name(ct.name.replace("_ct", "_organ_masks")))
            for ct in sorted((cohort / "images").glob("*_ct.nii.gz"))[:n]]


def summary(rows: list[dict[str, list[float]]]) -> dict[str, Any]:
    values = np.array([v for row in rows for v in row.values()])
    return {"n_kidneys": len(values),
            **{axis: {"median": round(float(np.median(values[:, i])), 1),
                      "p10": round(float(np.percentile(values[:, i], 10)), 1),
                      "p90": round(float(np.percentile(values[:, i], 90)), 1)}
               for i, axis in enumerate(("lateral_mm", "anterior_mm"))}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cohort", type=Path, action="append", required=True, help="simulator output folder(s)")
    p.add_argument("--n", type=int, default=40, help="patients per cohort")
    p.add_argument("--real", type=Path, default=None, help="folder with example_ct.nii.gz and organs/")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=CT:MASK_FOLDER",
                   help="a further real CT and its organ masks")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    result: dict[str, Any] = {"method": "kidney centroid minus vertebra centroid (largest HU > 250 region) in "
                                        "the kidney's axial slice; [lateral, anterior] mm"}
    for cohort in args.cohort:
        result[str(cohort)] = summary(simulated(cohort, args.n))
    if args.real is not None and (args.real / "example_ct.nii.gz").is_file():
        result["real:" + args.real.name] = offsets_of(args.real / "example_ct.nii.gz", args.real / "organs")
    for item in args.extra:
        name, _, paths = item.partition("=")
        ct_path, _, masks = paths.partition(":")
        result["real:" + name] = offsets_of(Path(ct_path), Path(masks))
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
