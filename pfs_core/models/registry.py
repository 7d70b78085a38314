"""Registry of the models of the study comparison: the single source of truth for names.

Seven configurations of Baur et al. (random forest on labs, PET CNN, CT CNN and
four fusions, the last with a self-supervised pretrained CT branch) plus the
``classic`` comparator (quantitative PET features + labs in a regularised
logistic model). The command line takes its ``--model/--models`` choices from
:data:`MODEL_NAMES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pfs_core.errors import UsageError

#: Kinds of estimator: a scikit-learn model on a feature table, or a torch FusionNet.
SKLEARN = "sklearn"
TORCH = "torch"


@dataclass(frozen=True)
class ModelSpec:
    """What one named model uses and how it is trained.

    ``use_lab/use_pet/use_ct`` say which inputs enter the model;
    ``pretrained_ct`` means the CT branch is first pretrained self-supervised
    (see :mod:`pfs_core.training.pretrain`); ``pet_features`` means hand-crafted
    quantitative PET features (SUVmax, SUVmean, volume, tumour-to-background).
    """

    name: str
    label: str
    kind: str
    use_lab: bool
    use_pet: bool
    use_ct: bool
    pretrained_ct: bool = False
    pet_features: bool = False
    description: str = ""

    @property
    def uses_images(self) -> bool:
        """True when the model reads the PET or CT volume (directly or through features)."""
        return self.use_pet or self.use_ct

    @property
    def modalities(self) -> tuple[str, ...]:
        """Inputs used, in the fixed order ("lab", "pet", "ct")."""
        flags = (("lab", self.use_lab), ("pet", self.use_pet), ("ct", self.use_ct))
        return tuple(name for name, used in flags if used)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("lab_rf", "Random forest on labs", SKLEARN, True, False, False,
              description="Random forest on the laboratory and clinical values."),
    ModelSpec("pet_cnn", "3D CNN on SSTR PET", TORCH, False, True, False,
              description="Small 3D CNN (MONAI blocks) on the SUV-scaled PET volume."),
    ModelSpec("ct_cnn", "3D CNN on CT", TORCH, False, False, True,
              description="Small 3D CNN (MONAI blocks) on the windowed CT volume."),
    ModelSpec("pet_ct", "PET + CT fusion", TORCH, False, True, True,
              description="PET and CT branches, embeddings concatenated into the fusion head."),
    ModelSpec("lab_pet", "Labs + PET fusion", TORCH, True, True, False,
              description="Lab MLP and PET branch fused."),
    ModelSpec("lab_pet_ct", "Labs + PET + CT fusion", TORCH, True, True, True,
              description="Lab MLP, PET branch and CT branch fused; CT branch from scratch."),
    ModelSpec("lab_pet_ct_pretrained", "Labs + PET + CT fusion, pretrained CT", TORCH, True, True, True,
              pretrained_ct=True,
              description="As lab_pet_ct, CT branch first pretrained self-supervised (denoising "
                          "reconstruction of masked CT) on the training-fold CTs, no labels, no download."),
    ModelSpec("classic", "Quantitative PET features + labs (logistic)", SKLEARN, True, True, False,
              pet_features=True,
              description="SUVmax, SUVmean, volume above 1.5 x liver, tumour-to-liver ratios and hepatic "
                          "read-outs from the PET (liver proxy as reference, no segmentation) plus labs in an L2 "
                          "logistic model with one penalty weight for the labs and one for the PET features."),
)

MODEL_NAMES: tuple[str, ...] = tuple(m.name for m in MODELS)
MODELS_BY_NAME: dict[str, ModelSpec] = {m.name: m for m in MODELS}

#: Default model of the dashboard.
DEFAULT_MODEL = "lab_pet_ct_pretrained"


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; unknown names raise :class:`UsageError`."""
    try:
        return MODELS_BY_NAME[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}") from None


def resolve_models(names: str | Sequence[str]) -> tuple[ModelSpec, ...]:
    """Parse ``"all"``, ``"a,b"`` or a list of names into specs (registry order kept for "all")."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise UsageError(f"no model given; use 'all' or some of: {', '.join(MODEL_NAMES)}")
    if "all" in names:
        return MODELS
    specs = [get_spec(n) for n in names]
    return tuple(dict.fromkeys(specs))
