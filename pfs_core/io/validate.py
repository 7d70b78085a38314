"""Plausibility checks on loaded images; every failure is one :class:`InputError`.

Each message names the file, says what is wrong and how to fix it.
"""

from __future__ import annotations

import numpy as np

from pfs_core.errors import InputError
from pfs_core.io.volume import Volume, voxel_spacing, world_overlap
from pfs_core.limits import limits

SPACING_RANGE_MM = (0.3, 10.0)
SIZE_RANGE = (8, 2048)
AIR_HU = -900.0  # a CT has some voxels at least this low (air is about -1000 HU)
PET_MIN_SUV = -0.5  # PET below this (0.1th percentile) is not noise
CT_LIKE_SUV = -100.0  # PET voxels this low look like HU
CT_LIKE_SHARE = 0.01
MIN_OVERLAP = 0.05
HU_RANGE = (-1100.0, 4000.0)  # CT values are clipped to this (air -1000, metal implants and dense bone above 3000)
NOT_HU = 1e5  # a CT voxel beyond +-this is no Hounsfield unit at all: the image is refused
SUV_MAX_PLAUSIBLE = 150.0  # SSTR PET in SUVbw: tumours rarely above 100, spleen about 30
BODY_SUV = 0.5  # PET voxels above this (SUVbw) count as body for the median below
BODY_MEDIAN_PLAUSIBLE = 10.0  # body median in SUVbw is about 1 (muscle, fat, blood pool)
SAMPLE_VOXELS = 1_000_000  # a strided subsample of about this many voxels gives the body median


def squeeze_to_3d(shape: tuple[int, ...], where: str) -> tuple[int, int, int]:
    """Drop trailing singleton axes; refuse anything that is not a 3D volume."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) > 3:
        raise InputError(
            f"{where}: {len(dims)}D image of shape {tuple(shape)} (a series of {int(np.prod(dims[3:]))} volumes); "
            "give one 3D volume (for dynamic PET export the static or summed frame)"
        )
    if len(dims) < 3:
        raise InputError(f"{where}: {len(dims)}D image of shape {tuple(shape)}; give a 3D volume (a whole series)")
    return dims[0], dims[1], dims[2]


def check_grid(shape: tuple[int, int, int], affine: np.ndarray, where: str) -> None:
    """Voxel counts in ``SIZE_RANGE``, a finite invertible affine, spacing in ``SPACING_RANGE_MM`` (mm)."""
    lo, hi = SIZE_RANGE
    most = limits().max_voxels
    if any(n < lo or n > hi for n in shape) or int(np.prod(shape, dtype=np.int64)) > most:
        raise InputError(
            f"{where}: image size {'x'.join(map(str, shape))} voxels is outside {lo}..{hi} per axis "
            f"(at most {most} in all: set PFS_CORE_MAX_VOXELS to raise it); give the whole 3D scan, not a few "
            "slices or an upsampled volume"
        )
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputError(f"{where}: the voxel-to-world matrix (affine) is missing or degenerate; re-export the image")
    spacing = voxel_spacing(affine)
    lo_mm, hi_mm = SPACING_RANGE_MM
    if any(s < lo_mm or s > hi_mm for s in spacing):
        shown = "x".join(f"{s:.3g}" for s in spacing)
        raise InputError(
            f"{where}: voxel spacing {shown} mm is outside {lo_mm}..{hi_mm} mm; the header geometry is wrong "
            "(check the pixel spacing / slice positions) or this is not a clinical PET/CT"
        )


def value_range(data: np.ndarray) -> tuple[float, float]:
    """``(minimum, maximum)`` of ``data``; NaN propagates, so both are finite only if every voxel is."""
    return float(np.min(data)), float(np.max(data))


def check_finite(data: np.ndarray, where: str, *, known_range: tuple[float, float] | None = None) -> None:
    """Refuse NaN or infinite voxels.

    ``known_range``: ``(min, max)`` of ``data`` if already computed (:func:`value_range`); when both are
    finite, every voxel is and the voxels are not scanned again.
    """
    if known_range is not None and data.size and np.isfinite(known_range[0]) and np.isfinite(known_range[1]):
        return
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise InputError(
            f"{where}: {bad} voxel(s) are NaN or infinite; replace them (e.g. by 0 for PET, -1000 HU for CT) "
            "or re-export the image"
        )


def check_ct_values(data: np.ndarray, where: str, *, minimum: float | None = None) -> None:
    """A CT in HU contains air (about -1000 HU) somewhere. ``minimum``: ``data.min()`` if already known."""
    low = float(data.min()) if minimum is None else float(minimum)
    if low > AIR_HU:
        raise InputError(
            f"{where}: no voxel below {AIR_HU:.0f} HU (minimum {low:.4g}), so there is no air: this does not look "
            "like a CT in Hounsfield units (a PET given as --ct, or raw values without RescaleSlope/Intercept?)"
        )


def check_not_ct(data: np.ndarray, where: str, *, minimum: float | None = None) -> None:
    """Refuse a "PET" with more than 1 % of voxels below -100 (Hounsfield units: PET and CT swapped).

    ``minimum``: ``data.min()`` if already known; at or above -100 no voxel is counted.
    """
    if minimum is not None and minimum >= CT_LIKE_SUV:
        return
    share = float(np.count_nonzero(data < CT_LIKE_SUV)) / data.size
    if share > CT_LIKE_SHARE:
        raise InputError(
            f"{where}: {100 * share:.0f}% of voxels are below {CT_LIKE_SUV:.0f}, like Hounsfield units of a CT; "
            "PET and CT look swapped: pass the PET as --pet and the CT as --ct"
        )


def check_pet_values(data: np.ndarray, where: str, *, minimum: float | None = None,
                     not_ct_checked: bool = False) -> None:
    """PET SUV: not CT-like (:func:`check_not_ct`) and not clearly negative (0.1th percentile < -0.5).

    ``minimum``: ``data.min()`` if already known (the percentile is at least the minimum, so it is only
    computed when the minimum is below -0.5); ``not_ct_checked``: :func:`check_not_ct` already passed on
    this very array.
    """
    low_bound = float(data.min()) if minimum is None else float(minimum)
    if not not_ct_checked:
        check_not_ct(data, where, minimum=low_bound)
    if low_bound >= PET_MIN_SUV:
        return
    low = float(np.percentile(data, 0.1))
    if low < PET_MIN_SUV:
        raise InputError(
            f"{where}: PET has clearly negative values (0.1th percentile {low:.3g} SUV); "
            "use a reconstruction without negative values (e.g. OSEM) or check the units"
        )


def check_not_constant(where: str, value_range: tuple[float, float], modality: str) -> None:
    """Refuse an image whose voxels all have one value (an empty or blank export): no answer means anything."""
    low, high = value_range
    if low == high:
        raise InputError(f"{where}: every voxel of this {modality} has the same value ({low:.4g}); the image is empty "
                         f"or blank: export the {modality} again")


def ct_plausibility(data: np.ndarray, where: str, value_range: tuple[float, float]) -> tuple[str, ...]:
    """Bring a CT (HU, ``value_range`` its (min, max)) into ``HU_RANGE`` in place; the warnings to keep.

    Refused: any voxel beyond +-``NOT_HU`` (clearly not HU). Values below -1100 HU (padding outside the
    scanned circle, often -2048 or -3024) are clipped silently: routine, and air stays air. Values above
    4000 HU are clipped with a warning that counts them (metal, or a wrong rescale).
    """
    low, high = value_range
    if max(abs(low), abs(high)) > NOT_HU:
        raise InputError(f"{where}: CT values reach {low if abs(low) > abs(high) else high:.3g}, beyond "
                         f"+-{NOT_HU:.0e}: these are not Hounsfield units (raw or damaged values?); export the CT in "
                         "HU (RescaleSlope/Intercept applied)")
    lo_hu, hi_hu = HU_RANGE
    if low >= lo_hu and high <= hi_hu:
        return ()
    warnings: tuple[str, ...] = ()
    if high > hi_hu:
        count = int(np.count_nonzero(data > hi_hu))
        warnings = (f"{where}: {count} CT voxel(s) above {hi_hu:.0f} HU (metal, or a wrong rescale) were clipped "
                    f"to {hi_hu:.0f} HU",)
    np.clip(data, lo_hu, hi_hu, out=data)
    return warnings


def pet_plausibility(data: np.ndarray, where: str, value_range: tuple[float, float]) -> tuple[str, ...]:
    """Warnings for a PET whose SUVbw values are implausible for SSTR PET (``value_range`` its (min, max)).

    Rule: SUVmax above ``SUV_MAX_PLAUSIBLE`` (150), or the median of the body voxels (above 0.5 SUV, on a
    strided subsample of about a million voxels) above ``BODY_MEDIAN_PLAUSIBLE`` (10): the values are then
    likely kBq/mL or Bq/mL taken as SUV.
    """
    high = value_range[1]
    step = max(1, round((data.size / SAMPLE_VOXELS) ** (1 / 3)))
    sample = data[::step, ::step, ::step]
    body = sample[sample > BODY_SUV]
    median = float(np.median(body)) if body.size else 0.0
    if high <= SUV_MAX_PLAUSIBLE and median <= BODY_MEDIAN_PLAUSIBLE:
        return ()
    seen = f"SUVmax {high:.4g}" if high > SUV_MAX_PLAUSIBLE else f"body median {median:.3g} SUV"
    return (f"{where}: PET values are implausible for SUVbw ({seen}; SSTR PET rarely exceeds SUVmax "
            f"{SUV_MAX_PLAUSIBLE:.0f} or a body median of {BODY_MEDIAN_PLAUSIBLE:.0f}): the image may be in kBq/mL "
            "or Bq/mL; give --weight-kg and --dose-mbq with --pet-units bqml",)


def check_overlap(pet: Volume, ct: Volume, *, min_fraction: float = MIN_OVERLAP) -> float:
    """Refuse a PET and a CT whose world boxes barely overlap; return the overlap fraction (0..1)."""
    overlap = world_overlap(pet, ct).fraction
    if overlap < min_fraction:
        raise InputError(
            f"{pet.source} and {ct.source}: PET and CT overlap by only {100 * overlap:.1f}% in world space "
            f"(at least {100 * min_fraction:.0f}% needed); they belong to different patients or frames of "
            "reference: give the PET and CT of the same PET/CT session"
        )
    return overlap
