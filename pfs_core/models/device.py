"""Where torch runs: CUDA when available, else CPU with a bounded thread count; seeding.

CPU by default with ``torch.set_num_threads(min(2, os.cpu_count()))`` (``$PFS_CORE_THREADS``
overrides it).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from pfs_core.errors import UsageError


def cpu_threads() -> int:
    """CPU threads for torch: ``$PFS_CORE_THREADS`` if set, else ``min(2, os.cpu_count())``.

    On a machine whose cores are busy with other work, 1 thread can be several times
    faster than 2 (measured: a training step 0.65 s with 1 thread vs 2.5-11 s with 2
    at a load average of 3-4 on 2 cores).
    """
    env = os.environ.get("PFS_CORE_THREADS", "").strip()
    return max(1, int(env)) if env.isdigit() else min(2, os.cpu_count() or 1)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU (threads from :func:`cpu_threads`).

    A device that torch does not know or that this machine does not have (``banana``, ``cuda:7`` on a machine
    with one GPU or none) is a :class:`~pfs_core.errors.UsageError`, raised before any work.
    """

    chosen = checked_device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if chosen.type == "cpu":
        torch.set_num_threads(cpu_threads())
    return chosen


def checked_device(device: str | torch.device) -> torch.device:
    """The torch device ``device`` names, if this machine has it; UsageError otherwise."""
    fix = "use --device cpu" + (" or cuda" if torch.cuda.is_available() else "")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {device}: not a torch device; {fix}") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {device}: CUDA is not available on this machine; {fix}")
        if chosen.index is not None and chosen.index >= count:
            raise UsageError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0 to "
                             f"cuda:{count - 1}); {fix}")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: MPS is not available on this machine; {fix}")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {device}: not supported (cpu, cuda, cuda:N or mps); {fix}")
    return chosen


def seed_everything(seed: int) -> None:
    """Seed numpy and torch; deterministic cuDNN."""

    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
