"""Published figures of the study this project follows, for side-by-side display with our benchmarks.

Source (the numbers below, AUROC/AUPRC as mean ± sd over the repeats of a
repeated 3-fold cross-validation on the private single-centre cohort of 116
patients; see ``../shared/docs/PAPER.md``): :data:`CITATION`. The fusion variants
PET+CT, labs+PET and labs+PET+CT (CT from scratch) were reported only as lying
"between" the single-modality models and the best model, so they have no figure
here; ``classic`` is this project's own comparator and is not part of the study.
"""

from __future__ import annotations

from dataclasses import dataclass

CITATION = (
    "Baur S, Ruhwedel T, Böke E, et al. Multimodal Deep Learning for Prediction of Progression-Free Survival "
    "in Patients with Neuroendocrine Tumors Undergoing 177Lu-based Peptide Receptor Radionuclide Therapy. "
    "arXiv 2511.05169 (2025); Cancers 2026, 18(8), 1194."
)
SHORT_CITATION = "Baur et al., Cancers 2026 (arXiv 2511.05169)"
COHORT = "116 patients, single centre, retrospective; repeated 3-fold cross-validation (real patients, private data)"


@dataclass(frozen=True)
class PublishedFigure:
    """A mean ± sd over cross-validation repeats, as published."""

    mean: float
    sd: float

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.sd:.2f}"


@dataclass(frozen=True)
class PublishedResult:
    """What the study reports for one of our registry models (None = not reported)."""

    model: str
    auroc: PublishedFigure | None = None
    auprc: PublishedFigure | None = None
    note: str = ""


#: Published results keyed by registry model name (:mod:`pfs_core.models.registry`).
PUBLISHED: dict[str, PublishedResult] = {
    "lab_rf": PublishedResult("lab_rf", auroc=PublishedFigure(0.59, 0.02)),
    "pet_cnn": PublishedResult("pet_cnn", auroc=PublishedFigure(0.42, 0.03)),
    "ct_cnn": PublishedResult("ct_cnn", auroc=PublishedFigure(0.54, 0.01)),
    "pet_ct": PublishedResult("pet_ct", note="reported only as between the single-modality and the best model"),
    "lab_pet": PublishedResult("lab_pet", note="reported only as between the single-modality and the best model"),
    "lab_pet_ct": PublishedResult("lab_pet_ct",
                                  note="reported only as between the single-modality and the best model"),
    "lab_pet_ct_pretrained": PublishedResult("lab_pet_ct_pretrained", auroc=PublishedFigure(0.72, 0.01),
                                             auprc=PublishedFigure(0.80, 0.01), note="best model of the study"),
    "classic": PublishedResult("classic", note="not part of the study (this project's comparator)"),
}


def published(model: str) -> PublishedResult:
    """The published result of ``model`` (an empty one for a model the study did not report)."""
    return PUBLISHED.get(model, PublishedResult(model, note="not part of the study"))
