"""Networks: 3D image branch (MONAI blocks), lab MLP branch, fusion head, and the fusion model.

Shapes: image input (B, 1, D, H, W) on the model grid of
:class:`pfs_core.config.PreprocessConfig` (default 64×48×64 voxels of 6 mm; CT
windowed and PET SUV-scaled to [0, 1]); lab input (B, F) from
:class:`pfs_core.features.tabular.TabularParams`; output (B, 1) logits of short PFS
(PFS <= 12 months).

Parts have fixed names so that Grad-CAM can target a layer by name, e.g.
``pet_branch.features.layer3`` (see :meth:`FusionNet.gradcam_layers`) and the read-out
layer ``pet_branch.quant.maps`` (:meth:`FusionNet.readout_layers`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from pfs_core.features.readouts import (
    CT_READOUT_NAMES,
    READOUT_NAMES,
    ct_hepatic_maps,
    hepatic_maps,
    liver_hu,
    liver_suv,
    pool_ct_maps,
    pool_hepatic_maps,
    to_hu,
)
from pfs_core.models.precision import full_precision

IMAGE_MODALITIES: tuple[str, ...] = ("pet", "ct")


class PetMaps(nn.Module):
    """The PET branch's read-out layer: (B, 1, D, H, W) scaled PET → (B, 4, D, H, W) voxel maps
    (:func:`pfs_core.features.readouts.hepatic_maps`), computed without gradient to the image; no parameters.

    A layer of its own so that Grad-CAM can target it: the read-outs are sums over these maps.
    """

    def __init__(self, suv_max: float) -> None:
        super().__init__()
        self.suv_max = float(suv_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hepatic_maps(x.detach() * self.suv_max)


class CtMaps(nn.Module):
    """The CT branch's read-out layer: (B, 1, D, H, W) windowed CT → (B, 2, D, H, W) voxel maps
    (:func:`pfs_core.features.readouts.ct_hepatic_maps`); no parameters (see :class:`PetMaps`)."""

    def __init__(self, hu_low: float, hu_high: float) -> None:
        super().__init__()
        self.window = (float(hu_low), float(hu_high))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ct_hepatic_maps(to_hu(x.detach(), self.window))


class PetQuant(nn.Module):
    """Liver-referenced PET input and read-outs (:mod:`pfs_core.features.readouts`); no parameters.

    ``suv_max``: the model grid's PET scaling (input = SUVbw / ``suv_max``); ``voxel_ml``:
    model voxel volume (mL). :meth:`channels` adds a tumour-to-liver channel,
    ``clamp(log(SUV / liver), -3, 2.5) / 2.5``, so that a ratio to the liver is a
    difference a convolution can read whatever the patient's liver uptake;
    :meth:`readout` gives log(1 + x) of the hepatic read-outs.
    """

    n_channels = 2
    n_readout = len(READOUT_NAMES)

    def __init__(self, suv_max: float, voxel_ml: float) -> None:
        super().__init__()
        self.suv_max, self.voxel_ml = float(suv_max), float(voxel_ml)
        self.maps = PetMaps(suv_max)

    def channels(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) scaled PET → (B, 2, D, H, W): the input and its log ratio to the liver."""
        suv = x * self.suv_max
        liver = liver_suv(suv.detach())[:, None, None, None, None]
        return torch.cat([x, torch.log(suv / liver + 1e-3).clamp(-3.0, 2.5) / 2.5], dim=1)

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) scaled PET → (B, 4) log(1 + hepatic read-outs), pooled from the :attr:`maps` layer."""
        return torch.log1p(pool_hepatic_maps(self.maps(x), self.voxel_ml))


class CtQuant(nn.Module):
    """Liver-referenced CT input and read-outs (:mod:`pfs_core.features.readouts`); no parameters.

    ``hu_low``, ``hu_high``: the model grid's CT window (input = (HU - low) / (high -
    low)); ``voxel_ml``: model voxel volume (mL). :meth:`channels` adds a liver window,
    ``clamp((HU - liver HU) / 30, -1, 1)``: on the soft-tissue window a hypodense liver
    lesion differs by 1-6 % of the range, on this channel by a third to all of it.
    :meth:`readout` gives log(1 + x) of the hypodense hepatic volume and fraction.
    """

    n_channels = 2
    n_readout = len(CT_READOUT_NAMES)

    def __init__(self, hu_low: float, hu_high: float, voxel_ml: float) -> None:
        super().__init__()
        self.window = (float(hu_low), float(hu_high))
        self.voxel_ml = float(voxel_ml)
        self.maps = CtMaps(hu_low, hu_high)

    def channels(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) windowed CT → (B, 2, D, H, W): the input and the liver window."""
        hu = to_hu(x, self.window)
        liver = liver_hu(hu.detach())[:, None, None, None, None]
        return torch.cat([x, ((hu - liver) / 30.0).clamp(-1.0, 1.0)], dim=1)

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) windowed CT → (B, 2) log(1 + hypodense hepatic read-outs), pooled from :attr:`maps`."""
        return torch.log1p(pool_ct_maps(self.maps(x), self.voxel_ml))


class ImageBranch(nn.Module):
    """Conv trunk ``features`` (strided MONAI blocks) → global avg+max pooling → ``project`` to an embedding.

    (B, in_channels, D, H, W) → (B, embed_dim). The first block is a plain
    :class:`~monai.networks.blocks.Convolution`, the others
    :class:`~monai.networks.blocks.ResidualUnit`; all with batch norm and PReLU.
    ``quant``: a :class:`PetQuant` or :class:`CtQuant` whose liver-referenced channel
    the trunk reads and whose hepatic read-outs, standardised, fill the last
    ``quant.n_readout`` entries of the embedding (a linear path to the head, which a
    CNN trained on ~100-400 outcome labels does not find by itself: docs/models.md).
    """

    readout_mean: torch.Tensor  # buffers (B, n_readout) statistics of the training read-outs
    readout_std: torch.Tensor

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        channels: Sequence[int] = (8, 16, 32, 32),
        strides: Sequence[int] = (2, 2, 2, 2),
        *,
        embed_dim: int = 16,
        dropout: float = 0.2,
        quant: PetQuant | CtQuant | None = None,
        n_given: int = 0,
    ) -> None:
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError("channels and strides must have the same length")
        if quant is not None and n_given:
            raise ValueError("an image branch reads either grid read-outs (quant) or given measurements, not both")
        self.quant = quant
        self.n_given = int(n_given)
        n_readout = quant.n_readout if quant is not None else self.n_given
        if embed_dim <= n_readout:
            raise ValueError(f"embed_dim must exceed the {n_readout} read-outs")
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        previous = quant.n_channels if quant is not None else in_channels
        for i, (width, stride) in enumerate(zip(channels, strides, strict=True)):
            if i == 0:
                blocks[f"layer{i}"] = Convolution(spatial_dims, previous, width, strides=stride, norm="batch")
            else:
                blocks[f"layer{i}"] = ResidualUnit(spatial_dims, previous, width, strides=stride, subunits=2,
                                                   norm="batch")
            previous = width
        self.features = nn.Sequential(blocks)
        pool = nn.AdaptiveAvgPool3d if spatial_dims == 3 else nn.AdaptiveAvgPool2d
        max_pool = nn.AdaptiveMaxPool3d if spatial_dims == 3 else nn.AdaptiveMaxPool2d
        self.avg_pool, self.max_pool = pool(1), max_pool(1)
        # Batch norm first: avg- and max-pooled features live on different scales.
        self.project = nn.Sequential(nn.BatchNorm1d(2 * previous), nn.Dropout(dropout),
                                     nn.Linear(2 * previous, embed_dim - n_readout), nn.ReLU())
        # Fixed standardisation of the read-outs (training-row mean and sd, set by
        # FusionNet.fit_readout_scaling), so that the wide path is a plain logistic model.
        self.register_buffer("readout_mean", torch.zeros(n_readout))
        self.register_buffer("readout_std", torch.ones(n_readout))
        self.embed_dim = embed_dim
        self.last_layer = f"features.layer{len(channels) - 1}"
        self.readout_layer = "quant.maps" if quant is not None else None

    @property
    def n_readout(self) -> int:
        """Number of read-outs (grid read-outs or given measurements) at the end of the embedding."""
        return self.quant.n_readout if self.quant is not None else self.n_given

    def raw_readout(self, x: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_readout) read-outs before standardisation: the given measurements, or the grid read-outs."""
        if self.quant is not None:
            return self.quant.readout(x)
        if given is None or given.shape[-1] != self.n_given:
            raise ValueError(f"this image branch reads {self.n_given} lesion measurements: pass them as (B, "
                             f"{self.n_given})")
        return given

    def forward(self, x: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, D, H, W) [and (B, n_given) measurements] → (B, embed_dim), float32.

        Under :func:`pfs_core.models.precision.autocast` (CUDA) only the conv trunk runs in reduced
        precision; its output is cast back and the rest (pooling, projection, read-outs) is float32.
        """
        with full_precision(x.device):
            channels = x if self.quant is None else self.quant.channels(x)
        maps = self.features(channels).float()
        with full_precision(x.device):
            pooled = torch.cat([self.avg_pool(maps).flatten(1), self.max_pool(maps).flatten(1)], dim=1)
            embedding = self.project(pooled)
            if self.n_readout:
                embedding = torch.cat([embedding, self.standardise(self.raw_readout(x, given))], dim=1)
        return embedding

    def standardise(self, readout: torch.Tensor) -> torch.Tensor:
        """(B, n_readout) log(1 + read-outs) → standardised with the stored training mean and sd."""
        return (readout - self.readout_mean) / self.readout_std


class LabBranch(nn.Module):
    """MLP on the prepared lab vector: (B, n_features) → (B, embed_dim)."""

    def __init__(self, n_features: int, hidden: int = 32, *, embed_dim: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, embed_dim), nn.ReLU(),
        )
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class FusionHead(nn.Module):
    """Concatenated branch embeddings (B, in_features) → MLP → (B, 1) logit."""

    def __init__(self, in_features: int, hidden: int = 32, *, dropout: float = 0.2) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class FusionNet(nn.Module):
    """Late fusion of optional lab, PET and CT branches into one logit.

    Any branch can be switched off (``use_lab/use_pet/use_ct``). A missing imaging
    input (no tensor, or ``<modality>_present`` False for a sample) replaces that
    branch's embedding by a learned "missing" embedding (``missing_pet``,
    ``missing_ct``); with ``modality_dropout`` > 0 the training forward pass does
    so at random (never for all imaging branches of a sample at once when labs are
    off), so the model learns to predict without that modality. With ``pet_quant`` =
    (PET scaling in SUVbw, model voxel volume in mL) the PET branch also reads a
    tumour-to-liver channel and hepatic read-outs (:class:`PetQuant`); with
    ``ct_quant`` = (CT window low and high in HU, voxel mL) the CT branch reads a liver
    window and the hypodense hepatic read-outs (:class:`CtQuant`). With ``wide`` a
    linear logit of the prepared labs and the (standardised) read-outs is added to the
    head's (wide and deep, Cheng et al. 2016): the simulator's risk, like most clinical
    scores, is close to linear in these, and a small MLP head with dropout learns a
    linear term slowly from a few hundred patients.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        *,
        use_lab: bool,
        use_pet: bool,
        use_ct: bool,
        n_lab_features: int = 0,
        channels: Sequence[int] = (8, 16, 32, 32),
        strides: Sequence[int] = (2, 2, 2, 2),
        embed_dim: int = 16,
        hidden: int = 32,
        dropout: float = 0.2,
        modality_dropout: float = 0.0,
        pet_quant: Sequence[float] | None = None,
        ct_quant: Sequence[float] | None = None,
        wide: bool = False,
        pet_given: int = 0,
        ct_given: int = 0,
    ) -> None:
        super().__init__()
        if not (use_lab or use_pet or use_ct):
            raise ValueError("FusionNet needs at least one branch")
        if use_lab and n_lab_features < 1:
            raise ValueError("use_lab needs n_lab_features >= 1")
        self.config: dict[str, Any] = dict(
            spatial_dims=spatial_dims, use_lab=use_lab, use_pet=use_pet, use_ct=use_ct,
            n_lab_features=n_lab_features, channels=list(channels), strides=list(strides),
            embed_dim=embed_dim, hidden=hidden, dropout=dropout, modality_dropout=modality_dropout,
            pet_quant=list(pet_quant) if pet_quant is not None else None,
            ct_quant=list(ct_quant) if ct_quant is not None else None, wide=wide, pet_given=pet_given,
            ct_given=ct_given,
        )
        self.modality_dropout = modality_dropout
        image: dict[str, Any] = dict(channels=channels, strides=strides, embed_dim=embed_dim, dropout=dropout)
        quant = PetQuant(*pet_quant) if pet_quant is not None else None
        self.pet_branch = ImageBranch(spatial_dims, 1, **image, quant=quant, n_given=pet_given) if use_pet else None
        ct_reader = CtQuant(*ct_quant) if ct_quant is not None else None
        self.ct_branch = ImageBranch(spatial_dims, 1, **image, quant=ct_reader, n_given=ct_given) if use_ct else None
        self.lab_branch = LabBranch(n_lab_features, hidden, embed_dim=embed_dim, dropout=dropout) if use_lab else None
        self.missing_pet = nn.Parameter(torch.zeros(embed_dim)) if use_pet else None
        self.missing_ct = nn.Parameter(torch.zeros(embed_dim)) if use_ct else None
        n_branches = int(use_lab) + int(use_pet) + int(use_ct)
        self.head = FusionHead(n_branches * embed_dim, hidden, dropout=dropout)
        n_wide = (n_lab_features if use_lab else 0) + sum(self._readout_sizes().values())
        self.wide = nn.Linear(n_wide, 1) if wide and n_wide > 0 else None
        # Deep supervision: one linear logit per branch, used only by the training loss (see branch_logits).
        self.aux_heads = nn.ModuleDict({m: nn.Linear(embed_dim, 1) for m in ("lab", "pet", "ct")
                                        if {"lab": use_lab, "pet": use_pet, "ct": use_ct}[m]})

    @property
    def image_modalities(self) -> tuple[str, ...]:
        """Imaging inputs this network reads ("pet", "ct")."""
        return tuple(m for m in IMAGE_MODALITIES if getattr(self, f"{m}_branch") is not None)

    def gradcam_layers(self) -> dict[str, str]:
        """Grad-CAM target layer name per imaging modality, e.g. {"pet": "pet_branch.features.layer3"}."""
        return {m: f"{m}_branch.{getattr(self, f'{m}_branch').last_layer}" for m in self.image_modalities}

    def readout_layers(self) -> dict[str, str]:
        """Read-out layer name per imaging modality with read-outs, e.g. {"pet": "pet_branch.quant.maps"}."""
        branches = {m: getattr(self, f"{m}_branch") for m in self.image_modalities}
        return {m: f"{m}_branch.{b.readout_layer}" for m, b in branches.items() if b.readout_layer is not None}

    def embed(
        self,
        pet: torch.Tensor | None = None,
        ct: torch.Tensor | None = None,
        lab: torch.Tensor | None = None,
        *,
        pet_present: torch.Tensor | None = None,
        ct_present: torch.Tensor | None = None,
        pet_given: torch.Tensor | None = None,
        ct_given: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Branch embeddings, each (B, embed_dim), keyed "lab"/"pet"/"ct" (missing ones replaced).

        ``pet_given``/``ct_given`` (B, n): the lesion measurements a branch with given read-outs reads."""
        batch = _batch_size(pet, ct, lab)
        out: dict[str, torch.Tensor] = {}
        if self.lab_branch is not None:
            if lab is None:
                raise ValueError("this FusionNet uses labs: pass lab (B, n_lab_features)")
            with full_precision(lab.device):
                out["lab"] = self.lab_branch(lab)
        present = self._presence(batch, pet=pet, ct=ct, pet_present=pet_present, ct_present=ct_present)
        for name, image, given in (("pet", pet, pet_given), ("ct", ct, ct_given)):
            branch = getattr(self, f"{name}_branch")
            if branch is None:
                continue
            missing = getattr(self, f"missing_{name}").expand(batch, -1)
            if image is None:
                out[name] = missing
                continue
            mask = present[name].to(image.dtype)[:, None]
            out[name] = mask * branch(image, given) + (1.0 - mask) * missing
        return out

    def forward(
        self,
        pet: torch.Tensor | None = None,
        ct: torch.Tensor | None = None,
        lab: torch.Tensor | None = None,
        *,
        pet_present: torch.Tensor | None = None,
        ct_present: torch.Tensor | None = None,
        pet_given: torch.Tensor | None = None,
        ct_given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """pet/ct (B, 1, D, H, W) in [0, 1] or None; lab (B, F); presence masks (B,) bool; given lesion
        measurements (B, n) → (B, 1) logits."""
        parts = self.embed(pet, ct, lab, pet_present=pet_present, ct_present=ct_present, pet_given=pet_given,
                           ct_given=ct_given)
        return self.fuse(parts, lab)

    def forward_with_branches(
        self,
        pet: torch.Tensor | None = None,
        ct: torch.Tensor | None = None,
        lab: torch.Tensor | None = None,
        *,
        pet_present: torch.Tensor | None = None,
        ct_present: torch.Tensor | None = None,
        pet_given: torch.Tensor | None = None,
        ct_given: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Fused logits (B, 1) and one auxiliary logit (B, 1) per branch (deep supervision in training)."""
        parts = self.embed(pet, ct, lab, pet_present=pet_present, ct_present=ct_present, pet_given=pet_given,
                           ct_given=ct_given)
        with full_precision(next(iter(parts.values())).device):
            aux = {k: self.aux_heads[k](v) for k, v in parts.items()}
        return self.fuse(parts, lab), aux

    def fuse(self, parts: dict[str, torch.Tensor], lab: torch.Tensor | None) -> torch.Tensor:
        """(B, 1) logits from branch embeddings ``parts`` (as :meth:`embed` gives them) and the prepared labs.

        The head's logit of the concatenated embeddings, plus the wide (linear) logit of
        ``lab`` and the image read-outs when the net has a wide path. Explanations that
        swap embeddings (a modality "absent") call this, so they see the whole model. Always float32
        (autocast off on CUDA): the wide path is a fitted logistic model, kept exact.
        """
        embedded = torch.cat([parts[k] for k in ("lab", "pet", "ct") if k in parts], dim=1)
        with full_precision(embedded.device):
            logit = self.head(embedded)
            if self.wide is None:
                return logit
            linear = [lab] if self.lab_branch is not None and lab is not None else []
            linear += [parts[m][:, -n:] for m, n in self._readout_sizes().items()]
            return logit + self.wide(torch.cat(linear, dim=1))

    def fit_readout_scaling(
        self,
        pet: torch.Tensor | None = None,
        ct: torch.Tensor | None = None,
        *,
        pet_present: torch.Tensor | None = None,
        ct_present: torch.Tensor | None = None,
        pet_given: torch.Tensor | None = None,
        ct_given: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Standardise each branch's read-outs with the mean and sd over these (training) rows.

        Inputs as :meth:`forward` (unused ones may be None); only rows whose image is
        present count. Returns the standardised read-outs (B, n) per modality with
        read-outs, in the order of the wide path, 0 (the mean) where the image is absent.
        """
        out: dict[str, torch.Tensor] = {}
        images = {"pet": (pet, pet_present, pet_given), "ct": (ct, ct_present, ct_given)}
        with torch.no_grad():
            for name in self._readout_sizes():
                image, present, given = images[name]
                if image is None:
                    raise ValueError(f"fit_readout_scaling needs the {name.upper()} volumes")
                branch = getattr(self, f"{name}_branch")
                mask = present.to(device=image.device, dtype=torch.bool) if present is not None else \
                    torch.ones(len(image), dtype=torch.bool, device=image.device)
                raw = branch.raw_readout(image, given)
                if int(mask.sum()) > 1:
                    branch.readout_mean.copy_(raw[mask].mean(dim=0))
                    branch.readout_std.copy_(raw[mask].std(dim=0).clamp(min=1e-3))
                out[name] = torch.where(mask[:, None], branch.standardise(raw), torch.zeros_like(raw))
        return out

    def _readout_sizes(self) -> dict[str, int]:
        """Number of read-outs at the end of each image branch's embedding (branches without read-outs left out)."""
        branches = {m: getattr(self, f"{m}_branch") for m in self.image_modalities}
        return {m: b.n_readout for m, b in branches.items() if b.n_readout}

    def _presence(self, batch: int, **inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per-sample presence (B,) bool for each imaging modality, with random modality dropout in training."""
        present: dict[str, torch.Tensor] = {}
        device = next(self.parameters()).device
        for name in self.image_modalities:
            given = inputs[f"{name}_present"]
            has_tensor = inputs[name] is not None
            mask = given.to(device=device, dtype=torch.bool) if given is not None else torch.full(
                (batch,), has_tensor, dtype=torch.bool, device=device)
            present[name] = mask & has_tensor
        if self.training and self.modality_dropout > 0 and len(self.image_modalities) + int(
                self.lab_branch is not None) > 1:
            present = self._drop_modalities(present)
        return present

    def _drop_modalities(self, present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dropped = {k: v & (torch.rand(v.shape, device=v.device) >= self.modality_dropout) for k, v in present.items()}
        if self.lab_branch is None:  # keep at least one imaging input that was there
            none_left = ~torch.stack(list(dropped.values())).any(dim=0)
            first = next(iter(present))
            dropped[first] = dropped[first] | (none_left & present[first])
        return dropped


def _batch_size(*tensors: torch.Tensor | None) -> int:
    for t in tensors:
        if t is not None:
            return int(t.shape[0])
    raise ValueError("FusionNet got no input: pass at least one of pet, ct, lab")


def build_net(config: dict[str, Any]) -> FusionNet:
    """Rebuild a :class:`FusionNet` from its ``config`` dict (as stored in a bundle's config.json)."""
    kwargs = dict(config)
    spatial_dims = int(kwargs.pop("spatial_dims", 3))
    return FusionNet(spatial_dims, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
