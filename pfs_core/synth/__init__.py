"""Cohort simulator: SSTR PET/CT, labs and PFS with known ground truth.

Public API::

    from pfs_core.synth import simulate_cohort, parse_signal
    summary = simulate_cohort(116, 2026, out_dir="runs/sim", signal=parse_signal("labs=1,pet=1,ct=1"))

See docs/simulator.md for the generative model.
"""

from pfs_core.synth.cohort import DEFAULT_STRENGTH, default_workers, simulate_cohort
from pfs_core.synth.constants import ORGAN_LABELS, SIMULATOR_VERSION
from pfs_core.synth.options import SimOptions
from pfs_core.synth.survival import Signal, parse_signal

__all__ = [
    "DEFAULT_STRENGTH",
    "ORGAN_LABELS",
    "SIMULATOR_VERSION",
    "Signal",
    "SimOptions",
    "default_workers",
    "parse_signal",
    "simulate_cohort",
]
