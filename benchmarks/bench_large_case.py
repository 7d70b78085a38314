"""Peak memory and time of ``predict`` and ``explain`` on a clinical-size CT (issue 24: 512×512×600 within 2 GB, 30 s).

    python benchmarks/bench_large_case.py [--case sample_data/images/SIM0001] [--shape 512 512 600]
        [--model models/lab_pet_ct] [--ct-dtype int16|float32] [--only TEXT] [--out results/bench_large_case.json]

Builds the large case from a simulated one (not timed): its CT and organ masks resampled onto a
512×512×600 grid over the same field of view (int16 CT, uint8 masks, as scanners and TotalSegmentator
write them), its PET unchanged. Then runs each command as its own process under ``/usr/bin/time -v`` and
reports wall-clock seconds and peak resident memory (maximum RSS of the process), with organ masks given
and without (the organ network delineates the organs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]


def _upsampled(path: Path, shape: tuple[int, int, int], *, order: int, dtype: type) -> nib.Nifti1Image:
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    zoom = np.array(shape) / np.array(data.shape)
    big = ndimage.zoom(data.astype(np.float32), zoom, order=order, grid_mode=True, mode="nearest")
    affine = img.affine @ np.diag([*(1.0 / zoom), 1.0])
    affine[:3, 3] = nib.affines.apply_affine(img.affine, (0.5 / zoom - 0.5))  # same field of view, new centres
    return nib.Nifti1Image(np.rint(big).astype(dtype), affine)


def build_case(case: Path, shape: tuple[int, int, int], folder: Path, *, ct_dtype: str = "int16") -> dict[str, Path]:
    """The large CT (stored as ``ct_dtype``), its organ masks and the original PET in ``folder``."""
    paths = {"ct": folder / "ct.nii.gz", "organs": folder / "organs.nii.gz", "pet": folder / "pet.nii.gz"}
    nib.save(_upsampled(Path(f"{case}_ct.nii.gz"), shape, order=1, dtype=np.dtype(ct_dtype).type), paths["ct"])
    organs = _upsampled(Path(f"{case}_organ_masks.nii.gz"), shape, order=0, dtype=np.uint8)
    source = nib.load(f"{case}_organ_masks.nii.gz")
    organs.header.extensions.extend(source.header.extensions)  # the label names travel in the header
    nib.save(organs, paths["organs"])
    paths["pet"].write_bytes(Path(f"{case}_pet.nii.gz").read_bytes())
    return paths


def timed(command: list[str]) -> dict[str, object]:
    """Wall seconds, peak RSS (MB) and exit status of ``command`` run under ``/usr/bin/time -v``."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=ROOT)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr)
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.group(1).split(":")))) if wall else None
    error = [line for line in done.stderr.splitlines() if line.startswith(("error:", "Traceback"))]
    return {"returncode": done.returncode, "wall_s": round(seconds, 2) if seconds else None,
            "peak_mb": round(int(rss.group(1)) / 1024) if rss else None, "error": error[:1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="sample_data/images/SIM0001", help="prefix of <case>_ct/_pet/_organ_masks")
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 600))
    parser.add_argument("--model", default="models/lab_pet_ct")
    parser.add_argument("--ct-dtype", default="int16", choices=("int16", "float32"), help="how the CT is stored")
    parser.add_argument("--only", help="run only the commands whose name holds this text, e.g. 'organ network'")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    shape = tuple(args.shape)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="pfs_bench_large_") as tmp:
        paths = build_case(ROOT / args.case, shape, Path(tmp), ct_dtype=args.ct_dtype)
        base = [sys.executable, "-m", "pfs_core"]
        images = ["--model", args.model, "--pet", str(paths["pet"]), "--ct", str(paths["ct"])]
        organs = ["--organs", str(paths["organs"])]
        for name, command in {
            "predict (organ masks given)": [*base, "predict", *images, *organs],
            "explain (organ masks given)": [*base, "explain", *images, *organs, "--out", f"{tmp}/explain_organs"],
            "predict (organ network)": [*base, "predict", *images],
            "explain (organ network)": [*base, "explain", *images, "--out", f"{tmp}/explain_network"],
        }.items():
            if args.only and args.only not in name:
                continue
            runs[name] = timed(command)
            print(name, runs[name], flush=True)
    doc = {"command": "python benchmarks/" + Path(__file__).name + " " + " ".join(sys.argv[1:]),
           "ct_shape": list(shape), "ct_dtype": args.ct_dtype, "model": args.model, "runs": runs,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "load_average_1min": os.getloadavg()[0]}
    print(json.dumps(doc, indent=1))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
