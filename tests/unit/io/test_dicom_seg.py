"""DICOM SEG of lesions and organs (pfs_core.io.dicom_seg): a tiny series written by pydicom, then real data."""

from __future__ import annotations

import zipfile
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pfs_core.errors import InputError
from pfs_core.io import load_ct
from pfs_core.io.dicom_seg import read_dicom_seg_lesions, write_dicom_seg
from pfs_core.io.organ_files import read_organ_masks
from pfs_core.io.organs import ORGAN_CODE, OrganMasks

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real scans not present at {REAL}")
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"
SHAPE = (16, 12, 10)  # I = columns, J = rows, K = slices: not square, so a transposed frame would show
STATUS = {1: "SSTR-positive", 2: "SSTR-negative"}


def _write_ct(folder: Path, shape=SHAPE, spacing=(2.0, 2.5, 3.0), origin=(-10.0, 20.0, -50.0)) -> Path:
    """An axial CT series, ``volume[i, j, k]`` at LPS ``origin + (i dx, j dy, k dz)``; files in reverse slice order."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT_CLASS, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_CLASS, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName, ds.StudyID, ds.SeriesNumber = "CT", "P1", "Test^P", "1", 2
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "20240102", "110200", "", ""
        ds.PatientBirthDate, ds.PatientSex, ds.InstanceNumber = "", "O", k + 1
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + spacing[2] * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [spacing[1], spacing[0]], spacing[2]
        ds.Rows, ds.Columns = shape[1], shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
        pixels = np.full((shape[1], shape[0]), 1024 + 40, np.int16)  # 40 HU
        pixels[0, :] = 24  # -1000 HU: a CT has air
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"{shape[2] - k:04d}.dcm", enforce_file_format=True)
    return folder


def _organs(ct, shape=SHAPE) -> OrganMasks:
    labels = np.zeros(shape, np.uint8)
    labels[0:7, 0:5, 1:6] = ORGAN_CODE["liver"]
    labels[9:14, 6:11, 2:8] = ORGAN_CODE["spleen"]
    labels[1:4, 8:11, 4:7] = ORGAN_CODE["kidney_left"]
    return OrganMasks(labels=labels, affine=ct.affine, source="test", present=("liver", "spleen", "kidney_left"))


def _lesions(shape=SHAPE) -> np.ndarray:
    labels = np.zeros(shape, np.uint16)
    labels[2:4, 1:2, 2:4] = 1  # inside the liver: segments overlap
    labels[12, 1, 8] = 2  # a one-voxel lesion on a slice without organs, at an asymmetric spot
    return labels


def test_seg_round_trip_gives_identical_organs_and_lesions(tmp_path):
    folder = _write_ct(tmp_path / "ct")
    ct = load_ct(folder)
    organs, lesions = _organs(ct), _lesions()
    out = write_dicom_seg(folder, lesion_labels=lesions, lesion_status=STATUS, organs=organs,
                          out_path=tmp_path / "out" / "seg.dcm")
    assert out == tmp_path / "out" / "seg.dcm"
    back = read_organ_masks(out, ct=ct)
    np.testing.assert_array_equal(back.labels, organs.labels)
    assert back.present == ("liver", "spleen", "kidney_left") and back.source == "DICOM SEG 'seg.dcm' (3 organs)"
    labels, status = read_dicom_seg_lesions(out, ct=ct)
    np.testing.assert_array_equal(labels, lesions)
    assert status == STATUS


def test_seg_segments_codes_and_frame_geometry(tmp_path):
    folder = _write_ct(tmp_path / "ct")
    ct = load_ct(folder)
    out = write_dicom_seg(folder, lesion_labels=_lesions(), lesion_status=STATUS, organs=_organs(ct),
                          out_path=tmp_path / "seg.dcm")
    seg = hd.seg.segread(out)
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    items = list(seg.SegmentSequence)
    assert [i.SegmentLabel for i in items] == ["liver", "spleen", "kidney_left", "lesion 1 SSTR-positive",
                                               "lesion 2 SSTR-negative"]
    assert {i.SegmentAlgorithmType for i in items} == {"AUTOMATIC"}
    assert {i.SegmentAlgorithmName for i in items} == {"pfs_core measure"}
    kidney = items[2].SegmentedPropertyTypeCodeSequence[0]
    assert kidney.CodeValue == "64033007" and kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"
    assert items[0].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
    assert items[3].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert items[3].SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    # Independent of our reader: the SEG frame holding lesion 2 references the CT file of slice k = 8,
    # sits at that slice's position, and is lit at (row j = 1, column i = 12).
    slice8 = next(pydicom.dcmread(f) for f in folder.iterdir()
                  if np.isclose(float(pydicom.dcmread(f).ImagePositionPatient[2]), -50.0 + 3.0 * 8))
    frames = [(n, f) for n, f in enumerate(seg.PerFrameFunctionalGroupsSequence)
              if f.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 5]
    assert len(frames) == 1
    number, frame = frames[0]
    assert frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID == slice8.SOPInstanceUID
    np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                               [float(v) for v in slice8.ImagePositionPatient])
    pixels = seg.pixel_array[number]
    assert pixels.shape == (12, 16) and np.argwhere(pixels).tolist() == [[1, 12]]


def test_seg_from_a_zip_and_without_organs(tmp_path):
    folder = _write_ct(tmp_path / "ct")
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for file in folder.iterdir():
            handle.write(file, file.name)
    ct = load_ct(archive)
    out = write_dicom_seg(archive, lesion_labels=_lesions(), lesion_status={1: "SSTR-positive"}, organs=None,
                          out_path=tmp_path / "seg.dcm")
    labels, status = read_dicom_seg_lesions(out, ct=ct)
    np.testing.assert_array_equal(labels, _lesions())
    assert status == {1: "SSTR-positive", 2: ""}  # a lesion without status keeps the bare label "lesion 2"
    with pytest.raises(InputError, match=r"seg\.dcm: none of its segments \(lesion 1 SSTR-positive, lesion 2\)"):
        read_organ_masks(out, ct=ct)


def test_seg_errors_name_the_input_and_the_fix(tmp_path):
    folder = _write_ct(tmp_path / "ct")
    ct = load_ct(folder)
    nifti = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct.data, ct.affine), nifti)
    kwargs = {"lesion_status": STATUS, "out_path": tmp_path / "seg.dcm"}
    with pytest.raises(InputError, match=r"ct\.nii\.gz: the CT is not a DICOM series, so no DICOM SEG .*DICOM folder"):
        write_dicom_seg(nifti, lesion_labels=_lesions(), organs=None, **kwargs)
    with pytest.raises(InputError, match=r"ct: the lesion labels \(12x16x10\) are not on this CT series' grid \(16x12x10\)"):
        write_dicom_seg(folder, lesion_labels=np.zeros((12, 16, 10), np.uint16), organs=None, **kwargs)
    with pytest.raises(InputError, match=r"ct: no lesion and no organ to write"):
        write_dicom_seg(folder, lesion_labels=np.zeros(SHAPE, np.uint16), organs=None, **kwargs)
    with pytest.raises(InputError, match=r"missing: CT DICOM series not found"):
        write_dicom_seg(tmp_path / "missing", lesion_labels=_lesions(), organs=None, **kwargs)


@pytest.mark.slow
@pytest.mark.real_data
@needs_real
def test_real_ct_series_seg_round_trip(tmp_path):
    folder = REAL / "totalseg_ct" / "ct_dicom_20_slices"  # anonymised: blank SOP/study/series UIDs
    ct = load_ct(folder)
    labels = np.zeros(ct.shape, np.uint8)
    labels[100:200, 150:300, 3:15] = ORGAN_CODE["liver"]
    labels[330:380, 200:260, 5:12] = ORGAN_CODE["spleen"]
    labels[120:160, 320:360, 2:10] = ORGAN_CODE["kidney_right"]
    labels[360:400, 320:360, 2:10] = ORGAN_CODE["kidney_left"]
    organs = OrganMasks(labels=labels, affine=ct.affine, source="test",
                        present=("liver", "spleen", "kidney_right", "kidney_left"))
    lesions = np.zeros(ct.shape, np.uint16)
    lesions[120:130, 160:170, 5:8], lesions[300:310, 100:105, 14:16] = 1, 2
    out = write_dicom_seg(folder, lesion_labels=lesions, lesion_status=STATUS, organs=organs,
                          out_path=tmp_path / "seg.dcm")
    back = read_organ_masks(out, ct=ct)
    np.testing.assert_array_equal(back.labels, labels)
    assert back.source == "DICOM SEG 'seg.dcm' (4 organs)"
    got, status = read_dicom_seg_lesions(out, ct=ct)
    np.testing.assert_array_equal(got, lesions)
    assert status == STATUS
