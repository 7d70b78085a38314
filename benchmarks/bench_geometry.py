"""Time :func:`pfs_core.viz.mesh.case_scene` and :func:`pfs_core.viz.mesh.render_png` on a CT-like phantom.

The phantom: a 130 x 100 x 130 CT (3.5 mm voxels, LPS-flipped affine, 20 HU noise)
with an elliptic torso, two lungs, a table, a few soft-tissue lesions; a PET on its
own coarser grid (4.5 mm) with hot lesions, kidneys and spleen; a Grad-CAM map on
the CT grid (Gaussian blobs, scaled 0-1).

Run: ``.venv/bin/python benchmarks/bench_geometry.py [--repeats 3] [--png /tmp/scene.png]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pfs_core.viz import mesh as geometry

LESIONS_MM = ((60.0, 20.0, 40.0, 18.0), (-50.0, -10.0, -30.0, 12.0), (20.0, 40.0, 90.0, 9.0))  # x, y, z, radius


def world_grid(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm, RAS) of every voxel centre, ``(I, J, K, 3)``."""
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), axis=-1)
    return (index @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)).astype(np.float32)


def centred_affine(shape: tuple[int, int, int], spacing: float, *, lps: bool) -> np.ndarray:
    """Affine with ``spacing`` mm voxels centred on the world origin, optionally LPS-flipped (x and y)."""
    signs = np.array([-1.0, -1.0, 1.0]) if lps else np.ones(3)
    affine = np.diag([*(signs * spacing), 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return affine


def phantom_case(seed: int = 0) -> dict[str, np.ndarray]:
    """CT (HU), PET (SUV) and Grad-CAM volumes with their affines (see the module docstring)."""
    rng = np.random.default_rng(seed)
    ct_shape, pet_shape = (130, 100, 130), (100, 80, 100)
    ct_affine = centred_affine(ct_shape, 3.5, lps=True)
    pet_affine = centred_affine(pet_shape, 4.5, lps=False)
    w = world_grid(ct_shape, ct_affine)
    x, y, z = w[..., 0], w[..., 1], w[..., 2]
    ct = np.full(ct_shape, -1000.0, np.float32)
    ct[(x / 170.0) ** 2 + (y / 110.0) ** 2 < 1.0] = 40.0
    lungs = ((np.abs(x) - 70.0) / 50.0) ** 2 + (y / 70.0) ** 2 + ((z - 120.0) / 90.0) ** 2 < 1.0
    ct[lungs] = -820.0
    ct[(y < -130.0) & (y > -150.0) & (np.abs(x) < 200.0)] = 300.0  # table
    cam = np.zeros(ct_shape, np.float32)
    for cx, cy, cz, radius in LESIONS_MM:
        d2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        ct[d2 < radius**2] = 70.0
        cam += np.exp(-d2 / (2 * (1.5 * radius) ** 2))
    ct += rng.normal(0.0, 20.0, ct_shape).astype(np.float32)
    cam /= cam.max()
    w = world_grid(pet_shape, pet_affine)
    x, y, z = w[..., 0], w[..., 1], w[..., 2]
    pet = np.where((x / 170.0) ** 2 + (y / 110.0) ** 2 < 1.0, 1.0, 0.05).astype(np.float32)
    for cx, cy, cz, radius in LESIONS_MM:
        pet[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < radius**2] = 15.0
    for cx in (-75.0, 75.0):  # kidneys
        pet[((x - cx) / 30.0) ** 2 + ((y + 40.0) / 25.0) ** 2 + ((z + 60.0) / 55.0) ** 2 < 1.0] = 9.0
    pet[((x + 90.0) / 40.0) ** 2 + ((y + 10.0) / 30.0) ** 2 + ((z - 10.0) / 50.0) ** 2 < 1.0] = 12.0  # spleen
    pet *= rng.gamma(20.0, 1.0 / 20.0, pet_shape).astype(np.float32)  # ~22 % multiplicative noise
    return {"ct": ct, "ct_affine": ct_affine, "pet": pet, "pet_affine": pet_affine, "cam": cam,
            "cam_affine": ct_affine}


def machine() -> str:
    """CPU model, usable cores and library versions."""
    import pyvista
    import vtk

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cores} usable cores, Python {platform.python_version()}, pyvista {pyvista.__version__}, "
            f"VTK {vtk.vtkVersion.GetVTKVersion()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--png", type=Path, default=None, help="keep the rendering here")
    args = parser.parse_args()
    case = phantom_case()
    png = args.png or Path(tempfile.mkdtemp()) / "scene.png"
    scene_s, render_s = [], []
    meshes: list[geometry.Mesh] = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        meshes = geometry.case_scene(case["ct"], case["ct_affine"], case["pet"], case["pet_affine"], case["cam"],
                                     case["cam_affine"], suv_level=6.0, cam_level=0.5)
        scene_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        geometry.render_png(meshes, png, size=(800, 800), view="iso")
        render_s.append(time.perf_counter() - start)
    print(f"machine: {machine()}")
    print(f"volumes: CT {case['ct'].shape} @ 3.5 mm, PET {case['pet'].shape} @ 4.5 mm, Grad-CAM on the CT grid")
    for mesh in meshes:
        print(f"  {mesh.name}: {mesh.n_triangles} triangles, {mesh.n_vertices} vertices")
    print(f"  total: {sum(m.n_triangles for m in meshes)} triangles (budget 200000)")
    print(f"case_scene: median {statistics.median(scene_s):.2f} s (runs: {', '.join(f'{t:.2f}' for t in scene_s)})")
    print(f"render_png 800x800: median {statistics.median(render_s):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in render_s)}); first run includes the VTK start-up")
    print(f"png: {png} ({png.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
