"""Automatic mixed precision (AMP) on CUDA: :func:`autocast` and its local opposite :func:`full_precision`.

Where it is used (issue 26): the conv trunks of the fusion networks in inference
(:func:`pfs_core.models.fitted.torch_logits`) and in the training forward pass
(:func:`pfs_core.training.loop.train_epoch`), and the organ network's sliding-window inference
(:func:`pfs_core.models.organ_seg.predict_logits`). Inside the fusion network only the
convolutions run in reduced precision: the liver-referenced read-outs, the frozen logistic (wide)
path, the lab branch and the head run in float32 (:func:`full_precision`), and every logit leaves
in float32, so losses and sigmoids are float32. Not used in Grad-CAM (attributions are products
of gradients and activations; see :mod:`pfs_core.explain.gradcam`) nor in any scikit-learn/numpy path.

**bfloat16 first.** bfloat16 has float32's exponent range, so gradients do not underflow and
training needs no loss scaling (no ``torch.amp.GradScaler``). float16 has 5 exponent bits: a
training step in float16 would need ``torch.amp.GradScaler("cuda")`` to scale the loss; rather
than carry that, training asks for bfloat16 only (``allow_float16=False``) and runs in float32
on a GPU without it (before Ampere: V100, T4), and so does the held-out loss that picks the epoch
(:func:`pfs_core.training.loop.validation_loss`). Inference, which has no gradients, uses float16
there. bfloat16 is taken only where the card runs it natively (compute capability 8.0 or more):
recent torch reports emulated bfloat16 as "supported" on older cards, where it is slower.

On CPU and MPS both context managers do nothing, so every CPU result is bit-for-bit what it is
without them. ``PFS_CORE_AMP=0`` (or ``false``/``off``/``no``) switches AMP off everywhere.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import AbstractContextManager
from typing import Any

import torch

#: Environment switch: ``PFS_CORE_AMP=0`` runs everything in float32 on CUDA too.
AMP_ENV = "PFS_CORE_AMP"


def amp_enabled() -> bool:
    """False when ``$PFS_CORE_AMP`` is ``0``, ``false``, ``off`` or ``no``; True otherwise (default)."""
    return os.environ.get(AMP_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def _as_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    return device if isinstance(device, torch.device) else torch.device(device)


def bf16_native(device: torch.device) -> bool:
    """Whether CUDA ``device`` runs bfloat16 natively (torch says so and compute capability >= 8.0)."""
    try:
        supported = bool(torch.cuda.is_bf16_supported())
        major = torch.cuda.get_device_capability(device)[0]
    except (RuntimeError, AssertionError, ValueError):  # no driver, no such device
        return False
    return supported and major >= 8


def amp_dtype(device: str | torch.device | None, *, allow_float16: bool = True) -> torch.dtype | None:
    """The autocast dtype for ``device``: bfloat16 on a CUDA card that runs it natively, else float16
    (only with ``allow_float16``); None (full precision) on CPU, MPS, or with ``PFS_CORE_AMP=0``."""
    chosen = _as_device(device)
    if chosen is None or chosen.type != "cuda" or not amp_enabled():
        return None
    if bf16_native(chosen):
        return torch.bfloat16
    return torch.float16 if allow_float16 else None


def autocast(device: str | torch.device | None, *, allow_float16: bool = True) -> AbstractContextManager[Any]:
    """``torch.autocast("cuda", dtype=...)`` with :func:`amp_dtype` on CUDA; ``contextlib.nullcontext()``
    where that is None (CPU, MPS, ``PFS_CORE_AMP=0``, or a card without bfloat16 when ``allow_float16``
    is False). Training passes ``allow_float16=False`` (float16 training would need a GradScaler)."""
    dtype = amp_dtype(device, allow_float16=allow_float16)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def full_precision(device: str | torch.device | None) -> AbstractContextManager[Any]:
    """Autocast switched off on CUDA ``device`` (a float32 island inside :func:`autocast`); a no-op elsewhere.

    Tensors made in reduced precision before it must be cast with ``.float()`` by the caller.
    """
    chosen = _as_device(device)
    if chosen is None or chosen.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", enabled=False)
