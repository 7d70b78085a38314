"""Time ``measure`` on a clinical-size PET/CT after loading (issue 22 target: at most 5 s on 2 CPU cores,
the organ network's inference included).

    python benchmarks/bench_measure.py [--repeats 3] [--threads 2] [--out results/bench_measure.json]

Makes one simulated patient (``pfs_core synth --n 1 --seed 101``, a development seed; not timed) and puts
it on clinical grids: the CT on 512×512×300 voxels of 0.8×0.8×3 mm, the PET on 4×4×3 mm voxels over the
same field of view, the simulator's organ map on the CT grid (nearest). Then times, after a warm-up
call (bundle loading and hash checks are not timed):

* ``organs_provided``: :func:`pfs_core.measure.measure_case` with the organ masks given (``--organs``);
* ``organs_network``: the organ network (:func:`pfs_core.measure.find_organs`) plus ``measure_case``;
* ``network_alone``: the organ network alone (its part of ``organs_network``).

The output gives the 1-minute load average before and after, and each run's CPU seconds besides its
wall-clock seconds: on a shared machine compare timings only at similar loads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pfs_core.io import Volume, load_ct, load_pet
from pfs_core.io.organs import OrganMasks
from pfs_core.measure.case import find_organs, measure_case
from pfs_core.preprocessing.resample import resample_array

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_truth import truth_organs  # noqa: E402  (the simulator's organ map as OrganMasks)

CT_SHAPE, CT_SPACING = (512, 512, 300), (0.8, 0.8, 3.0)
PET_SPACING = (4.0, 4.0, 3.0)


def _grid(centre: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = centre - (np.array(shape) - 1) / 2.0 * np.array(spacing)
    return affine


def clinical_case(folder: Path) -> tuple[Volume, Volume, OrganMasks]:
    """The simulated patient of ``folder`` on a 512×512×300 CT grid and a 4×4×3 mm PET grid."""
    images = folder / "images"
    pid = sorted(images.glob("*_ct.nii.gz"))[0].name.removesuffix("_ct.nii.gz")
    ct, pet = load_ct(images / f"{pid}_ct.nii.gz"), load_pet(images / f"{pid}_pet.nii.gz")
    organs = truth_organs(images / f"{pid}_organs.nii.gz")
    centre = (ct.affine @ np.append((np.array(ct.shape) - 1) / 2.0, 1.0))[:3]
    ct_affine = _grid(centre, CT_SHAPE, CT_SPACING)
    pet_shape = tuple(int(round(n * s / p)) for n, s, p in zip(CT_SHAPE, CT_SPACING, PET_SPACING, strict=True))
    pet_affine = _grid(centre, pet_shape, PET_SPACING)
    big_ct = resample_array(ct.data, ct.affine, to_affine=ct_affine, to_shape=CT_SHAPE)
    big_ct[big_ct == 0.0] = -1000.0  # outside the simulated field of view: air
    big_pet = resample_array(pet.data, pet.affine, to_affine=pet_affine, to_shape=pet_shape)
    labels = resample_array(organs.labels, organs.affine, to_affine=ct_affine, to_shape=CT_SHAPE, mode="nearest")
    return (Volume(data=big_pet, affine=pet_affine, source="bench", modality="PET", units="SUVbw"),
            Volume(data=big_ct, affine=ct_affine, source="bench", modality="CT", units="HU"),
            OrganMasks(labels=labels, affine=ct_affine, source=organs.source, present=organs.present))


def timed(run: Any, repeats: int) -> dict[str, Any]:
    """Wall-clock seconds of ``repeats`` calls after a warm-up, and the process's CPU seconds (all its
    threads): on a shared machine the CPU time varies less with the load than the wall time."""
    run()  # warm-up: bundle load, hash checks, caches
    seconds, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"seconds": [round(s, 3) for s in seconds], "median_seconds": round(statistics.median(seconds), 3),
            "cpu_seconds": [round(s, 3) for s in cpu]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pfs_core", "synth", "--n", "1", "--seed", "101", "--out", tmp],
                       check=True, capture_output=True)
        pet, ct, organs = clinical_case(Path(tmp))
    load_before = os.getloadavg()[0]
    result = {
        "command": "python benchmarks/bench_measure.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "device": "cuda" if torch.cuda.is_available() else "cpu"},
        "ct_shape": list(ct.shape), "pet_shape": list(pet.shape),
        "organs_provided": timed(lambda: measure_case(pet, ct, organs=organs), args.repeats),
        "organs_network": timed(lambda: measure_case(pet, ct, organs=find_organs(ct)), args.repeats),
        "network_alone": timed(lambda: find_organs(ct), args.repeats),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
