"""Registry of the models of the study comparison: the single source of truth for names.

The seven configuration names of Baur et al. (random forest on labs, PET CNN, CT CNN and
four fusions, the last with a pretrained CT branch) plus the ``classic`` comparator. The
names stay; since issue 23 the image models read lesion measurements and their labels say so. The command line takes its ``--model/--models`` choices from
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


#: What every image model reads since issue 23 (docs/models.md): the lesion measurements of
#: :mod:`pfs_core.features.lesions`, in a logistic model (the networks' wide path). A 3D CNN residual on the
#: model-grid volumes did not raise the paired AUROC on development seeds (ablation in docs/models.md), so
#: the default training keeps none (``TrainConfig.epochs`` 0): the names below are the study's, the labels
#: say what each model is.
_LESIONS = ("logistic model of the lesion measurements (pfs_core.features.lesions: PET block = SSTR-positive volume, "
            "volume-weighted and maximal tumour-to-liver ratio, heterogeneity, lesion count; CT block = liver "
            "tumour fraction, SSTR-negative volume and count), measured on the native PET/CT against the "
            "patient's liver")
_NO_CNN = ("No convolutional part by default: a 3D CNN residual on the 12-mm volumes lowered the paired AUROC on "
           "development seeds; --train-config FILE with a JSON object {\"epochs\": 40} trains one.")

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("lab_rf", "Random forest on labs", SKLEARN, True, False, False,
              description="Random forest on the laboratory and clinical values."),
    ModelSpec("pet_cnn", "PET lesion measurements (logistic)", TORCH, False, True, False,
              description=f"PET block only: {_LESIONS}. {_NO_CNN}"),
    ModelSpec("ct_cnn", "CT lesion measurements (logistic)", TORCH, False, False, True,
              description=f"CT block only (SSTR status of a CT lesion is read on the PET): {_LESIONS}. {_NO_CNN}"),
    ModelSpec("pet_ct", "PET + CT lesion measurements (logistic)", TORCH, False, True, True,
              description=f"PET and CT blocks: {_LESIONS}, one penalty weight per block. {_NO_CNN}"),
    ModelSpec("lab_pet", "Labs + PET lesion measurements (logistic)", TORCH, True, True, False,
              description=f"Labs and the PET block: {_LESIONS}, one penalty weight per block. {_NO_CNN}"),
    ModelSpec("lab_pet_ct", "Labs + PET + CT lesion measurements (logistic)", TORCH, True, True, True,
              description=f"Labs, PET and CT blocks: {_LESIONS}, one penalty weight per block. {_NO_CNN}"),
    ModelSpec("lab_pet_ct_pretrained", "Labs + PET + CT lesion measurements (logistic; pretrained CT encoder tested, "
              "not used)", TORCH, True, True, True, pretrained_ct=True,
              description=f"As lab_pet_ct: no pretrained CT part is used, so its predictions equal lab_pet_ct's. The "
                          f"candidate, the frozen encoder of the organ network 1.1.0 (a MONAI UNet trained to delineate "
                          f"organs on 180 simulated CTs; pfs_core.models.ct_encoder pools its features over the "
                          f"liver), carries part of the CT signal (cross-validated Spearman 0.70 with the "
                          f"simulator's true CT risk, against 0.97 for the CT lesion measurements) and added no "
                          f"AUROC to the lesion measurements on development seeds 101 and 102 "
                          f"(benchmarks/ct_encoder_ablation.py; docs/models.md), so it is left out. The CT branch's "
                          f"self-supervised pretraining (masked CT denoising on the training-fold CTs) runs only "
                          f"when a CNN residual is trained. {_NO_CNN}"),
    ModelSpec("classic", "Labs + PET lesion measurements (scikit-learn logistic)", SKLEARN, True, True, False,
              pet_features=True,
              description=f"Labs and the PET block in a scikit-learn L2 logistic model with one penalty weight for "
                          f"the labs and one for the PET block (median imputation): {_LESIONS}. The same model as "
                          f"lab_pet, outside torch."),
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
