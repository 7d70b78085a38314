"""CT organ segmentation network: configuration, bundle loading and :func:`segment_organs`.

A small MONAI 3D U-Net, trained on the simulator's CTs only (with strong domain randomisation,
:mod:`pfs_core.training.organ_seg`), labels the organs of :data:`pfs_core.io.organs.ORGANS` on a CT.

Bundle layout (``models/organ_seg/``)::

    manifest.json        format, name, version, training summary, measured Dice, sha256 of every file
    config.json          :class:`OrganSegConfig` (architecture, grid, HU windows, label names)
    weights.safetensors  the network's state dict (float32)
    MODEL_CARD.md        what it is, data, metrics and limits

Loading checks the sha256 of every file listed in the manifest first (helpers of
:mod:`pfs_core.models.bundle`), refuses pickle-like files, rebuilds the network from config.json
and loads the safetensors with ``strict=True``. Nothing is unpickled.

Inference (:func:`segment_organs`): the CT (HU) is resampled (trilinear) to an axis-aligned RAS grid of
``spacing_mm`` voxels over the body's bounding box, windowed to ``len(hu_windows)`` channels in
[0, 1], labelled by sliding-window inference (the network under bfloat16/float16 autocast on CUDA,
:mod:`pfs_core.models.precision`; float32 on CPU), cleaned (largest connected component per organ; kidneys
and adrenal glands given their side by world x), and each organ's probability is resampled
(trilinear, inside the organ's bounding box) back onto the CT's own grid and thresholded at 0.5.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet
from safetensors.torch import load_file, save_file
from scipy import ndimage

from pfs_core.errors import BundleError
from pfs_core.io.organs import ORGAN_CODE, ORGANS, OrganMasks
from pfs_core.io.volume import Volume
from pfs_core.models.bundle import checked_manifest, sha256_file, write_manifest
from pfs_core.models.device import resolve_device
from pfs_core.models.precision import autocast
from pfs_core.preprocessing.resample import resample_array

FORMAT = "pfs_core-organ-seg-bundle"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
MODEL_CARD = "MODEL_CARD.md"
#: The shipped bundle (repository root / models / organ_seg).
DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "organ_seg"
#: Organs that come in a right/left pair; the network's side is replaced by the side of world x.
PAIRS: tuple[tuple[str, str], ...] = (("kidney_right", "kidney_left"),
                                      ("adrenal_gland_right", "adrenal_gland_left"))


@dataclass(frozen=True)
class OrganSegConfig:
    """Everything that training and inference share; saved as ``config.json`` in the bundle.

    Attributes:
        name, version: of the network, shown in :attr:`OrganMasks.source`.
        channels, strides, num_res_units, norm: arguments of ``monai.networks.nets.UNet``
            (``spatial_dims=3``, ``in_channels=len(hu_windows)``, ``out_channels=len(labels)``).
        spacing_mm: isotropic voxel size (mm) of the network grid (axis-aligned RAS).
        patch_size: training patch and sliding-window size (voxels of the network grid).
        hu_windows: one input channel per ``(low, high)`` HU window, mapped linearly to [0, 1] and
            clipped (so air and padding are 0 in every channel).
        labels: class names by output index; 0 is ``"background"``, the others names of
            :data:`pfs_core.io.organs.ORGANS`.
        body_threshold_hu: voxels above this are "body" when the network grid is fitted to the body.
        body_margin_mm: margin around the body's bounding box.
        overlap: sliding-window overlap.
        max_window_voxels: 0: inference in windows of ``patch_size``; else windows widened per axis to cover
            the network grid, holding at most this many voxels (:func:`inference_window`).
    """

    name: str = "organ_seg"
    version: str = "1.0.0"
    architecture: str = "UNet"
    channels: tuple[int, ...] = (16, 32, 48, 64, 96)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 1
    norm: str = "instance"
    spacing_mm: float = 4.0
    patch_size: tuple[int, int, int] = (96, 96, 80)
    hu_windows: tuple[tuple[float, float], ...] = ((-1000.0, 1000.0), (-150.0, 250.0))
    labels: tuple[str, ...] = ("background", *ORGANS.values())
    body_threshold_hu: float = -500.0
    body_margin_mm: float = 12.0
    overlap: float = 0.25
    max_window_voxels: int = 0

    def __post_init__(self) -> None:
        if self.architecture != "UNet":
            raise ValueError(f"unknown architecture {self.architecture!r}; only 'UNet' is supported")
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError("strides must have one entry fewer than channels")
        if self.labels[0] != "background" or any(n not in ORGAN_CODE for n in self.labels[1:]):
            raise ValueError(f"labels must be 'background' then names of ORGANS, got {self.labels}")
        if self.spacing_mm <= 0 or any(lo >= hi for lo, hi in self.hu_windows):
            raise ValueError("spacing_mm must be > 0 and every HU window low < high")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> OrganSegConfig:
        """Inverse of :meth:`to_dict` (JSON lists back to tuples); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"unknown organ_seg config keys {sorted(unknown)}")

        def tup(value: Any) -> Any:
            return tuple(tup(v) for v in value) if isinstance(value, list | tuple) else value

        return cls(**{k: tup(v) for k, v in doc.items()})

    @property
    def source(self) -> str:
        return f"organ network {self.name} {self.version} (trained on simulated CTs)"


def build_net(config: OrganSegConfig) -> UNet:
    """The MONAI UNet of ``config``: input ``(B, len(hu_windows), X, Y, Z)``, output logits ``(B, len(labels), X, Y, Z)``."""
    return UNet(spatial_dims=3, in_channels=len(config.hu_windows), out_channels=len(config.labels),
                channels=config.channels, strides=config.strides, num_res_units=config.num_res_units,
                norm=config.norm)


def window_hu(hu: torch.Tensor, config: OrganSegConfig) -> torch.Tensor:
    """HU ``(1, X, Y, Z)`` → network input ``(C, X, Y, Z)`` in [0, 1], one channel per HU window."""
    return torch.cat([((hu - lo) / (hi - lo)).clamp(0.0, 1.0) for lo, hi in config.hu_windows], dim=0)


# ----------------------------------------------------------------------------- bundle


def save_organ_bundle(path: Path, net: torch.nn.Module, config: OrganSegConfig, *,
                      manifest: Mapping[str, Any], model_card: str | None = None) -> Path:
    """Write config.json, weights.safetensors, the model card and manifest.json (sha256 per file)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG).write_text(json.dumps(config.to_dict(), indent=1))
    state = {k: v.detach().cpu().float().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path / WEIGHTS), metadata={"model": config.name, "version": config.version})
    names = [CONFIG, WEIGHTS]
    if model_card is not None:
        (path / MODEL_CARD).write_text(model_card)
        names.append(MODEL_CARD)
    write_manifest(path, {"format": FORMAT, "format_version": FORMAT_VERSION, "name": config.name,
                          "version": config.version, **manifest, "files": {n: sha256_file(path / n) for n in names}})
    return path


def verify_organ_bundle(path: Path) -> dict[str, Any]:
    """Check the manifest and the sha256 of every listed file; returns the manifest.

    Raises :class:`BundleError` for a missing folder/manifest/file, a hash mismatch, a pickle-like
    file in the folder, or a manifest that does not list config.json and the weights.
    """
    path = Path(path)
    fix = "restore the shipped models/organ_seg/ or retrain it with benchmarks/organ_seg_train.py"
    if not path.is_dir():
        raise BundleError(f"{path}: organ network bundle folder not found; {fix}")
    return checked_manifest(path, format_name=FORMAT, what="an organ network bundle manifest",
                            required=(CONFIG, WEIGHTS), fix=fix)


def network_digest(path: Path | None = None) -> str:
    """The sha256 of the weights and of the config (its inference windows too) as the bundle's manifest
    records them (``"-"`` without a readable manifest).

    Part of the cache key of measurements made with the network's organs, so that a new network is
    never answered from another's cache; the hashes themselves are checked when the network loads.
    """
    try:
        manifest = json.loads((Path(path or DEFAULT_BUNDLE) / "manifest.json").read_text())
        return f"{manifest['files'][WEIGHTS]}:{manifest['files'][CONFIG]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "-"


def load_organ_bundle(path: Path | None = None, *, device: str | None = None) \
        -> tuple[torch.nn.Module, OrganSegConfig, dict[str, Any]]:
    """Verify the bundle at ``path`` (default :data:`DEFAULT_BUNDLE`), rebuild the net and load its weights.

    Returns ``(net in eval mode on device, config, manifest)``. Not cached; see :func:`segment_organs`.
    """
    path = Path(path) if path is not None else DEFAULT_BUNDLE
    manifest = verify_organ_bundle(path)
    try:
        config = OrganSegConfig.from_dict(json.loads((path / CONFIG).read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise BundleError(f"{path / CONFIG}: malformed ({exc}); retrain the bundle") from None
    net = build_net(config)
    try:
        net.load_state_dict(load_file(str(path / WEIGHTS)), strict=True)
    except (RuntimeError, ValueError) as exc:
        raise BundleError(f"{path / WEIGHTS}: weights do not fit the network in config.json ({exc}); "
                          "retrain the bundle") from None
    return net.to(resolve_device(device)).eval(), config, manifest


def cached_organ_net(bundle_dir: Path | None, device: torch.device) -> tuple[torch.nn.Module, OrganSegConfig]:
    """The network and config of the bundle at ``bundle_dir`` (default :data:`DEFAULT_BUNDLE`) on ``device``,
    hash-checked on first load and cached per (folder, device)."""
    path = Path(bundle_dir) if bundle_dir is not None else DEFAULT_BUNDLE
    net, config, _ = _cached(str(path.resolve()), str(device))
    return net, config


@functools.lru_cache(maxsize=4)
def _cached(path: str, device: str) -> tuple[torch.nn.Module, OrganSegConfig, dict[str, Any]]:
    return load_organ_bundle(Path(path), device=device)


# ----------------------------------------------------------------------------- geometry


def network_grid(ct: Volume, config: OrganSegConfig) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Axis-aligned RAS grid of ``config.spacing_mm`` voxels over the body of ``ct``.

    The body is the bounding box (world mm) of the voxels above ``body_threshold_hu`` (on a
    subsampled copy), plus ``body_margin_mm``, clipped to the CT's own box. Returns ``(affine, shape)``.
    """
    affine = np.asarray(ct.affine, dtype=float)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    step = np.maximum(1, np.floor(config.spacing_mm / np.maximum(spacing, 1e-6))).astype(int)
    sub = ct.data[::step[0], ::step[1], ::step[2]] > config.body_threshold_hu
    edges = np.array([[-0.5, n - 0.5] for n in ct.shape])
    if sub.any():
        lo_idx, hi_idx = np.zeros(3), np.zeros(3)
        for axis in range(3):
            hit = np.flatnonzero(sub.any(axis=tuple(a for a in range(3) if a != axis)))
            lo_idx[axis], hi_idx[axis] = hit[0] * step[axis] - 0.5, (hit[-1] + 1) * step[axis] - 0.5
        edges = np.stack([np.maximum(lo_idx, edges[:, 0]), np.minimum(hi_idx, edges[:, 1])], axis=1)
    corners = np.array([[a, b, c, 1.0] for a in edges[0] for b in edges[1] for c in edges[2]]) @ affine.T
    ct_corners = np.array([[a, b, c, 1.0] for a in (-0.5, ct.shape[0] - 0.5) for b in (-0.5, ct.shape[1] - 0.5)
                           for c in (-0.5, ct.shape[2] - 0.5)]) @ affine.T
    low = np.maximum(corners[:, :3].min(axis=0) - config.body_margin_mm, ct_corners[:, :3].min(axis=0))
    high = np.minimum(corners[:, :3].max(axis=0) + config.body_margin_mm, ct_corners[:, :3].max(axis=0))
    s = float(config.spacing_mm)
    shape = tuple(int(max(1, np.ceil((h - lo) / s))) for lo, h in zip(low, high, strict=True))
    centre = (low + high) / 2.0
    origin = centre - (np.asarray(shape) - 1) * s / 2.0
    grid = np.diag([s, s, s, 1.0])
    grid[:3, 3] = origin
    return grid, shape  # type: ignore[return-value]


def resample_channels(data: torch.Tensor, src_affine: np.ndarray, dst_affine: np.ndarray, shape: tuple[int, int, int],
                      mode: Literal["bilinear", "nearest"] = "bilinear") -> torch.Tensor:
    """Each channel of ``data`` ``(C, ...)`` resampled from ``src_affine`` onto ``(dst_affine, shape)``, the edge
    values continued outside (a CT padded with air would show the network a body edge that is not there)."""
    return torch.stack([torch.from_numpy(resample_array(channel.numpy(), src_affine, to_affine=dst_affine,
                                                        to_shape=shape, mode=mode, padding_mode="border"))
                        for channel in data])


# ----------------------------------------------------------------------------- post-processing


def _components(mask: np.ndarray, keep: int) -> list[np.ndarray]:
    """The ``keep`` largest 26-connected components of ``mask``, largest first."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel())[1:]
    order = np.argsort(sizes)[::-1][:keep]
    return [lab == (i + 1) for i in order]


def clean_labels(labels: np.ndarray, affine: np.ndarray, config: OrganSegConfig) -> dict[str, np.ndarray]:
    """Per organ a boolean mask on the network grid: largest component, pairs split by world x.

    Kidneys and adrenal glands: the right and left predictions are pooled, the two largest pieces
    kept (the second only if it is at least 10 % of the first) and each named by its side: with two
    pieces the one at larger world x (RAS: towards the patient's right) is the right one; a single
    piece is named by the side of the body's midline (x centre of the grid, fitted to the body).
    """
    names = config.labels
    out: dict[str, np.ndarray] = {}
    paired = {n for pair in PAIRS for n in pair}
    for code, name in enumerate(names):
        if code == 0 or name in paired:
            continue
        comps = _components(labels == code, 1)
        if comps:
            out[name] = comps[0]
    shape = labels.shape
    midline_x = float((affine @ np.array([(shape[0] - 1) / 2.0, 0, 0, 1.0]))[0])
    for right, left in PAIRS:
        codes = [names.index(n) for n in (right, left) if n in names]
        if not codes:
            continue
        comps = _components(np.isin(labels, codes), 2)
        if len(comps) == 2 and comps[1].sum() < 0.1 * comps[0].sum():
            comps = comps[:1]
        xs = [float((affine @ np.append(np.argwhere(c).mean(axis=0), 1.0))[0]) for c in comps]
        if len(comps) == 2:
            r, l_ = (0, 1) if xs[0] > xs[1] else (1, 0)
            out[right], out[left] = comps[r], comps[l_]
        elif len(comps) == 1:
            out[right if xs[0] > midline_x else left] = comps[0]
    return out


# ----------------------------------------------------------------------------- inference


def _organ_probability(logits: torch.Tensor, name: str, config: OrganSegConfig) -> torch.Tensor:
    """Softmax probability ``(x, y, z)`` of one organ from logits ``(len(labels), x, y, z)``; for a paired
    organ that of either side (its side is decided by :func:`clean_labels`, not by the network)."""
    probs = torch.softmax(logits.float(), dim=0)
    for pair in PAIRS:
        if name in pair:
            return sum(probs[config.labels.index(n)] for n in pair if n in config.labels)  # type: ignore[return-value]
    return probs[config.labels.index(name)]


def _to_ct_grid(logits: torch.Tensor, organs: Mapping[str, np.ndarray], grid: np.ndarray, ct: Volume,
                config: OrganSegConfig) -> np.ndarray:
    """uint8 labels on the CT grid: per organ, its probability (cleaned to its kept piece, dilated by one
    voxel) resampled trilinearly inside the organ's bounding box and thresholded at 0.5."""
    labels = np.zeros(ct.shape, dtype=np.uint8)
    ct_affine = np.asarray(ct.affine, dtype=float)
    net_to_ct = np.linalg.inv(ct_affine) @ grid
    struct = np.ones((3, 3, 3), dtype=bool)
    order = sorted(organs, key=lambda n: -int(organs[n].sum()))  # small organs painted last
    for name in order:
        keep = ndimage.binary_dilation(organs[name], structure=struct, iterations=1)
        idx = np.argwhere(keep)
        lo, hi = idx.min(axis=0), idx.max(axis=0) + 1  # the dilation already adds the one voxel needed
        sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        p = _organ_probability(logits[(slice(None), *sl)], name, config) * torch.from_numpy(keep[sl])
        sub_grid = grid.copy()
        sub_grid[:3, 3] = (grid @ np.append(lo, 1.0))[:3]
        corners = np.array([[a, b, c, 1.0] for a in (lo[0] - 0.5, hi[0] - 0.5) for b in (lo[1] - 0.5, hi[1] - 0.5)
                            for c in (lo[2] - 0.5, hi[2] - 0.5)]) @ net_to_ct.T
        c_lo = np.maximum(np.floor(corners[:, :3].min(axis=0)).astype(int), 0)
        c_hi = np.minimum(np.ceil(corners[:, :3].max(axis=0)).astype(int) + 1, ct.shape)
        if np.any(c_hi <= c_lo):
            continue
        dst = ct_affine.copy()
        dst[:3, 3] = (ct_affine @ np.append(c_lo, 1.0))[:3]
        size = (int(c_hi[0] - c_lo[0]), int(c_hi[1] - c_lo[1]), int(c_hi[2] - c_lo[2]))
        p_ct = resample_array(p.float().numpy(), sub_grid, to_affine=dst, to_shape=size, padding_mode="border")
        region = labels[c_lo[0]:c_hi[0], c_lo[1]:c_hi[1], c_lo[2]:c_hi[2]]
        region[p_ct > 0.5] = ORGAN_CODE[name]
    return labels


def inference_window(shape: tuple[int, int, int], config: OrganSegConfig) -> tuple[int, int, int]:
    """Sliding-window size for a network grid of ``shape``: ``config.patch_size``, or with
    ``config.max_window_voxels`` the patch widened per axis to cover the grid (sides rounded up to the network's
    total stride), narrowed along the axes that exceed the patch most until it holds at most that many voxels.

    The network is fully convolutional and reads any window whose sides divide by its total stride. Windows
    of the 96×96×80 training patch cut a 103×85×90 abdomen into four overlapping ones, three times the
    voxels of one window over it.
    """
    if config.max_window_voxels <= 0:
        return config.patch_size
    multiple = int(np.prod(config.strides))
    window = [max(p, -(-n // multiple) * multiple) for p, n in zip(config.patch_size, shape, strict=True)]
    while int(np.prod(window)) > config.max_window_voxels:
        excess = [w - p for w, p in zip(window, config.patch_size, strict=True)]
        axis = int(np.argmax(excess))
        if excess[axis] <= 0:
            break
        window[axis] = max(config.patch_size[axis], window[axis] - multiple)
    return (window[0], window[1], window[2])


@torch.no_grad()
def predict_logits(ct: Volume, net: torch.nn.Module, config: OrganSegConfig, *,
                   device: torch.device | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Logits ``(len(labels), X, Y, Z)`` on the network grid of ``ct`` (:func:`network_grid`) and its affine."""
    device = device or next(net.parameters()).device
    grid, shape = network_grid(ct, config)
    hu = resample_channels(torch.from_numpy(np.ascontiguousarray(ct.data, dtype=np.float32))[None],
                   np.asarray(ct.affine, dtype=float), grid, shape)
    x = window_hu(hu, config)[None].to(device)

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        # The network's forward pass under autocast on CUDA (bfloat16, else float16); its logits go back to
        # float32 before the window blending, the softmax and the argmax. No-op on CPU.
        with autocast(device):
            return net(patch).float()

    logits = sliding_window_inference(x, roi_size=inference_window(shape, config), sw_batch_size=1, predictor=predictor,
                                      overlap=config.overlap, mode="gaussian", padding_mode="constant", cval=0.0)
    return logits[0].float().cpu(), grid


def segment_organs(ct: Volume, *, device: str | None = None, bundle_dir: Path | None = None) -> OrganMasks:
    """Organ labels of ``ct`` (HU) by the organ network, on the CT's own grid.

    Args:
        ct: CT :class:`Volume`, ``data`` float32 HU ``(I, J, K)``, any orientation.
        device: torch device (default CUDA when available, else CPU with bounded threads).
        bundle_dir: bundle folder (default the shipped ``models/organ_seg/``), hash-checked on first load
            and cached per (folder, device).

    Returns:
        :class:`OrganMasks` with uint8 labels ``(I, J, K)`` (codes of :data:`ORGANS`), ``ct.affine``,
        ``source`` naming the network, its version and its simulated training, and ``present`` the
        organs the network delineates.
    """
    chosen = resolve_device(device)
    net, config = cached_organ_net(bundle_dir, chosen)
    logits, grid = predict_logits(ct, net, config, device=chosen)
    organs = clean_labels(logits.argmax(dim=0).numpy().astype(np.uint8), grid, config)
    labels = _to_ct_grid(logits, organs, grid, ct, config)
    return OrganMasks(labels=labels, affine=np.asarray(ct.affine, dtype=float).copy(), source=config.source,
                      present=tuple(n for n in config.labels[1:]))
