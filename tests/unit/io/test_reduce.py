"""Large scans are read onto a coarser working grid while reading (pfs_core.io.reduce, io.nifti)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from pfs_core.io.nifti import read_nifti_data
from pfs_core.io.reduce import reduce_block, reduced_affine, working_factors


def test_a_volume_that_fits_is_not_reduced():
    assert working_factors((512, 512, 150), (0.8, 0.8, 3.0), 40_000_000) == (1, 1, 1)


@pytest.mark.parametrize(("shape", "spacing", "expected"), [
    ((512, 512, 300), (0.98, 0.98, 3.0), (2, 2, 1)),  # in-plane halved together: square voxels stay square
    ((512, 512, 600), (0.86, 0.6, 0.575), (1, 2, 2)),  # the two finest axes first
    ((512, 512, 2048), (0.5, 0.5, 0.5), (4, 4, 4)),  # isotropic stays isotropic
])
def test_the_finest_axes_are_reduced_first(shape, spacing, expected):
    factors = working_factors(shape, spacing, 40_000_000)
    assert factors == expected
    assert np.prod([n // f for n, f in zip(shape, factors, strict=True)]) <= 40_000_000


def test_an_axis_is_never_reduced_below_eight_voxels():
    factors = working_factors((16, 16, 4000), (1.0, 1.0, 0.2), 1000)
    assert all(n // f >= 8 for n, f in zip((16, 16, 4000), factors, strict=True))


def test_block_mean_and_centre_voxel_keep_world_positions():
    values = np.arange(6 * 4 * 5, dtype=np.float32).reshape(6, 4, 5)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [10.0, -5.0, 7.0]
    mean = reduce_block(values, (2, 2, 1))
    assert mean.shape == (3, 2, 5)
    assert mean[1, 1, 3] == pytest.approx(values[2:4, 2:4, 3].mean())
    # the block's centre in world mm is the mean of its voxels' centres
    centres = nib.affines.apply_affine(affine, [[i, j, 3] for i in (2, 3) for j in (2, 3)]).mean(axis=0)
    np.testing.assert_allclose(nib.affines.apply_affine(reduced_affine(affine, (2, 2, 1)), [1, 1, 3]), centres)
    labels = reduce_block(values, (2, 2, 1), "nearest")  # a voxel of the block, within half a voxel of its centre
    np.testing.assert_array_equal(labels[1, 1], values[3, 3])


def _write(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_large_nifti_is_read_as_its_block_means(tmp_path, monkeypatch, suffix):
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, (40, 36, 33)).astype(np.int16)  # odd depth: the last slice is left out
    affine = np.diag([0.8, 0.8, 1.0, 1.0])
    path = _write(tmp_path / f"ct{suffix}", data, affine)
    monkeypatch.setenv("PFS_CORE_MAX_WORKING_VOXELS", str(20 * 18 * 33))
    read = read_nifti_data(path)
    assert read.reduced_by == (2, 2, 1) and read.full_shape == (40, 36, 33)
    expected = data.astype(np.float64).reshape(20, 2, 18, 2, 33).mean(axis=(1, 3))
    np.testing.assert_allclose(read.data, expected, atol=1e-3)
    assert read.value_range == (float(data.min()), float(data.max()))
    np.testing.assert_allclose(read.affine, reduced_affine(affine, (2, 2, 1)))


def test_a_large_label_map_keeps_its_labels(tmp_path, monkeypatch):
    labels = np.zeros((32, 32, 31), np.uint8)
    labels[4:20, 6:30, 3:29] = 5
    path = _write(tmp_path / "organs.nii.gz", labels, np.eye(4))
    monkeypatch.setenv("PFS_CORE_MAX_WORKING_VOXELS", "5000")
    read = read_nifti_data(path, how="nearest")
    assert set(np.unique(read.data)) == {0.0, 5.0}
    fx, fy, fz = read.reduced_by
    assert fz > 1  # the odd depth is cut, not padded
    np.testing.assert_allclose(read.affine, reduced_affine(np.eye(4), read.reduced_by))  # the CT's working grid
    np.testing.assert_array_equal(read.data, labels[fx // 2::fx, fy // 2::fy, fz // 2::fz][
        :32 // fx, :32 // fy, :31 // fz])


@pytest.mark.parametrize("factors", [(2, 2, 1), (2, 2, 2), (4, 2, 1)])
def test_block_mean_equals_scikit_image_on_fortran_slabs(factors):
    from skimage.measure import block_reduce

    rng = np.random.default_rng(3)
    values = np.asfortranarray(rng.normal(40, 300, (37, 22, 8)).astype(np.float32))  # as nibabel returns a slab
    fx, fy, fz = factors
    expected = block_reduce(values[:37 // fx * fx, :22 // fy * fy, :8 // fz * fz], factors, np.mean,
                            func_kwargs={"dtype": np.float64})
    np.testing.assert_allclose(reduce_block(values, factors), expected, rtol=1e-6, atol=1e-4)
    assert reduce_block(values.astype(np.int16), factors).dtype == np.float32
