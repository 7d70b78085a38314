"""Checks before a benchmark or training run: is the cohort large enough for the numbers to mean anything?

Thresholds (warnings the user must confirm on the Your cohort page, never a refusal):

- fewer than :data:`MIN_PATIENTS` (30) patients with a short/long-PFS label: with 3 folds a test fold
  then holds about 10 patients, and one fold's AUROC moves by ±0.15 or more from one patient's outcome;
- fewer than :data:`MIN_PER_CLASS_PER_FOLD` (5) patients of the rarer outcome in each test fold (rarer
  outcome count / folds): a fold's AUROC compares at most a handful of pairs; below 1 per fold a fold
  has no patient of that outcome and gives no AUROC at all;
- fewer than :data:`MIN_EVENTS` (10) progressions: the C-index and the Kaplan–Meier split rest on a
  few events.

The warning also says how many model fits the run makes (models × folds × repeats), the time cost.
"""

from __future__ import annotations

import numpy as np

from pfs_core.metrics import short_pfs_label

MIN_PATIENTS = 30
MIN_PER_CLASS_PER_FOLD = 5
MIN_EVENTS = 10


def small_cohort_warnings(time_months: np.ndarray, event: np.ndarray, *, folds: int, repeats: int = 1,
                          n_models: int = 1) -> list[str]:
    """One sentence per threshold the cohort falls below (empty when none).

    Args:
        time_months: (N,) PFS in months of the usable rows.
        event: (N,) 1 progressed, 0 censored.
        folds, repeats, n_models: of the planned run.
    """
    time_months = np.asarray(time_months, dtype=float)
    event = np.nan_to_num(np.asarray(event, dtype=float)).astype(int)
    label = short_pfs_label(time_months, event)
    n_labelled = int(np.sum(~np.isnan(label)))
    n_short, n_long = int(np.nansum(label == 1)), int(np.nansum(label == 0))
    rarer = min(n_short, n_long)
    fits = n_models * folds * repeats
    out = []
    if n_labelled < MIN_PATIENTS:
        out.append(f"only {n_labelled} patients have a short/long-PFS label (at least {MIN_PATIENTS} advised): "
                   f"a test fold holds about {n_labelled // max(folds, 1)} of them, so each fold's AUROC rests on "
                   "a handful of patients")
    if rarer < MIN_PER_CLASS_PER_FOLD * folds:
        per_fold = rarer / max(folds, 1)
        what = "some folds have none and give no AUROC" if per_fold < 1 else "the fold AUROCs are very noisy"
        out.append(f"the rarer outcome has {rarer} patient(s) ({n_short} short, {n_long} long PFS): "
                   f"{per_fold:.1f} per test fold with {folds} folds (at least {MIN_PER_CLASS_PER_FOLD} advised); "
                   f"{what}")
    if int(event.sum()) < MIN_EVENTS:
        out.append(f"only {int(event.sum())} progression(s) (at least {MIN_EVENTS} advised): the C-index and the "
                   "Kaplan–Meier split rest on very few events")
    if out:
        out.append(f"the run fits {fits} model(s) ({n_models} model(s) × {folds} folds × {repeats} repeat(s)) and "
                   "may take long for numbers that say little")
    return out
