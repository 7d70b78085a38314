"""Provided organ masks (pfs_core.io.organ_files): tiny hand-built volumes with exact answers, then real data."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pfs_core.errors import InputError
from pfs_core.io import Volume
from pfs_core.io.organ_files import label_names_extension, names_from_header, organ_name, read_organ_masks
from pfs_core.io.organs import ORGAN_CODE

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real scans not present at {REAL}")

SHAPE = (16, 12, 10)
RAS = np.diag([2.0, 2.0, 2.0, 1.0])  # voxel (i, j, k) -> world (2i, 2j, 2k) mm: +i is the patient's right
LIVER, SPLEEN, KR, KL = ORGAN_CODE["liver"], ORGAN_CODE["spleen"], ORGAN_CODE["kidney_right"], ORGAN_CODE["kidney_left"]


def _ct(affine: np.ndarray = RAS, shape=SHAPE) -> Volume:
    return Volume(data=np.zeros(shape, np.float32), affine=affine, source="ct.nii.gz", modality="CT", units="HU")


def _save(path: Path, data: np.ndarray, affine: np.ndarray = RAS, extension=None) -> Path:
    image = nib.Nifti1Image(data, affine)
    if extension is not None:
        image.header.extensions.append(extension)
    nib.save(image, path)
    return path


def _box(*slices) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[slices] = 1
    return mask


def _multilabel() -> np.ndarray:
    """1 liver, 2 right kidney, 3 left kidney, 7 colon (not ours), 9 spleen."""
    data = np.zeros(SHAPE, dtype=np.uint8)
    data[0:5, 0:6, 0:5] = 1
    data[12:16, 0:4, 0:4] = 2
    data[0:4, 8:12, 0:4] = 3
    data[6:9, 6:9, 6:9] = 7
    data[10:16, 8:12, 6:10] = 9
    return data


def _expected_multilabel() -> np.ndarray:
    data = _multilabel()
    expected = np.zeros(SHAPE, dtype=np.uint8)
    for code, ours in {1: LIVER, 2: KR, 3: KL, 9: SPLEEN}.items():
        expected[data == code] = ours
    return expected


@pytest.mark.parametrize(("name", "organ"), [
    ("liver", "liver"), ("Liver", "liver"), ("kidney_r", "kidney_right"), ("Right Kidney", "kidney_right"),
    ("kidney_left", "kidney_left"), ("L kidney", "kidney_left"), ("urinary bladder", "urinary_bladder"),
    ("Bladder", "urinary_bladder"), ("adrenal_gland_r", "adrenal_gland_right"), ("Left adrenal", "adrenal_gland_left"),
    ("kidney", "kidney"), ("Kidneys", "kidney"), ("adrenal glands", "adrenal_gland"),
    ("gallbladder", None), ("colon", None), ("liver_vessels", None),
])
def test_names_are_matched_case_insensitively_with_aliases(name, organ):
    assert organ_name(name) == organ


def test_totalsegmentator_folder_gives_exact_labels_and_liver_wins_overlaps(tmp_path):
    segs = tmp_path / "segs"
    segs.mkdir()
    liver = _box(slice(0, 8), slice(0, 6), slice(0, 5))
    spleen = _box(slice(6, 12), slice(4, 10), slice(0, 5))  # overlaps the liver at [6:8, 4:6, 0:5]
    kidney_r, kidney_l = _box(slice(12, 16), slice(0, 3), slice(6, 9)), _box(slice(0, 3), slice(9, 12), slice(6, 9))
    _save(segs / "liver.nii.gz", liver.astype(np.float64))  # TotalSegmentator writes 0/1 float or uint8
    _save(segs / "spleen.nii.gz", spleen)
    _save(segs / "kidney_right.nii.gz", kidney_r)
    _save(segs / "kidney_left.nii.gz", kidney_l)
    _save(segs / "colon.nii.gz", np.ones(SHAPE, np.uint8))  # a class we do not use: ignored
    masks = read_organ_masks(segs, ct=_ct())
    expected = np.zeros(SHAPE, np.uint8)
    expected[spleen > 0] = SPLEEN
    expected[liver > 0] = LIVER
    expected[kidney_r > 0], expected[kidney_l > 0] = KR, KL
    np.testing.assert_array_equal(masks.labels, expected)
    assert masks.labels.dtype == np.uint8 and masks.labels.shape == SHAPE
    np.testing.assert_array_equal(masks.affine, RAS)
    assert masks.present == ("liver", "spleen", "kidney_right", "kidney_left")
    assert masks.source == "TotalSegmentator folder 'segs' (4 organs)"


def test_multilabel_nifti_with_sidecar_names(tmp_path):
    file = _save(tmp_path / "organs.nii.gz", _multilabel())
    (tmp_path / "organs.json").write_text(json.dumps({"1": "Liver", "2": "right kidney", "3": "Kidney_L",
                                                      "7": "colon", "9": "SPLEEN"}))
    masks = read_organ_masks(file, ct=_ct())
    np.testing.assert_array_equal(masks.labels, _expected_multilabel())
    assert masks.source == "multi-label NIfTI 'organs.nii.gz', names from 'organs.json' (4 organs)"


def test_label_names_argument_wins_over_the_sidecar_and_may_be_name_to_code(tmp_path):
    file = _save(tmp_path / "seg.nii", _multilabel())
    (tmp_path / "seg.json").write_text(json.dumps({"1": "spleen"}))  # would be wrong
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"liver": 1, "kidney_right": 2, "kidney_left": 3, "spleen": 9}))
    masks = read_organ_masks(file, ct=_ct(), label_names=names)
    np.testing.assert_array_equal(masks.labels, _expected_multilabel())
    assert "names from 'names.json'" in masks.source


def test_totalsegmentator_ml_header_names_are_read(tmp_path):
    # The exact XML TotalSegmentator's add_label_map_to_nifti writes (with its --ml codes, IMAGING.md §5).
    names = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 21: "urinary_bladder"}
    body = "".join(f'<Label Key="{k}" Red="1.0" Green="0.0" Blue="0.0" Alpha="1"><![CDATA[{v}]]></Label>\n'
                   for k, v in names.items())
    xml = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension>  <Date><![CDATA[2013-07-14T05:45:09]]></Date>'
           '   <VolumeInformation Index="0">   <LabelTable>' + "\n" + body + "\n"
           "  </LabelTable>  <StudyMetaDataLinkSet>  </StudyMetaDataLinkSet>  <VolumeType><![CDATA[Label]]>"
           "</VolumeType>   </VolumeInformation></CaretExtension>\n              ")
    data = np.zeros(SHAPE, np.uint8)
    data[0:6, 0:6, 0:6], data[10:16, 0:4, 0:4], data[0:4, 8:12, 0:4], data[10:16, 8:12, 6:10] = 5, 2, 3, 1
    file = _save(tmp_path / "total.nii.gz", data, extension=nib.nifti1.Nifti1Extension(0, xml.encode()))
    assert names_from_header(nib.load(file).header) == names
    masks = read_organ_masks(file, ct=_ct())
    assert masks.present == ("liver", "spleen", "kidney_right", "kidney_left")
    assert int((masks.labels == LIVER).sum()) == 216 and int((masks.labels == SPLEEN).sum()) == 96
    assert masks.source.endswith("names from its header (TotalSegmentator --ml) (4 organs)")


def test_our_header_extension_round_trips(tmp_path):
    names = {1: "liver", 4: "kidney_left"}
    file = _save(tmp_path / "x.nii.gz", np.zeros(SHAPE, np.uint8), extension=label_names_extension(names))
    assert names_from_header(nib.load(file).header) == names


@pytest.mark.parametrize(("affine", "right_at_high_i"), [(RAS, True), (np.diag([-2.0, -2.0, 2.0, 1.0]), False)])
def test_side_less_kidney_and_adrenal_are_split_by_world_x(tmp_path, affine, right_at_high_i):
    data = np.zeros(SHAPE, np.uint8)
    data[0:3, 0:3, 0:4], data[12:16, 0:3, 0:4] = 1, 1  # "kidney": two regions, low and high i
    data[13, 5, 5] = 1  # a stray voxel on the high-i side goes with that side's kidney
    data[2, 6:8, 6:8], data[13, 6:8, 6:8] = 2, 2  # "adrenal"
    data[6:10, 0:4, 0:4] = 3  # liver in between
    file = _save(tmp_path / "m.nii.gz", data, affine)
    (tmp_path / "m.json").write_text(json.dumps({"1": "kidney", "2": "adrenal", "3": "liver"}))
    masks = read_organ_masks(file, ct=_ct(affine))
    high, low = ("right", "left") if right_at_high_i else ("left", "right")
    assert (masks.labels[12:16, 0:3, 0:4] == ORGAN_CODE[f"kidney_{high}"]).all()
    assert masks.labels[13, 5, 5] == ORGAN_CODE[f"kidney_{high}"]
    assert (masks.labels[0:3, 0:3, 0:4] == ORGAN_CODE[f"kidney_{low}"]).all()
    assert (masks.labels[13, 6:8, 6:8] == ORGAN_CODE[f"adrenal_gland_{high}"]).all()
    assert (masks.labels[2, 6:8, 6:8] == ORGAN_CODE[f"adrenal_gland_{low}"]).all()


def test_a_single_region_named_kidney_is_refused(tmp_path):
    data = np.zeros(SHAPE, np.uint8)
    data[0:3, 0:3, 0:4] = 1
    file = _save(tmp_path / "one.nii.gz", data)
    (tmp_path / "one.json").write_text(json.dumps({"1": "kidney"}))
    with pytest.raises(InputError, match=r"one\.nii\.gz: 'kidney' has 1 connected region.*kidney_left and kidney_right"):
        read_organ_masks(file, ct=_ct())


def test_mask_on_a_coarser_grid_is_resampled_by_nearest_neighbour(tmp_path):
    coarse = np.zeros((8, 8, 8), np.uint8)  # at least 8 voxels per axis, as for any image
    coarse[1:4, 1:3, 0:2], coarse[5:8, 3:6, 2:5] = 1, 9
    coarse_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    coarse_affine[:3, 3] = 1.0  # coarse voxel c covers fine voxels 2c, 2c+1 (centres 4c, 4c+2 mm)
    file = _save(tmp_path / "coarse.nii.gz", coarse, coarse_affine)
    (tmp_path / "coarse.json").write_text(json.dumps({"1": "liver", "9": "spleen"}))
    masks = read_organ_masks(file, ct=_ct(shape=(16, 16, 16)))
    fine = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    expected = np.where(fine == 1, LIVER, np.where(fine == 9, SPLEEN, 0)).astype(np.uint8)
    np.testing.assert_array_equal(masks.labels, expected)


def test_rtstruct_contours_are_filled_per_slice_with_holes(tmp_path):
    ct = _ct(np.diag([-2.0, -2.0, 2.0, 1.0]))  # an LPS-stored CT: world LPS (x, y) = (2i, 2j)
    square = lambda lo, hi, z: [v for x, y in ((lo, lo), (hi, lo), (hi, hi), (lo, hi)) for v in (x, y, z)]  # noqa: E731
    contours = [square(1.0, 17.0, 4.0), square(5.0, 9.0, 4.0), square(1.0, 17.0, 6.0)]  # outer, hole, next slice
    file = _write_rtstruct(tmp_path / "rs.dcm", {"Liver": contours, "GTV": [square(1.0, 3.0, 8.0)]})
    masks = read_organ_masks(file, ct=ct)
    expected = np.zeros(SHAPE, bool)
    expected[1:9, 1:9, 2:4] = True  # voxel centres 2..16 mm inside 1..17 mm, slices z = 4, 6 mm
    expected[3:5, 3:5, 2] = False  # centres 6, 8 mm inside the hole 5..9 mm
    np.testing.assert_array_equal(masks.labels == LIVER, expected)
    assert masks.present == ("liver",) and masks.source == "RTSTRUCT 'rs.dcm' (1 organ)"
    assert read_organ_masks(tmp_path, ct=ct).source == masks.source  # a folder holding the file


def _write_rtstruct(path: Path, rois: dict[str, list[list[float]]]) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.Modality = meta, "RTSTRUCT"
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StructureSetROISequence, ds.ROIContourSequence = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = number, []
        for points in contours:
            contour = Dataset()
            contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(points) // 3
            contour.ContourData = points
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_errors_name_the_file_and_the_fix(tmp_path):
    ct = _ct()
    with pytest.raises(InputError, match=r"nowhere: organ masks not found; give a TotalSegmentator"):
        read_organ_masks(tmp_path / "nowhere", ct=ct)
    prob = _save(tmp_path / "prob.nii.gz", np.full(SHAPE, 0.37, np.float32))
    (tmp_path / "prob.json").write_text(json.dumps({"1": "liver"}))
    with pytest.raises(InputError, match=r"prob\.nii\.gz: not a label map .*probability map"):
        read_organ_masks(prob, ct=ct)
    ct_like = _save(tmp_path / "ct_like.nii.gz", np.full(SHAPE, -1000, np.int16))
    with pytest.raises(InputError, match=r"ct_like\.nii\.gz: not a label map"):
        read_organ_masks(ct_like, ct=ct)
    unnamed = _save(tmp_path / "unnamed.nii.gz", _multilabel())
    with pytest.raises(InputError, match=r"unnamed\.nii\.gz: a multi-label NIfTI without label names; .*unnamed\.json"):
        read_organ_masks(unnamed, ct=ct)
    far = np.eye(4) * 2.0
    far[3, 3], far[:3, 3] = 1.0, [500.0, 0.0, 0.0]
    away = _save(tmp_path / "away.nii.gz", _multilabel(), far)
    (tmp_path / "away.json").write_text(json.dumps({"1": "liver"}))
    with pytest.raises(InputError, match=r"away\.nii\.gz: the masks do not overlap the CT .*made on this CT"):
        read_organ_masks(away, ct=ct)


def test_sources_without_liver_spleen_or_kidneys_are_refused(tmp_path):
    segs = tmp_path / "segs"
    segs.mkdir()
    _save(segs / "pancreas.nii.gz", _box(slice(0, 4), slice(0, 4), slice(0, 4)))
    with pytest.raises(InputError, match=r"segs: none of liver, spleen, kidneys in these masks \(found: pancreas\)"):
        read_organ_masks(segs, ct=_ct())
    empty = tmp_path / "empty"
    empty.mkdir()
    _save(empty / "colon.nii.gz", np.ones(SHAPE, np.uint8))
    with pytest.raises(InputError, match=r"empty: no liver/spleen/kidney... mask among its NIfTI files \(colon"):
        read_organ_masks(empty, ct=_ct())
    (tmp_path / "notes.txt").write_text("liver")
    with pytest.raises(InputError, match=r"notes\.txt: not a NIfTI or DICOM file"):
        read_organ_masks(tmp_path / "notes.txt", ct=_ct())
    with pytest.raises(InputError, match=r"label names apply only to a multi-label NIfTI, but .*segs is a "
                                         r"TotalSegmentator folder; leave the label names out"):
        read_organ_masks(segs, ct=_ct(), label_names=tmp_path / "notes.txt")


def test_a_multi_label_file_in_a_totalsegmentator_folder_is_refused(tmp_path):
    segs = tmp_path / "segs"
    segs.mkdir()
    _save(segs / "liver.nii.gz", _multilabel())
    with pytest.raises(InputError, match=r"liver\.nii\.gz: holds several labels"):
        read_organ_masks(segs, ct=_ct())


# --- real data -----------------------------------------------------------------------------------------


@pytest.mark.real_data
@needs_real
def test_real_totalsegmentator_folder_volumes_and_sides():
    from pfs_core.io import load_ct

    ct = load_ct(REAL / "totalseg_ct" / "example_ct.nii.gz")
    masks = read_organ_masks(REAL / "totalseg_ct" / "organs", ct=ct)
    assert masks.source == "TotalSegmentator folder 'organs' (7 organs)"
    volumes = {name: masks.volume_ml(name) for name in masks.present}
    assert volumes["liver"] == pytest.approx(1123, abs=1) and volumes["spleen"] == pytest.approx(261, abs=1)
    assert volumes["kidney_right"] == pytest.approx(189, abs=1) and volumes["kidney_left"] == pytest.approx(139, abs=1)
    # RAS: the right kidney (same side as the liver) has the larger world x.
    x = {name: (np.argwhere(masks.mask(name)).mean(0) @ ct.affine[0, :3]) + ct.affine[0, 3]
         for name in ("liver", "kidney_right", "kidney_left", "spleen")}
    assert x["kidney_right"] > 0 > x["kidney_left"] and x["liver"] > 0 > x["spleen"]


@pytest.mark.real_data
@needs_real
def test_real_kidneys_without_side_split_back_into_totalsegmentators_files(tmp_path):
    from pfs_core.io import load_ct

    ct = load_ct(REAL / "totalseg_ct" / "example_ct.nii.gz")
    organs = REAL / "totalseg_ct" / "organs"
    right, left, liver = (nib.load(organs / f"{n}.nii.gz").get_fdata() > 0.5
                          for n in ("kidney_right", "kidney_left", "liver"))
    data = (right | left).astype(np.uint8) + 2 * liver.astype(np.uint8)
    file = _save(tmp_path / "kidneys.nii.gz", data, ct.affine)
    (tmp_path / "kidneys.json").write_text(json.dumps({"1": "Kidneys", "2": "Liver"}))
    masks = read_organ_masks(file, ct=ct)
    np.testing.assert_array_equal(masks.mask("kidney_right"), right & ~liver)
    np.testing.assert_array_equal(masks.mask("kidney_left"), left & ~liver)


@pytest.mark.slow
@pytest.mark.real_data
@needs_real
def test_real_rtstruct_without_organs_is_refused_and_its_tumour_rasterises_like_ibsi():
    from pfs_core.io import load_pet
    from pfs_core.io.organ_files import onto_ct_grid, read_rtstruct_rois

    pet = load_pet(REAL / "sts001_pet_dicom" / "FDG_PET" / "image")
    mask_dir = REAL / "sts001_pet_dicom" / "FDG_PET" / "mask"
    with pytest.raises(InputError, match=r"mask/1-1\.dcm: none of its ROIs \(GTV_Mass, GTV_Edema\) is liver, spleen, kidney"):
        read_organ_masks(mask_dir, ct=pet)
    rois = read_rtstruct_rois(mask_dir / "1-1.dcm", affine=pet.affine, shape=pet.shape)
    ibsi = nib.load(REAL / "ibsi_sts_fdg" / "STS_001" / "PET_mask.nii.gz")
    reference = onto_ct_grid((ibsi.get_fdata() > 0.5).astype(np.uint8), ibsi.affine, pet, where="ibsi") > 0
    np.testing.assert_array_equal(rois["GTV_Mass"], reference)  # 5095 voxels, the IBSI mask exactly
