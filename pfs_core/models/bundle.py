"""Model bundles: a folder holding a fold ensemble that can be verified, loaded and used.

Layout of ``models/<name>/``::

    manifest.json        name, version, features + training ranges, cohort summary,
                         CV metrics, Grad-CAM layers, versions, sha256 of every file
    config.json          PreprocessConfig, TrainConfig, per fold: network arguments and
                         the fitted lab transform (plain arrays), risk threshold
    fold_<k>.safetensors torch weights of fold k (torch models), or
    fold_<k>.skops       scikit-learn estimator of fold k (lab_rf, classic)
    training_oof.csv     per training patient: OOF probability, pfs_months, progressed
    background_labs.csv  k-means centroids of the training labs (SHAP background; no individual patient)
    MODEL_CARD.md        intended use, data, metrics, limitations

Nothing is unpickled: torch weights are safetensors loaded with ``strict=True``
into networks rebuilt from config.json; scikit-learn parts are loaded with
``skops.io.load(trusted=TRUSTED_SKOPS_TYPES)``. :func:`load_bundle` checks the
sha256 of every file listed in the manifest first and refuses a bundle with a
changed, missing or pickle file (:class:`pfs_core.errors.BundleError`).

Import order note: a bundle rebuilds :class:`pfs_core.models.fitted.FittedModel`
members, so this module sits above :mod:`pfs_core.training`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from safetensors.torch import load_file, save_file

from pfs_core import schema
from pfs_core.config import PreprocessConfig, TrainConfig, from_dict, to_dict
from pfs_core.errors import BundleError
from pfs_core.features.tabular import TabularParams, feature_ranges
from pfs_core.models.fitted import FittedModel
from pfs_core.models.nets import build_net
from pfs_core.models.registry import SKLEARN, ModelSpec, get_spec

FORMAT = "pfs_core-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
TRAINING_OOF = "training_oof.csv"
MODEL_CARD = "MODEL_CARD.md"
BACKGROUND_LABS = "background_labs.csv"
#: The only non-default types a bundle's .skops files may contain.
TRUSTED_SKOPS_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree", "numpy.dtype")
PICKLE_SUFFIXES: tuple[str, ...] = (".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt", ".npy", ".npz")


@dataclass
class Bundle:
    """A loaded, verified bundle: the fold models as an ensemble plus their provenance."""

    path: Path
    spec: ModelSpec
    version: str
    preprocess: PreprocessConfig
    config: TrainConfig
    members: list[FittedModel]
    manifest: dict[str, Any]
    training_oof: pd.DataFrame
    risk_threshold: float
    sha256: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def post_baseline_used(self) -> bool:
        return self.config.include_post_baseline


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- save


def _save_member(member: FittedModel, path: Path, fold: int) -> str:
    """Write one fold model; returns its file name."""
    if member.spec.kind == SKLEARN:


        name = f"fold_{fold}.skops"
        sio.dump(member.estimator, path / name, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
        return name

    assert member.net is not None
    name = f"fold_{fold}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in member.net.state_dict().items()}
    save_file(state, str(path / name), metadata={"model": member.spec.name, "fold": str(fold)})
    return name


def save_bundle(
    path: Path,
    members: Sequence[FittedModel],
    *,
    preprocess: PreprocessConfig,
    training_oof: pd.DataFrame,
    risk_threshold: float,
    manifest: Mapping[str, Any],
    model_card: str | None = None,
    background_labs: pd.DataFrame | None = None,
) -> Path:
    """Write a bundle folder: fold files, config.json, training_oof.csv, model card, manifest with hashes.

    ``manifest`` holds the descriptive fields (name, version, features, cohort,
    metrics...); ``files`` (sha256 per file) and the format are added here.
    """
    if not members:
        raise ValueError("a bundle needs at least one fold model")
    path.mkdir(parents=True, exist_ok=True)
    folds = []
    for k, member in enumerate(members):
        folds.append({"file": _save_member(member, path, k),
                      "net": member.net.config if member.net is not None else None,
                      "tabular": member.tabular.to_dict() if member.tabular is not None else None,
                      "info": _json_safe(member.info)})
    config = {"model": members[0].spec.name, "preprocess": to_dict(preprocess),
              "train_config": to_dict(members[0].config), "risk_threshold": float(risk_threshold),
              "folds": folds}
    (path / CONFIG).write_text(json.dumps(config, indent=1))
    training_oof.to_csv(path / TRAINING_OOF, index=False)
    names = [CONFIG, TRAINING_OOF, *(f["file"] for f in folds)]
    if model_card is not None:
        (path / MODEL_CARD).write_text(model_card)
        names.append(MODEL_CARD)
    if background_labs is not None:
        background_labs.to_csv(path / BACKGROUND_LABS, index=False)
        names.append(BACKGROUND_LABS)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
            "files": {n: sha256_file(path / n) for n in names}}
    (path / MANIFEST).write_text(json.dumps(_json_safe(full), indent=1))
    return path


def _imaging_limits(manifest: Mapping[str, Any]) -> list[str]:
    """Model-card limitation lines about what the model reads of the images."""
    if manifest.get("lesion_measurements"):
        return ["- The images enter as lesion measurements (docs/measure.md): lesions are delineated automatically "
                "against organ masks; the training cohort had organ masks, and a case measured with the organ "
                "network's organs instead (no masks given) may show more disease than there is. Lesions below "
                "~1 cm lose uptake to partial volume; SSTR-negative disease is searched in the liver only.",
                f"- Kept epoch per fold: {manifest.get('best_epochs')} (0 = the logistic start: no convolutional "
                "part is used, so no Grad-CAM is shown)."]
    return ["- Imaging is resampled to a coarse grid (see config.json); small lesions are blurred."]


def _evaluation_lines(evaluations: Any) -> list[str]:
    """Model-card section of the held-out evaluations recorded by :func:`record_evaluation` (none: empty)."""
    if not evaluations:
        return []
    lines = ["## Evaluation on held-out simulated cohorts (evaluation seeds, never tuned on)",
             "| cohort | patients (labelled) | AUROC [95 % CI] | C-index | Brier | Bayes AUROC of the cohort |",
             "|---|---|---|---|---|---|"]
    for e in evaluations:
        ci = e["auroc_ci95"]
        lines.append(f"| `{e['cohort']}` | {e['n']} ({e['n_labelled']}) | {e['auroc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
                     f"{e['c_index']:.3f} | {e['brier']:.3f} | {e.get('bayes_auroc') or 'n/a'} |")
    lines += ["", f"Command: `{evaluations[-1].get('command', '')}`", ""]
    return lines


def record_evaluation(path: Path, evaluation: Mapping[str, Any]) -> None:
    """Add a held-out evaluation to the bundle's manifest and model card (one per cohort; the file hashes are
    renewed, the model version and weights are unchanged)."""
    path = Path(path)
    manifest = verify_bundle(path)
    kept = [e for e in manifest.get("evaluation", []) if e.get("cohort") != evaluation.get("cohort")]
    manifest["evaluation"] = [*kept, dict(evaluation)]
    if MODEL_CARD in manifest["files"]:
        (path / MODEL_CARD).write_text(model_card(manifest))
        manifest["files"][MODEL_CARD] = sha256_file(path / MODEL_CARD)
    (path / MANIFEST).write_text(json.dumps(_json_safe(manifest), indent=1))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- load


def verify_bundle(path: Path) -> dict[str, Any]:
    """Check the manifest and the sha256 of every listed file; returns the manifest.

    Raises :class:`BundleError` naming the file and the fix for a missing
    folder/manifest/file, a hash mismatch, or a pickle-like file in the folder.
    """
    path = Path(path)
    retrain = f"retrain it with 'python -m pfs_core train --model <name> --out {path}' or restore the original copy"
    if not path.is_dir():
        raise BundleError(f"{path}: model bundle folder not found; pass the folder written by 'pfs_core train'")
    return checked_manifest(path, format_name=FORMAT, what="a pfs_core bundle manifest",
                            required=(CONFIG, TRAINING_OOF), fix=retrain)


def checked_manifest(path: Path, *, format_name: str, what: str, required: tuple[str, ...],
                     fix: str) -> dict[str, Any]:
    """The manifest of the bundle folder ``path`` after checking it: its format, no pickle-like file, every
    ``required`` file listed, and every listed file present with its sha256. Problems raise BundleError
    naming the file and ending with ``fix``."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise BundleError(f"{path / MANIFEST}: missing, so the bundle is incomplete; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path / MANIFEST}: not valid JSON ({exc}); {fix}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != format_name \
            or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{path / MANIFEST}: not {what}; {fix}")
    for bad in sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES):
        raise BundleError(f"{path / bad}: pickle-like files are not allowed in a bundle; delete it ({fix})")
    for required_name in required:
        if required_name not in manifest["files"]:
            raise BundleError(f"{path / MANIFEST}: does not list {required_name} (incomplete bundle); {fix}")
    for name, expected in manifest["files"].items():
        file = path / name
        if Path(name).name != name:
            raise BundleError(f"{path / MANIFEST}: file entry {name!r} is not a plain file name; {fix}")
        if not file.is_file():
            raise BundleError(f"{file}: listed in the manifest but missing (incomplete bundle); {fix}")
        if sha256_file(file) != expected:
            raise BundleError(f"{file}: sha256 does not match the manifest (file changed or corrupted); {fix}")
    return manifest


def _load_member(path: Path, fold: Mapping[str, Any], *, spec: ModelSpec, config: TrainConfig) -> FittedModel:
    tabular = TabularParams.from_dict(fold["tabular"]) if fold.get("tabular") else None
    file = path / fold["file"]
    if spec.kind == SKLEARN:

        try:
            estimator = sio.load(file, trusted=list(TRUSTED_SKOPS_TYPES))
        except Exception as exc:  # skops raises UntrustedTypesFoundException and others
            raise BundleError(f"{file}: cannot be loaded safely ({exc}); retrain the bundle") from None
        return FittedModel(spec=spec, config=config, tabular=tabular, estimator=estimator, info=fold.get("info", {}))


    net = build_net(fold["net"])
    try:
        net.load_state_dict(load_file(str(file)), strict=True)
    except (RuntimeError, ValueError) as exc:
        raise BundleError(f"{file}: weights do not fit the network in config.json ({exc}); retrain the bundle") \
            from None
    return FittedModel(spec=spec, config=config, tabular=tabular, net=net.eval(), info=fold.get("info", {}))


def load_bundle(path: str | Path) -> Bundle:
    """Verify every hash, then rebuild the fold ensemble of the bundle at ``path``."""
    path = Path(path)
    manifest = verify_bundle(path)
    try:
        config_doc = json.loads((path / CONFIG).read_text())
        spec = get_spec(config_doc["model"])
        preprocess = from_dict(PreprocessConfig, config_doc["preprocess"])
        # bundles written before issue 23 have no lesion_features field: they read the grid read-outs
        config = from_dict(TrainConfig, {"lesion_features": False, **config_doc["train_config"]})
        listed = set(manifest["files"])
        missing = [f["file"] for f in config_doc["folds"] if f["file"] not in listed]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path / CONFIG}: malformed ({exc}); retrain the bundle") from None
    if missing:
        raise BundleError(f"{path / missing[0]}: fold file not covered by the manifest's hashes; retrain the bundle")
    members = [_load_member(path, fold, spec=spec, config=config) for fold in config_doc["folds"]]
    oof = pd.read_csv(path / TRAINING_OOF, dtype={"patient_id": str})
    return Bundle(path=path, spec=spec, version=str(manifest.get("model_version", "")), preprocess=preprocess,
                  config=config, members=members, manifest=manifest, training_oof=oof,
                  risk_threshold=float(config_doc["risk_threshold"]), sha256=sha256_file(path / MANIFEST))


# ----------------------------------------------------------------------------- manifest helpers


def feature_manifest(labs: pd.DataFrame, *, include_post_baseline: bool) -> list[dict[str, Any]]:
    """Feature list with units and training ranges (min/max, 1st/99th percentile) per lab."""

    out: list[dict[str, Any]] = []
    for name, info in feature_ranges(labs, include_post_baseline=include_post_baseline).items():
        feature = schema.NUMERIC_BY_NAME[name]
        out.append({"name": name, "label": feature.label, "kind": "numeric",
                    "post_baseline": name in schema.POST_BASELINE_COLUMNS, "plausible": list(feature.plausible),
                    "reference": list(feature.reference) if feature.reference else None, **info})
    for cat in schema.CATEGORICAL_FEATURES:
        counts = labs[cat.name].value_counts().to_dict() if cat.name in labs else {}
        out.append({"name": cat.name, "label": cat.label, "kind": "categorical", "levels": list(cat.levels),
                    "counts": {str(k): int(v) for k, v in counts.items()},
                    "n_missing": int(labs[cat.name].isna().sum()) if cat.name in labs else len(labs)})
    return out


def model_card(manifest: Mapping[str, Any]) -> str:
    """MODEL_CARD.md text from the manifest fields (metrics are those of the producing command)."""
    cohort, cv = manifest["training_cohort"], manifest["cv_metrics"]
    simulated = cohort.get("simulated")
    data_line = ("**SIMULATED data** (not patients)" if simulated else "the cohort below") + \
        (f": {cohort['note']}" if cohort.get("note") else "")

    def fmt(key: str) -> str:
        value = cv.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    return "\n".join([
        f"# Model card: `{manifest['model_name']}` (version {manifest['model_version']})", "",
        f"> {manifest['disclaimer']}", "",
        "## Intended use",
        "Research and demonstration: exploring how PET/CT and laboratory values relate to progression-free "
        "survival (PFS) <= 12 months before 177Lu-DOTATOC PRRT, in this project's dashboard and command line. "
        "**Not a medical device; not validated on patients; not for clinical decisions.**", "",
        "## Model",
        f"{manifest['description']} Inputs: {', '.join(manifest['inputs'])}. "
        f"Ensemble of {manifest['ensemble']['n_members']} fold models; the reported interval is "
        f"{manifest['ensemble']['interval']}.",
        f"Post-baseline variable `prrt_cycles` used: **{'yes' if manifest['post_baseline_used'] else 'no'}**.", "",
        "## Training data",
        f"Trained on {data_line}. Source: `{cohort.get('source', '')}`; {cohort['n']} patients, "
        f"{cohort['n_labelled']} with a binary label, prevalence of short PFS {cohort['prevalence_short_pfs']:.2f}; "
        f"{cohort['n_censored_before_12_months']} censored at or before 12 months (no binary label).", "",
        "## Metrics (out-of-fold over the bundle's own folds)",
        f"Command: `{manifest.get('command', '')}`", "",
        "| AUROC | AUPRC | Brier | C-index |", "|---|---|---|---|",
        f"| {fmt('auroc')} | {fmt('auprc')} | {fmt('brier')} | {fmt('c_index')} |", "",
        f"{cv.get('note', '')}", "",
        *_evaluation_lines(manifest.get("evaluation")),
        "## Limitations",
        "- Trained and evaluated on a simulated cohort that mimics published relationships; performance on real "
        "patients is unknown. External validation is required before any research conclusion.",
        "- Small training set; the fold spread (interval) is a rough uncertainty, not a calibrated one.",
        "- Inputs outside the training range (listed in manifest.json) are flagged, and predictions there are "
        "extrapolations.",
        *_imaging_limits(manifest), "",
    ])
