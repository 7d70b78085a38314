"""pfs_core.viz.static: PNG images for the printed report (orientation, outlines, size)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pfs_core.errors import InputError
from pfs_core.viz import static


def _case(shape=(40, 30, 20)) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CT 40 HU body, PET SUV 1, one hot lesion (id 1) on the patient's right and a cold one (id 2)."""
    affine = np.diag([5.0, 5.0, 8.0, 1.0])
    affine[:3, 3] = (-100.0, -75.0, -80.0)
    i, j, k = np.indices(shape)
    ct = np.full(shape, 40.0, np.float32)
    pet = np.ones(shape, np.float32)
    labels = np.zeros(shape, np.int32)
    labels[(i - 32) ** 2 + (j - 15) ** 2 + (k - 10) ** 2 <= 9] = 1  # large x: the patient's right
    labels[(i - 10) ** 2 + (j - 15) ** 2 + (k - 4) ** 2 <= 4] = 2
    pet[labels == 1] = 12.0
    return ct, pet, labels, affine


def _image(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)


def test_mip_puts_the_patients_right_on_the_left_and_stays_small():
    _, pet, labels, affine = _case()
    png = static.mip_png(pet, affine, labels, {1: "SSTR-positive", 2: "SSTR-negative"})
    assert len(png) < 150_000
    image = _image(png)
    dark = image.sum(axis=2) < 100  # the hot lesion is black on the inverse grey projection
    columns = np.flatnonzero(dark.any(axis=0))
    assert columns.size and columns.mean() < 0.5 * image.shape[1]


def test_lesion_slice_draws_the_lesion_and_its_outline():
    ct, pet, labels, affine = _case()
    png = static.lesion_slice_png(ct, pet, affine, labels, 1, lesion_status={1: "SSTR-positive"},
                                  title="Lesion 1")
    image = _image(png)
    vermillion = (abs(image[..., 0] - 0xD5) < 30) & (abs(image[..., 1] - 0x5E) < 30) & (image[..., 2] < 60)
    assert vermillion.sum() > 20  # the SSTR-positive outline
    assert len(png) < 150_000


def test_axial_index_is_the_largest_cross_section():
    _, _, labels, affine = _case()
    assert static.axial_index(labels, affine, 1) == 10
    with pytest.raises(ValueError, match="no voxel"):
        static.axial_index(labels, affine, 7)


def test_slice_refuses_a_pet_on_another_grid():
    ct, pet, labels, affine = _case()
    with pytest.raises(InputError, match="resample"):
        static.lesion_slice_png(ct, pet[:-1], affine, labels, 1)


def test_bar_png_keeps_the_total_of_the_bars_it_leaves_out():
    png = static.bar_png([f"f{i}" for i in range(20)], np.linspace(-1, 1, 20), "Why", "percentage points",
                         max_bars=5)
    assert _image(png).shape[0] < 400
    with pytest.raises(ValueError, match="one length"):
        static.bar_png(["a"], [1.0, 2.0], "t", "x")
