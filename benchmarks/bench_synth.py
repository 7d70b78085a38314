"""Time ``synth`` for the study-sized cohort with images and print the figure and the machine.

Usage: ``python benchmarks/bench_synth.py [--n 116] [--seed 2026] [--workers 2] [--keep DIR]``.
The requirement is at most 180 s for 116 patients with images on 2 CPU cores.
The reference population is loaded from its cache (or computed first, reported separately).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=116)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", default=None, help="write the cohort here instead of a temporary folder")
    args = parser.parse_args()

    from pfs_core.synth import simulate_cohort
    from pfs_core.synth.reference import reference_raw_parts

    t0 = time.perf_counter()
    reference_raw_parts(args.workers)
    t_ref = time.perf_counter() - t0

    tmp = tempfile.mkdtemp(prefix="bench_synth_")
    out = Path(args.keep) if args.keep else Path(tmp) / "cohort"
    try:
        t0 = time.perf_counter()
        summary = simulate_cohort(args.n, args.seed, out_dir=out, workers=args.workers, force=bool(args.keep))
        wall = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        load = ", load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = ""
    print(f"machine: {platform.node()} | {_cpu_model()} | {os.cpu_count()} logical CPUs{load} | "
          f"Python {platform.python_version()} | {platform.system()} {platform.release()}")
    print(f"reference population (cached after the first run): {t_ref:.1f} s")
    print(f"synth --n {args.n} --seed {args.seed} --workers {args.workers} with images: {wall:.1f} s "
          f"({wall / args.n:.2f} s per patient, {size_mb:.0f} MB); Bayes AUROC {summary['bayes_auroc']:.3f}, "
          f"observed prevalence {summary['observed_prevalence']:.3f}")
    print(f"requirement <= 180 s for 116 patients: {'met' if wall <= 180 or args.n != 116 else 'NOT met'}")


if __name__ == "__main__":
    main()
