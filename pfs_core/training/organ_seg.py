"""Training the CT organ network (:mod:`pfs_core.models.organ_seg`) on simulated CTs only.

Input: folders written by ``python -m pfs_core synth ... --out DIR`` (``DIR/images/<id>_ct.nii.gz`` HU and
``DIR/images/<id>_organs.nii.gz``, the simulator's tissue codes). The tissue codes are mapped to
:data:`pfs_core.io.organs.ORGANS` by :data:`SIM_TO_ORGAN`; kidney and adrenal have no side in the
simulator and are split at the body's midline (world x of the centre of the body's voxels).

The simulator's anatomy is geometric and its HU are per-tissue constants with small jitter, so the
transfer to real CT rests on domain randomisation (SynthSeg idea, docs/IMAGING.md §5), MONAI dictionary
transforms on HU:

* random field of view: the case is cut to a random z range (MONAI ``RandSpatialCropd`` in ``OneOf``),
  because the network otherwise finds the organs by their position in the simulator's fixed field of
  view (lung bases to bladder) and fails on real CTs that start mid-liver or reach the pelvis;
* SynthSeg-style contrast resynthesis (:class:`RandTissueResynthd`: each tissue's mean HU redrawn from a
  wide range, within-tissue structure kept), per-tissue random HU shifts (:class:`RandTissueShiftd`),
  both contrast phases of the simulator (portal-venous and unenhanced, drawn half/half), global HU
  scale/shift;
* random affine (rotation, anisotropic scale ±15 %, translation) with an elastic deformation of up to
  5 voxels (20 mm) SD on a coarse grid (organ-scale relative displacement), in one resampling;
* low resolution (``RandSimulateLowResolutiond``), Gaussian smoothing, Gaussian noise (up to 40 HU),
  bias field, then windowing and gamma.

Loss: MONAI ``DiceCELoss``; optimiser AdamW with a cosine schedule. Deterministic for a seed on the CPU
(numpy/torch seeded, transforms ``set_random_state``, single process).

This module may not import :mod:`pfs_core.synth` (import contract), so the simulator's codes are
copied in :data:`SIM_TISSUE_CODES`; a unit test checks the copy against ``pfs_core.synth.constants``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.losses import DiceCELoss
from monai.transforms import (
    Compose,
    Identityd,
    Lambdad,
    MapTransform,
    OneOf,
    RandAdjustContrastd,
    RandBiasFieldd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandomizableTransform,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    RandSpatialCropd,
)
from safetensors.torch import save_file

from pfs_core.io.organs import ORGAN_CODE
from pfs_core.io.volume import Volume
from pfs_core.models.device import seed_everything
from pfs_core.models.organ_seg import OrganSegConfig, build_net, network_grid, resample_channels, window_hu

# The simulator's organ label codes (pfs_core.synth.constants.ORGAN_LABELS, simulator 2.0.0), copied
# because the training code may not import the simulator; tests/unit/models/test_organ_seg.py checks it.
SIM_TISSUE_CODES: dict[int, str] = {
    0: "air", 1: "soft_tissue", 2: "lung", 3: "liver", 4: "spleen", 5: "kidney", 6: "bone", 7: "bladder",
    8: "adrenal", 9: "pancreas", 10: "bowel", 11: "fat", 12: "heart_vessels",
}
SIM_CODE: dict[str, int] = {name: code for code, name in SIM_TISSUE_CODES.items()}
# Simulator tissue → our organ name(s); a pair is (right, left), split at the body midline by world x.
SIM_TO_ORGAN: dict[str, str | tuple[str, str]] = {
    "liver": "liver",
    "spleen": "spleen",
    "kidney": ("kidney_right", "kidney_left"),
    "bladder": "urinary_bladder",
    "pancreas": "pancreas",
    "adrenal": ("adrenal_gland_right", "adrenal_gland_left"),
}
# Half-width (HU) of the uniform per-tissue shift of RandTissueShiftd: organs whose HU differ most
# between phases, scanners and patients (kidney, vessels) move most. Air never moves.
TISSUE_SHIFT_HU: dict[str, float] = {
    "soft_tissue": 25.0, "lung": 80.0, "liver": 45.0, "spleen": 45.0, "kidney": 55.0, "bone": 150.0,
    "bladder": 20.0, "adrenal": 40.0, "pancreas": 50.0, "bowel": 40.0, "fat": 30.0, "heart_vessels": 60.0,
}
# Within-organ texture (HU standard deviation of a smooth random field is not modelled): the noise
# transforms below add voxel noise only.


def map_sim_labels(tissue: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Simulator tissue codes ``(I, J, K)`` → uint8 codes of :data:`pfs_core.io.organs.ORGANS`.

    Kidney and adrenal voxels are right when their world x (RAS, towards the patient's right) is
    above the body's midline, the mean world x of the voxels that are not air.
    """
    tissue = np.asarray(tissue)
    out = np.zeros(tissue.shape, dtype=np.uint8)
    body = np.argwhere(tissue != SIM_CODE["air"])
    midline = float((np.asarray(affine, dtype=float) @ np.append(body.mean(axis=0), 1.0))[0]) if len(body) else 0.0
    x_of_i = np.asarray(affine, dtype=float)
    for sim_name, ours in SIM_TO_ORGAN.items():
        mask = tissue == SIM_CODE[sim_name]
        if not mask.any():
            continue
        if isinstance(ours, str):
            out[mask] = ORGAN_CODE[ours]
            continue
        idx = np.argwhere(mask)
        x = idx @ x_of_i[0, :3] + x_of_i[0, 3]
        right = x > midline
        out[tuple(idx[right].T)] = ORGAN_CODE[ours[0]]
        out[tuple(idx[~right].T)] = ORGAN_CODE[ours[1]]
    return out


# ----------------------------------------------------------------------------- transforms


class RandTissueShift(RandomizableTransform):
    """Add a random HU offset per simulator tissue (SynthSeg-style contrast randomisation).

    ``__call__(image, tissue)``: ``image`` HU ``(1, X, Y, Z)``, ``tissue`` simulator codes of the same
    shape; each code of ``shifts`` gets its own uniform offset in ``[-shift, shift]`` HU.
    """

    def __init__(self, shifts: Mapping[int, float], prob: float = 0.9) -> None:
        RandomizableTransform.__init__(self, prob)
        self.shifts = dict(shifts)
        self._offsets: dict[int, float] = {}

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._offsets = {code: float(self.R.uniform(-s, s)) for code, s in self.shifts.items()}

    # MONAI's Transform.__call__ takes one argument; this one needs the tissue map beside the image
    def __call__(self, image: torch.Tensor, tissue: torch.Tensor,  # type: ignore[override]
                 randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return image
        lut = torch.zeros(256, dtype=image.dtype)
        for code, offset in self._offsets.items():
            lut[code] = offset
        return image + lut[tissue.long()]


class RandTissueShiftd(MapTransform, RandomizableTransform):
    """Dictionary wrapper of :class:`RandTissueShift`: shifts ``keys`` by the tissue map in ``tissue_key``."""

    def __init__(self, keys: KeysCollection, tissue_key: str, shifts: Mapping[int, float], prob: float = 0.9) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, 1.0)
        self.tissue_key = tissue_key
        self.shifter = RandTissueShift(shifts, prob=prob)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandTissueShiftd:
        super().set_random_state(seed, state)
        self.shifter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.shifter.randomize()
        for key in self.key_iterator(d):
            d[key] = self.shifter(d[key], d[self.tissue_key], randomize=False)
        return d


# SynthSeg-style resynthesis ranges (HU) of each tissue's mean: RandTissueResynthd draws a new mean per
# tissue uniformly in its range and moves all of that tissue's voxels by (new mean - current mean), so the
# simulator's within-tissue structure (cortex/medulla, vessels, lesions, noise) is kept but the contrast
# between organs is random. Air and lung keep their values.
TISSUE_RESYNTH_HU: dict[str, tuple[float, float]] = {
    "soft_tissue": (-10.0, 120.0), "liver": (-10.0, 180.0), "spleen": (-10.0, 180.0), "kidney": (-10.0, 220.0),
    "bone": (150.0, 900.0), "bladder": (-20.0, 80.0), "adrenal": (-10.0, 150.0), "pancreas": (-10.0, 160.0),
    "bowel": (-30.0, 150.0), "fat": (-160.0, -40.0), "heart_vessels": (0.0, 250.0),
}


class RandTissueResynthd(MapTransform, RandomizableTransform):
    """SynthSeg-style contrast resynthesis from the tissue map (with probability ``prob``).

    For every simulator code of ``ranges`` present in ``tissue_key``, the voxels of ``keys`` with that code
    are shifted so that their mean becomes a uniform draw from the code's ``(low, high)`` HU range.
    """

    def __init__(self, keys: KeysCollection, tissue_key: str, ranges: Mapping[int, tuple[float, float]],
                 prob: float = 0.2) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.tissue_key = tissue_key
        self.ranges = dict(ranges)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        targets = {code: float(self.R.uniform(lo, hi)) for code, (lo, hi) in self.ranges.items()}
        if not self._do_transform:
            return d
        tissue = torch.as_tensor(d[self.tissue_key]).long().reshape(-1)
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            flat = image.reshape(-1).float()
            counts = torch.bincount(tissue, minlength=256).float()
            sums = torch.bincount(tissue, weights=flat, minlength=256)
            lut = torch.zeros(256, dtype=torch.float32)
            for code, target in targets.items():
                if counts[code] > 0:
                    lut[code] = target - float(sums[code] / counts[code])
            d[key] = image + lut[tissue].reshape(image.shape).to(image.dtype)
        return d


class RandAffineElasticd(MapTransform, RandomizableTransform):
    """Random affine + smooth elastic deformation + crop to ``spatial_size``, in one resampling.

    A cheaper equivalent of ``Rand3DElasticd`` for the CPU: the elastic field is a coarse grid of
    ``control_points``³ random displacements (standard deviation ``magnitude`` voxels, drawn in
    ``magnitude_range``) upsampled trilinearly, added to the affine sampling grid, and applied with
    ``torch.nn.functional.grid_sample`` (``modes`` per key; zero padding). Rotation (radians, per axis),
    scale (1 ± ``scale``, per axis) and translation (voxels, per axis) are uniform; the patch is
    centred on the input's centre plus the translation.
    """

    def __init__(self, keys: KeysCollection, *, spatial_size: Sequence[int], modes: Sequence[str],
                 rotate_range: Sequence[float], scale_range: float, translate_range: Sequence[float],
                 magnitude_range: tuple[float, float], control_points: int = 6) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, 1.0)
        self.spatial_size = tuple(int(v) for v in spatial_size)
        self.modes = tuple(modes)
        self.rotate_range, self.scale_range = tuple(rotate_range), float(scale_range)
        self.translate_range = tuple(translate_range)
        self.magnitude_range = magnitude_range
        self.control_points = int(control_points)

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Voxel-space map ``input = A @ (output - centre_out) + centre_in + t``: returns ``(A, t)``."""
        ax, ay, az = (self.R.uniform(-r, r) for r in self.rotate_range)
        rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
        scale = np.diag(1.0 + self.R.uniform(-self.scale_range, self.scale_range, size=3))
        shift = np.array([self.R.uniform(-t, t) for t in self.translate_range])
        return rx @ ry @ rz @ scale, shift

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = torch.as_tensor(d[self.first_key(d)])
        in_size = np.array(first.shape[1:], dtype=float)
        a, t = self._matrix()
        # output voxel grid (centred), mapped to input voxel coordinates
        axes = [torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0 for n in self.spatial_size]
        mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (X, Y, Z, 3)
        coords = mesh @ torch.as_tensor(a.T, dtype=torch.float32) \
            + torch.as_tensor((in_size - 1) / 2.0 + t, dtype=torch.float32)
        magnitude = self.R.uniform(*self.magnitude_range)
        if magnitude > 0:
            k = self.control_points
            coarse = torch.as_tensor(self.R.normal(0.0, magnitude, size=(1, 3, k, k, k)), dtype=torch.float32)
            field = torch.nn.functional.interpolate(coarse, size=self.spatial_size, mode="trilinear",
                                                    align_corners=True)[0].permute(1, 2, 3, 0)
            coords = coords + field
        # grid_sample wants (x, y, z) = (last, middle, first) tensor axes, normalised to [-1, 1]
        norm = coords / torch.as_tensor(in_size - 1, dtype=torch.float32) * 2.0 - 1.0
        grid = norm.flip(-1)[None]
        for key, mode in zip(self.key_iterator(d), self.modes, strict=False):
            img = torch.as_tensor(d[key])
            out = torch.nn.functional.grid_sample(img[None].float(), grid, mode=mode, padding_mode="zeros",
                                                  align_corners=True)[0]
            d[key] = out.to(img.dtype) if mode == "nearest" else out
        return d


@dataclass(frozen=True)
class OrganTrainConfig:
    """Training hyper-parameters (saved in the bundle's manifest)."""

    iterations: int = 2000
    batch_size: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup: int = 50
    seed: int = 0
    unenhanced_fraction: float = 0.5
    tissue_shift_prob: float = 0.9
    rotate_rad: tuple[float, float, float] = (0.12, 0.12, 0.26)
    scale: float = 0.15
    translate_vox: tuple[float, float, float] = (10.0, 10.0, 12.0)
    elastic_magnitude: tuple[float, float] = (0.0, 5.0)
    noise_hu: float = 40.0
    val_every: int = 250
    # field of view: with probability fov_crop_prob the case (network grid) is cut to a random z range of
    # at least fov_min_z_vox voxels (MONAI RandSpatialCropd), so that organs are not found by their position
    # in the field of view (real CTs start/stop anywhere: mid-liver, pelvis, thorax)
    fov_crop_prob: float = 0.7
    fov_min_z_vox: int = 40
    resynth_prob: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def augmentation(config: OrganSegConfig, train: OrganTrainConfig) -> Compose:
    """The domain-randomisation pipeline: ``{"image": HU (1, X, Y, Z), "tissue", "label"}`` →
    ``{"image": windowed (C, *patch_size), "label": (1, *patch_size)}``."""
    shifts = {SIM_CODE[name]: s for name, s in TISSUE_SHIFT_HU.items()}
    ranges = {SIM_CODE[name]: r for name, r in TISSUE_RESYNTH_HU.items()}
    fov_keys = ["image", "tissue", "label"]
    fov = OneOf([RandSpatialCropd(fov_keys, roi_size=(-1, -1, train.fov_min_z_vox), max_roi_size=(-1, -1, -1),
                                  random_center=True, random_size=True),
                 Identityd(fov_keys)], weights=(train.fov_crop_prob, 1.0 - train.fov_crop_prob))
    return Compose([
        fov,
        RandTissueResynthd("image", "tissue", ranges, prob=train.resynth_prob),
        RandTissueShiftd("image", "tissue", shifts, prob=train.tissue_shift_prob),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandShiftIntensityd("image", offsets=20.0, prob=0.5),
        Lambdad("image", lambda x: x + 1000.0),  # so that zero padding is air
        RandAffineElasticd(["image", "label"], spatial_size=config.patch_size, modes=("bilinear", "nearest"),
                           rotate_range=train.rotate_rad, scale_range=train.scale,
                           translate_range=train.translate_vox, magnitude_range=train.elastic_magnitude),
        Lambdad("image", lambda x: x - 1000.0),
        RandSimulateLowResolutiond("image", zoom_range=(0.5, 1.0), prob=0.25),
        RandGaussianSmoothd("image", sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), sigma_z=(0.25, 1.0), prob=0.25),
        RandGaussianNoised("image", mean=0.0, std=train.noise_hu, prob=0.8, sample_std=True),
        RandBiasFieldd("image", coeff_range=(0.0, 0.1), prob=0.3),
        Lambdad("image", lambda x: window_hu(x, config)),
        RandAdjustContrastd("image", gamma=(0.7, 1.4), prob=0.3),
    ])


# ----------------------------------------------------------------------------- data


def simulated_cases(folder: Path) -> list[tuple[Path, Path]]:
    """``(ct, organs)`` file pairs of one simulator output folder (or its ``images/`` folder), sorted."""
    folder = Path(folder)
    images = folder / "images" if (folder / "images").is_dir() else folder
    pairs = []
    for ct in sorted(images.glob("*_ct.nii.gz")):
        organs = ct.with_name(ct.name.replace("_ct.nii.gz", "_organs.nii.gz"))
        if organs.is_file():
            pairs.append((ct, organs))
    return pairs


def folder_phase(folder: Path) -> str:
    """Contrast phase of a simulator folder from its ``summary.json`` (``"portal_venous"``, ``"none"``)."""
    summary = Path(folder) / "summary.json"
    if summary.is_file():
        return str(json.loads(summary.read_text()).get("options", {}).get("contrast", "portal_venous"))
    return "portal_venous"


def load_case(ct_path: Path, organs_path: Path, config: OrganSegConfig) -> dict[str, Any]:
    """One simulated case on the network grid: ``image`` HU float32, ``tissue`` and ``label`` uint8, each
    ``(1, X, Y, Z)`` tensors, and ``affine`` (the grid's)."""
    img = cast(nib.Nifti1Image, nib.load(str(ct_path)))
    data = np.asarray(img.dataobj, dtype=np.float32)
    ct = Volume(data=data, affine=img.affine, source=ct_path.name, modality="CT", units="HU")
    grid, shape = network_grid(ct, config)
    image = resample_channels(torch.from_numpy(data)[None], img.affine, grid, shape)
    tissue_img = cast(nib.Nifti1Image, nib.load(str(organs_path)))
    tissue_codes = np.asarray(tissue_img.dataobj).astype(np.float32)
    tissue = resample_channels(torch.from_numpy(tissue_codes)[None], tissue_img.affine, grid, shape, mode="nearest")
    tissue_np = tissue[0].round().numpy().astype(np.uint8)
    label = map_sim_labels(tissue_np, grid)
    return {"image": image, "tissue": torch.from_numpy(tissue_np)[None],
            "label": torch.from_numpy(label)[None], "affine": grid, "id": ct_path.name}


def load_folders(folders: Sequence[Path], config: OrganSegConfig, *, log: Callable[[str], None] = print) \
        -> list[dict[str, Any]]:
    """All cases of ``folders`` on the network grid, each with ``phase`` from its folder."""
    cases = []
    for folder in folders:
        phase = folder_phase(folder)
        for ct, organs in simulated_cases(folder):
            case = load_case(ct, organs, config)
            case["phase"] = phase
            cases.append(case)
        log(f"loaded {folder} ({phase}): {len(cases)} cases so far")
    return cases


# ----------------------------------------------------------------------------- training


def dice_per_organ(pred: np.ndarray, ref: np.ndarray, names: Sequence[str]) -> dict[str, float | None]:
    """Dice per organ of two label maps of the same codes (index in ``names``; None when both are empty)."""
    out: dict[str, float | None] = {}
    for code, name in enumerate(names):
        if code == 0:
            continue
        a, b = pred == code, ref == code
        total = int(a.sum() + b.sum())
        out[name] = None if total == 0 else float(2.0 * (a & b).sum() / total)
    return out


@torch.no_grad()
def evaluate_cases(net: torch.nn.Module, cases: Sequence[Mapping[str, Any]], config: OrganSegConfig) \
        -> dict[str, float | None]:
    """Mean Dice per organ of ``net`` on cases already on the network grid (no post-processing)."""
    from monai.inferers import sliding_window_inference

    net.eval()
    scores: dict[str, list[float]] = {}
    for case in cases:
        x = window_hu(case["image"], config)[None]
        logits = sliding_window_inference(x, config.patch_size, 1, net, overlap=config.overlap, mode="gaussian")
        pred = logits[0].argmax(0).numpy()
        for name, value in dice_per_organ(pred, case["label"][0].numpy(), config.labels).items():
            if value is not None:
                scores.setdefault(name, []).append(value)
    net.train()
    return {name: float(np.mean(v)) for name, v in scores.items()}


def train_organ_seg(cases: Sequence[Mapping[str, Any]], *, config: OrganSegConfig | None = None,
                    train: OrganTrainConfig | None = None, val_cases: Sequence[Mapping[str, Any]] = (),
                    checkpoint_dir: Path | None = None, log: Callable[[str], None] = print,
                    init_state: Mapping[str, torch.Tensor] | None = None) \
        -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    """Train the organ network on simulated ``cases`` (from :func:`load_folders`) on the CPU.

    Each iteration draws ``batch_size`` cases (unenhanced with probability ``unenhanced_fraction`` when
    both phases are present), augments them with :func:`augmentation` and takes one AdamW step on
    Dice + cross-entropy, from ``init_state`` (a previous version's weights: fine-tuning) when given.
    Every ``val_every`` iterations the mean Dice on ``val_cases`` is logged and,
    with ``checkpoint_dir``, the weights saved as ``iter_<n>.safetensors``. Returns ``(net, history)``.
    """
    config = config or OrganSegConfig()
    train = train or OrganTrainConfig()
    if not cases:
        raise ValueError("no training cases")
    seed_everything(train.seed)
    rng = np.random.default_rng(train.seed)
    transform = augmentation(config, train)
    transform.set_random_state(seed=train.seed)
    net = build_net(config)
    if init_state is not None:
        net.load_state_dict(dict(init_state), strict=True)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(net.parameters(), lr=train.lr, weight_decay=train.weight_decay)

    def lr_at(it: int) -> float:
        if it < train.warmup:
            return train.lr * (it + 1) / train.warmup
        frac = (it - train.warmup) / max(1, train.iterations - train.warmup)
        return train.lr * 0.5 * (1.0 + np.cos(np.pi * frac))

    unenhanced = [i for i, c in enumerate(cases) if c.get("phase") == "none"]
    enhanced = [i for i, c in enumerate(cases) if c.get("phase") != "none"]
    history: list[dict[str, Any]] = []
    net.train()
    start, running = time.time(), []
    for it in range(train.iterations):
        batch = []
        for _ in range(train.batch_size):
            pool = unenhanced if (unenhanced and enhanced and rng.random() < train.unenhanced_fraction) \
                else (enhanced or unenhanced)
            case = cases[int(pool[rng.integers(len(pool))])]
            batch.append(transform({"image": case["image"], "tissue": case["tissue"], "label": case["label"]}))
        x = torch.stack([torch.as_tensor(b["image"]).float() for b in batch])
        y = torch.stack([torch.as_tensor(b["label"]).long() for b in batch])
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        if (it + 1) % 25 == 0:
            log(f"iter {it + 1}/{train.iterations} loss {np.mean(running):.4f} lr {lr_at(it):.2e} "
                f"{time.time() - start:.0f} s")
            running = []
        if (it + 1) % train.val_every == 0 or it + 1 == train.iterations:
            record: dict[str, Any] = {"iteration": it + 1, "seconds": round(time.time() - start, 1)}
            if val_cases:
                record["val_dice"] = evaluate_cases(net, val_cases, config)
                log(f"iter {it + 1} validation Dice "
                    + ", ".join(f"{k} {v:.3f}" for k, v in record["val_dice"].items()))
            if checkpoint_dir is not None:
                Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
                save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()},
                          str(Path(checkpoint_dir) / f"iter_{it + 1}.safetensors"))
            history.append(record)
    return net.eval(), history
