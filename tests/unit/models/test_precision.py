"""Automatic mixed precision helper (pfs_core.models.precision) and the GPU check script's CPU self-test.

No GPU is needed: CUDA is mocked (torch.cuda.is_bf16_supported, get_device_capability and torch.autocast).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from pfs_core.models import precision
from pfs_core.models.precision import amp_dtype, amp_enabled, autocast, full_precision

ROOT = Path(__file__).resolve().parents[3]


class Requested:
    """Stands in for torch.autocast: records what was asked for."""

    def __init__(self, device_type: str, dtype: torch.dtype | None = None, enabled: bool = True) -> None:
        self.device_type, self.dtype, self.enabled = device_type, dtype, enabled


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A mocked CUDA card: ``fake_cuda(bf16=True, major=9)`` sets what it reports."""

    def configure(*, bf16: bool = True, major: int = 9) -> None:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (major, 0))
        monkeypatch.setattr(torch, "autocast", Requested)

    monkeypatch.delenv("PFS_CORE_AMP", raising=False)
    return configure


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "mps", None])
def test_cpu_and_mps_get_a_null_context(device: Any, fake_cuda: Any) -> None:
    fake_cuda()
    assert isinstance(autocast(device), contextlib.nullcontext)
    assert isinstance(full_precision(device), contextlib.nullcontext)
    assert amp_dtype(device) is None


def test_cuda_with_bf16_requests_bfloat16_autocast(fake_cuda: Any) -> None:
    fake_cuda(bf16=True, major=8)
    for device in ("cuda", "cuda:0", torch.device("cuda", 0)):
        ctx = autocast(device)
        assert isinstance(ctx, Requested)
        assert (ctx.device_type, ctx.dtype, ctx.enabled) == ("cuda", torch.bfloat16, True)
        # training asks for bfloat16 only: same answer where the card has it
        assert autocast(device, allow_float16=False).dtype == torch.bfloat16
    off = full_precision("cuda")
    assert isinstance(off, Requested) and off.enabled is False


@pytest.mark.parametrize(("bf16", "major"), [(False, 7), (True, 7)])  # no bf16; bf16 only emulated (pre-Ampere)
def test_cuda_without_native_bf16_uses_float16_for_inference_and_float32_for_training(
        fake_cuda: Any, bf16: bool, major: int) -> None:
    fake_cuda(bf16=bf16, major=major)
    ctx = autocast("cuda")
    assert isinstance(ctx, Requested) and ctx.dtype == torch.float16
    assert isinstance(autocast("cuda", allow_float16=False), contextlib.nullcontext)  # no GradScaler needed


@pytest.mark.parametrize("value", ["0", "false", "OFF", " no "])
def test_environment_switch_turns_amp_off(fake_cuda: Any, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    fake_cuda()
    monkeypatch.setenv("PFS_CORE_AMP", value)
    assert not amp_enabled()
    assert isinstance(autocast("cuda"), contextlib.nullcontext)
    monkeypatch.setenv("PFS_CORE_AMP", "1")
    assert amp_enabled() and isinstance(autocast("cuda"), Requested)


def test_no_cuda_driver_means_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("no NVIDIA driver")

    monkeypatch.setattr(torch.cuda, "get_device_capability", broken)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert not precision.bf16_native(torch.device("cuda"))


def test_fusion_net_output_is_float32_and_unchanged_on_cpu() -> None:
    from pfs_core.models.nets import FusionNet

    torch.manual_seed(0)
    net = FusionNet(3, use_lab=True, use_pet=True, use_ct=False, n_lab_features=3, channels=(4, 8), strides=(2, 2),
                    embed_dim=8, hidden=8, pet_quant=(60.0, 1.0), wide=True).eval()
    pet, lab = torch.rand(2, 1, 16, 16, 16), torch.randn(2, 3)
    with torch.no_grad():
        plain = net(pet=pet, lab=lab)
        with autocast("cpu"):
            wrapped = net(pet=pet, lab=lab)
    assert wrapped.dtype == torch.float32
    assert torch.equal(plain, wrapped)


@pytest.mark.slow
def test_gpu_check_self_test_on_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_check.py --device cpu: explanation and training steps on CPU, CUDA parts skipped (~15 s)."""
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                           "--repeats", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["errors"] == {}
    assert set(doc["skipped"]) == {"predictions", "gradcam", "organ_network"}
    assert doc["environment"]["amp_dtype_inference"] == "None"
    assert doc["explain"]["median_seconds"]["total"] > 0
    assert doc["training"]["fp32"]["finite"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_check_without_cuda_says_so(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cuda",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "sees no CUDA device" in done.stderr
    assert json.loads(out.read_text())["environment"]["cuda_available"] is False
