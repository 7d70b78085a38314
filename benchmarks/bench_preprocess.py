"""Time loading plus preprocessing of a clinical-size PET/CT pair (issue 3 target: at most 2 s on 2 CPU cores).

    python benchmarks/bench_preprocess.py [--ct-shape 512 512 300] [--repeats 3]

Writes a synthetic 512×512×300 int16 CT (0.98×0.98×3 mm) and a 200×200×250 float32 PET
(4×4×3.6 mm, different origin) as .nii.gz into a temporary folder (not timed), then
times ``load_case`` (nibabel read + validation + SUV handling) and ``preprocess_case``
(MONAI scaling and resampling, scipy Gaussian, onto the model grid) with the shipped model
configuration. The output gives the 1-minute load average at the start (the background load)
and after the timed runs (this benchmark included): on a shared machine, compare timings only
at similar loads. ``median_cpu_seconds`` (CPU time of the process, all threads) depends much
less on the load than the wall-clock ``median_seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def write_pair(folder: Path, ct_shape: tuple[int, int, int]) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    ct_spacing = np.array([0.98, 0.98, 3.0])
    grid = np.ogrid[tuple(slice(0, n) for n in ct_shape)]
    centre = [n / 2 for n in ct_shape]
    r2 = ((grid[0] - centre[0]) / (0.4 * ct_shape[0])) ** 2 + ((grid[1] - centre[1]) / (0.3 * ct_shape[1])) ** 2
    ct = np.where(r2 + 0 * grid[2] < 1.0, 40, -1000).astype(np.int16)
    ct += rng.normal(0, 15, ct_shape).astype(np.int16)
    ct_affine = np.diag([*ct_spacing, 1.0])
    ct_affine[:3, 3] = -ct_spacing * np.array(ct_shape) / 2
    pet_shape, pet_spacing = (200, 200, 250), np.array([4.0, 4.0, 3.6])
    pet = rng.gamma(2.0, 0.5, pet_shape).astype(np.float32)
    pet_affine = np.diag([*pet_spacing, 1.0])
    pet_affine[:3, 3] = -pet_spacing * np.array(pet_shape) / 2 + np.array([5.0, -7.0, 12.0])
    ct_path, pet_path = folder / "ct.nii.gz", folder / "pet.nii.gz"
    nib.save(nib.Nifti1Image(ct, ct_affine), ct_path)
    nib.save(nib.Nifti1Image(pet, pet_affine), pet_path)
    return pet_path, ct_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-shape", type=int, nargs=3, default=(512, 512, 300))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from pfs_core.config import MODEL_PREPROCESS
    from pfs_core.preprocessing.model_grid import load_case, preprocess_case

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    load_before = os.getloadavg()[0]  # the background load (this benchmark has not run yet)
    with tempfile.TemporaryDirectory() as folder:
        pet_path, ct_path = write_pair(Path(folder), tuple(args.ct_shape))
        runs = []
        for _ in range(args.repeats + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            pet, ct = load_case(pet_path, ct_path)
            t1, c1 = time.perf_counter(), time.process_time()
            preprocess_case(pet, ct, MODEL_PREPROCESS)
            t2, c2 = time.perf_counter(), time.process_time()
            runs.append({"load": t1 - t0, "preprocess": t2 - t1, "total": t2 - t0,
                         "cpu_load": c1 - c0, "cpu_preprocess": c2 - c1, "cpu_total": c2 - c0})
        load_after = os.getloadavg()[0]
    runs = runs[1:]  # the first run pays for imports
    median = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    print(json.dumps({"ct_shape": list(args.ct_shape), "pet_shape": [200, 200, 250], "repeats": args.repeats,
                      "median_seconds": {k: median[k] for k in ("load", "preprocess", "total")},
                      "median_cpu_seconds": {k: median[f"cpu_{k}"] for k in ("load", "preprocess", "total")},
                      "load_average_1min": {"before": round(load_before, 2), "after": round(load_after, 2)},
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"},
                     indent=1))


if __name__ == "__main__":
    main()
