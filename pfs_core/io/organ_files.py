"""Organ masks a user provides (``--organs PATH``) → :class:`OrganMasks` on the CT grid.

Accepted: a TotalSegmentator output folder (one ``<structure>.nii.gz`` per class), a multi-label
NIfTI with its label names (a JSON file, a sidecar ``<stem>.json`` or TotalSegmentator's ``--ml``
header extension), a DICOM SEG or an RTSTRUCT (a file, or a folder holding one). Names are matched
case-insensitively through :data:`ALIASES`; "kidney" / "adrenal gland" without a side are split into
left and right. Masks on another grid are resampled (nearest neighbour) onto the CT grid. Where
organs overlap, the liver wins, then the order of :data:`ORGANS`. Every problem is an
:class:`InputError` naming the file (``docs/organ_input.md``).
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from scipy import ndimage
from skimage.draw import polygon

from pfs_core.errors import InputError, reading
from pfs_core.io.dicom import regular_files
from pfs_core.io.nifti import read_nifti_data
from pfs_core.io.organs import ORGAN_CODE, ORGANS, OrganMasks
from pfs_core.io.volume import LPS_TO_RAS, Volume, world_bounds

ACCEPTED = ("a TotalSegmentator output folder, a multi-label .nii/.nii.gz with label names, "
            "or a DICOM SEG / RTSTRUCT file")
REQUIRED = ("liver", "spleen", "kidney_right", "kidney_left")  # a source needs at least one of these
PAIRED = ("kidney", "adrenal_gland")  # names without a side, split by :func:`split_sides`
SEG_MODALITY, RTSTRUCT_MODALITY = "SEG", "RTSTRUCT"

# SNOMED CT codes of the segmented property types (IMAGING.md §6) and of the laterality modifiers.
SCT_ORGAN: dict[str, str] = {
    "10200004": "liver", "78961009": "spleen", "64033007": "kidney", "89837001": "urinary_bladder",
    "15776009": "pancreas", "23451007": "adrenal_gland",
}
SCT_SIDE: dict[str, str] = {"24028007": "right", "7771000": "left"}

_SIDE_WORDS = {"right": ("right", "r", "rt"), "left": ("left", "l", "lt")}
_PAIRED_WORDS = {"kidney": ("kidney", "kidneys"),
                 "adrenal_gland": ("adrenal_gland", "adrenal_glands", "adrenal", "adrenals", "suprarenal_gland")}
_SINGLE_WORDS = {"liver": ("liver",), "spleen": ("spleen",), "urinary_bladder": ("urinary_bladder", "bladder"),
                 "pancreas": ("pancreas",)}


def _alias_table() -> dict[str, str]:
    """Normalised name → an :data:`ORGANS` name, or a :data:`PAIRED` name when no side is given."""
    table = {word: name for name, words in _SINGLE_WORDS.items() for word in words}
    for base, words in _PAIRED_WORDS.items():
        for word in words:
            table[word] = base
            for side, sides in _SIDE_WORDS.items():
                for s in sides:
                    table[f"{word}_{s}"] = table[f"{s}_{word}"] = f"{base}_{side}"
    return table


ALIASES: dict[str, str] = _alias_table()


def organ_name(name: str) -> str | None:
    """The :data:`ORGANS` name (or ``"kidney"`` / ``"adrenal_gland"`` without side) that ``name`` means.

    Case, spaces and punctuation are ignored ("Right Kidney", "kidney_r", "Urinary bladder");
    None for structures we do not use.
    """
    return ALIASES.get(re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"))


# --- public entry --------------------------------------------------------------------------------------


def read_organ_masks(path: str | Path, *, ct: Volume, label_names: str | Path | None = None) -> OrganMasks:
    """Read provided organ masks onto the grid of ``ct``.

    Args:
        path: TotalSegmentator folder, multi-label NIfTI, DICOM SEG or RTSTRUCT (file or folder).
        ct: the CT the masks belong to; the result is on its grid (world mm, RAS).
        label_names: JSON ``{code: name}`` for a multi-label NIfTI (overrides a sidecar or header names).

    Returns:
        :class:`OrganMasks` with uint8 ``labels`` ``ct.shape`` and ``source`` naming the file and format.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: organ masks not found; give {ACCEPTED}")
    with reading(path, what="these organ masks", accepted=ACCEPTED):
        kind, file = _detect(path)
        if label_names is not None and kind != "nifti":
            what = {"totalseg": "TotalSegmentator folder", SEG_MODALITY: "DICOM SEG"}.get(kind, kind)
            raise InputError(f"{label_names}: label names apply only to a multi-label NIfTI, but {path} is a "
                             f"{what}; leave the label names out")
        if kind == "totalseg":
            labels, what = _read_totalseg(path, ct), f"TotalSegmentator folder '{path.name}'"
        elif kind == "nifti":
            labels, what = _read_multilabel(file, ct, label_names)
        elif kind == SEG_MODALITY:
            labels, what = _read_seg(file, ct), f"DICOM SEG '{file.name}'"
        else:
            labels, what = _read_rtstruct(file, ct), f"RTSTRUCT '{file.name}'"
    return _finish(labels, ct, what, where=str(path))


def _finish(labels: np.ndarray, ct: Volume, what: str, *, where: str) -> OrganMasks:
    counts = np.bincount(labels.ravel(), minlength=len(ORGANS) + 1)
    present = tuple(name for code, name in ORGANS.items() if counts[code])
    if not set(present) & set(REQUIRED):
        found = ", ".join(present) or "no organ we use"
        raise InputError(f"{where}: none of liver, spleen, kidneys in these masks (found: {found}); "
                         "give masks that include them (e.g. TotalSegmentator's liver.nii.gz, spleen.nii.gz, "
                         "kidney_left/right.nii.gz) or leave --organs out to segment the CT")
    return OrganMasks(labels=labels, affine=np.asarray(ct.affine, dtype=np.float64).copy(),
                      source=f"{what} ({len(present)} organ{'s' if len(present) != 1 else ''})", present=present)


def _detect(path: Path) -> tuple[str, Path]:
    """``("totalseg" | "nifti" | "SEG" | "RTSTRUCT", file)`` for ``path``; InputError for anything else."""
    name = path.name.lower()
    if path.is_file():
        if name.endswith((".nii", ".nii.gz")):
            return "nifti", path
        return _dicom_kind(path), path
    if any(n.lower().endswith((".nii", ".nii.gz")) for n in os.listdir(path)):
        return "totalseg", path
    found = [(f, kind) for f in sorted(regular_files(path, str(path)))  # no FIFO, link or device; bounded
             if (kind := _dicom_kind(f, strict=False))]
    if len(found) != 1:
        what = "no .nii.gz masks and no DICOM SEG or RTSTRUCT" if not found else \
            f"{len(found)} DICOM SEG/RTSTRUCT files ({', '.join(f.name for f, _k in found[:4])})"
        raise InputError(f"{path}: {what} in this folder; give {ACCEPTED}")
    return found[0][1], found[0][0]


def _dicom_kind(file: Path, *, strict: bool = True) -> str:
    """"SEG" or "RTSTRUCT" for such a DICOM file; "" (or InputError when ``strict``) otherwise."""
    try:
        modality = str(pydicom.dcmread(file, stop_before_pixels=True).get("Modality", "")).upper()
    except Exception as exc:
        if strict:
            raise InputError(f"{file}: not a NIfTI or DICOM file ({type(exc).__name__}); give {ACCEPTED}") from exc
        return ""
    if modality in (SEG_MODALITY, RTSTRUCT_MODALITY):
        return modality
    if strict:
        raise InputError(f"{file}: a DICOM {modality or 'file'} is not an organ segmentation; give {ACCEPTED}")
    return ""


# --- painting on the CT grid ---------------------------------------------------------------------------


def _paint(labels: np.ndarray, name: str, mask: np.ndarray, affine: np.ndarray, where: str) -> None:
    """Add organ ``name``'s boolean ``mask`` (CT grid) to ``labels`` in place.

    A lower code wins where organs overlap (liver first, then the order of ORGANS), whatever the
    order of painting; a name without side is split into left and right first.
    """
    if name in PAIRED:
        for side_name, side_mask in split_sides(mask, affine, name=name, where=where):
            _paint(labels, side_name, side_mask, affine, where)
        return
    code = ORGAN_CODE[name]
    labels[mask & ((labels == 0) | (labels > code))] = code


def split_sides(mask: np.ndarray, affine: np.ndarray, *, name: str, where: str) -> list[tuple[str, np.ndarray]]:
    """Split a two-sided organ ("kidney", "adrenal_gland") into ``[(name_right, m), (name_left, m)]``.

    The two largest connected regions give the midline (mean of their centroids' world x, mm); every
    region goes to the side of the midline its centroid lies on. In RAS+, x increases towards the
    patient's *right*, so the right organ has the larger x.
    """
    regions, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count < 2:
        raise InputError(f"{where}: '{name}' has {count} connected region(s), so its left and right cannot be "
                         f"told apart; name the labels {name}_left and {name}_right")
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(mask, regions, index)
    centres = np.array(ndimage.center_of_mass(mask, regions, index))  # (count, 3) voxel indices
    world_x = centres @ np.asarray(affine, dtype=float)[0, :3] + affine[0, 3]
    midline = world_x[np.argsort(sizes)[-2:]].mean()
    right = index[world_x > midline]
    is_right = np.isin(regions, right)
    return [(f"{name}_right", is_right), (f"{name}_left", mask & ~is_right)]


def onto_ct_grid(data: np.ndarray, affine: np.ndarray, ct: Volume, *, where: str) -> np.ndarray:
    """Label array ``data`` ``(I', J', K')`` with ``affine`` (RAS mm) on the grid of ``ct`` (nearest neighbour).

    Returns ``ct.shape`` of ``data``'s dtype; ``data`` itself when the grids already match. InputError
    if the labelled voxels all fall outside the CT.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if data.shape == ct.shape and np.allclose(affine, ct.affine, atol=1e-3):
        return data
    low, high = world_bounds(affine, data.shape)
    ct_low, ct_high = world_bounds(ct.affine, ct.shape)
    if (np.minimum(high, ct_high) <= np.maximum(low, ct_low)).any():
        raise InputError(f"{where}: the masks do not overlap the CT (world box {_box(low, high)} mm vs the CT's "
                         f"{_box(ct_low, ct_high)} mm); give the masks made on this CT")
    # CT voxel index -> mask voxel index; scipy samples the labels as they are stored (no float copy of the
    # masks and no grid of coordinates the size of the CT, which MONAI's SpatialResample would hold)
    to_mask = np.linalg.inv(affine) @ np.asarray(ct.affine, dtype=np.float64)
    result = ndimage.affine_transform(data, to_mask[:3, :3], offset=to_mask[:3, 3], output_shape=tuple(ct.shape),
                                      order=0, mode="grid-constant", cval=0, output=data.dtype)
    if data.any() and not result.any():
        raise InputError(f"{where}: no labelled voxel of the masks lies inside the CT; give the masks made on this CT")
    return result


def _box(low: np.ndarray, high: np.ndarray) -> str:
    return " x ".join(f"{a:.0f}..{b:.0f}" for a, b in zip(low, high, strict=True))


# --- NIfTI ---------------------------------------------------------------------------------------------


def _label_array(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint16 labels ``(I, J, K)`` and RAS affine of a NIfTI; InputError if values are not labels."""
    read = read_nifti_data(path, how="nearest")  # a large map is read onto its working grid: labels stay labels
    low, high = read.value_range or (float(read.data.min()), float(read.data.max()))
    labels = read.data.astype(np.uint16) if np.isfinite(low) and 0 <= low <= high <= 65535 else None
    if labels is None or not np.array_equal(labels, read.data):  # fractions (probabilities) do not survive
        raise InputError(f"{path}: not a label map (values {low:.4g}..{high:.4g}, expected whole numbers "
                         "0 = background, 1.. = structures); give a segmentation, not an image or a probability map")
    return labels, read.affine


def _read_totalseg(folder: Path, ct: Volume) -> np.ndarray:
    """Labels on the CT grid from one ``<structure>.nii.gz`` per class (other classes ignored)."""
    labels = np.zeros(ct.shape, dtype=np.uint8)
    files = sorted(f for f in folder.iterdir()
                   if f.name.lower().endswith((".nii", ".nii.gz")) and f.is_file())  # a FIFO would block
    used = [(f, name) for f in files if (name := organ_name(re.sub(r"\.nii(\.gz)?$", "", f.name, flags=re.I)))]
    if not used:
        shown = ", ".join(f.name for f in files[:5]) + (", ..." if len(files) > 5 else "")
        raise InputError(f"{folder}: no liver/spleen/kidney... mask among its NIfTI files ({shown}); give "
                         "TotalSegmentator's output folder (liver.nii.gz, spleen.nii.gz, ...) or, for one "
                         "multi-label file, the file itself")
    for file, name in used:
        data, affine = _label_array(file)
        if data.max() > 1 and not ((data == 0) | (data == data.max())).all():
            raise InputError(f"{file}: holds several labels, but a TotalSegmentator folder has one 0/1 mask per "
                             "file; give a multi-label file on its own, with its label names")
        _paint(labels, name, onto_ct_grid(data, affine, ct, where=str(file)) > 0, ct.affine, str(file))
    return labels


def _read_multilabel(file: Path, ct: Volume, label_names: str | Path | None) -> tuple[np.ndarray, str]:
    data, affine = _label_array(file)  # first: a CT given by mistake is "not a label map", not "unnamed"
    names, origin = _label_names(file, label_names)
    wanted = {code: organ for code, name in names.items() if (organ := organ_name(name))}
    if not wanted:
        raise InputError(f"{file}: none of its label names ({_first(names.values())}, from {origin}) is an organ we "
                         f"use ({', '.join(ORGANS.values())}); check the label names")
    on_ct = onto_ct_grid(data, affine, ct, where=str(file))
    labels = np.zeros(ct.shape, dtype=np.uint8)
    for code, organ in wanted.items():
        _paint(labels, organ, on_ct == code, ct.affine, str(file))
    return labels, f"multi-label NIfTI '{file.name}', names from {origin}"


def _first(values: Iterable[str], n: int = 6) -> str:
    items = list(values)
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _label_names(file: Path, label_names: str | Path | None) -> tuple[dict[int, str], str]:
    """``({code: name}, where the names came from)``: the given JSON, the sidecar, or the header."""
    if label_names is not None:
        return _names_json(Path(label_names)), f"'{Path(label_names).name}'"
    sidecar = file.with_name(re.sub(r"\.nii(\.gz)?$", "", file.name, flags=re.I) + ".json")
    if sidecar.is_file():
        return _names_json(sidecar), f"'{sidecar.name}'"
    header = names_from_header(nib.load(str(file)).header)
    if header:
        return header, "its header (TotalSegmentator --ml)"
    raise InputError(f"{file}: a multi-label NIfTI without label names; put them beside it as {sidecar.name} "
                     '({"1": "liver", "2": "spleen", ...}) or give them as a JSON file of label names')


def _names_json(path: Path) -> dict[int, str]:
    """``{code: name}`` from a JSON object ``{"1": "liver", ...}`` (or ``{"liver": 1, ...}``)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and raw and all(isinstance(v, int) for v in raw.values()):
            raw = {str(v): k for k, v in raw.items()}  # {name: code} is the other common spelling
        names = {int(k): str(v) for k, v in raw.items()}
    except FileNotFoundError as exc:
        raise InputError(f"{path}: label-name file not found; give a JSON file {{\"1\": \"liver\", ...}}") from exc
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a JSON object of label names ({type(exc).__name__}); write it as "
                         '{"1": "liver", "2": "spleen", ...}') from exc
    return names


def names_from_header(header: nib.nifti1.Nifti1Header | nib.filebasedimages.FileBasedHeader) -> dict[int, str]:
    """``{code: name}`` from a label table in the header extensions, as TotalSegmentator ``--ml`` writes it.

    TotalSegmentator (``nifti_ext_header.add_label_map_to_nifti``) stores a CIFTI/Caret XML document,
    ``<CaretExtension>...<LabelTable><Label Key="5" ...><![CDATA[liver]]></Label>...``, as an
    extension with code 0. Empty when there is none.
    """
    for ext in getattr(header, "extensions", []):
        text = ext.get_content()
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        text = text.strip("\x00 \n\r\t")  # nibabel pads extensions to 16 bytes with NULs
        if "LabelTable" not in text:
            continue
        root = ET.fromstring(text)
        return {int(label.attrib["Key"]): (label.text or "").strip() for label in root.iter("Label")}
    return {}


def label_names_extension(names: dict[int, str]) -> nib.nifti1.Nifti1Extension:
    """A NIfTI header extension holding ``names`` in TotalSegmentator's ``--ml`` format (see above)."""
    body = "".join(f'<Label Key="{code}" Red="1" Green="0" Blue="0" Alpha="1"><![CDATA[{name}]]></Label>\n'
                   for code, name in names.items())
    xml = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension> <VolumeInformation Index="0"> <LabelTable>\n'
           f"{body}</LabelTable> <VolumeType><![CDATA[Label]]></VolumeType> </VolumeInformation></CaretExtension>\n")
    return nib.nifti1.Nifti1Extension(0, xml.encode("utf-8"))


# --- DICOM SEG -----------------------------------------------------------------------------------------


def seg_volume(seg: hd.seg.Segmentation, numbers: list[int], *, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Segments ``numbers`` of ``seg`` as bool ``(I, J, K, S)`` (our axis order) and their RAS affine (mm)."""
    try:
        volume = seg.get_volume(segment_numbers=numbers, combine_segments=False, dtype=np.float32)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{where}: the DICOM SEG frames do not form a regular 3D volume ({exc}); "
                         "export the segmentation of one CT series again") from exc
    array = np.asarray(volume.array)
    if array.ndim == 3:
        array = array[..., None]
    # highdicom indexes (slice, row, column) -> LPS; we index (column, row, slice) -> RAS.
    affine = LPS_TO_RAS @ np.asarray(volume.affine, dtype=np.float64)[:, [2, 1, 0, 3]]
    return array.transpose(2, 1, 0, 3) > 0.5, affine  # FRACTIONAL segments: at least half the voxel


def segment_organ(item: Dataset) -> str | None:
    """Organ (or side-less paired organ) of one SegmentSequence item: its label, else its SNOMED codes."""
    by_label = organ_name(str(item.get("SegmentLabel", "")))
    by_code = None
    for prop in item.get("SegmentedPropertyTypeCodeSequence", []):
        base = SCT_ORGAN.get(str(prop.get("CodeValue", "")))
        sides = [SCT_SIDE.get(str(m.get("CodeValue", ""))) for m in
                 prop.get("SegmentedPropertyTypeModifierCodeSequence", [])]
        side = next((s for s in sides if s), None)
        by_code = f"{base}_{side}" if base in PAIRED and side else base
    if by_label in ORGAN_CODE or by_code in ORGAN_CODE:  # a side from either source beats none
        return by_label if by_label in ORGAN_CODE else by_code
    return by_label or by_code


def _read_seg(file: Path, ct: Volume) -> np.ndarray:
    seg = hd.seg.segread(file)
    wanted = {int(item.SegmentNumber): organ for item in seg.SegmentSequence if (organ := segment_organ(item))}
    if not wanted:
        shown = _first(str(item.get("SegmentLabel", "?")) for item in seg.SegmentSequence)
        raise InputError(f"{file}: none of its segments ({shown}) is liver, spleen, kidney...; give a SEG of "
                         "the organs (label or SNOMED code of each segment) or leave --organs out")
    masks, affine = seg_volume(seg, list(wanted), where=str(file))
    labels = np.zeros(ct.shape, dtype=np.uint8)
    for s, organ in enumerate(wanted.values()):
        on_ct = onto_ct_grid(masks[..., s].astype(np.uint8), affine, ct, where=str(file))
        _paint(labels, organ, on_ct > 0, ct.affine, str(file))
    return labels


# --- RTSTRUCT ------------------------------------------------------------------------------------------


def read_rtstruct_rois(file: str | Path, *, affine: np.ndarray, shape: tuple[int, int, int],
                       names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """ROIs of an RTSTRUCT rasterised onto a grid: ``{roi name: bool (I, J, K)}``.

    Contours (world LPS mm) are filled per slice with ``skimage.draw.polygon`` (voxel centres inside);
    contours of one ROI on one slice are combined by exclusive or, so an inner contour is a hole.
    ``names``: ROI names to rasterise (default all).
    """
    file = Path(file)
    ds = pydicom.dcmread(file)
    roi_names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    keep = set(names) if names is not None else set(roi_names.values())
    out: dict[str, np.ndarray] = {}
    for roi in ds.get("ROIContourSequence", []):
        name = roi_names.get(int(roi.ReferencedROINumber), "")
        if name in keep:
            mask = out.setdefault(name, np.zeros(shape, dtype=bool))
            for contour in roi.get("ContourSequence", []):
                _fill_contour(mask, contour, np.linalg.inv(affine), where=str(file))
    return out


def _fill_contour(mask: np.ndarray, contour: Dataset, to_voxel: np.ndarray, *, where: str) -> None:
    if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper() != "CLOSED_PLANAR":
        return  # points and open lines enclose no volume
    lps = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
    world = np.c_[lps, np.ones(len(lps))] @ LPS_TO_RAS.T
    ijk = (world @ to_voxel.T)[:, :3]
    axis = int(np.argmin(np.ptp(ijk, axis=0)))  # the voxel axis across the contour's plane
    if np.ptp(ijk[:, axis]) > 0.5:
        raise InputError(f"{where}: its contours are not parallel to the image slices; draw them on this CT "
                         "or export the structures as a DICOM SEG or NIfTI")
    index = int(round(float(ijk[:, axis].mean())))
    if not 0 <= index < mask.shape[axis]:
        return  # slice outside the image
    plane = [a for a in range(3) if a != axis]
    rows, cols = polygon(ijk[:, plane[0]], ijk[:, plane[1]], (mask.shape[plane[0]], mask.shape[plane[1]]))
    filled = np.zeros((mask.shape[plane[0]], mask.shape[plane[1]]), dtype=bool)
    filled[rows, cols] = True
    where_slice: list[slice | int] = [slice(None)] * 3
    where_slice[axis] = index
    mask[tuple(where_slice)] ^= filled


def _read_rtstruct(file: Path, ct: Volume) -> np.ndarray:
    ds = pydicom.dcmread(file, stop_before_pixels=True)
    all_names = [str(r.ROIName) for r in ds.get("StructureSetROISequence", [])]
    wanted = {name: organ for name in all_names if (organ := organ_name(name))}
    if not wanted:
        raise InputError(f"{file}: none of its ROIs ({_first(all_names) or 'none'}) is liver, spleen, kidney...; "
                         "give an RTSTRUCT of the organs (ROI names such as 'Liver', 'Kidney_R') or leave --organs out")
    rois = read_rtstruct_rois(file, affine=ct.affine, shape=ct.shape, names=wanted)
    if not any(mask.any() for mask in rois.values()):
        raise InputError(f"{file}: no organ contour lies inside the CT; give the structures drawn on this CT")
    labels = np.zeros(ct.shape, dtype=np.uint8)
    for name, mask in rois.items():
        _paint(labels, wanted[name], mask, ct.affine, str(file))
    return labels
