"""Files of one measurement: ``lesions.csv``, ``measurements.json``, label maps and a DICOM SEG."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np

from pfs_core.io.dicom_seg import write_dicom_seg
from pfs_core.io.organ_files import label_names_extension
from pfs_core.io.organs import ORGANS
from pfs_core.io.outputs import atomic_write, atomic_write_text, write_csv
from pfs_core.measure.case import Measurement

DISCLAIMER = ("Research use only; not a medical device. Lesions are delineated automatically: check every "
              "outline before using a figure.")


def _label_image(data: np.ndarray, affine: np.ndarray, description: str) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = description.encode()[:79]
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def write_measurement(m: Measurement, out: Path, *, ct_dicom: Path | None = None) -> list[Path]:
    """Write the measurement's files into the folder ``out``; a DICOM SEG too when ``ct_dicom`` is given.

    ``lesions.nii.gz`` (uint16 lesion ids of ``lesions.csv``) and ``organs.nii.gz`` (uint8
    :data:`~pfs_core.io.organs.ORGANS` codes, names in the header as TotalSegmentator ``--ml`` writes
    them) lie on the CT grid. Returns the paths written.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "lesions.csv", out / "measurements.json", out / "lesions.nii.gz", out / "organs.nii.gz"]
    write_csv(m.lesions, written[0])
    summary = {"disclaimer": DISCLAIMER, **m.to_dict()}
    atomic_write_text(written[1], json.dumps(summary, indent=2, allow_nan=False, default=_jsonable) + "\n")
    lesions = _label_image(m.lesion_labels.astype(np.uint16), m.organs.affine, "pfs_core measure lesions")
    organs = _label_image(m.organs.labels.astype(np.uint8), m.organs.affine, "pfs_core measure organs")
    organs.header.extensions.append(label_names_extension(ORGANS))
    for image, path in ((lesions, written[2]), (organs, written[3])):
        atomic_write(path, partial(nib.save, image))
    if ct_dicom is not None:
        status = dict(zip(m.lesions["lesion_id"].astype(int), m.lesions["sstr_status"], strict=True))
        seg = out / "lesions_organs_seg.dcm"
        atomic_write(seg, lambda tmp: write_dicom_seg(ct_dicom, lesion_labels=m.lesion_labels, lesion_status=status,
                                                      organs=m.organs, out_path=tmp))
        written.append(seg)
    return written


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
