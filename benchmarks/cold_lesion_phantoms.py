"""SSTR-negative liver lesions on hand-built phantoms: measured / true volume with measurement 1.2, 1.3 and the
variant dropped on the way (rim growth to a fixed 8 HU instead of half the lesion's depth).

Uniform spheres 12-32 mm across, 10-60 HU below the liver, uptake 0.5 × liver, on the phantom of the measurement
tests (tests/unit/measure/conftest.py: CT 2-mm voxels without noise, PET 4-mm voxels blurred 7 mm FWHM, with
10 % noise for the lesions 10 HU below the liver). Exact truth, no randomness beyond the seeded PET noise.

    python benchmarks/cold_lesion_phantoms.py --out results/cold_lesion_phantoms.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit" / "measure"))

from conftest import CT_VOXEL_ML, LIVER_SUV, Phantom  # noqa: E402  (the tests' phantom)

from pfs_core.measure import MeasureSettings, measure_case  # noqa: E402
from pfs_core.measure.settings import MEASURE_1_2  # noqa: E402

CENTRE = (48.0, 68.0, 48.0)
SETTINGS = {"1.2": MEASURE_1_2, "1.3": MeasureSettings(),
            "growth to a fixed 8 HU (dropped)": replace(MeasureSettings(), cold_grow_depth=0.0)}


def ratios(hu: float, radius_mm: float) -> dict[str, float]:
    """Measured / true volume of one sphere ``hu`` below the liver, per measurement."""
    phantom = Phantom()
    whole = phantom.paint(phantom.sphere(CENTRE, radius_mm), suv=0.5 * LIVER_SUV, hu_delta=hu)
    pet, ct, organs = phantom.build(blur_fwhm_mm=7.0, noise=0.1 if hu > -15 else 0.0)
    true_ml = whole.sum() * CT_VOXEL_ML
    return {name: round(float(measure_case(pet, ct, organs=organs, settings=s).lesions["volume_ml"].sum()) / true_ml, 2)
            for name, s in SETTINGS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [{"hu_below_liver": -hu, "diameter_mm": 2 * r, **ratios(hu, r)}
            for hu in (-10.0, -18.0, -25.0, -40.0, -60.0) for r in (6.0, 10.0, 16.0)]
    for row in rows:
        print(row)
    if args.out:
        args.out.write_text(json.dumps({"command": "python benchmarks/cold_lesion_phantoms.py --out " + str(args.out),
                                        "measured_over_true_volume": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
