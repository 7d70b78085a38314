"""Does the organ network's frozen encoder add anything to the lesion measurements? (issue 23, item 2)

    python benchmarks/ct_encoder_ablation.py --cohort data/sim400_dev101 \
        --out results/ct_encoder_ablation_dev101.json [--variant mean:8 --variant meanmax:8 ...]

On the benchmark's own splits (repeated stratified k-fold, ``--folds/--repeats/--seed`` as
``python -m pfs_core benchmark``), two kinds of model are fitted per split, both with the fusion's wide-path
estimator (:func:`pfs_core.models.block_logistic.fit_block_logistic`: one penalty weight per block and C
chosen by inner CV on the training rows, balanced refit):

- ``base``: the blocks of ``lab_pet_ct`` (prepared labs, PET lesion block, CT lesion block; measurement
  ``--measurement``);
- ``enc_<pools>_<k>``: the same plus a fourth block, the first ``k`` principal components (fitted on the
  training rows) of the liver-pooled features of the organ network's frozen encoder
  (:func:`pfs_core.models.ct_encoder.encoder_features`; ``pools`` ``mean`` or ``meanmax``).

Each variant's out-of-fold probabilities are averaged over the repeats and compared with ``base`` by the
paired patient bootstrap of the benchmark (:func:`pfs_core.metrics.paired_auroc_bootstrap`, 2,000
resamples, seed 1000000 + ``--seed``). The encoder features are computed once per patient and kept in
``--cache-dir`` (key: the CT's and the organ masks' bytes and the organ bundle's weights).

With the simulator's ``ground_truth.csv`` beside the cohort, a probe follows: how well a ridge regression on
the encoder features (or on the CT lesion block) recovers the true CT risk component and the CT-side image
quantities (5-fold cross-validated Spearman, :func:`probe`).

Variants are chosen on development seeds only; an evaluation cohort is run once with the chosen variant.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pfs_core.config import PreprocessConfig, TrainConfig
from pfs_core.dataset import CohortData
from pfs_core.features.lesions import FEATURE_BLOCKS, LESION_FEATURES
from pfs_core.features.tabular import fit_lab_transform
from pfs_core.io import load_ct
from pfs_core.io.cache import ArrayCache, content_digest
from pfs_core.io.organ_files import read_organ_masks
from pfs_core.measure.features import cohort_cases, load_cohort_with_lesions
from pfs_core.measure.settings import settings_of
from pfs_core.metrics import binary_metrics, paired_auroc_bootstrap
from pfs_core.models.block_logistic import fit_block_logistic
from pfs_core.models.ct_encoder import POOLS, encoder_features, feature_names
from pfs_core.models.organ_seg import DEFAULT_BUNDLE, WEIGHTS, OrganSegConfig
from pfs_core.training.cv import Split, make_splits, task_seed
from pfs_core.training.references import read_ground_truth

#: Simulator truths the probe predicts: the CT part of the true risk and the CT-side image quantities.
PROBED = ("risk_ct", "liver_tumour_fraction", "sstr_negative_volume_ml", "ct_visible_volume_ml", "tumour_volume_ml")


def cohort_encoder_features(cohort_csv: Path, cache_dir: Path) -> pd.DataFrame:
    """(N, len(feature_names)) encoder features of every patient, index = patient id (cached per case)."""
    cache = ArrayCache(cache_dir)
    weights = content_digest(DEFAULT_BUNDLE / WEIGHTS)
    rows, ids = [], []
    for i, case in enumerate(cohort_cases(cohort_csv)):
        assert case.ct is not None and case.organs is not None, "the ablation needs CTs and organ masks"
        key = "ctenc_" + hashlib.sha256(f"{weights}|{content_digest(case.ct)}|{content_digest(case.organs)}"
                                        .encode()).hexdigest()[:40]
        stored = cache.get(key, required=("features",))
        if stored is None:
            ct = load_ct(case.ct)
            stored = {"features": encoder_features(ct, read_organ_masks(case.organs, ct=ct))}
            cache.put(key, stored)
        rows.append(stored["features"])
        ids.append(case.patient_id)
        if (i + 1) % 100 == 0:
            print(f"encoder features {i + 1}", flush=True)
    return pd.DataFrame(np.vstack(rows), index=ids, columns=feature_names(OrganSegConfig()))


def pool_columns(names: list[str], pools: str) -> list[int]:
    """Column indices of the encoder features kept by ``pools`` ("mean" or "meanmax")."""
    keep = ("mean",) if pools == "mean" else POOLS
    return [i for i, n in enumerate(names) if n.split("_")[1] in keep]


def fit_predict(data: CohortData, encoder: np.ndarray | None, k: int, split: Split, *, seed: int,
                config: TrainConfig) -> np.ndarray:
    """Test-row probabilities of the block logistic on labs + lesion blocks (+ ``k`` encoder components)."""
    train, test = split.train, split.test
    labs = fit_lab_transform(data.labs.iloc[train], include_post_baseline=config.include_post_baseline)
    lesions = np.asarray(data.lesion_features, dtype=np.float64)
    blocks = [labs.transform(data.labs).astype(np.float64)]
    blocks += [lesions[:, [LESION_FEATURES.index(n) for n in names]] for names in FEATURE_BLOCKS.values()]
    if encoder is not None:
        scaled = StandardScaler().fit(encoder[train])
        pca = PCA(n_components=k, random_state=0).fit(scaled.transform(encoder[train]))
        blocks.append(pca.transform(scaled.transform(encoder)))
    x = np.hstack(blocks)
    fit_rows = train[~np.isnan(data.label[train])]
    fit = fit_block_logistic(x[fit_rows], data.label[fit_rows], tuple(b.shape[1] for b in blocks), seed=seed)
    return expit(fit.decision_function(x[test]))


def probe(inputs: dict[str, np.ndarray], truth: pd.DataFrame) -> dict[str, dict[str, float]]:
    """5-fold cross-validated Spearman between each :data:`PROBED` truth and a ridge regression on each input
    (standardised; alpha by inner CV): what each input carries about the truth, beyond the outcome."""
    out: dict[str, dict[str, float]] = {}
    for column in (c for c in PROBED if c in truth.columns):
        y = pd.to_numeric(truth[column], errors="coerce").to_numpy(float)
        y = np.log1p(np.clip(y, 0, None)) if column.endswith("_ml") else y
        known = np.isfinite(y)
        out[column] = {}
        for name, x in inputs.items():
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
            pred = cross_val_predict(model, x[known], y[known], cv=KFold(5, shuffle=True, random_state=0))
            out[column][name] = round(float(stats.spearmanr(pred, y[known])[0]), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True, help="synth output folder (cohort.csv, organs column)")
    parser.add_argument("--variant", action="append", default=None,
                        help="POOLS:K, POOLS mean or meanmax (default mean:4, mean:16, meanmax:4, meanmax:16)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--measurement", default="1.2")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    parser.add_argument("--probe-only", action="store_true", help="only the probe (no models fitted)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    variants = [(p, int(k)) for p, k in (v.split(":") for v in (args.variant or
                                                                   ["mean:4", "mean:16", "meanmax:4", "meanmax:16"]))]
    cohort_csv = args.cohort / "cohort.csv"
    data = load_cohort_with_lesions(cohort_csv, preprocess=PreprocessConfig(), need_images=True, lesions=True,
                                    cache_dir=args.cache_dir, settings=settings_of(args.measurement))
    enc = cohort_encoder_features(cohort_csv, args.cache_dir).loc[[str(p) for p in data.patient_ids]]
    names = list(enc.columns)
    config = TrainConfig()
    splits = make_splits(data, folds=args.folds, repeats=args.repeats, seed=args.seed)
    models = {} if args.probe_only else {"base": None} | {f"enc_{p}_{k}": (p, k) for p, k in variants}
    oof = {m: np.full((args.repeats, len(data)), np.nan) for m in models}
    for split in splits:
        for model, variant in models.items():
            encoder = None if variant is None else enc.to_numpy(np.float64)[:, pool_columns(names, variant[0])]
            oof[model][split.repeat, split.test] = fit_predict(data, encoder, 0 if variant is None else variant[1],
                                                               split, seed=task_seed(args.seed, split), config=config)
    label = data.label
    known = ~np.isnan(label)
    summary: dict[str, object] = {"cohort": str(cohort_csv), "measurement": args.measurement,
                                  "folds": args.folds, "repeats": args.repeats, "seed": args.seed,
                                  "n_patients": len(data), "n_labelled": int(known.sum()), "models": {}}
    for model in models:
        mean = oof[model].mean(axis=0)
        per_repeat = [binary_metrics(label[known], oof[model][r, known])["auroc"] for r in range(args.repeats)]
        row: dict[str, object] = {"auroc_repeat_mean": round(float(np.mean(per_repeat)), 4),
                                  "auroc_repeat_sd": round(float(np.std(per_repeat, ddof=1)), 4),
                                  "auroc_of_mean": round(binary_metrics(label[known], mean[known])["auroc"], 4)}
        if model != "base":
            base = oof["base"].mean(axis=0)
            d = paired_auroc_bootstrap(label[known], mean[known], base[known], seed=1_000_000 + args.seed)
            row["minus_base"] = {k: round(float(d[k]), 4) for k in ("delta", "low", "high")}
        summary["models"][model] = row  # type: ignore[index]
        print(model, json.dumps(row), flush=True)
    truth = read_ground_truth(cohort_csv)
    if truth is not None:
        truth = truth.set_index("patient_id").loc[[str(p) for p in data.patient_ids]]
        lesions = np.asarray(data.lesion_features, dtype=np.float64)
        ct_block = lesions[:, [LESION_FEATURES.index(n) for n in FEATURE_BLOCKS["ct"]]]
        summary["probe_spearman"] = probe({"ct_lesion_block": ct_block, "encoder_mean": enc.to_numpy(np.float64)[
            :, pool_columns(names, "mean")], "encoder_meanmax": enc.to_numpy(np.float64),
            "all_lesion_features": lesions}, truth)
        print("probe", json.dumps(summary["probe_spearman"]), flush=True)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
