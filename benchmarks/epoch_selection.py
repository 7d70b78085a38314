"""Which epoch should a network keep? Test-fold AUROC of every epoch under several selection rules.

    python benchmarks/epoch_selection.py --cohort data/sim116_ctonly/cohort.csv --models ct_cnn,pet_ct \
        [--repeats 1] [--seed 2026] [--out epochs.json]

Fits each model on the benchmark's splits (stratified 3-fold, the benchmark's seeds) with
the default ``TrainConfig`` but no early stop (``patience=0``: all 40 epochs) and records, after every epoch (0 = the logistic start), the loss
and AUROC on the training fold's held-out validation rows and the logits of the test fold.
It then prints, per model, the pooled out-of-fold AUROC of the epochs each rule keeps:

- ``epoch0``: the logistic start; ``last``: epoch 40;
- ``loss``: lowest validation loss; ``loss+d``: the lowest only if it is at least ``d``
  nats below epoch 0's, else epoch 0 (``TrainConfig.min_improvement``);
- ``val_auroc``: highest validation AUROC;
- and the pooled AUROC of every 4th epoch.

The training trajectory does not depend on the rule (only the kept weights do), so one run
scores all rules. It records through ``pfs_core.training.loop.validation_loss``, the function
training calls after every epoch.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from sklearn.metrics import roc_auc_score

Record = dict[str, Any]


def record_epochs(cohort_csv: Path, models: str, *, repeats: int, seed: int) -> list[Record]:
    """One record per (model, split): per-epoch validation loss/AUROC and test-fold logits."""
    import torch

    from pfs_core.config import MODEL_PREPROCESS, TrainConfig
    from pfs_core.dataset import load_cohort_data
    from pfs_core.models.fitted import torch_logits
    from pfs_core.models.registry import resolve_models
    from pfs_core.training import loop
    from pfs_core.training.cv import make_splits
    from pfs_core.training.fit import fit_model

    torch.set_num_threads(1)
    data = load_cohort_data(cohort_csv, preprocess=MODEL_PREPROCESS, need_images=True,
                                     cache_dir=Path("cache"))
    records: list[Record] = []
    original = loop.validation_loss

    def recorder(model: Any, validation: Any, loss_fn: Any, device: Any) -> float:
        loss = original(model, validation, loss_fn, device)
        logits = torch_logits(model, validation, device=device, batch_size=64).cpu().numpy()
        test_logits = torch_logits(model, records[-1]["test_data"], device=device, batch_size=64)
        records[-1]["epochs"].append({"loss": loss, "auroc": float(roc_auc_score(validation.label, logits)),
                                      "test": test_logits.cpu().numpy().tolist()})
        return loss

    with mock.patch.object(loop, "validation_loss", recorder):
        for spec in resolve_models(models):
            for split in make_splits(data, folds=3, repeats=repeats, seed=seed):
                test = data.subset(split.test)
                records.append({"model": spec.name, "repeat": split.repeat, "fold": split.fold, "epochs": [],
                                "test_data": test, "test_label": test.label.tolist()})
                fit_model(spec, data.subset(split.train), config=TrainConfig(patience=0),
                          seed=seed + split.seed_offset, device=torch.device("cpu"))
                print(f"{spec.name} repeat {split.repeat} fold {split.fold}", flush=True)
    for record in records:
        del record["test_data"]
    return records


def _margin(d: float) -> Callable[[Record], int]:
    def rule(record: Record) -> int:
        losses = [e["loss"] for e in record["epochs"]]
        return int(np.argmin(losses)) if min(losses) < losses[0] - d else 0
    return rule


RULES: dict[str, Callable[[Record], int]] = {
    "epoch0": lambda r: 0,
    "last": lambda r: len(r["epochs"]) - 1,
    "loss": _margin(0.0),
    "loss+0.02": _margin(0.02),
    "loss+0.05": _margin(0.05),
    "val_auroc": lambda r: int(np.argmax([e["auroc"] for e in r["epochs"]])),
}


def pooled_auroc(records: list[Record], pick: Callable[[Record], int]) -> float:
    """Out-of-fold AUROC of the epochs ``pick`` keeps, pooled over the folds of each repeat, mean over repeats."""
    scores = []
    for repeat in sorted({r["repeat"] for r in records}):
        labels, logits = [], []
        for record in (r for r in records if r["repeat"] == repeat):
            label = np.asarray(record["test_label"], dtype=float)
            known = ~np.isnan(label)
            labels.append(label[known])
            logits.append(np.asarray(record["epochs"][pick(record)]["test"])[known])
        scores.append(roc_auc_score(np.concatenate(labels), np.concatenate(logits)))
    return float(np.mean(scores))


def summary(records: list[Record]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(r["model"] for r in records):
        mine = [r for r in records if r["model"] == model]
        n_epochs = min(len(r["epochs"]) for r in mine)
        out[model] = {"rules": {name: round(pooled_auroc(mine, rule), 3) for name, rule in RULES.items()},
                      "kept_by_loss": [RULES["loss"](r) for r in mine],
                      "every_4th_epoch": [round(pooled_auroc(mine, lambda r, e=e: e), 3)
                                          for e in range(0, n_epochs, 4)]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--models", default="pet_cnn,ct_cnn,pet_ct,lab_pet,lab_pet_ct")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, help="also write the summary as JSON")
    args = parser.parse_args()
    result = summary(record_epochs(args.cohort, args.models, repeats=args.repeats, seed=args.seed))
    for model, row in result.items():
        print(model, " ".join(f"{k}={v:.3f}" for k, v in row["rules"].items()), "| loss kept", row["kept_by_loss"])
        print("   every 4th epoch:", " ".join(f"{v:.2f}" for v in row["every_4th_epoch"]))
    if args.out:
        args.out.write_text(json.dumps({"cohort": str(args.cohort), "models": args.models, "seed": args.seed,
                                        "repeats": args.repeats, "summary": result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
