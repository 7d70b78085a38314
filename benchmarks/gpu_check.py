"""Check the GPU path on a machine with CUDA and record its figures (issue 26); JSON to ``--out``.

    python benchmarks/gpu_check.py --device cuda --out gpu_check.json [--repeats 5]
        [--benchmark data/sim116_eval/cohort.csv --jobs 4 [--backend ray]]

Parts, each recorded under its own key (a part that fails is recorded under ``errors`` and the
others still run; the exit status is then 1):

- ``environment``: torch and CUDA versions, the card, whether it runs bfloat16 natively, the autocast
  dtype inference and training get (:mod:`pfs_core.models.precision`). torch need not be the pinned
  version: nothing here or in pfs_core checks it.
- ``explain``: one case's explanation (``benchmarks/bench_explain.py``), median seconds per stage over
  ``--repeats`` warm runs on ``--device``, and on CPU on the same machine (``cpu_median_seconds``).
- ``predictions``: every torch bundle in ``models/`` on every case of ``--cohort``: largest difference of a
  fold probability between CUDA with AMP, CUDA in float32 (``PFS_CORE_AMP=0``) and CPU.
- ``gradcam``: Grad-CAM (float32 by design) of each imaging branch of each torch bundle on one case, CUDA vs
  CPU (largest difference of the 0-1 maps) and seconds (warm).
- ``training``: a few training steps of a fusion network on random inputs: loss and seconds a step with
  bfloat16 autocast (where the card has it) and in float32.
- ``organ_network``: the organ network on the case's CT on CUDA (AMP, then float32) and on CPU: Dice per
  organ between the label maps and seconds (warm).
- ``benchmark`` (with ``--benchmark COHORT_CSV``): ``python -m pfs_core benchmark --cohort COHORT_CSV --folds 3
  --repeats 5 --models all --seed 2026 --device DEVICE --jobs J --out OUT``, its wall time and AUROCs.
  Fractional GPUs (``TORCH_GPU_FRACTION`` of a card per network fold task) are declared to Ray:
  pass ``--backend ray`` to try them; with ``--backend local`` the J worker processes share the card
  undeclared.

With ``--device cpu`` the CUDA-only parts (predictions, gradcam, organ_network comparisons) are skipped
with a note in ``skipped``; the explanation and the training steps run on CPU (a quick self-test).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_explain  # noqa: E402  (the script folder is on sys.path now)

ROOT = Path(__file__).resolve().parents[1]
TORCH_BUNDLES = ("lab_pet_ct", "lab_pet_ct_pretrained")


@contextlib.contextmanager
def amp_switch(on: bool) -> Iterator[None]:
    """``PFS_CORE_AMP`` set to 1 or 0 for the block (read at each forward pass), restored afterwards."""
    old = os.environ.get("PFS_CORE_AMP")
    os.environ["PFS_CORE_AMP"] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PFS_CORE_AMP", None)
        else:
            os.environ["PFS_CORE_AMP"] = old


def timed(fn: Callable[[], Any], *, device: Any) -> tuple[Any, float]:
    """(result, seconds) of ``fn()``; CUDA synchronised before the clock stops when ``device`` is a CUDA device."""
    import torch

    started = time.perf_counter()
    result = fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return result, round(time.perf_counter() - started, 4)


def environment(device: str) -> dict[str, Any]:
    import torch

    from pfs_core.models.precision import amp_dtype, amp_enabled, bf16_native

    cuda = torch.cuda.is_available()
    doc: dict[str, Any] = {
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": cuda,
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "machine": bench_explain.machine(), "device": device, "amp_enabled": amp_enabled(),
    }
    if cuda:
        chosen = torch.device(device) if device.startswith("cuda") else torch.device("cuda")
        props = torch.cuda.get_device_properties(chosen)
        doc.update(device_name=torch.cuda.get_device_name(chosen), capability=list(torch.cuda.get_device_capability(chosen)),
                   memory_gib=round(props.total_memory / 2**30, 1), device_count=torch.cuda.device_count(),
                   bf16_native=bf16_native(chosen), cudnn=torch.backends.cudnn.version())
    doc["amp_dtype_inference"] = str(amp_dtype(device))
    doc["amp_dtype_training"] = str(amp_dtype(device, allow_float16=False))
    return doc


def explain_part(args: argparse.Namespace, on_cuda: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"model": args.model.name, "case": args.case, "repeats": args.repeats,
                           "device": args.device,
                           "median_seconds": bench_explain.time_explanation(
                               args.model, args.cohort, args.case, repeats=args.repeats, threads=args.threads,
                               device=args.device)}
    if on_cuda and not args.no_cpu_baseline:
        out["cpu_median_seconds"] = bench_explain.time_explanation(
            args.model, args.cohort, args.case, repeats=args.repeats, threads=args.threads, device="cpu")
        out["cpu_threads"] = args.threads
    return out


def case_inputs(bundle: Any, cohort: Path, case: str) -> Any:
    """One-row CohortData of ``case`` for ``bundle`` (model-grid images, labs, lesion measurements)."""
    from pfs_core.inference import case_data, case_lesion_features, case_measurement, prepare_images
    from pfs_core.io.labs import validate_labs

    pet, ct, labs, organs = bench_explain.load_inputs(cohort, case)
    data = case_data(bundle, validate_labs(labs), prepare_images(bundle, pet, ct))
    data.lesion_features = case_lesion_features(bundle, case_measurement(bundle, pet, ct, organs=organs))
    return data


def torch_bundles(models: Path) -> list[Path]:
    return [models / name for name in TORCH_BUNDLES if (models / name / "manifest.json").is_file()]


def predictions_part(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    import torch

    from pfs_core.inference import ensemble_probabilities
    from pfs_core.models.bundle import load_bundle

    cases = pd.read_csv(args.cohort)["patient_id"].astype(str).tolist()
    out: dict[str, Any] = {"cases": len(cases)}
    for path in torch_bundles(args.models):
        bundle = load_bundle(path)
        probs: dict[str, list[np.ndarray]] = {"cpu": [], "cuda_amp": [], "cuda_fp32": []}
        for case in cases:
            data = case_inputs(bundle, args.cohort, case)
            probs["cpu"].append(ensemble_probabilities(bundle, data, device=torch.device("cpu")))
            with amp_switch(True):
                probs["cuda_amp"].append(ensemble_probabilities(bundle, data, device=torch.device(args.device)))
            with amp_switch(False):
                probs["cuda_fp32"].append(ensemble_probabilities(bundle, data, device=torch.device(args.device)))
        stacked = {k: np.concatenate(v) for k, v in probs.items()}
        out[path.name] = {
            "max_abs_diff_cuda_amp_vs_cpu": float(np.abs(stacked["cuda_amp"] - stacked["cpu"]).max()),
            "max_abs_diff_cuda_fp32_vs_cpu": float(np.abs(stacked["cuda_fp32"] - stacked["cpu"]).max()),
            "mean_probability_cpu": float(stacked["cpu"].mean()),
        }
    return out


def gradcam_part(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from pfs_core.explain.gradcam import gradcam_layer_names, gradcam_model_space
    from pfs_core.models.bundle import load_bundle

    out: dict[str, Any] = {"case": args.case}
    for path in torch_bundles(args.models):
        bundle = load_bundle(path)
        data = case_inputs(bundle, args.cohort, args.case)
        for modality, layer in gradcam_layer_names(bundle).items():
            row: dict[str, Any] = {"layer": layer}
            maps = {}
            for name, device in (("cpu", torch.device("cpu")), ("cuda", torch.device(args.device))):
                run = functools.partial(gradcam_model_space, bundle, data, modality=modality, layer=layer,
                                        device=device)
                run()  # warm-up
                maps[name], row[f"seconds_{name}"] = timed(run, device=device)
            if maps["cpu"] is None or maps["cuda"] is None:
                row["note"] = "no image of this modality in the case"
            else:
                row["max_abs_diff_cuda_vs_cpu"] = float(np.abs(maps["cuda"] - maps["cpu"]).max())
                row["max_cpu"] = float(maps["cpu"].max())
            out[f"{path.name}/{modality}"] = row
    # The shipped bundles keep their logistic start (epoch 0): their trunk maps are zero. A random network's are not.
    cams = {name: random_net_cam(device) for name, device in (("cpu", "cpu"), ("cuda", args.device))}
    scale = float(np.abs(cams["cpu"]).max())
    out["random_net/pet"] = {"max_abs_cpu": scale, "max_abs_diff_cuda_vs_cpu": float(np.abs(cams["cuda"] - cams["cpu"]).max()),
                             "relative_diff": float(np.abs(cams["cuda"] - cams["cpu"]).max() / scale) if scale else None}
    return out


def random_net_and_batch(device: Any, batch_size: int = 16) -> tuple[Any, dict[str, Any], Any]:
    """A seeded lab+PET+CT fusion network (random weights, read-outs, wide path) on ``device``, a random batch
    on the 12-mm model grid (32 x 24 x 32) and random labels; the same on every device."""
    import torch

    from pfs_core.models.nets import FusionNet

    torch.manual_seed(0)
    net = FusionNet(3, use_lab=True, use_pet=True, use_ct=True, n_lab_features=12, channels=(8, 16, 32, 32),
                    strides=(2, 2, 2, 2), pet_quant=(60.0, 1.728), ct_quant=(-150.0, 250.0, 1.728), wide=True)
    generator = torch.Generator().manual_seed(1)
    batch = {"pet": torch.rand((batch_size, 1, 32, 24, 32), generator=generator),
             "ct": torch.rand((batch_size, 1, 32, 24, 32), generator=generator),
             "lab": torch.randn((batch_size, 12), generator=generator)}
    target = (torch.rand(batch_size, generator=generator) < 0.4).float()
    return net.to(device), {k: v.to(device) for k, v in batch.items()}, target.to(device)


def random_net_cam(device: Any) -> np.ndarray:
    """Grad-CAM (Captum, as :func:`pfs_core.explain.gradcam._member_cam` calls it) of the PET trunk's last layer
    of :func:`random_net_and_batch`'s network (eval mode), first sample, on ``device``."""
    from captum.attr import LayerGradCam

    net, batch, _ = random_net_and_batch(device, batch_size=2)
    net.eval()

    def forward(pet: Any, ct: Any) -> Any:
        return net(pet=pet, ct=ct, lab=batch["lab"][:1])

    images = (batch["pet"][:1].clone().requires_grad_(True), batch["ct"][:1].clone().requires_grad_(True))
    cam = LayerGradCam(forward, net.get_submodule(net.gradcam_layers()["pet"])).attribute(
        images, target=0, relu_attributions=False)
    return cam.detach().float().cpu().numpy()[0, 0]


def train_steps(device: Any, steps: int) -> dict[str, Any]:
    """``steps`` training steps of :func:`random_net_and_batch`'s network as
    :func:`pfs_core.training.loop.train_epoch` takes them: autocast (bfloat16 only) around the forward pass,
    the loss in float32 on float32 logits, AdamW."""
    import torch

    from pfs_core.models.precision import autocast

    net, batch, target = random_net_and_batch(device)
    net.train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    dtypes: set[str] = set()

    def step() -> float:
        with autocast(device, allow_float16=False):
            fused, branches = net.forward_with_branches(**batch)
        dtypes.add(str(fused.dtype))
        loss = loss_fn(fused[:, 0].float(), target)
        loss = loss + 0.3 * torch.stack([loss_fn(b[:, 0].float(), target) for b in branches.values()]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return float(loss.item())

    runs = [timed(step, device=device) for _ in range(steps)]
    losses = [round(loss, 5) for loss, _ in runs]
    seconds = [took for _, took in runs]
    return {"losses": losses, "finite": bool(np.isfinite(losses).all()), "logit_dtypes": sorted(dtypes),
            "median_step_seconds_after_first": round(statistics.median(seconds[1:] or seconds), 4)}


def training_part(device_name: str, steps: int = 5) -> dict[str, Any]:
    """Training steps (:func:`train_steps`) with autocast where training gets it (bfloat16 on CUDA), and in float32."""
    import torch

    from pfs_core.models.precision import amp_dtype

    device = torch.device(device_name)
    out: dict[str, Any] = {"steps": steps, "batch": 16, "grid": [32, 24, 32]}
    if amp_dtype(device, allow_float16=False) is None:
        out["amp"] = {"note": "no autocast for training here (CPU, PFS_CORE_AMP=0 or no native bfloat16)"}
    else:
        with amp_switch(True):
            out["amp"] = train_steps(device, steps)
    with amp_switch(False):
        out["fp32"] = train_steps(device, steps)
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else round(2.0 * int((a & b).sum()) / total, 4)


def organ_part(args: argparse.Namespace) -> dict[str, Any]:
    from pfs_core.io.organs import ORGANS
    from pfs_core.models.organ_seg import segment_organs

    _pet, ct, _labs, _organs = bench_explain.load_inputs(args.cohort, args.case)
    labels: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, device, amp in (("cpu", "cpu", True), ("cuda_amp", args.device, True), ("cuda_fp32", args.device, False)):
        with amp_switch(amp):
            segment_organs(ct, device=device)  # warm-up: load, hash check, CUDA kernels
            result, seconds[name] = timed(lambda device=device: segment_organs(ct, device=device), device=device)
        labels[name] = result.labels
    out: dict[str, Any] = {"case": args.case, "ct_shape": list(ct.shape), "seconds": seconds}
    for run in ("cuda_amp", "cuda_fp32"):
        per_organ = {organ: dice(labels[run] == code, labels["cpu"] == code) for code, organ in ORGANS.items()}
        found = [v for v in per_organ.values() if v is not None]
        out[f"dice_{run}_vs_cpu"] = {**per_organ, "mean": round(float(np.mean(found)), 4) if found else None,
                                     "voxels_differing": int((labels[run] != labels["cpu"]).sum())}
    return out


def benchmark_part(args: argparse.Namespace) -> dict[str, Any]:
    out_dir = args.benchmark_out or Path(f"/tmp/gpu_check_benchmark_{os.getpid()}")
    command = [sys.executable, "-m", "pfs_core", "benchmark", "--cohort", str(args.benchmark), "--folds", "3",
               "--repeats", "5", "--models", "all", "--seed", "2026", "--device", args.device, "--jobs",
               str(args.jobs), "--backend", args.backend, "--no-progress", "--out", str(out_dir), "--force"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    out: dict[str, Any] = {"command": " ".join(command), "wall_s": round(time.perf_counter() - started, 1),
                           "returncode": done.returncode, "stderr_tail": done.stderr[-2000:]}
    results = out_dir / "results.json"
    if results.is_file():
        doc = json.loads(results.read_text())
        out["wall_time_s"] = doc.get("wall_time_s")
        out["results_json"] = str(results)
        out["machine"] = doc.get("machine")
        out["fit_seconds"] = doc.get("fit_seconds")
        out["auroc_mean"] = {name: round(m["auroc"]["mean"], 4) for name, m in (doc.get("metrics") or {}).items()
                             if isinstance(m, dict) and isinstance(m.get("auroc"), dict)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a quick self-test; default cuda)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the figures")
    parser.add_argument("--repeats", type=int, default=5, help="warm runs of the explanation (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the CPU runs (default 1)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "lab_pet_ct_pretrained")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="folder of the shipped bundles")
    parser.add_argument("--cohort", type=Path, default=ROOT / "sample_data" / "cohort.csv")
    parser.add_argument("--case", default="SIM0001")
    parser.add_argument("--no-cpu-baseline", action="store_true", help="skip the CPU timing of the explanation")
    parser.add_argument("--benchmark", type=Path, default=None, metavar="COHORT_CSV",
                        help="also run the 3-fold x 5-repeat benchmark of all models on this cohort")
    parser.add_argument("--jobs", type=int, default=4, help="--jobs of the benchmark (default 4)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="--backend of the benchmark (ray: fractional GPUs declared per task)")
    parser.add_argument("--benchmark-out", type=Path, default=None, help="--out of the benchmark")
    args = parser.parse_args(argv)

    import torch

    on_cuda = args.device.startswith("cuda")
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "skipped": {}, "errors": {}}
    if on_cuda and not torch.cuda.is_available():
        message = (f"--device {args.device}: torch {torch.__version__} sees no CUDA device on this machine "
                   "(torch.cuda.is_available() is False); run on a GPU machine, or use --device cpu for a self-test")
        print(message, file=sys.stderr)
        report["errors"]["environment"] = message
        report["environment"] = {"torch": torch.__version__, "cuda_available": False}
        args.out.write_text(json.dumps(report, indent=1))
        return 2
    if not on_cuda and args.device != "cpu":
        parser.error("--device must be cuda, cuda:N or cpu")

    parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("environment", lambda: environment(args.device)),
        ("explain", lambda: explain_part(args, on_cuda)),
        ("training", lambda: training_part(args.device)),
    ]
    if on_cuda:
        parts += [("predictions", lambda: predictions_part(args)), ("gradcam", lambda: gradcam_part(args)),
                  ("organ_network", lambda: organ_part(args))]
    else:
        note = "CUDA only: compares CUDA with CPU (run with --device cuda on a GPU machine)"
        report["skipped"] = {"predictions": note, "gradcam": note, "organ_network": note}
    if args.benchmark is not None:
        parts.append(("benchmark", lambda: benchmark_part(args)))
    for name, run in parts:
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            report[name] = run()
        except Exception:  # record it, run the other parts
            report["errors"][name] = traceback.format_exc()
            print(report["errors"][name], file=sys.stderr)
        report.setdefault("part_seconds", {})[name] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(report, indent=1, default=str))  # what is done so far survives a kill
    print(json.dumps({k: v for k, v in report.items() if k != "errors"}, indent=1, default=str))
    if report["errors"]:
        print(f"gpu_check: failed parts: {', '.join(report['errors'])} (tracebacks in {args.out})", file=sys.stderr)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
