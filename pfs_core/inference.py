"""Inference with a model bundle: the one entry the pages, ``predict``, ``score`` and ``explain`` call.

``predict_case`` scores one patient from PET/CT :class:`~pfs_core.io.Volume`
objects (either may be None) and a mapping of lab values in the model units of
:mod:`pfs_core.schema`; ``predict_cohort`` scores every row of a cohort table;
``score_cohort`` validates a table first, scores its good rows and returns both.

The probability is the mean over the bundle's fold models. The interval
(:mod:`pfs_core.uncertainty`, docs/uncertainty.md) is, for a bundle calibrated against
the simulator's true risk, a 90 % split-conformal interval on the logit scale that
widens with inputs outside the training range and with missing inputs
(``interval_level`` 0.9); for a bundle without that calibration it is the min–max of
the fold models' probabilities, labelled "spread of the fold models; not a calibrated
interval" (``interval_level`` None). ``interval_method`` says which in words and
``interval_sentence`` says it in one plain-language sentence. The
risk group is "high" when the probability is at or above the training cohort's
median OOF probability (stored in the bundle), else "low".
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from pfs_core import DISCLAIMER, schema
from pfs_core.dataset import CohortData
from pfs_core.errors import InputError
from pfs_core.execution import Execution
from pfs_core.features.lesions import FEATURE_LABELS, LESION_FEATURES, raw_features
from pfs_core.features.readouts import measurements
from pfs_core.io.cohort import (
    PAIR_COLUMN,
    CohortReport,
    ProgressCallback,
    RowProblem,
    good_cohort_csv,
    validate_cohort,
)
from pfs_core.io.labs import is_missing, validate_labs
from pfs_core.io.organs import OrganMasks
from pfs_core.measure.case import Measurement, measure_case
from pfs_core.measure.features import cohort_cases, load_cohort_with_lesions, measurement_vector
from pfs_core.measure.settings import MEASURE_1_1, MeasureSettings, stored_settings
from pfs_core.models.bundle import Bundle
from pfs_core.models.device import resolve_device
from pfs_core.preprocessing.model_grid import preprocess_case
from pfs_core.uncertainty import LEVEL, bundle_inputs, read_calibration
from pfs_core.uncertainty import interval as make_interval

if TYPE_CHECKING:
    from pfs_core.io import Volume
    from pfs_core.preprocessing.model_grid import PreparedCase


#: ``interval_method`` of bundles without a calibration (:data:`pfs_core.uncertainty.FALLBACK_METHOD`).
INTERVAL_METHOD = "spread of the fold models; not a calibrated interval"


SIMULATED_NOTE = "The shipped model weights were trained on a simulated cohort, not on patients."


@dataclass
class Prediction:
    """Result of :func:`predict_case` (all probabilities are of PFS <= 12 months).

    ``interval``: (low, high) probabilities; ``interval_level``: its nominal coverage (0.9), None when it is only
    the fold models' spread; ``interval_method``: the method in words; ``interval_sentence``: one plain sentence.
    """

    probability: float
    interval: tuple[float, float]
    fold_probabilities: list[float]
    risk_group: str
    risk_threshold: float
    percentile_in_training: float
    missing_modalities: list[str]
    inputs_used: list[str]
    imputed_fields: list[str]
    out_of_range_fields: list[str]
    post_baseline_used: bool
    warnings: list[str]
    device: str
    timings_s: dict[str, float]
    model_name: str
    model_version: str
    bundle_sha256: str
    trained_on_simulated_data: bool | None
    image_measurements: dict[str, float] = field(default_factory=dict)
    interval_method: str = INTERVAL_METHOD
    interval_level: float | None = LEVEL
    interval_sentence: str = ""
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the output of ``pfs_core predict``)."""
        out = asdict(self)
        out["interval"] = list(self.interval)
        return out


def _used_lab_columns(bundle: Bundle) -> list[str]:
    tabular = bundle.members[0].tabular
    return [*tabular.numeric_columns, *tabular.categorical] if tabular is not None else []


def _lab_report(bundle: Bundle, clean: Mapping[str, Any], *,
                warn_post_baseline: bool = True) -> tuple[list[str], list[str], list[str]]:
    """(imputed fields, out-of-range fields, warnings) for one patient's validated labs."""
    used = _used_lab_columns(bundle)
    imputed = [name for name in used if clean.get(name) is None]
    ranges = {f["name"]: f for f in bundle.manifest.get("features", []) if f.get("kind") == "numeric"}
    out_of_range, warnings = [], []
    for name in used:
        info, value = ranges.get(name), clean.get(name)
        if info is None or value is None or info.get("min") is None:
            continue
        if not info["min"] <= float(value) <= info["max"]:
            out_of_range.append(name)
            warnings.append(f"{schema.label(name)} = {value:g} {info['unit']} is outside the training range "
                            f"{info['min']:g}-{info['max']:g}; the prediction extrapolates")
    if imputed:
        warnings.append(f"missing lab value(s) imputed with the training median: {', '.join(map(schema.label, imputed))}")
    if warn_post_baseline and not bundle.post_baseline_used and clean.get("prrt_cycles") is not None and used:
        warnings.append(f"{schema.label('prrt_cycles')} ignored: it is post-baseline and this model was trained "
                        "without it")
    return imputed, out_of_range, warnings


def _check_modalities(bundle: Bundle, *, has_pet: bool, has_ct: bool) -> tuple[list[str], list[str]]:
    """(missing imaging modalities, warnings); InputError when the model has nothing left to use.

    ``has_pet``/``has_ct``: the case has that image. A model that reads lesion measurements needs both: the
    measurement reads the CT for organs and lesions and the PET for uptake.
    """
    spec = bundle.spec
    images = [m for m in ("pet", "ct") if getattr(spec, f"use_{m}")]
    lesions = reads_lesions(bundle) and not (has_pet and has_ct)
    missing = images if lesions else [m for m, has in (("pet", has_pet), ("ct", has_ct)) if m in images and not has]
    left = [m for m in spec.modalities if m not in missing]
    if not left:
        need = "PET and CT (its lesion measurements need both)" if lesions else \
            " and ".join(m.upper() for m in spec.modalities)
        raise InputError(f"model {spec.name} needs {need}, which was not given; give it or use a model "
                         "that includes lab values")
    if lesions:
        return missing, [f"{' and '.join(m.upper() for m in missing)} not used: the lesion measurements need both "
                         "the PET and the CT; the model predicts without them (learned 'missing' input); expect a "
                         "less reliable estimate"]
    warnings = [f"{m.upper()} missing: the model predicts without it (learned 'missing' input); "
                "expect a less reliable estimate" for m in missing]
    return missing, warnings


def ensemble_probabilities(bundle: Bundle, data: CohortData, *, device: Any = None) -> np.ndarray:
    """(N, K) probability of each fold model for each row of ``data``."""
    return np.stack([m.predict_proba(data, device=device) for m in bundle.members], axis=1)


def _input_labels(bundle: Bundle) -> dict[str, str]:
    """Plain names of the inputs the interval reads (for its sentence)."""
    labels = {str(f["name"]): str(f.get("label", f["name"])) for f in bundle.manifest.get("features", [])}
    return {**FEATURE_LABELS, **labels}


#: Why a calibrated interval is not calibrated for a case whose lesions were measured with the organ network.
NETWORK_ORGANS_INTERVAL = ("its lesions were measured against the organ network's organs (no organ masks "
                           "given), which finds false-positive lesions and makes the probability too high")


def _summaries(bundle: Bundle, fold_probs: np.ndarray, values: Mapping[str, float | None], *,
               network_organs: bool = False) -> dict[str, Any]:
    """Ensemble mean, interval, risk group and training percentile of one row (K,) of fold probabilities;
    ``values``: the row's model-scale inputs (:func:`pfs_core.uncertainty.bundle_inputs`); ``network_organs``:
    its lesions were measured against the organ network's organs (the calibration cohort had organ masks)."""
    prob = float(np.mean(fold_probs))
    train = bundle.training_oof["oof_probability"].to_numpy(float)
    span = make_interval(prob, read_calibration(bundle.manifest), values=values, fold_probabilities=list(fold_probs),
                         labels=_input_labels(bundle),
                         not_calibrated_for=NETWORK_ORGANS_INTERVAL if network_organs else None)
    return {"probability": prob, "interval": (span.low, span.high), "interval_level": span.level,
            "interval_method": span.method, "interval_sentence": span.sentence,
            "interval_outside": list(span.difficulty.outside) if span.difficulty is not None else [],
            "fold_probabilities": [float(p) for p in fold_probs],
            "risk_group": "high" if prob >= bundle.risk_threshold else "low",
            "percentile_in_training": float(100.0 * np.mean(train <= prob)) if train.size else float("nan")}


def prepare_images(bundle: Bundle, pet: Volume | None, ct: Volume | None) -> PreparedCase | None:
    """The case's images on the bundle's model grid, modalities the model does not read dropped.

    None when the model reads no images or neither volume is given. Both given
    volumes go through :func:`pfs_core.preprocessing.model_grid.preprocess_case` (so the grid is
    centred on the CT body exactly as for the training cohort) before the unused
    modality is removed.
    """
    spec = bundle.spec
    if not spec.uses_images or (pet is None and ct is None):
        return None
    if (pet is None or not spec.use_pet) and (ct is None or not spec.use_ct):
        return None

    case = preprocess_case(pet, ct, bundle.preprocess)
    if not spec.use_pet:
        case.pet, case.pet_suv_max_original = None, None
    if not spec.use_ct:
        case.ct = None
    return case


def case_data(bundle: Bundle, clean: Mapping[str, Any], case: PreparedCase | None) -> CohortData:
    """One-row :class:`CohortData` with the case's validated labs and model-grid images."""
    config = bundle.preprocess
    data = CohortData(patient_ids=np.array(["case"]), labs=pd.DataFrame([dict(clean)]),
                      time_months=np.array([np.nan]), event=np.array([0]), preprocess=config)
    if not bundle.spec.uses_images:
        return data
    shape = (1, *config.shape)
    data.pet, data.ct = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    data.pet_present, data.ct_present = np.zeros(1, bool), np.zeros(1, bool)
    data.pet_suv_max_original = np.array([np.nan])
    if case is None:
        return data
    for name, array in (("pet", case.pet), ("ct", case.ct)):
        if array is not None:
            getattr(data, name)[0] = array
            getattr(data, f"{name}_present")[0] = True
    if case.pet_suv_max_original is not None:
        data.pet_suv_max_original[0] = case.pet_suv_max_original
    return data


def case_device(device: Any = None, *, threads: int | None = None) -> torch.device:
    """The torch device for one case (:func:`pfs_core.models.device.resolve_device`), with ``threads`` CPU threads if given.

    One case on the small model grid gains nothing from a second torch thread and
    loses much when the cores are busy (OpenMP threads spin-wait for each other:
    measured 0.6 s with 1 thread vs 5-7 s with 2 for a whole explanation at a load
    average of 3-4 on 2 cores), so the dashboard passes ``threads=1``.
    """
    chosen = resolve_device(None if device is None else str(device))
    if threads is not None and chosen.type == "cpu":

        torch.set_num_threads(max(1, int(threads)))
    return chosen


def predict_case(
    bundle: Bundle,
    *,
    pet: Volume | None,
    ct: Volume | None,
    labs: Mapping[str, float | str | None],
    device: str | None = None,
    prepared: PreparedCase | None = None,
    threads: int | None = None,
    organs: OrganMasks | None = None,
    measurement: Measurement | None = None,
) -> Prediction:
    """Predict short PFS for one patient; PET (SUVbw) and CT (HU) volumes may be None.

    ``prepared``: the images already on the model grid (:func:`prepare_images`), to skip preprocessing.
    ``measurement``: the case's lesion measurement (:func:`pfs_core.measure.case.measure_case`), to skip
    measuring; otherwise a model that reads lesion measurements measures the case, with ``organs``
    when given, else with the organ network's.
    ``threads``: torch CPU threads (default :func:`pfs_core.models.device.cpu_threads`; see :func:`case_device`).
    """
    started = time.perf_counter()
    clean = validate_labs(labs)
    spec = bundle.spec
    if prepared is None:
        prepared = prepare_images(bundle, pet, ct)
    if reads_lesions(bundle):  # the measurement reads both images, whichever the model's branches use
        missing, warnings = _check_modalities(bundle, has_pet=pet is not None, has_ct=ct is not None)
    else:
        missing, warnings = _check_modalities(bundle, has_pet=prepared is not None and prepared.pet is not None,
                                              has_ct=prepared is not None and prepared.ct is not None)
    imputed, out_of_range, lab_warnings = _lab_report(bundle, clean) if spec.use_lab else ([], [], [])
    torch_device = case_device(device, threads=threads)
    data = case_data(bundle, clean, prepared)
    measurement = case_measurement(bundle, pet, ct, organs=organs, measurement=measurement)
    data.lesion_features = case_lesion_features(bundle, measurement)
    if measurement is not None and measurement.organs.from_network:
        warnings = [*warnings, NETWORK_ORGANS_NOTE]
    read = [m for m in ("pet", "ct") if m in spec.modalities and m not in missing]
    if little := little_input_warning(bundle, labs, has_image=bool(read)):
        warnings = [*warnings, little]
    t_prepared = time.perf_counter()
    fold_probs = ensemble_probabilities(bundle, data, device=torch_device)[0]
    done = time.perf_counter()
    simulated = bundle.manifest.get("training_cohort", {}).get("simulated")
    network = measurement is not None and measurement.organs.from_network
    summary = _summaries(bundle, fold_probs, _row_inputs(bundle, data.labs, data.lesion_features)[0],
                         network_organs=network)
    summary.pop("interval_outside")
    return Prediction(
        **summary, risk_threshold=bundle.risk_threshold,
        missing_modalities=missing, inputs_used=[m for m in spec.modalities if m not in missing],
        imputed_fields=imputed, out_of_range_fields=out_of_range,
        post_baseline_used=bundle.post_baseline_used and clean.get("prrt_cycles") is not None,
        warnings=warnings + [w for v in (pet, ct) if v is not None for w in v.warnings]  # the loader's notes
        + lab_warnings + ([SIMULATED_NOTE] if simulated else []), device=str(torch_device),
        timings_s={"preprocess": round(t_prepared - started, 4), "inference": round(done - t_prepared, 4),
                   "total": round(done - started, 4)},
        model_name=spec.name, model_version=bundle.version, bundle_sha256=bundle.sha256,
        trained_on_simulated_data=simulated, image_measurements=_measurements(bundle, prepared, measurement),
    )


def _row_inputs(bundle: Bundle, labs: pd.DataFrame, lesion_features: np.ndarray | None) -> list[dict[str, float | None]]:
    """Per row of ``labs``: the model-scale inputs the interval's difficulty reads (None: missing)."""
    table = bundle_inputs(bundle, labs.reset_index(drop=True), lesion_features)
    return [{str(k): (None if pd.isna(v) else float(v)) for k, v in table.iloc[i].items()} for i in range(len(table))]


def little_input_warning(bundle: Bundle, labs: Mapping[str, Any], *, has_image: bool) -> str | None:
    """A warning when the model answers from very little: fewer than half of its labs given and no image read.

    None when the input is enough (or the model reads no labs: its images are then all it reads).
    """
    tabular = bundle.members[0].tabular
    used = [*tabular.numeric_columns, *tabular.categorical] if tabular is not None else []
    if not used or has_image:
        return None
    given = sum(not is_missing(labs.get(name)) for name in used)
    if given * 2 >= len(used):
        return None
    return (f"very little input: {given} of the {len(used)} lab and clinical values this model reads were given "
            "and no image was read; the rest is the training median, so this probability says little about this "
            "patient")


#: Shown with a prediction whose lesions were measured against the organ network's organs.
NETWORK_ORGANS_NOTE = (
    "organs from the organ network (no organ masks given): trained on simulated CTs only, it misses some organs with "
    "physiological uptake (adrenals, kidneys, spleen), whose uptake can then count as lesions (0.6 false-positive "
    "lesions per simulated patient against 0.1 with organ masks), and on real CTs it misplaces the kidneys, so that "
    "their uptake counts as lesions (docs/measure.md); the measured disease and the probability may be too high: "
    "give organ masks, e.g. TotalSegmentator output")


def reads_lesions(bundle: Bundle) -> bool:
    """True when the bundle's image branches read lesion measurements (:mod:`pfs_core.features.lesions`)."""
    return bundle.spec.uses_images and bundle.config.lesion_features


def measure_settings(bundle: Bundle) -> MeasureSettings:
    """The lesion measurement ``bundle`` was trained on: its manifest's ``measurement``, else measurement 1.1's
    settings (bundles trained before measurement 1.2 have no such entry). A model must read what it learnt from."""
    if "measurement" not in bundle.manifest:
        return MEASURE_1_1
    stored = bundle.manifest["measurement"]
    return stored_settings(stored["settings"]) if stored else MeasureSettings()


def case_measurement(bundle: Bundle, pet: Volume | None, ct: Volume | None, *, organs: OrganMasks | None = None,
                     measurement: Measurement | None = None) -> Measurement | None:
    """The case's lesion measurement when the model reads one: ``measurement`` when given, else measured
    (with ``organs``, or the organ network's); None without PET or CT, or for a model that reads none."""
    if measurement is not None or not reads_lesions(bundle) or pet is None or ct is None:
        return measurement
    return measure_case(pet, ct, organs=organs, settings=measure_settings(bundle))


def case_lesion_features(bundle: Bundle, measurement: Measurement | None) -> np.ndarray | None:
    """(1, F) model-scale lesion measurements of one case (NaN without a measurement); None when the model
    reads none."""
    if not reads_lesions(bundle):
        return None
    if measurement is None:
        return np.full((1, len(LESION_FEATURES)), np.nan, np.float32)
    return measurement_vector(measurement)[None]


def _measurements(bundle: Bundle, prepared: PreparedCase | None,
                  measurement: Measurement | None = None) -> dict[str, float]:
    """What the model read of the images: the lesion measurements (in their units), or for bundles before
    issue 23 the liver references and hepatic grid read-outs of the case's PET and CT (may be empty)."""
    if reads_lesions(bundle):
        if measurement is None:
            return {}
        raw = raw_features(measurement.features, measurement.lesions)
        return {name: round(float(raw[name]), 4) for name in LESION_FEATURES}
    if prepared is None or not (bundle.spec.use_pet or bundle.spec.use_ct):
        return {}
    config = bundle.preprocess
    return measurements(prepared.pet if bundle.spec.use_pet else None, prepared.ct if bundle.spec.use_ct else None,
                        suv_max=config.pet_suv_max, ct_window_hu=config.ct_window_hu,
                        voxel_ml=config.voxel_ml)


def predict_cohort(
    bundle: Bundle,
    cohort_csv: str | Path,
    *,
    device: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
    execution: Execution | None = None,
) -> pd.DataFrame:
    """Score every row of a cohort table (images preprocessed with the bundle's config and lesions measured,
    cached in ``cache_dir``; the cases not yet cached as tasks on ``execution``, :mod:`pfs_core.execution`).

    Columns: patient_id, probability, interval_low, interval_high (the interval of :class:`Prediction`),
    interval_level (0.9; None where it is not a calibrated interval: the fold spread of an uncalibrated
    bundle, or lesions measured against the organ network's organs), interval_outside (";"-separated inputs outside the training range that widened it, lesion
    measurements included), risk_group, percentile_in_training, missing_modalities, imputed_fields,
    out_of_range_fields, warnings (";"-separated), model_name, model_version, post_baseline_used. A ``prrt_cycles``
    column is silently ignored by models trained without it (it is part of the table schema).
    """
    data = load_cohort_with_lesions(cohort_csv, preprocess=bundle.preprocess, need_images=bundle.spec.uses_images,
                                    lesions=reads_lesions(bundle), cache_dir=cache_dir, progress=progress,
                                    require_outcome=False, execution=execution, settings=measure_settings(bundle))
    records = []
    for i, pid in enumerate(data.patient_ids):
        row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.labs.iloc[i].items()}
        try:
            clean = validate_labs(row)
            has_pet = bool(data.pet_present[i]) if data.pet_present is not None else False
            has_ct = bool(data.ct_present[i]) if data.ct_present is not None else False
            unmeasured = data.lesion_features is not None and has_pet and has_ct \
                and not np.isfinite(data.lesion_features[i]).all()
            missing, warnings = _check_modalities(bundle, has_pet=has_pet and not unmeasured, has_ct=has_ct)
            if unmeasured:
                warnings = ["lesions not measured (the measurement refused this case; 'python -m pfs_core "
                            "measure' says why): the PET and CT were not used"]
        except InputError as exc:
            raise InputError(f"{cohort_csv}, patient {pid}: {exc}") from None
        imputed, out_of_range, lab_warnings = _lab_report(bundle, clean, warn_post_baseline=False) \
            if bundle.spec.use_lab else ([], [], [])
        records.append({"missing_modalities": ";".join(missing), "imputed_fields": ";".join(imputed),
                        "out_of_range_fields": ";".join(out_of_range), "warnings": "; ".join(warnings + lab_warnings)})
    fold_probs = ensemble_probabilities(bundle, data, device=resolve_device(device))
    inputs = _row_inputs(bundle, data.labs, data.lesion_features)
    network = _network_organ_rows(bundle, cohort_csv, data)
    rows = []
    for i, pid in enumerate(data.patient_ids):
        summary = _summaries(bundle, fold_probs[i], inputs[i], network_organs=bool(network[i]))
        rows.append({"patient_id": pid, "probability": summary["probability"],
                     "interval_low": summary["interval"][0], "interval_high": summary["interval"][1],
                     "interval_level": summary["interval_level"],
                     "interval_outside": ";".join(summary["interval_outside"]),
                     "risk_group": summary["risk_group"], "percentile_in_training": summary["percentile_in_training"],
                     **records[i], "model_name": bundle.name, "model_version": bundle.version,
                     "post_baseline_used": bundle.post_baseline_used})
    return pd.DataFrame(rows)


def _network_organ_rows(bundle: Bundle, cohort_csv: str | Path, data: CohortData) -> np.ndarray:
    """(N,) True where the bundle read lesion measurements made against the organ network's organs (a row
    with PET and CT, measured, and no organ masks in the table)."""
    if not reads_lesions(bundle) or data.lesion_features is None:
        return np.zeros(len(data), bool)
    organs = {case.patient_id: case.organs for case in cohort_cases(cohort_csv)}
    measured = np.isfinite(data.lesion_features).all(axis=1)
    return np.array([bool(measured[i]) and organs.get(str(pid)) is None for i, pid in enumerate(data.patient_ids)])


@dataclass
class ScoredCohort:
    """Scores of the good rows (columns of :func:`pfs_core.inference.predict_cohort`) and the validation report."""

    scores: pd.DataFrame
    report: CohortReport


def model_problems(bundle: Bundle, report: CohortReport) -> list[RowProblem]:
    """Rows the bundle cannot score: an image-only model whose images are all missing in that row."""
    spec = bundle.spec
    if spec.use_lab:
        return []
    out = []
    for row, values in report.good.iterrows():
        given = [m for m in ("pet", "ct") if getattr(spec, f"use_{m}") and values[m]]
        if not given:
            need = " or ".join(m.upper() for m in spec.modalities)
            out.append(RowProblem(int(row), values[schema.ID_COLUMN], PAIR_COLUMN,
                                  f"model {spec.name} needs {need} and this row has none; add the image or "
                                  "use a model that includes lab values"))
    return out


def score_cohort(
    bundle: Bundle,
    cohort_csv: str | Path,
    *,
    image_root: str | Path | None = None,
    device: str | None = None,
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    execution: Execution | None = None,
) -> ScoredCohort:
    """Validate ``cohort_csv`` for ``bundle``, score the good rows, and return scores + report.

    Bad rows (and rows the model cannot use) are left out and listed in
    ``report.problems``; ``scores`` has one row per good patient plus the column
    ``row`` (spreadsheet row number). InputError when the file is unusable or no row is good.
    """

    report = validate_cohort(cohort_csv, check_images=bundle.spec.uses_images, require_outcome=False,
                             image_root=image_root, progress=progress)
    unusable = model_problems(bundle, report)
    if unusable:
        report.problems.extend(unusable)
        report.good = report.good.drop(index=[p.row for p in unusable])
    with good_cohort_csv(report) as csv_path:
        scores = predict_cohort(bundle, csv_path, device=device, cache_dir=cache_dir, execution=execution)
    rows = pd.Series(report.good.index.to_numpy(), index=report.good[schema.ID_COLUMN].astype(str).to_numpy())
    scores.insert(0, "row", rows.reindex(scores["patient_id"].astype(str)).to_numpy(dtype=np.int64))
    return ScoredCohort(scores=scores, report=report)


def load_cohort_for_bundle(bundle: Bundle, cohort_csv: str | Path, *, cache_dir: Path | None = None,
                           image_root: Path | None = None, execution: Execution | None = None) -> CohortData:
    """The usable rows of ``cohort_csv`` as model input for ``bundle`` (bad rows skipped; outcome optional; the
    cases not yet cached prepared as tasks on ``execution``)."""

    report = validate_cohort(cohort_csv, check_images=bundle.spec.uses_images, require_outcome=False,
                             image_root=image_root)
    with good_cohort_csv(report) as path:
        return load_cohort_with_lesions(path, preprocess=bundle.preprocess, need_images=bundle.spec.uses_images,
                                        lesions=reads_lesions(bundle), cache_dir=cache_dir, require_outcome=False,
                                        execution=execution, settings=measure_settings(bundle))
