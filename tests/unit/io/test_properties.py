"""Property-based tests (Hypothesis): whatever a user gives the readers, the answer is a value or one
PfsError, never another exception, and an unpacked zip stays inside its folder."""

from __future__ import annotations

import gzip
import json
import struct
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfs_core import schema
from pfs_core.commands.options import read_labs
from pfs_core.errors import InputError, PfsError, UsageError
from pfs_core.io.cohort import CohortReport, validate_cohort
from pfs_core.io.dicom import member_target, unzipped
from pfs_core.io.labs import lab_problems, parse_lab, validate_labs
from pfs_core.io.nifti import read_nifti_data

QUICK = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.integers(min_value=10**300, max_value=10**400),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
lab_names = st.sampled_from(schema.LAB_COLUMNS)


@QUICK
@given(name=lab_names, value=json_values | st.text())
def test_parse_lab_gives_a_value_or_a_reason_that_never_quotes_it(name, value):
    parsed, reason = parse_lab(name, value)
    assert parsed is None or reason is None
    assert reason is None or isinstance(reason, str)
    if reason is not None and isinstance(value, str) and len(value.strip()) > 3:
        # words of the message itself ("value", "leave it empty") are no quote of the value
        template = " ".join(r for r in (parse_lab(name, "#")[1], parse_lab(name, "1e300")[1]) if r)
        assert value.strip() not in reason or value.strip() in template


@QUICK
@given(labs=st.dictionaries(st.one_of(lab_names, st.text(max_size=10)), json_values, max_size=6))
def test_validate_labs_returns_every_field_or_raises_one_input_error(labs):
    problems = lab_problems(labs)
    try:
        clean = validate_labs(labs)
    except InputError as error:
        assert problems and f"{len(problems)} problem(s)" in str(error)
    else:
        assert not problems and set(clean) == set(schema.LAB_COLUMNS)


@QUICK
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                         json_values.map(lambda v: json.dumps(v).encode())))
def test_read_labs_on_any_bytes_gives_an_object_or_one_input_error(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labs.json"
        path.write_bytes(content)
        try:
            labs = read_labs(path)
        except (InputError, UsageError) as error:
            assert str(path) in str(error)
            return
        assert isinstance(labs, dict)
        try:
            validate_labs(labs)
        except InputError:
            pass


cells = st.one_of(st.text(max_size=30), st.sampled_from(["", "NA", "images/x.nii.gz", "/", "../x", "1e999",
                                                          "-1", "0", "1", "F", "\x00"]))


@QUICK
@given(header=st.lists(st.one_of(st.sampled_from(list(schema.COHORT_COLUMNS)), st.text(max_size=8)),
                       max_size=8),
       rows=st.lists(st.lists(cells, max_size=9), max_size=5),
       raw=st.text(max_size=200))
def test_validate_cohort_on_any_table_gives_a_report_or_one_pfs_error(header, rows, raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cohort.csv"
        lines = [",".join(header)] + [",".join(f'"{c}"' for c in row) for row in rows]
        path.write_text("\n".join(lines) + "\n" + raw, encoding="utf-8", errors="surrogateescape")
        try:
            report = validate_cohort(path, require_outcome=False)
        except PfsError:
            return
        assert isinstance(report, CohortReport)
        assert all(isinstance(p.reason, str) for p in report.problems)


# --- NIfTI headers ----------------------------------------------------------------------------------------

#: (byte offset, struct format) of NIfTI-1 header fields worth breaking.
FIELDS = {"sizeof_hdr": (0, "<i"), "dim": (40, "<8h"), "datatype": (70, "<h"), "bitpix": (72, "<h"),
          "pixdim": (76, "<8f"), "vox_offset": (108, "<f"), "scl_slope": (112, "<f"), "scl_inter": (116, "<f"),
          "sform_code": (254, "<h"), "srow_x": (280, "<4f"), "extension": (348, "<i")}


def _field_values(name: str):
    fmt = FIELDS[name][1]
    count = int(fmt[1:-1] or 1)
    if fmt[-1] == "f":
        item = st.floats(width=32, allow_nan=True, allow_infinity=True)
    elif fmt[-1] == "h":
        item = st.integers(-(2**15), 2**15 - 1)
    else:
        item = st.integers(-(2**31), 2**31 - 1)
    return st.tuples(*[item] * count)


@QUICK
@given(changes=st.dictionaries(st.sampled_from(sorted(FIELDS)), st.just(None), min_size=1, max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: _field_values(k) for k in keys})),
       compressed=st.booleans(), tail=st.binary(max_size=64))
def test_any_header_fields_give_a_volume_or_one_input_error(changes, compressed, tail):
    data = np.arange(10 * 9 * 8, dtype=np.float32).reshape(10, 9, 8)
    raw = bytearray(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).header.binaryblock + bytes(4))
    raw += data.tobytes(order="F")
    for name, values in changes.items():
        offset, fmt = FIELDS[name]
        struct.pack_into(fmt, raw, offset, *values)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("x.nii.gz" if compressed else "x.nii")
        path.write_bytes(gzip.compress(bytes(raw) + tail) if compressed else bytes(raw) + tail)
        try:
            read = read_nifti_data(path)
        except InputError as error:
            assert str(path) in str(error)
            return
        assert read.data.ndim == 3 and read.data.dtype == np.float32


@QUICK
@given(content=st.binary(max_size=600), compressed=st.booleans())
def test_any_bytes_as_nifti_give_one_input_error(content, compressed):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("x.nii.gz" if compressed else "x.nii")
        path.write_bytes(gzip.compress(content) if compressed else content)
        with pytest.raises(InputError):
            read_nifti_data(path)


# --- zip member names -------------------------------------------------------------------------------------

names = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40),
    st.lists(st.sampled_from(["..", ".", "", "a", "b", "/", "\\", "C:", "x" * 300]), min_size=1, max_size=6).map("/".join),
).filter(bool)  # zipfile cannot write a member without a name


@pytest.mark.filterwarnings("ignore:Duplicate name")  # several names may clean to one: the last one wins
@QUICK
@given(members=st.lists(names, min_size=1, max_size=30))
def test_unzipping_any_member_names_stays_inside_the_folder(members):
    with tempfile.TemporaryDirectory() as outer:
        path = Path(outer) / "in.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for i, name in enumerate(members):
                archive.writestr(name, f"member {i}")
        before = set(Path(outer).rglob("*"))
        try:
            with unzipped(path) as folder:
                for file in folder.rglob("*"):
                    assert folder in file.resolve().parents and not file.is_symlink()
        except InputError:
            pass
        assert set(Path(outer).rglob("*")) == before


@QUICK
@given(name=names)
def test_member_targets_lie_below_the_folder(name):
    folder = Path("/tmp/unzip-target")
    target = member_target(folder, name)
    assert target is None or (folder in target.parents and ".." not in target.relative_to(folder).parts)
