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
changed, missing or pickle file (:class:`pfs_core.errors.BundleError`). The manifest's
own fields are protected too: ``bundle_digest`` is the sha256 of the manifest's
canonical JSON without that field (:func:`manifest_digest`), and it covers every
file's sha256, so editing any descriptive field (``training_cohort.simulated``...)
without renewing the digest is refused. A bundle whose content is malformed after
a re-hash (weights, config.json, training_oof.csv) is one BundleError naming the file.

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
from pfs_core.io.outputs import atomic_write, atomic_write_text, write_csv
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
#: Manifest field holding :func:`manifest_digest` of the rest of the manifest.
DIGEST_FIELD = "bundle_digest"
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
    def digest(self) -> str:
        """The bundle digest (hex sha256 over the manifest, which lists every file's sha256): one value that
        changes with any file or any manifest field; shown on the Model card."""
        return str(self.manifest[DIGEST_FIELD])

    @property
    def post_baseline_used(self) -> bool:
        return self.config.include_post_baseline


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """Hex sha256 of the canonical JSON (sorted keys, no spaces, ASCII) of ``manifest`` without
    :data:`DIGEST_FIELD`."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``manifest`` (made JSON-safe) with its :data:`DIGEST_FIELD` as ``path/manifest.json``, atomically;
    returns what was written."""
    full = _json_safe({k: v for k, v in manifest.items() if k != DIGEST_FIELD})
    full[DIGEST_FIELD] = manifest_digest(full)
    atomic_write_text(Path(path) / MANIFEST, json.dumps(full, indent=1))
    return dict(full)


def add_digest(path: Path) -> str:
    """Give the bundle at ``path`` (written before the digest existed) its :data:`DIGEST_FIELD`, after checking
    every file's sha256 (a changed file is still refused); returns the digest. The manifest's fields are taken
    as they are: run this only on a copy you trust."""
    path = Path(path)
    manifest = checked_manifest(path, format_name=_format_of(path), what="a pfs_core bundle manifest",
                                required=(), fix="restore the original copy", need_digest=False)
    return str(write_manifest(path, manifest)[DIGEST_FIELD])


def _format_of(path: Path) -> str:
    try:
        doc = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return FORMAT
    return str(doc.get("format", FORMAT)) if isinstance(doc, dict) else FORMAT


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
        atomic_write(path / name, lambda tmp: sio.dump(member.estimator, tmp, compression=zipfile.ZIP_DEFLATED,
                                                       compresslevel=9))
        return name

    assert member.net is not None
    name = f"fold_{fold}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in member.net.state_dict().items()}
    atomic_write(path / name, lambda tmp: save_file(state, str(tmp), metadata={"model": member.spec.name,
                                                                                "fold": str(fold)}))
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
    atomic_write_text(path / CONFIG, json.dumps(config, indent=1))
    write_csv(training_oof, path / TRAINING_OOF)
    names = [CONFIG, TRAINING_OOF, *(f["file"] for f in folds)]
    if model_card is not None:
        atomic_write_text(path / MODEL_CARD, model_card)
        names.append(MODEL_CARD)
    if background_labs is not None:
        write_csv(background_labs, path / BACKGROUND_LABS)
        names.append(BACKGROUND_LABS)
    write_manifest(path, {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                          "files": {n: sha256_file(path / n) for n in names}})
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
    _rewrite(path, manifest)


def record_description(path: Path, *, label: str, description: str) -> None:
    """Replace the bundle's model label and description (e.g. with the registry's current text after a finding
    about the model) and renew its model card, file hashes and digest; the version and weights are unchanged."""
    path = Path(path)
    manifest = verify_bundle(path)
    manifest["label"], manifest["description"] = label, description
    _rewrite(path, manifest)


def _rewrite(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` (and the model card rendered from it, when the bundle has one) with renewed hashes."""
    if MODEL_CARD in manifest["files"]:
        atomic_write_text(path / MODEL_CARD, model_card(manifest))
        manifest["files"][MODEL_CARD] = sha256_file(path / MODEL_CARD)
    write_manifest(path, manifest)


#: Manifest key of the interval calibration (:mod:`pfs_core.uncertainty`, which reads it).
UNCERTAINTY_FIELD = "uncertainty"


def record_uncertainty(path: Path, entry: Mapping[str, Any]) -> None:
    """Store an interval calibration (:func:`pfs_core.uncertainty.calibrate`) in the bundle's manifest and
    model card (the file hashes and digest are renewed; the model version and weights are unchanged)."""
    path = Path(path)
    manifest = verify_bundle(path)
    manifest[UNCERTAINTY_FIELD] = dict(entry)
    manifest["ensemble"] = {**manifest.get("ensemble", {}), "interval": str(entry.get("description", entry["method"]))}
    _rewrite(path, manifest)


def _uncertainty_lines(manifest: Mapping[str, Any]) -> list[str]:
    """Model-card limitation line about the reported interval."""
    entry = manifest.get(UNCERTAINTY_FIELD)
    if not entry:
        return ["- The reported interval is the spread of the fold models, not a calibrated interval (the training "
                "cohort had no known true risk to calibrate one against)."]
    coverage = entry.get("in_sample_coverage")
    return [f"- The {entry['level']:.0%} interval is calibrated on {entry['n_calibration']} training patients "
            f"against {entry['calibrated_against']} (conformal quantile q = {entry['q']:.3f} on the logit scale"
            + (f", {coverage:.1%} of the calibration rows covered" if coverage is not None else "") + "); it "
            "holds for patients drawn like the simulated training cohort, and widens, by an assumed rule rather "
            "than a measured one, for inputs outside the training range (docs/uncertainty.md)."]


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


#: A manifest larger than this is not read (a real one is a few tens of kB).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def checked_manifest(path: Path, *, format_name: str, what: str, required: tuple[str, ...],
                     fix: str, need_digest: bool = True) -> dict[str, Any]:
    """The manifest of the bundle folder ``path`` after checking it: its format, its digest (unless
    ``need_digest`` is False), no pickle-like file, every ``required`` file listed, and every listed file
    present with its sha256. Problems raise BundleError naming the file and ending with ``fix``."""
    manifest = _read_manifest(path / MANIFEST, fix=fix)
    if not isinstance(manifest, dict) or manifest.get("format") != format_name \
            or not isinstance(manifest.get("files"), dict) \
            or not all(isinstance(v, str) for v in manifest["files"].values()):
        raise BundleError(f"{path / MANIFEST}: not {what}; {fix}")
    if need_digest:
        _check_digest(path, manifest, fix=fix)
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


def _read_manifest(file: Path, *, fix: str) -> Any:
    """The parsed ``manifest.json``; BundleError when missing, too large or not JSON."""
    try:
        if file.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{file}: larger than {MAX_MANIFEST_BYTES // 2**20} MiB, not a bundle manifest; {fix}")
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{file}: missing, so the bundle is incomplete; {fix}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge numbers, deep nesting
        raise BundleError(f"{file}: not valid JSON ({str(exc)[:200]}); {fix}") from None


def _check_digest(path: Path, manifest: Mapping[str, Any], *, fix: str) -> None:
    """BundleError when the manifest has no :data:`DIGEST_FIELD` or its fields no longer match it."""
    recorded = manifest.get(DIGEST_FIELD)
    if recorded is None:
        raise BundleError(f"{path / MANIFEST}: has no {DIGEST_FIELD} (written before bundles carried one), so "
                          "its fields cannot be checked; if this copy is trusted, add it with 'python "
                          f"benchmarks/add_bundle_digest.py {path}', else {fix}")
    try:
        expected = manifest_digest(manifest)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path / MANIFEST}: cannot be checked ({exc}); {fix}") from None
    if recorded != expected:
        raise BundleError(f"{path / MANIFEST} was edited after the bundle was written ({DIGEST_FIELD} does not "
                          "match its fields); retrain or restore it")


def _load_member(path: Path, fold: Mapping[str, Any], *, spec: ModelSpec, config: TrainConfig) -> FittedModel:
    try:
        tabular = TabularParams.from_dict(fold["tabular"]) if fold.get("tabular") else None
    except Exception as exc:  # a re-hashed config.json can hold any value
        raise BundleError(f"{path / CONFIG}: the lab transform of {fold['file']} is malformed "
                          f"({type(exc).__name__}: {str(exc)[:200]}); retrain the bundle") from None
    file = path / fold["file"]
    if spec.kind == SKLEARN:

        try:
            estimator = sio.load(file, trusted=list(TRUSTED_SKOPS_TYPES))
        except Exception as exc:  # skops raises UntrustedTypesFoundException and others
            raise BundleError(f"{file}: cannot be loaded safely ({exc}); retrain the bundle") from None
        return FittedModel(spec=spec, config=config, tabular=tabular, estimator=estimator, info=fold.get("info", {}))


    try:
        net = build_net(fold["net"])
    except Exception as exc:  # a re-hashed config.json can hold any value: one message, not a traceback
        raise BundleError(f"{path / CONFIG}: the network of {fold['file']} cannot be built ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); retrain the bundle") from None
    try:
        net.load_state_dict(load_file(str(file)), strict=True)
    except Exception as exc:  # SafetensorError (corrupt header or data), RuntimeError (shapes), ...
        raise BundleError(f"{file}: weights cannot be read or do not fit the network in config.json "
                          f"({type(exc).__name__}: {str(exc)[:200]}); retrain the bundle") from None
    return FittedModel(spec=spec, config=config, tabular=tabular, net=net.eval(), info=fold.get("info", {}))


@dataclass(frozen=True)
class _BundleConfig:
    """What config.json holds, checked."""

    spec: ModelSpec
    preprocess: PreprocessConfig
    config: TrainConfig
    folds: list[dict[str, Any]]
    risk_threshold: float


def _read_config(path: Path, listed: set[str]) -> _BundleConfig:
    """config.json of the bundle at ``path``; one BundleError naming it for anything malformed."""
    try:
        doc = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        spec = get_spec(doc["model"])
        preprocess = from_dict(PreprocessConfig, doc["preprocess"])
        # bundles written before issue 23 have no lesion_features field: they read the grid read-outs
        config = from_dict(TrainConfig, {"lesion_features": False, **doc["train_config"]})
        folds = list(doc["folds"])
        if not folds or not all(isinstance(f, dict) and isinstance(f.get("file"), str) for f in folds):
            raise ValueError("'folds' must be a non-empty list of fold entries with a file name")
        threshold = float(doc["risk_threshold"])
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"risk_threshold {threshold} is not a probability")
    except Exception as exc:  # a re-hashed config.json can hold any value: one message, not a traceback
        raise BundleError(f"{path / CONFIG}: malformed ({type(exc).__name__}: {str(exc)[:200]}); "
                          "retrain the bundle") from None
    missing = [f["file"] for f in folds if f["file"] not in listed]
    if missing:
        raise BundleError(f"{path / missing[0]}: fold file not covered by the manifest's hashes; retrain the bundle")
    return _BundleConfig(spec=spec, preprocess=preprocess, config=config, folds=folds, risk_threshold=threshold)


def _read_training_oof(file: Path) -> pd.DataFrame:
    """training_oof.csv, checked: the columns the app reads, probabilities in [0, 1], outcomes usable."""
    try:
        oof = pd.read_csv(file, dtype={"patient_id": str})
        missing = [c for c in ("patient_id", "oof_probability", "pfs_months", "progressed") if c not in oof]
        if missing:
            raise ValueError(f"column(s) {', '.join(missing)} missing")
        prob = pd.to_numeric(oof["oof_probability"], errors="raise").to_numpy(float)
        if len(oof) == 0 or not np.all((prob >= 0) & (prob <= 1)):
            raise ValueError("oof_probability must hold probabilities in [0, 1], one per patient")
        months = pd.to_numeric(oof["pfs_months"], errors="raise").to_numpy(float)
        progressed = pd.to_numeric(oof["progressed"], errors="raise").to_numpy(float)
        if np.any(months < 0) or not np.all(np.isin(progressed[~np.isnan(progressed)], (0, 1))):
            raise ValueError("pfs_months must be >= 0 and progressed 0 or 1")
    except Exception as exc:  # pandas' parser errors, bad encodings, bad values
        raise BundleError(f"{file}: malformed ({type(exc).__name__}: {str(exc)[:200]}); retrain the bundle") \
            from None
    return oof


def load_bundle(path: str | Path) -> Bundle:
    """Verify the digest and every hash, then rebuild the fold ensemble of the bundle at ``path``."""
    path = Path(path)
    manifest = verify_bundle(path)
    doc = _read_config(path, set(manifest["files"]))
    members = [_load_member(path, fold, spec=doc.spec, config=doc.config) for fold in doc.folds]
    oof = _read_training_oof(path / TRAINING_OOF)
    return Bundle(path=path, spec=doc.spec, version=str(manifest.get("model_version", "")),
                  preprocess=doc.preprocess, config=doc.config, members=members, manifest=manifest,
                  training_oof=oof, risk_threshold=doc.risk_threshold, sha256=sha256_file(path / MANIFEST))


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
        *_uncertainty_lines(manifest),
        "- Inputs outside the training range (listed in manifest.json) are flagged, and predictions there are "
        "extrapolations.",
        *_imaging_limits(manifest), "",
    ])
