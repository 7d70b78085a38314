"""DICOM SEG of lesions and organs on a DICOM CT (highdicom), and reading its lesions back.

The SEG references the CT series it was made on, so 3D Slicer (QuantitativeReporting) and OHIF
(``@ohif/extension-cornerstone-dicom-seg``) show it over that series (``docs/organ_input.md``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from pfs_core import __version__
from pfs_core.errors import InputError
from pfs_core.io.dicom import _slice_affine, choose_series, unzipped
from pfs_core.io.organ_files import onto_ct_grid, seg_volume
from pfs_core.io.organs import ORGANS, OrganMasks
from pfs_core.io.reduce import expanded, reduced_affine, reduced_shape, working_factors
from pfs_core.io.volume import LPS_TO_RAS, Volume, voxel_spacing
from pfs_core.limits import limits

ALGORITHM_NAME = "pfs_core measure"
ANATOMICAL_STRUCTURE = hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure")
ABNORMAL_STRUCTURE = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
TUMOR = hd.sr.CodedConcept("108369006", "SCT", "Tumor")
# SNOMED CT property type (IMAGING.md §6) and laterality of each organ of ORGANS.
ORGAN_CODES: dict[str, tuple[hd.sr.CodedConcept, hd.sr.CodedConcept | None]] = {
    "liver": (hd.sr.CodedConcept("10200004", "SCT", "Liver"), None),
    "spleen": (hd.sr.CodedConcept("78961009", "SCT", "Spleen"), None),
    "kidney_right": (hd.sr.CodedConcept("64033007", "SCT", "Kidney"), hd.sr.CodedConcept("24028007", "SCT", "Right")),
    "kidney_left": (hd.sr.CodedConcept("64033007", "SCT", "Kidney"), hd.sr.CodedConcept("7771000", "SCT", "Left")),
    "urinary_bladder": (hd.sr.CodedConcept("89837001", "SCT", "Urinary bladder"), None),
    "pancreas": (hd.sr.CodedConcept("15776009", "SCT", "Pancreas"), None),
    "adrenal_gland_right": (hd.sr.CodedConcept("23451007", "SCT", "Adrenal gland"),
                            hd.sr.CodedConcept("24028007", "SCT", "Right")),
    "adrenal_gland_left": (hd.sr.CodedConcept("23451007", "SCT", "Adrenal gland"),
                           hd.sr.CodedConcept("7771000", "SCT", "Left")),
}
_LESION_LABEL = re.compile(r"^lesion\s+(\d+)\s*(.*)$", re.IGNORECASE)


def write_dicom_seg(ct_dicom: str | Path, *, lesion_labels: np.ndarray, lesion_status: dict[int, str],
                    organs: OrganMasks | None, out_path: str | Path) -> Path:
    """Write a BINARY DICOM SEG of lesions and organs that references the CT series ``ct_dicom``.

    Args:
        ct_dicom: the CT's DICOM series folder or ``.zip`` (the grid everything was measured on).
        lesion_labels: uint16 ``(I, J, K)`` on the CT grid, 0 = background, ``n`` = lesion ``n``.
        lesion_status: lesion number → ``"SSTR-positive"`` / ``"SSTR-negative"`` (shown in the segment label).
        organs: organ masks on the same grid, one segment per organ present; None for none.
        out_path: the ``.dcm`` file to write.

    Segments: organs first (order of ORGANS), then lesions by number, labelled ``"lesion 3 SSTR-positive"``.
    Segments overlap (a lesion inside the liver), hence BINARY rather than LABELMAP.
    """
    where = str(ct_dicom)
    with _ct_series(Path(ct_dicom)) as (datasets, affine):
        shape = (int(datasets[0].Columns), int(datasets[0].Rows), len(datasets))
        lesion_labels, organs = _on_stored_grid(lesion_labels, organs, shape, affine)
        _check_grid(lesion_labels, organs, shape, affine, where)
        descriptions, masks = _segments(lesion_labels, lesion_status, organs)
        if not descriptions:
            raise InputError(f"{where}: no lesion and no organ to write into a DICOM SEG")
        first, last = _slab(lesion_labels, organs)
        frames = _frames(masks, first, last)
        seg = hd.seg.Segmentation(
            source_images=datasets[first:last + 1], pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=300, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="pfs_core", manufacturer_model_name=ALGORITHM_NAME, software_versions=__version__,
            device_serial_number="0", content_label="PFS_CORE",
            content_description="Lesions and organs (pfs_core measure; research use only)")
    seg.SeriesDescription = "pfs_core lesions and organs"
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return out


@contextmanager
def _ct_series(path: Path) -> Iterator[tuple[list[Dataset], np.ndarray]]:
    """The CT's slices (full datasets) sorted exactly as :func:`pfs_core.io.dicom.read_dicom_series` sorts
    them, i.e. ``datasets[k]`` is slice ``K = k`` of the volume ``load_ct`` builds, and its RAS affine."""
    if not path.exists():
        raise InputError(f"{path}: CT DICOM series not found; give the folder (or .zip) the CT was read from")
    if path.is_dir():
        yield _sorted_ct(path, str(path))
    elif path.name.lower().endswith(".zip"):
        with unzipped(path) as folder:
            yield _sorted_ct(folder, str(path))
    else:
        raise InputError(f"{path}: the CT is not a DICOM series, so no DICOM SEG can reference it; "
                         "use lesions.nii.gz / organs.nii.gz, or give the CT as its DICOM folder or .zip")


def _sorted_ct(folder: Path, where: str) -> tuple[list[Dataset], np.ndarray]:
    items = choose_series(folder, "CT", where)
    order, affine_lps = _slice_affine([ds for _f, ds in items], where)  # the loader's own order
    datasets: list[Dataset] = [pydicom.dcmread(items[int(k)][0]) for k in order]
    _complete_uids(datasets)
    return datasets, LPS_TO_RAS @ affine_lps


def _complete_uids(datasets: list[Dataset]) -> None:
    """Fill UIDs an anonymiser blanked, which highdicom needs to reference the slices.

    SOP class / instance come from the file meta (the same values); a blank study or series UID gets
    one derived from the frame of reference, identical for every slice (a viewer then cannot link the
    SEG to the original series: ``docs/organ_input.md``).
    """
    seed = str(datasets[0].get("FrameOfReferenceUID", "") or datasets[0].file_meta.get("MediaStorageSOPInstanceUID"))
    for ds in datasets:
        meta = ds.file_meta
        ds.SOPClassUID = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
        ds.SOPInstanceUID = ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID")
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not ds.get(keyword):
                setattr(ds, keyword, generate_uid(entropy_srcs=[seed, keyword]))


def _on_stored_grid(lesion_labels: np.ndarray, organs: OrganMasks | None, shape: tuple[int, int, int],
                    affine: np.ndarray) -> tuple[np.ndarray, OrganMasks | None]:
    """Label maps measured on the working grid of a large CT (:mod:`pfs_core.io.reduce`) on the grid of its
    stored slices, which the SEG's frames reference; unchanged when the CT was read as stored."""
    factors = working_factors(shape, voxel_spacing(affine), limits().max_working_voxels)
    if factors == (1, 1, 1) or tuple(lesion_labels.shape) != reduced_shape(shape, factors):
        return lesion_labels, organs
    lesion_labels = expanded(lesion_labels, factors, shape)
    if organs is not None and np.allclose(organs.affine, reduced_affine(affine, factors), atol=1e-3):
        organs = dataclasses.replace(organs, labels=expanded(organs.labels, factors, shape), affine=affine)
    return lesion_labels, organs


def _check_grid(lesion_labels: np.ndarray, organs: OrganMasks | None, shape: tuple[int, int, int],
                affine: np.ndarray, where: str) -> None:
    grids = [("lesion labels", lesion_labels.shape, affine)]
    if organs is not None:
        grids.append(("organ labels", organs.labels.shape, organs.affine))
    for what, got, got_affine in grids:
        if tuple(got) != shape or not np.allclose(got_affine, affine, atol=1e-3):
            raise InputError(f"{where}: the {what} ({'x'.join(map(str, got))}) are not on this CT series' grid "
                             f"({'x'.join(map(str, shape))}); give the CT series they were measured on")


def _segments(lesion_labels: np.ndarray, lesion_status: dict[int, str],
              organs: OrganMasks | None) -> tuple[list[hd.seg.SegmentDescription], list[tuple[np.ndarray, int]]]:
    """Segment descriptions and, for each, ``(label array, value)`` whose equality gives its mask."""
    descriptions: list[hd.seg.SegmentDescription] = []
    masks: list[tuple[np.ndarray, int]] = []
    if organs is not None:
        present = np.unique(organs.labels)
        for code, name in ORGANS.items():
            if code in present:
                descriptions.append(_organ_description(len(descriptions) + 1, name))
                masks.append((organs.labels, code))
    for number in (int(n) for n in np.unique(lesion_labels) if n):
        descriptions.append(_lesion_description(len(descriptions) + 1, number, lesion_status.get(number, "")))
        masks.append((lesion_labels, number))
    return descriptions, masks


def _algorithm(family: hd.sr.CodedConcept) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(name=ALGORITHM_NAME, family=family, version=__version__)


def _organ_description(number: int, name: str) -> hd.seg.SegmentDescription:
    prop, side = ORGAN_CODES[name]
    description = hd.seg.SegmentDescription(
        segment_number=number, segment_label=name, segmented_property_category=ANATOMICAL_STRUCTURE,
        segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(codes.cid7162.ArtificialIntelligence))
    if side is not None:  # highdicom has no argument for it; DICOM nests laterality in the property type
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [side]
    return description


def _lesion_description(number: int, lesion: int, status: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=f"lesion {lesion} {status}".strip(),
        segmented_property_category=ABNORMAL_STRUCTURE, segmented_property_type=TUMOR,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(codes.cid7162.HistogramAnalysis),  # SUV thresholds
        tracking_id=f"lesion {lesion}", tracking_uid=hd.UID())


def _slab(lesion_labels: np.ndarray, organs: OrganMasks | None) -> tuple[int, int]:
    """First and last slice (K) holding any segment: frames outside it would be empty anyway, and
    leaving them out keeps the ``(F, rows, columns, segments)`` array small."""
    used = lesion_labels.any(axis=(0, 1))
    if organs is not None:
        used |= organs.labels.any(axis=(0, 1))
    ks = np.flatnonzero(used)
    return int(ks[0]), int(ks[-1])


def _frames(masks: list[tuple[np.ndarray, int]], first: int, last: int) -> np.ndarray:
    """uint8 ``(F, rows, columns, segments)`` for slices ``first..last``: frame ``f`` is slice ``K = first + f``
    and its pixel ``[row, column]`` is voxel ``[I = column, J = row]`` (pfs_core.io.dicom's layout)."""
    out = np.zeros((last - first + 1, masks[0][0].shape[1], masks[0][0].shape[0], len(masks)), dtype=np.uint8)
    for s, (labels, value) in enumerate(masks):
        out[..., s] = (labels[:, :, first:last + 1] == value).transpose(2, 1, 0)
    return out


def read_dicom_seg_lesions(path: str | Path, *, ct: Volume) -> tuple[np.ndarray, dict[int, str]]:
    """Lesion segments of a DICOM SEG (as :func:`write_dicom_seg` writes them) on the grid of ``ct``.

    Returns uint16 ``ct.shape`` labels (lesion numbers from the segment labels ``"lesion 3 ..."``) and
    ``{lesion number: status}`` (the rest of the label, e.g. ``"SSTR-positive"``).
    """
    where = str(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:
        raise InputError(f"{where}: not a readable DICOM SEG ({type(exc).__name__}); give the SEG file") from exc
    found = {int(item.SegmentNumber): match for item in seg.SegmentSequence
             if (match := _LESION_LABEL.match(str(item.get("SegmentLabel", ""))))}
    labels = np.zeros(ct.shape, dtype=np.uint16)
    if not found:
        return labels, {}
    masks, affine = seg_volume(seg, list(found), where=where)
    status: dict[int, str] = {}
    for s, match in enumerate(found.values()):
        lesion = int(match.group(1))
        labels[onto_ct_grid(masks[..., s].astype(np.uint8), affine, ct, where=where) > 0] = lesion
        status[lesion] = match.group(2).strip()
    return labels, status
