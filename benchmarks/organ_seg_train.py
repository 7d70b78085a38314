"""Train the CT organ network on simulated CTs and write its bundle (default ``models/organ_seg/``).

    python benchmarks/organ_seg_train.py --sim-root /tmp/organseg --generate \
        --iterations 1400 --seed 0 --out models/organ_seg

With ``--generate`` the simulator writes ``<sim-root>/s<seed>`` for every training and validation seed
(development seeds only; seeds in ``--unenhanced-seeds`` with ``--contrast none``, seeds in
``--varied-seeds`` with ``--anatomy varied``); otherwise those folders must exist. ``--init BUNDLE``
fine-tunes that bundle's weights (1.2.0: 1.1.0 fine-tuned with seeds 111-116 varied; the command in its
model card). Simulated data only: no patient data is used. See docs/organ_seg.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import monai
import torch

from pfs_core.models.organ_seg import OrganSegConfig, load_organ_bundle, save_organ_bundle
from pfs_core.training.organ_seg import OrganTrainConfig, load_folders, train_organ_seg

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_SEEDS = set(range(9001, 9011)) | set(range(7001, 7011))


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _generate(root: Path, seed: int, n: int, contrast: str, anatomy: str) -> None:
    out = root / f"s{seed}"
    if (out / "summary.json").is_file():
        return
    cmd = [sys.executable, "-m", "pfs_core", "synth", "--n", str(n), "--seed", str(seed), "--out", str(out),
           "--contrast", contrast, "--anatomy", anatomy, "--workers", "1", "--force"]
    subprocess.run(cmd, check=True, cwd=ROOT)


def model_card(manifest: dict) -> str:
    t = manifest["training"]
    return "\n".join([
        f"# Model card: `{manifest['name']}` (version {manifest['version']})", "",
        f"> {manifest['disclaimer']}", "",
        "## What it is",
        "A small MONAI 3D U-Net that labels liver, spleen, both kidneys, urinary bladder, pancreas and both "
        "adrenal glands on a CT (HU), on an isotropic grid of "
        f"{manifest['config']['spacing_mm']} mm; results are returned on the CT's own grid.", "",
        "## Training data",
        f"**Simulated CTs only** (pfs_core synth, seeds {t['train_seeds']}, {t['n_train_cases']} cases; "
        f"unenhanced seeds {t['unenhanced_seeds']}; seeds with the wider 'varied' anatomy of kidneys and spleen "
        f"{t.get('varied_anatomy_seeds') or 'none'}"
        + (f"; fine-tuned from version {t['fine_tuned_from']['version']}" if t.get("fine_tuned_from") else "")
        + "); strong domain randomisation (random field-of-view cropping "
        "along z, SynthSeg-style per-tissue contrast resynthesis, per-tissue HU shifts, both contrast phases, "
        "affine + elastic deformation, low resolution, blur, noise, bias field, gamma). "
        "No patient data.", "",
        "## Metrics",
        "Dice on real CTs: see docs/organ_seg.md and results/organ_seg_eval.json (benchmarks/organ_seg_eval.py).",
        f"Validation Dice on simulated seeds {t['val_seeds']} (network grid, no post-processing): "
        + ", ".join(f"{k} {v:.3f}" for k, v in (t.get("val_dice") or {}).items()), "",
        "## Limitations",
        "- Trained on geometric simulated anatomy; real anatomy outside the simulator's range (e.g. large "
        "lesions, post-surgical anatomy, thorax/head/legs in whole-body CTs) may be mislabelled.",
        "- Small organs (adrenal glands, pancreas) at 4 mm are coarse and unreliable.",
        "- Research and demonstration only; not a medical device.", "",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim-root", type=Path, default=Path("/tmp/organseg"))
    p.add_argument("--generate", action="store_true", help="run the simulator for missing seed folders")
    p.add_argument("--n-per-seed", type=int, default=20)
    p.add_argument("--train-seeds", default="101-109")
    p.add_argument("--unenhanced-seeds", default="107-109")
    p.add_argument("--varied-seeds", default="",
                   help="seeds generated with --anatomy varied (kidneys and spleen moved and scaled more widely)")
    p.add_argument("--init", type=Path, default=None,
                   help="fine-tune from this organ bundle's weights (hash-checked) instead of a random start")
    p.add_argument("--lr", type=float, default=OrganTrainConfig.lr)
    p.add_argument("--val-seeds", default="110")
    p.add_argument("--iterations", type=int, default=1400)
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--version", default="1.1.0", help="bundle version written to config.json and the manifest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoints", type=Path, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "models" / "organ_seg")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    train_seeds, val_seeds = _seeds(args.train_seeds), _seeds(args.val_seeds)
    unenhanced = set(_seeds(args.unenhanced_seeds)) if args.unenhanced_seeds else set()
    varied = set(_seeds(args.varied_seeds)) if args.varied_seeds else set()
    if FORBIDDEN_SEEDS & set(train_seeds + val_seeds):
        p.error("seeds 7001-7010 and 9001-9010 are held out; use development seeds")
    if args.generate:
        for s in train_seeds + val_seeds:
            _generate(args.sim_root, s, args.n_per_seed if s in train_seeds else 6,
                      "none" if s in unenhanced else "portal_venous", "varied" if s in varied else "standard")
    config = OrganSegConfig(version=args.version)
    train = OrganTrainConfig(iterations=args.iterations, seed=args.seed, val_every=args.val_every, lr=args.lr)
    init_state, init_from = None, None
    if args.init is not None:
        init_net, init_config, init_manifest = load_organ_bundle(args.init)
        if init_config.to_dict() | {"version": ""} != config.to_dict() | {"version": ""}:
            p.error(f"--init {args.init}: its config differs from this run's (architecture, grid or windows)")
        init_state = init_net.state_dict()
        init_from = {"version": init_manifest.get("version"), "weights_sha256": init_manifest.get("files", {})
                     .get("weights.safetensors")}
    t0 = time.time()
    cases = load_folders([args.sim_root / f"s{s}" for s in train_seeds], config)
    val = load_folders([args.sim_root / f"s{s}" for s in val_seeds], config) if val_seeds else []
    print(f"{len(cases)} training, {len(val)} validation cases loaded in {time.time() - t0:.0f} s", flush=True)
    net, history = train_organ_seg(cases, config=config, train=train, val_cases=val,
                                   checkpoint_dir=args.checkpoints,
                                   log=lambda m: print(m, flush=True), init_state=init_state)
    manifest = {
        "name": config.name,
        "version": config.version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "description": "CT organ segmentation (MONAI UNet) trained on simulated CTs with domain randomisation.",
        "disclaimer": "Research and demonstration use only. Trained on simulated CTs, not on patients. "
                      "Not a medical device; not for clinical decisions.",
        "config": config.to_dict(),
        "training": {"simulated": True, "train_seeds": train_seeds, "unenhanced_seeds": sorted(unenhanced),
                     "varied_anatomy_seeds": sorted(varied), "fine_tuned_from": init_from,
                     "val_seeds": val_seeds, "n_train_cases": len(cases), "n_val_cases": len(val),
                     "train_config": train.to_dict(), "history": history,
                     "val_dice": history[-1].get("val_dice") if history else None,
                     "wall_seconds": round(time.time() - t0, 1), "threads": args.threads},
        "command": "python " + " ".join([Path(sys.argv[0]).name if argv is None else "organ_seg_train.py",
                                         *(sys.argv[1:] if argv is None else argv)]),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__},
    }
    save_organ_bundle(args.out, net, config, manifest=manifest, model_card=model_card(manifest))
    print(json.dumps(manifest["training"]["val_dice"], indent=1))
    print(f"bundle written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
