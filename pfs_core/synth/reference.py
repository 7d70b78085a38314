"""Reference population: standardisation constants, intercept and expected Bayes AUROC.

A fixed-seed draw of :data:`N_REF` patients' tabular attributes (the same code
path as every cohort) gives the mean and SD of each raw modality part and the
joint distribution over which the intercept is solved so that the expected
prevalence of PFS <= 12 months is :data:`~pfs_core.synth.survival.TARGET_PREVALENCE`
for any signal weights and strength. The draw takes ~10 s, so it is cached in
memory and on disk (``$PFS_CORE_CACHE`` or ``~/.cache/pfs_core``) under a key that
hashes the simulator's source code, the seed and numpy's version; a cache
that cannot be written is simply skipped. The numbers are identical either way,
and whatever runs the draw: chunks of patients are tasks of :mod:`pfs_core.execution`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

from pfs_core.execution import Execution, Task
from pfs_core.synth.constants import SIMULATOR_VERSION
from pfs_core.synth.options import SimOptions
from pfs_core.synth.patient import draw_attributes, patient_streams
from pfs_core.synth.survival import TARGET_PREVALENCE, Signal, p_short_pfs

REF_SEED = 20260611
N_REF = 2000


def _cache_key(options: SimOptions) -> str:
    h = hashlib.sha256()
    h.update(f"{SIMULATOR_VERSION}|{REF_SEED}|{N_REF}|{np.__version__}|{options.table_key()}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    env = os.environ.get("PFS_CORE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pfs_core"


def compute_chunk(options: SimOptions, bounds: tuple[int, int]) -> np.ndarray:
    """Raw risk parts of reference patients ``bounds[0]`` to ``bounds[1] - 1`` (one task)."""
    streams = patient_streams(REF_SEED, N_REF)
    return np.array([draw_attributes(streams[i][0], options).raw for i in range(*bounds)], dtype=np.float64)


_MEMO: dict[str, np.ndarray] = {}


def reference_raw_parts(workers: int = 1, options: SimOptions | None = None, *,
                        execution: Execution | None = None) -> np.ndarray:
    """Raw (lab, pet, ct) risk parts of the reference population, shape ``(N_REF, 3)``.

    Computed when neither the in-memory nor the disk cache has it, by tasks of about 125 patients on
    ``execution`` (default: ``workers`` local processes).
    """
    options = options or SimOptions()
    execution = execution or Execution(jobs=max(1, int(workers)))
    key = _cache_key(options)
    if key in _MEMO:
        return _MEMO[key]
    path = _cache_dir() / f"synth_reference_{key}.npy"
    try:
        data = np.load(path, allow_pickle=False)
        if data.shape == (N_REF, 3) and np.isfinite(data).all():
            _MEMO[key] = data
            return data
    except (OSError, ValueError):
        pass
    edges = np.linspace(0, N_REF, 4 * execution.jobs + 1).astype(int)
    tasks = [Task("pfs_core.synth.reference:compute_chunk", (options, (int(a), int(b))),
                  label=f"reference patients {a + 1}-{b}", cpus=1, memory_mb=512)
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    data = np.concatenate(execution.run(tasks))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, data, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass
    _MEMO[key] = data
    return data


def standardisation(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD (ddof 0) of each raw modality part over the reference population."""
    return raw.mean(axis=0), raw.std(axis=0)


def contributions(z: np.ndarray, signal: Signal, strength: float) -> np.ndarray:
    """Per-modality parts of the linear predictor ``strength * w_m z_m / |w|`` (``(N, 3)``; zeros for a null signal)."""
    w = signal.weights()
    norm = float(np.sqrt((w**2).sum()))
    if norm == 0.0:
        return np.zeros_like(z)
    return strength * z * (w / norm)[None, :]


def solve_intercept(z_ref: np.ndarray, signal: Signal, strength: float) -> float:
    """Intercept b0 with mean P(PFS <= 12 | b0 + parts) = TARGET_PREVALENCE over the reference."""
    lin = contributions(z_ref, signal, strength).sum(axis=1)
    fn: Callable[[float], float] = lambda b: float(np.mean(p_short_pfs(b + lin))) - TARGET_PREVALENCE  # noqa: E731
    return float(brentq(fn, -30.0, 30.0, xtol=1e-10))


def expected_auroc(p: np.ndarray) -> float:
    """Expected AUROC of risk ``p`` against labels drawn as Bernoulli(p) (ties count 1/2)."""
    p = np.asarray(p, dtype=float)
    order = np.sort(p)
    neg = 1.0 - order
    cum_neg = np.concatenate([[0.0], np.cumsum(neg)])
    # for each position i: sum of (1-p_j) over strictly smaller p_j (+ half of ties, excluding itself)
    left = np.searchsorted(order, order, side="left")
    right = np.searchsorted(order, order, side="right")
    below = cum_neg[left]
    ties = cum_neg[right] - cum_neg[left] - neg
    num = float((order * (below + 0.5 * ties)).sum())
    den = float(order.sum() * neg.sum() - (order * neg).sum())
    return num / den if den > 0 else 0.5


def reference_summary(signal: Signal, strength: float, *, workers: int = 1, options: SimOptions | None = None,
                      execution: Execution | None = None) -> dict[str, float | np.ndarray]:
    """Standardisation constants, intercept and expected Bayes AUROC for a signal setting (the reference
    population drawn on ``execution``, default ``workers`` local processes, when not cached)."""
    raw = reference_raw_parts(workers, options, execution=execution)
    mean, sd = standardisation(raw)
    z = (raw - mean) / sd
    b0 = solve_intercept(z, signal, strength)
    p = p_short_pfs(b0 + contributions(z, signal, strength).sum(axis=1))
    return {
        "mean": mean,
        "sd": sd,
        "intercept": b0,
        "expected_prevalence": float(np.mean(p)),
        "expected_bayes_auroc": expected_auroc(np.asarray(p)),
    }
