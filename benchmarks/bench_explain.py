"""Time explaining one case with a bundle: preprocessing, the lesion measurement (organs from the cohort's
``organs`` column), prediction, lab SHAP, lesion contributions, modality Shapley values, Grad-CAM where a CNN
is active, and the 3D meshes (the Case Explorer's work after one click).

    python benchmarks/bench_explain.py [--model models/lab_pet_ct_pretrained] [--case SIM0001] [--repeats 3] [--threads 1]
        [--device cuda]

Prints the median seconds per stage over the repeats (after one warm-up run) and the machine.
Targets: at most 5 s in all on 2 CPU cores (issue 5); the explanation without the measurement within 3 s
(issue 23: ``total`` minus ``measure``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def one_run(bundle, pet, ct, labs, threads, organs=None, device=None) -> dict[str, float]:
    """Seconds per stage of one explanation (``explain_case``) and its 3D meshes; ``total`` includes the meshes."""
    from pfs_core.explain import explain_case
    from pfs_core.viz import mesh as geometry

    result = explain_case(bundle, pet=pet, ct=ct, labs=labs, threads=threads, organs=organs, device=device)
    timings = dict(result.timings_s)
    started = time.perf_counter()
    cam = next(iter(result.gradcam.values()), None)
    if cam is None and result.lesions is not None and result.measurement is not None:
        from pfs_core.explain.lesions import contribution_map

        cam = contribution_map(result.measurement, result.lesions)
    geometry.case_scene(ct.data, ct.affine, pet.data, pet.affine,
                        None if cam is None else np.asarray(cam.dataobj), None if cam is None else cam.affine,
                        suv_level=8.0, cam_level=0.5)
    timings["meshes"] = round(time.perf_counter() - started, 4)
    timings["total"] = round(timings["total"] + timings["meshes"], 4)
    return timings


def load_inputs(cohort: Path, case: str):
    """(pet, ct, labs, organs) of ``case`` in the cohort CSV ``cohort`` (organs: its ``organs`` column, or None)."""
    from pfs_core.preprocessing.model_grid import load_case
    from pfs_core.schema import LAB_COLUMNS

    frame = pd.read_csv(cohort).set_index("patient_id")
    row = frame.loc[case]
    labs = {c: (None if pd.isna(row[c]) else row[c]) for c in LAB_COLUMNS}
    pet, ct = load_case(cohort.parent / row["pet"], cohort.parent / row["ct"])
    organs = None
    if isinstance(row.get("organs"), str):
        from pfs_core.io.organ_files import read_organ_masks

        organs = read_organ_masks(cohort.parent / row["organs"], ct=ct)
    return pet, ct, labs, organs


def time_explanation(model: Path, cohort: Path, case: str, *, repeats: int, threads: int,
                     device: str | None = None) -> dict[str, float]:
    """Median seconds per stage of explaining ``case`` with the bundle ``model``, over ``repeats`` warm runs
    (after one warm-up run: imports, first allocations, CUDA context and kernels)."""
    from pfs_core.models.bundle import load_bundle

    pet, ct, labs, organs = load_inputs(cohort, case)
    bundle = load_bundle(model)
    one_run(bundle, pet, ct, labs, threads, organs, device)  # warm-up
    runs = [one_run(bundle, pet, ct, labs, threads, organs, device) for _ in range(repeats)]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def machine() -> str:
    """CPU, core count, torch threads and the CUDA device (or CPU) of this machine."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
            f"{torch.get_num_threads()}, device {device}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "lab_pet_ct_pretrained")
    parser.add_argument("--cohort", type=Path, default=ROOT / "sample_data" / "cohort.csv")
    parser.add_argument("--case", default="SIM0001")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the dashboard)")
    parser.add_argument("--device", default=None, help="torch device (default CUDA when available, else CPU)")
    args = parser.parse_args()

    median = time_explanation(args.model, args.cohort, args.case, repeats=args.repeats, threads=args.threads,
                              device=args.device)
    print(json.dumps({"model": args.model.name, "case": args.case, "repeats": args.repeats,
                      "median_seconds": median, "machine": machine()}, indent=1))


if __name__ == "__main__":
    main()
