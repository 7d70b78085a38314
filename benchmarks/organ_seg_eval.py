"""Dice per organ of the organ network (``segment_organs``) on real CTs, and its run time.

    python benchmarks/organ_seg_eval.py --threads 2

* ``totalseg_ct``: ``<real>/totalseg_ct/example_ct.nii.gz`` against its TotalSegmentator masks
  ``organs/<name>.nii.gz`` (``<real>`` is /work/shared/data/real or ../shared/data/real).
* every ``--extra NAME=CT.nii.gz:REFERENCE`` (REFERENCE: a folder of ``<organ>.nii.gz`` masks, or a
  label map with ``--extra-labels NAME=code:organ,code:organ,...``); skipped with a note when absent.
* timing: a synthetic 512×512×300 CT (a simulated CT resampled to 0.8×0.8×3 mm, 410×410×900 mm, the body
  continued to the grid's ends) on ``--threads`` CPU threads, median of ``--repeats`` calls after one warm-up.

Writes ``results/organ_seg_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from pfs_core.io import load_ct
from pfs_core.io.organs import ORGANS, OrganMasks
from pfs_core.io.volume import Volume
from pfs_core.models import organ_seg
from pfs_core.models.organ_seg import DEFAULT_BUNDLE, segment_organs

ROOT = Path(__file__).resolve().parents[1]
REAL_CANDIDATES = (Path("/work/shared/data/real"), ROOT.parent / "shared" / "data" / "real")


def real_root() -> Path | None:
    return next((p for p in REAL_CANDIDATES if p.is_dir()), None)


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(a.sum() + b.sum())
    return None if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def reference_masks(ref: Path, ct: Volume, labels: dict[int, str] | None = None) -> dict[str, np.ndarray]:
    """Boolean masks per organ name on the CT grid: a folder of ``<organ>.nii.gz`` (values > 0.5) or a
    label map with ``labels`` (code → organ name). The reference must be on the CT's grid."""
    out: dict[str, np.ndarray] = {}
    if ref.is_dir():
        for name in ORGANS.values():
            f = ref / f"{name}.nii.gz"
            if f.is_file():
                img = nib.load(str(f))
                _same_grid(img, ct, f)
                out[name] = np.asarray(img.dataobj, dtype=np.float32) > 0.5
        return out
    img = nib.load(str(ref))
    _same_grid(img, ct, ref)
    data = np.asarray(img.dataobj)
    for code, name in (labels or {}).items():
        out[name] = data == code
    return out


def _same_grid(img: Any, ct: Volume, path: Path) -> None:
    if tuple(img.shape[:3]) != ct.shape or not np.allclose(img.affine, ct.affine, atol=1e-3):
        raise SystemExit(f"{path}: not on the grid of its CT")


def evaluate(name: str, ct_path: Path, ref: Path, *, labels: dict[int, str] | None, device: str | None,
             bundle: Path) -> dict[str, Any]:
    ct = load_ct(ct_path)
    t0 = time.perf_counter()
    pred: OrganMasks = segment_organs(ct, device=device, bundle_dir=bundle)
    seconds = time.perf_counter() - t0
    refs = reference_masks(ref, ct, labels)
    scores = {organ: dice(pred.mask(organ), mask) for organ, mask in refs.items()}
    volumes = {organ: {"pred_ml": pred.volume_ml(organ),
                       "ref_ml": float(mask.sum() * np.prod(ct.spacing_mm) / 1000.0)} for organ, mask in refs.items()}
    print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in scores.items())
          + f" ({seconds:.2f} s incl. first load)", flush=True)
    return {"ct": str(ct_path), "reference": str(ref), "shape": list(ct.shape),
            "spacing_mm": list(ct.spacing_mm), "dice": scores, "volumes": volumes, "seconds": round(seconds, 3),
            "source": pred.source}


def timing_ct(sim_ct: Path | None) -> Volume:
    """A 512×512×300 CT (0.8×0.8×3 mm): a simulated CT resampled onto it (edges continued), or an
    ellipse of soft tissue with noise when no simulated CT is given."""
    shape = (512, 512, 300)
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    affine[:3, 3] = -np.array([511 * 0.4, 511 * 0.4, 299 * 1.5])
    if sim_ct is not None and sim_ct.is_file():
        img = nib.load(str(sim_ct))
        src = np.asarray(img.dataobj, dtype=np.float32)
        centre = img.affine @ np.append((np.array(src.shape) - 1) / 2.0, 1.0)
        affine[:3, 3] += centre[:3]
        data = organ_seg.resample_channels(torch.from_numpy(src)[None], img.affine, affine, shape)[0].numpy()
    else:
        i, j = np.mgrid[:512, :512]
        body = ((i - 256) / 200.0) ** 2 + ((j - 256) / 140.0) ** 2 < 1
        rng = np.random.default_rng(0)
        data = np.where(body[..., None], 40.0, -1000.0) + rng.normal(0, 20, shape)
    return Volume(data=np.ascontiguousarray(data, dtype=np.float32), affine=affine, source="timing",
                  modality="CT", units="HU")


def timing(ct: Volume, *, repeats: int, device: str | None, bundle: Path) -> dict[str, Any]:
    segment_organs(ct, device=device, bundle_dir=bundle)  # warm-up: bundle load and hash check
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        segment_organs(ct, device=device, bundle_dir=bundle)
        times.append(time.perf_counter() - t0)
    config = organ_seg.OrganSegConfig.from_dict(json.loads((bundle / organ_seg.CONFIG).read_text()))
    _, shape = organ_seg.network_grid(ct, config)
    out = {"shape": list(ct.shape), "spacing_mm": list(ct.spacing_mm), "threads": torch.get_num_threads(),
           "seconds": [round(t, 3) for t in times], "median_seconds": round(statistics.median(times), 3),
           "network_grid_shape": list(shape)}
    print(f"timing {ct.shape}: median {out['median_seconds']:.2f} s over {repeats} calls "
          f"({out['threads']} threads; network grid {out['network_grid_shape']})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--real", type=Path, default=None, help="folder of the real data (default: found)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=CT:REFERENCE")
    p.add_argument("--extra-labels", action="append", default=[], metavar="NAME=code:organ,...")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--timing-sim-ct", type=Path, default=Path("/tmp/organseg/s110/images/SIM0001_ct.nii.gz"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "organ_seg_eval.json")
    args = p.parse_args(argv)

    import os

    os.environ["PFS_CORE_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    label_maps: dict[str, dict[int, str]] = {}
    for item in args.extra_labels:
        name, _, spec = item.partition("=")
        label_maps[name] = {int(c): o for c, _, o in (part.partition(":") for part in spec.split(","))}
    result: dict[str, Any] = {"bundle": str(args.bundle), "command": "python benchmarks/organ_seg_eval.py "
                              + " ".join(sys.argv[1:] if argv is None else argv), "cases": {}, "skipped": {}}
    root = args.real or real_root()
    cases: list[tuple[str, Path, Path]] = []
    if root is not None:
        cases.append(("totalseg_ct", root / "totalseg_ct" / "example_ct.nii.gz", root / "totalseg_ct" / "organs"))
    else:
        result["skipped"]["totalseg_ct"] = "shared real data not found"
    for item in args.extra:
        name, _, paths = item.partition("=")
        ct_path, _, ref = paths.partition(":")
        cases.append((name, Path(ct_path), Path(ref)))
    for name, ct_path, ref in cases:
        if not ct_path.exists() or not ref.exists():
            result["skipped"][name] = f"{ct_path} or {ref} not found"
            print(f"{name}: skipped ({result['skipped'][name]})")
            continue
        result["cases"][name] = evaluate(name, ct_path, ref, labels=label_maps.get(name), device=args.device,
                                         bundle=args.bundle)
    if not args.no_timing:
        result["timing_512x512x300"] = timing(timing_ct(args.timing_sim_ct), repeats=args.repeats,
                                              device=args.device, bundle=args.bundle)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
