"""``python -m pfs_core contributions``: a bundle explained over a cohort, as on the Model comparison page.

The command twin of the page's cohort-level explanation: exact modality Shapley
values of a seeded sample of patients and the 2D embedding of the fused features
(:mod:`pfs_core.results.comparison`), written as CSV + JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pfs_core import schema
from pfs_core.commands import options
from pfs_core.errors import InputError, UsageError

# The CLI imports this module to parse arguments: heavy imports (torch, MONAI, pandas, the models) sit
# inside the functions that need them, so --help and usage errors stay fast.

HELP = "Modality contributions and fused-feature embedding of a bundle over a cohort."
DESCRIPTION = (
    "Explain a model bundle over a cohort table, as the Model comparison page does: exact Shapley values of the "
    "modalities (labs, PET, CT; probability points) for a seeded sample of patients, and a 2D PCA or UMAP of the "
    "fused branch embeddings of every usable patient (fusion networks only; skipped with a note for random "
    "forest / logistic bundles). Writes OUT/modality_contributions.csv, OUT/embedding.csv and "
    "OUT/contributions.json. Rows with problems (see 'pfs_core validate') are left out; outcome columns are "
    "optional. Research use; not a medical device."
)

CONTRIBUTIONS_CSV = "modality_contributions.csv"
EMBEDDING_CSV = "embedding.csv"
SUMMARY_JSON = "contributions.json"
METHOD = ("exact Shapley values over the modalities of the model; value of a coalition = ensemble probability "
          "with the other modalities absent (PET/CT: the learned 'missing' input; labs: all missing, i.e. imputed)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_cohort(parser)
    options.add_bundle(parser)
    options.add_out_folder(parser)
    parser.add_argument("--n-sample", type=int, default=30,
                        help="patients sampled for the contributions (default 30, as on the page)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample and the embedding (default 0)")
    parser.add_argument("--embedding", choices=("pca", "umap"), default="pca",
                        help="2D projection of the fused features (default pca)")
    options.add_cache(parser)
    options.add_device(parser)
    options.add_execution(parser)


def run(args: argparse.Namespace) -> int:
    from pfs_core.explain.cohort import mean_abs_contributions, modality_contributions
    from pfs_core.inference import load_cohort_for_bundle
    from pfs_core.io.outputs import atomic_write_text, write_csv
    from pfs_core.models.bundle import load_bundle

    started = time.perf_counter()
    if args.n_sample < 1:
        raise UsageError(f"--n-sample {args.n_sample}: must be at least 1")
    inputs = [args.cohort, args.model]
    options.check_out(args, inputs)
    cache_dir = options.cache_dir(args)
    device = options.device(args)
    execution = options.execution(args)
    bundle = load_bundle(args.model)
    data = load_cohort_for_bundle(bundle, args.cohort, cache_dir=cache_dir, execution=execution)
    table = modality_contributions(bundle, data, n_sample=args.n_sample, seed=args.seed, device=device,
                                   with_values=True)
    out = options.prepare_out(args, inputs)
    write_csv(table, out / CONTRIBUTIONS_CSV, float_format="%.8f")
    mean_abs = mean_abs_contributions(table)
    embedding = _embedding(bundle, data, method=args.embedding, seed=args.seed, device=device, out=out)

    manifest = bundle.manifest
    simulated = (manifest.get("training_cohort") or {}).get("simulated")
    summary: dict[str, Any] = {
        "command": options.command_line(args),
        "model": bundle.name, "model_version": bundle.version, "model_path": str(args.model),
        "cohort_csv": str(args.cohort), "n_patients": len(data), "n_sampled": len(table),
        "sampled_ids": list(table[schema.ID_COLUMN]),
        "seed": args.seed, "method": METHOD, "output_space": "probability",
        "mean_abs_contribution": mean_abs,
        "contributions_file": CONTRIBUTIONS_CSV, "embedding": embedding,
        "device": str(device), "wall_time_s": round(time.perf_counter() - started, 2),
        "trained_on_simulated_data": simulated,
    }
    if manifest.get("disclaimer"):
        summary["disclaimer"] = manifest["disclaimer"]
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")

    print(f"{bundle.name} ({bundle.version}) over {len(table)} of {len(data)} patients of {args.cohort}: "
          "mean |modality contribution| (probability points)")
    for modality, value in mean_abs.items():
        print(f"  {modality:<4} {value:.4f}")
    if "skipped" in embedding:
        print(f"embedding skipped: {embedding['skipped']}")
    else:
        print(f"embedding: {embedding['method'].upper()} of {embedding['n_features']} fused features")
    print(f"written to {args.out} ({CONTRIBUTIONS_CSV}, "
          f"{'' if 'skipped' in embedding else EMBEDDING_CSV + ', '}{SUMMARY_JSON}) in {summary['wall_time_s']:.1f} s")
    if manifest.get("disclaimer"):
        print(manifest["disclaimer"])
    return 0


def _embedding(bundle: Any, data: Any, *, method: str, seed: int, device: Any, out: Path) -> dict[str, Any]:
    """Write ``out/embedding.csv`` and describe it, or say why there is none (no fused features, < 3 patients)."""
    import pandas as pd

    from pfs_core.explain.cohort import fused_embedding
    from pfs_core.io.outputs import write_csv

    path = out / EMBEDDING_CSV
    try:
        embedding = fused_embedding(bundle, data, method=method, seed=seed, device=device)
    except (UsageError, InputError) as exc:
        path.unlink(missing_ok=True)  # never leave an embedding of an earlier run beside this summary
        return {"method": method, "skipped": str(exc)}
    frame = pd.DataFrame({schema.ID_COLUMN: embedding.patient_ids, "x": embedding.points[:, 0],
                          "y": embedding.points[:, 1], "outcome": embedding.labels})
    write_csv(frame, path, float_format="%.6f")
    return {"method": method, "n_features": int(embedding.n_features), "n_patients": len(embedding.patient_ids),
            "file": EMBEDDING_CSV}
