"""Organ network read in training-patch windows against one wide window: Dice against the truth, agreement.

    python benchmarks/organ_window_check.py --cohort data/sim400_dev101 --n 12 --out results/organ_window_dev101.json

For the first ``--n`` CTs of a ``synth`` cohort (a development seed: this chose organ network 1.2.1's
``max_window_voxels``), runs the shipped organ network twice: with windows of its training patch (as up to
1.2.0) and with :func:`pfs_core.models.organ_seg.inference_window` as the bundle's config sets it. Reports
each organ's Dice against the simulator's organs for both, the Dice between the two, and the seconds of each
call (2 threads; on a shared machine only the ratio means much).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pfs_core.io import load_ct
from pfs_core.io.organs import ORGAN_CODE
from pfs_core.models import organ_seg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_truth import truth_organs  # noqa: E402  (the simulator's organ map as OrganMasks)

ORGANS = ("liver", "spleen", "kidney_right", "kidney_left")
WIDE = organ_seg.inference_window


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def _segment(ct, wide: bool):  # type: ignore[no-untyped-def]
    organ_seg.inference_window = WIDE if wide else (lambda shape, config: config.patch_size)
    start = time.perf_counter()
    masks = organ_seg.segment_organs(ct, device="cpu")
    return masks, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="synth output folder")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    cases = {}
    for ct_path in sorted((args.cohort / "images").glob("*_ct.nii.gz"))[:args.n]:
        pid = ct_path.name.removesuffix("_ct.nii.gz")
        ct = load_ct(ct_path)
        truth = truth_organs(ct_path.parent / f"{pid}_organs.nii.gz")
        (patch, t_patch), (wide, t_wide) = _segment(ct, False), _segment(ct, True)
        row = {"patch_seconds": round(t_patch, 2), "wide_seconds": round(t_wide, 2)}
        for name in ORGANS:
            code = ORGAN_CODE[name]
            row[name] = {"patch": round(_dice(patch.labels == code, truth.labels == code), 4),
                         "wide": round(_dice(wide.labels == code, truth.labels == code), 4),
                         "agreement": round(_dice(patch.labels == code, wide.labels == code), 4)}
        cases[pid] = row
        print(pid, json.dumps(row), flush=True)
    summary = {name: {key: round(float(np.mean([c[name][key] for c in cases.values()])), 4)
                      for key in ("patch", "wide", "agreement")} for name in ORGANS}
    for name in ORGANS:
        diff = [c[name]["wide"] - c[name]["patch"] for c in cases.values()]
        summary[name]["wide_minus_patch"] = {"mean": round(float(np.mean(diff)), 4),
                                             "min": round(min(diff), 4), "max": round(max(diff), 4)}
    out = {"command": "python benchmarks/organ_window_check.py " + " ".join(sys.argv[1:]),
           "network": organ_seg.cached_organ_net(None, torch.device("cpu"))[1].source, "summary": summary,
           "median_seconds": {"patch": float(np.median([c["patch_seconds"] for c in cases.values()])),
                              "wide": float(np.median([c["wide_seconds"] for c in cases.values()]))},
           "cases": cases}
    print(json.dumps(out["summary"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
