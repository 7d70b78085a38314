"""Hostile and careless inputs against every command: what each gives, its peak memory and time (issue 24).

    python benchmarks/hostile_inputs.py [--only SUBSTRING] [--jobs 2] [--out results/hostile_inputs.json]
        [--table docs/security.md]

Each case makes its input in a temporary folder (a header that lies, a gzip or zip bomb, a FIFO, a
formula in a patient id, an output that is an input, a bundle edited after it was written, ...), runs one
``python -m pfs_core`` command on it as its own process under ``/usr/bin/time -v`` with a 180-s timeout,
and sorts the outcome:

- ``error``: exit status 2 and one ``error:`` line on stderr, no traceback;
- ``ok``: exit status 0 (for inputs that are fine, or fine with a warning: ``warns`` checks the output);
- anything else fails the case: a traceback, another exit status, a hang (timeout), a peak above
  1.5 GB for an input of at most 10 MB, an unexpected acceptance, or a check of the aftermath
  (``after``: e.g. the input cohort still intact) that does not hold.

Exit status 1 when any case fails. ``--table docs/security.md`` puts the table between its markers.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
CASE = SAMPLE / "images" / "SIM0001"
PEAK_LIMIT_MB = 1536
TIMEOUT_S = 180


@dataclass
class Case:
    """One hostile input: ``make(folder)`` writes it and returns the command's arguments."""

    name: str
    group: str
    make: Callable[[Path], list[str]]
    expect: str = "error"  # "error", "ok", or "rows" (validate: exit 1, each bad row listed on its own line)
    warns: str = ""  # a text the output must hold (a warning), case-insensitive
    after: Callable[[Path], str | None] | None = None  # a problem with the aftermath, or None
    big_input: bool = False  # an input over 10 MB: the 1.5-GB peak rule does not apply


@dataclass
class Outcome:
    name: str
    group: str
    passed: bool
    verdict: str
    returncode: int | None
    message: str
    peak_mb: int | None
    wall_s: float | None
    problems: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- inputs


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine), path)
    return path


def _ct_like(shape: tuple[int, int, int] = (48, 40, 36)) -> np.ndarray:
    data = np.full(shape, -1000, np.int16)
    data[8:-8, 8:-8, :] = 40
    return data


def _pet_like(shape: tuple[int, int, int] = (40, 32, 30)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.gamma(2.0, 0.5, shape).astype(np.float32)


def _sample(kind: str) -> Path:
    return Path(f"{CASE}_{kind}.nii.gz")


def _check(pet: Path | str | None = None, ct: Path | str | None = None, *more: str) -> list[str]:
    args = ["check"]
    if pet is not None:
        args += ["--pet", str(pet)]
    if ct is not None:
        args += ["--ct", str(ct)]
    return [*args, *more]


def _header_bytes(data: np.ndarray, **fields: float) -> bytearray:
    img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header["vox_offset"] = 352  # where nibabel's save puts the voxels of a .nii
    for name, value in fields.items():
        img.header[name] = value
    return bytearray(img.header.binaryblock) + b"\0\0\0\0"


def _raw_nifti(path: Path, data: np.ndarray, *, gz: bool, **fields: float) -> Path:
    header = _header_bytes(data, **fields)
    payload = bytes(header) + data.tobytes(order="F")
    path.write_bytes(gzip.compress(payload, 1) if gz else payload)
    return path


def _gzip_of_zeros(path: Path, prefix: bytes, total: int) -> Path:
    """``prefix`` then zeros up to ``total`` bytes, gzipped in a stream (a few MB on disk)."""
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(prefix)
        block = bytes(1 << 24)
        left = total - len(prefix)
        while left > 0:
            out.write(block[:min(left, len(block))])
            left -= len(block)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("slice0001.dcm", "w", force_zip64=True) as member:
            block = bytes(1 << 24)
            for _ in range(192):  # 3 GiB of zeros
                member.write(block)
    return path


def _labs(folder: Path, text: str | bytes, name: str = "labs.json") -> Path:
    path = folder / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _predict_labs(labs: Path | str) -> list[str]:
    return ["predict", "--model", "models/lab_rf", "--labs", str(labs)]


def _cohort(folder: Path, rows: list[dict[str, str]] | None = None, *, copy_images: bool = True) -> Path:
    """A copy of the sample cohort (its images linked), with ``rows`` replacing its rows when given."""
    target = folder / "cohort"
    target.mkdir(exist_ok=True)
    if copy_images:
        (target / "images").mkdir(exist_ok=True)
        for file in (SAMPLE / "images").iterdir():
            dest = target / "images" / file.name
            if not dest.exists():
                shutil.copyfile(file, dest)
    with open(SAMPLE / "cohort.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        header, original = list(reader.fieldnames or []), list(reader)
    rows = original if rows is None else [{**original[0], **row} for row in rows]
    with open(target / "cohort.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    shutil.copyfile(target / "cohort.csv", target / "cohort.csv.orig")  # what an output must not replace
    return target / "cohort.csv"


def _bundle_copy(folder: Path, name: str = "lab_rf") -> Path:
    target = folder / name
    shutil.copytree(ROOT / "models" / name, target)
    return target


def _rehash(bundle: Path, changed: str) -> None:
    """Update the manifest's sha256 of ``changed`` (and its digest, if the product records one), as an
    attacker who knows the format would."""
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    manifest["files"][changed] = hashlib.sha256((bundle / changed).read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=1))
    digest_tool = ROOT / "benchmarks" / "add_bundle_digest.py"
    if digest_tool.exists() and "bundle_digest" in manifest:
        manifest.pop("bundle_digest")
        manifest_path.write_text(json.dumps(manifest, indent=1))
        subprocess.run([sys.executable, str(digest_tool), str(bundle)], capture_output=True, cwd=ROOT)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _intact(path_of: Callable[[Path], Path], reference: Callable[[Path], bytes]) -> Callable[[Path], str | None]:
    def check(folder: Path) -> str | None:
        path = path_of(folder)
        return None if path.exists() and path.read_bytes() == reference(folder) else f"{path.name} was changed"
    return check


# ----------------------------------------------------------------------------- cases


def image_cases() -> list[Case]:
    ct, pet = _sample("ct"), _sample("pet")
    c: list[Case] = []

    def add(name: str, make: Callable[[Path], list[str]], **kw: object) -> None:
        c.append(Case(name, "images (check)", make, **kw))  # type: ignore[arg-type]

    add("PET and CT of a sample case (control)", lambda f: _check(pet, ct), expect="ok")
    add("file does not exist", lambda f: _check(f / "nope.nii.gz", ct))
    add("empty file (0 bytes)", lambda f: _check(pet, (f / "ct.nii.gz").write_bytes(b"") or f / "ct.nii.gz"))
    add("random bytes named .nii", lambda f: _check(pet, _labs(f, os.urandom(4000), "ct.nii")))
    add("random bytes named .nii.gz", lambda f: _check(pet, _labs(f, os.urandom(4000), "ct.nii.gz")))
    add("PNG named .nii.gz", lambda f: _check(_labs(f, b"\x89PNG\r\n\x1a\n" + os.urandom(3000), "pet.nii.gz"), ct))
    add("PNG as .png", lambda f: _check(_labs(f, b"\x89PNG\r\n\x1a\n" + os.urandom(3000), "pet.png"), ct))
    add("single .dcm file", lambda f: _check(pet, _labs(f, os.urandom(1000), "slice.dcm")))
    add("truncated .nii.gz", lambda f: _check(pet, _labs(f, _sample("ct").read_bytes()[:20000], "ct.nii.gz")))
    add("truncated .nii", lambda f: _check(_fake_pet(f), _raw_nifti(f / "ct.nii", _ct_like(), gz=False)
                                           .write_bytes(_raw_nifti(f / "x.nii", _ct_like(), gz=False).read_bytes()[:9000])
                                           or f / "ct.nii"))
    add("vox_offset 3e9 in a 600-KB .nii.gz", lambda f: _check(_fake_pet(f), _raw_nifti(
        f / "ct.nii.gz", _ct_like((96, 96, 30)), gz=True, vox_offset=3e9)))
    add("vox_offset 3e9 in a .nii", lambda f: _check(_fake_pet(f), _raw_nifti(f / "ct.nii", _ct_like(), gz=False,
                                                                        vox_offset=3e9)))
    add("gzip of zeros: 512x512x1000 float32 CT header (2 MB file)", lambda f: _check(pet, _gzip_of_zeros(
        f / "ct.nii.gz", bytes(_header_bytes(np.zeros((512, 512, 1000), np.float32))), 352 + 512 * 512 * 1000 * 4)))
    add("gzip of zeros: 512x512x2000 int16 PET header", lambda f: _check(_gzip_of_zeros(
        f / "pet.nii.gz", bytes(_header_bytes(np.zeros((512, 512, 2000), np.int16))), 352 + 512 * 512 * 2000 * 2), ct))
    add("small image followed by 1 GB of zeros in its gzip stream", lambda f: _check(_fake_pet(f), _gzip_of_zeros(
        f / "ct.nii.gz", bytes(_header_bytes(_ct_like())) + _ct_like().tobytes(order="F"), 1 << 30)))
    add("header dims 30000x30000x30000", lambda f: _check(pet, _raw_nifti(
        f / "ct.nii.gz", _ct_like(), gz=True, dim=[3, 30000, 30000, 30000, 1, 1, 1, 1])))
    add("vox_offset 0 in a .nii (voxels would be read from the header)", lambda f: _check(_fake_pet(f), _raw_nifti(
        f / "ct.nii", _ct_like().astype(np.float32), gz=False, vox_offset=0)))
    add("header dims negative", lambda f: _check(pet, _raw_nifti(f / "ct.nii.gz", _ct_like(), gz=True,
                                                                    dim=[3, -48, 40, 36, 1, 1, 1, 1])))
    add("4D image (dynamic PET)", lambda f: _check(_nifti(f / "pet.nii.gz", np.ones((20, 20, 20, 4), np.float32)), ct))
    add("2D image", lambda f: _check(_nifti(f / "pet.nii.gz", np.ones((64, 64), np.float32)), ct))
    add("one slice", lambda f: _check(_nifti(f / "pet.nii.gz", np.ones((64, 64, 1), np.float32)), ct))
    add("NaN voxels", lambda f: _check(_nifti(f / "pet.nii.gz", np.where(_pet_like() > 2, np.nan, _pet_like())
                                              .astype(np.float32)), ct))
    add("infinite voxels", lambda f: _check(_nifti(f / "pet.nii.gz", np.where(_pet_like() > 2, np.inf, _pet_like())
                                                   .astype(np.float32)), ct))
    add("CT voxel at 3e38 HU", lambda f: _check(_fake_pet(f), _nifti(f / "ct.nii.gz", _hot_ct(3e38))))
    add("CT voxel at 5000 HU (metal)", lambda f: _check(_fake_pet(f), _nifti(f / "ct.nii.gz", _hot_ct(5000.0))),
        expect="ok")
    add("all-zero PET", lambda f: _check(_nifti(f / "pet.nii.gz", np.zeros((40, 32, 30), np.float32)), ct))
    add("constant CT", lambda f: _check(_fake_pet(f), _nifti(f / "ct.nii.gz", np.full((48, 40, 36), -1000, np.int16))))
    add("PET in kBq/mL at about 3 MBq/kg (values 3x SUV): not told apart from SUV (documented)",
        lambda f: _check(_scaled(f, pet, 3.0), ct), expect="ok")
    add("PET in Bq/mL without weight and dose", lambda f: _check(_scaled(f, pet, 3000.0), ct))
    add("PET in Bq/mL with weight and dose", lambda f: _check(_scaled(f, pet, 3000.0), ct,
                                                               "--weight-kg", "70", "--dose-mbq", "200"), expect="ok")
    add("weight 0 kg", lambda f: _check(_scaled(f, pet, 3000.0), ct,
                                        "--weight-kg", "0", "--dose-mbq", "200"))
    add("dose NaN", lambda f: _check(_scaled(f, pet, 3000.0), ct,
                                     "--weight-kg", "70", "--dose-mbq", "nan"))
    add("PET and CT swapped", lambda f: _check(ct, pet))
    add("clearly negative PET", lambda f: _check(_nifti(f / "pet.nii.gz", _pet_like() - 3.0), ct))
    add("degenerate affine (zeros)", lambda f: _check(_raw_nifti(
        f / "pet.nii.gz", _pet_like(), gz=True, sform_code=1, qform_code=0, srow_x=[0, 0, 0, 0], srow_y=[0, 0, 0, 0],
        srow_z=[0, 0, 0, 0]), ct))
    add("spacing 0.01 mm", lambda f: _check(_nifti(f / "pet.nii.gz", _pet_like(), np.diag([0.01, 0.01, 0.01, 1])), ct))
    add("spacing 50 mm", lambda f: _check(_nifti(f / "pet.nii.gz", _pet_like(), np.diag([50.0, 50, 50, 1])), ct))
    add("PET and CT far apart (another patient)", lambda f: _check(_nifti(
        f / "pet.nii.gz", _pet_like(), np.array([[4.0, 0, 0, 5000], [0, 4, 0, 0], [0, 0, 4, 0], [0, 0, 0, 1]])), ct))
    add("complex-valued NIfTI", lambda f: _check(_nifti(f / "pet.nii.gz", _pet_like().astype(np.complex64)), ct))
    add("RGB NIfTI", lambda f: _check(_nifti(f / "pet.nii.gz", np.zeros((40, 32, 30), [("R", "u1"), ("G", "u1"),
                                                                                      ("B", "u1")])), ct))
    add("scl_slope infinite (nibabel reads the stored values unscaled)", lambda f: _check(
        _fake_pet(f), _raw_nifti(f / "ct.nii.gz", _ct_like(), gz=True, scl_slope=np.inf)), expect="ok")
    add("big-endian int16 CT (control)", lambda f: _check(_fake_pet(f), _nifti(f / "ct.nii.gz", _ct_like().astype(">i2"))),
        expect="ok")
    add("header extension of size 0", lambda f: _check(_fake_pet(f), _extension_zero(f / "ct.nii")))
    add("empty DICOM folder", lambda f: _check(pet, _mkdir(f / "dicom")))
    add("folder of junk files", lambda f: _check(pet, _junk_folder(f / "dicom")))
    add("FIFO inside a DICOM folder", lambda f: _check(pet, _fifo_folder(f / "dicom")))
    add("FIFO named .nii.gz", lambda f: _check(pet, _fifo(f / "ct.nii.gz")))
    add("/dev/zero as the CT", lambda f: _check(pet, "/dev/zero"))
    add("a folder as the PET (not DICOM)", lambda f: _check(SAMPLE, ct))
    add("zip bomb (3 GB of zeros in one member)", lambda f: _check(pet, _zip_bomb(f / "ct.zip")))
    add("zip with ../ and absolute member names", lambda f: _check(pet, _zip(
        f / "ct.zip", {"../../evil.dcm": b"x", "/tmp/evil2.dcm": b"y"})),
        after=lambda f: "a member was written outside" if Path("/tmp/evil2.dcm").exists() or
        (f.parent / "evil.dcm").exists() else None)
    add("zip with 30000 members", lambda f: _check(pet, _zip(f / "ct.zip", {f"{i}.dcm": b"" for i in range(30000)})))
    add("damaged zip", lambda f: _check(pet, _labs(f, b"PK\x03\x04" + os.urandom(2000), "ct.zip")))
    add("path with a NUL byte", lambda f: _check(pet, "ct\0.nii.gz"))
    add("path component over 255 characters", lambda f: _check(pet, "x" * 300 + ".nii.gz"))
    add("--pet-units banana", lambda f: _check(pet, ct, "--pet-units", "banana"))
    return c


def _fake_pet(folder: Path) -> Path:
    """A PET on the grid of :func:`_ct_like`'s CT (the same 3-mm voxels from the same origin)."""
    return _nifti(folder / "fake_pet.nii.gz", _pet_like())


def _hot_ct(value: float) -> np.ndarray:
    data = _ct_like().astype(np.float32)
    data[20, 20, 20] = value
    return data


def _scaled(folder: Path, path: Path, factor: float) -> Path:
    """The PET ``path`` times ``factor`` (other units), on its own grid."""
    img = nib.load(str(path))
    out = folder / "pet.nii.gz"
    nib.save(nib.Nifti1Image((np.asanyarray(img.dataobj, dtype=np.float32) * factor).astype(np.float32), img.affine), out)
    return out


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _junk_folder(path: Path) -> Path:
    path.mkdir()
    for i in range(5):
        (path / f"readme{i}.txt").write_text("not DICOM")
    return path


def _fifo_folder(path: Path) -> Path:
    path.mkdir()
    (path / "readme.txt").write_text("x")
    os.mkfifo(path / "pipe.dcm")
    return path


def _extension_zero(path: Path) -> Path:
    data = _ct_like()
    header = _header_bytes(data, vox_offset=352 + 16)
    header[348:352] = b"\x01\0\0\0"  # an extension follows
    path.write_bytes(bytes(header) + struct.pack("<ii", 0, 0) + bytes(8) + data.tobytes(order="F"))
    return path


def lab_cases() -> list[Case]:
    c: list[Case] = []

    def add(name: str, text: str | bytes, **kw: object) -> None:
        c.append(Case(f"labs: {name}", "labs (predict)", lambda f, t=text: _predict_labs(_labs(f, t)), **kw))  # type: ignore[arg-type, misc]

    add("a valid object (control)", '{"chromogranin_a": 250, "sex": "F"}', expect="ok")
    add("empty object (very little input)", "{}", expect="ok", warns="little")
    add("400-digit number", '{"chromogranin_a": ' + "9" * 400 + "}")
    add("5000-digit number", '{"chromogranin_a": ' + "9" * 5000 + "}")
    add("100k-deep nesting", "[" * 100_000 + "]" * 100_000)
    add("a JSON list", "[1, 2]")
    add("not JSON", "chromogranin_a=250")
    add("binary bytes", os.urandom(500))
    add("UTF-16 text", '{"alt": 20}'.encode("utf-16"))
    add("unknown field", '{"chromogranin": 250}')
    add("negative lab", '{"alt": -5}')
    add("five bad labs at once", '{"alt": -5, "ast": -1, "albumin": 99, "ki67": 400, "hemoglobin": "x"}',
        warns="")
    add("text for a number", '{"alt": "high"}')
    add("NaN literal (read as missing, like an empty cell)", '{"alt": NaN}', expect="ok")
    add("Infinity literal", '{"alt": Infinity}')
    add("boolean for a number", '{"alt": true}')
    add("invalid sex", '{"sex": "X"}')
    add("duplicate keys", '{"alt": 20, "alt": 30}', expect="ok")
    add("10 MB of whitespace", " " * 10_000_000 + "{}", big_input=True)
    c.append(Case("labs: /dev/zero", "labs (predict)", lambda f: _predict_labs("/dev/zero")))
    c.append(Case("labs: a folder", "labs (predict)", lambda f: _predict_labs(f)))
    c.append(Case("labs: a FIFO", "labs (predict)", lambda f: _predict_labs(_fifo(f / "labs.json"))))
    return c


def cohort_cases() -> list[Case]:
    c: list[Case] = []

    def add(name: str, make: Callable[[Path], list[str]] | None = None, **kw: object) -> None:
        c.append(Case(f"cohort: {name}", "cohort (validate/score)", make or kw.pop("make"), **kw))  # type: ignore[arg-type]

    def validate(rows: list[dict[str, str]] | None = None) -> Callable[[Path], list[str]]:
        return lambda f: ["validate", "--cohort", str(_cohort(f, rows))]

    add("the sample cohort (control)", validate(), expect="ok")
    add("pet path '/'", expect="rows", make=validate([{"pet": "/"}]))
    add("pet path ../../etc/passwd", expect="rows", make=validate([{"pet": "../../../../etc/passwd"}]))
    add("absolute pet path outside the folder", expect="rows", make=validate([{"pet": str(_sample("pet"))}]))
    add("NUL byte in a path", expect="rows", make=validate([{"pet": "images/a\0b.nii.gz"}]))
    add("path over 255 characters", expect="rows", make=validate([{"pet": "images/" + "x" * 300}]))
    add("negative lab in a row", validate([{"alt": "-5"}]), expect="rows")
    add("empty file", lambda f: ["validate", "--cohort", str(_labs(f, b"", "cohort.csv"))])
    add("header only", lambda f: ["validate", "--cohort", str(_labs(f, "patient_id,pet,ct\n", "cohort.csv"))])
    add("binary file", lambda f: ["validate", "--cohort", str(_labs(f, os.urandom(3000), "cohort.csv"))])
    add("semicolon separators", lambda f: ["validate", "--cohort", str(_labs(
        f, (SAMPLE / "cohort.csv").read_text().replace(",", ";"), "cohort.csv"))])
    add("60 MB file", lambda f: ["validate", "--cohort", str(_labs(
        f, (SAMPLE / "cohort.csv").read_text() + ("x" * 1000 + "\n") * 60_000, "cohort.csv"))], big_input=True)
    add("/dev/zero", lambda f: ["validate", "--cohort", "/dev/zero"])
    add("a folder", lambda f: ["validate", "--cohort", str(f)])
    add("formula in patient_id is neutralised in score's CSV",
        lambda f: ["score", "--cohort", str(_cohort(f, [{"patient_id": "=HYPERLINK(\"http://x\",\"y\")"},
                                                          {"patient_id": "+1+1"}, {"patient_id": "@SUM(A1)"}])),
                   "--model", "models/lab_rf", "--out", str(f / "scores.csv"), "--no-cache"],
        expect="ok", after=_scores_escaped)
    return c


def _scores_escaped(folder: Path) -> str | None:
    text = (folder / "scores.csv").read_text() if (folder / "scores.csv").exists() else ""
    cells = [row[0] for row in csv.reader(text.splitlines()[1:])]
    bad = [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    return f"unescaped formula cells: {bad}" if bad or not cells else None


def output_cases() -> list[Case]:
    c: list[Case] = []

    def add(name: str, make: Callable[[Path], list[str]], **kw: object) -> None:
        c.append(Case(f"output: {name}", "outputs", make, **kw))  # type: ignore[arg-type]

    def score_to(target: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
        return lambda f: ["score", "--cohort", str(_cohort(f)), "--model", "models/lab_rf", "--out", str(target(f)),
                          "--no-cache"]

    cohort_of = lambda f: f / "cohort" / "cohort.csv"  # noqa: E731
    add("score --out equal to --cohort", score_to(cohort_of),
        after=_intact(cohort_of, lambda f: (f / "cohort" / "cohort.csv.orig").read_bytes()))
    add("score --out is a folder", score_to(lambda f: _mkdir(f / "out")))
    add("score --out unwritable (/proc)", score_to(lambda f: Path("/proc/pfs_core/scores.csv")))
    add("score --out a file of the bundle it uses", lambda f: [
        "score", "--cohort", str(_cohort(f)), "--model", str(_bundle_copy(f)), "--out", str(f / "lab_rf" / "config.json"),
        "--no-cache"], after=lambda f: None if (f / "lab_rf" / "config.json").read_bytes() ==
        (ROOT / "models" / "lab_rf" / "config.json").read_bytes() else "config.json was replaced")
    add("score --cache-dir is a file", lambda f: ["score", "--cohort", str(_cohort(f)), "--model", "models/lab_rf",
                                                  "--out", str(f / "s.csv"), "--cache-dir", str(_labs(f, "x", "c"))])
    add("predict --json is a folder", lambda f: ["predict", "--model", "models/lab_rf", "--json", str(_mkdir(f / "j"))])
    add("train --out is a file", lambda f: ["train", "--cohort", str(_cohort(f)), "--model", "lab_rf",
                                            "--out", str(_labs(f, "x", "file"))])
    add("train --force on a folder of other files", lambda f: ["train", "--cohort", str(_cohort(f)), "--model",
                                                               "lab_rf", "--out", str(_foreign(f)), "--force"],
        after=lambda f: None if (f / "mine" / "thesis.docx").exists() else "thesis.docx was deleted")
    add("train --force --out /", lambda f: ["train", "--cohort", str(_cohort(f)), "--model", "lab_rf",
                                            "--out", "/", "--force"])
    add("train --force --out the home folder", lambda f: ["train", "--cohort", str(_cohort(f)), "--model", "lab_rf",
                                                          "--out", str(Path.home()), "--force"])
    add("train --force --out the working folder", lambda f: ["train", "--cohort", str(_cohort(f)), "--model",
                                                             "lab_rf", "--out", ".", "--force"])
    add("benchmark --out an existing results folder", lambda f: [
        "benchmark", "--cohort", str(_cohort(f)), "--out", str(_results(f)), "--models", "lab_rf"],
        after=lambda f: None if (f / "results" / "results.json").read_text() == "{}" else "results.json replaced")
    add("explain --out is a file", lambda f: ["explain", "--model", "models/lab_rf", "--out", str(_labs(f, "x", "e"))])
    add("--progress-file is a folder", lambda f: ["train", "--cohort", str(_cohort(f)), "--model", "lab_rf",
                                                  "--out", str(f / "b"), "--progress-file", str(_mkdir(f / "p"))])
    add("synth --out /", lambda f: ["synth", "--n", "2", "--out", "/", "--force"])
    return c


def _foreign(folder: Path) -> Path:
    mine = folder / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    return mine


def _results(folder: Path) -> Path:
    results = folder / "results"
    results.mkdir()
    (results / "results.json").write_text("{}")
    return results


def bundle_cases() -> list[Case]:
    c: list[Case] = []

    def add(name: str, make: Callable[[Path], list[str]], **kw: object) -> None:
        c.append(Case(f"bundle: {name}", "model bundles", make, **kw))  # type: ignore[arg-type]

    def predict(bundle: Callable[[Path], Path], *more: str) -> Callable[[Path], list[str]]:
        return lambda f: ["predict", "--model", str(bundle(f)), *more]

    add("a shipped bundle (control)", predict(lambda f: ROOT / "models" / "lab_rf"), expect="ok")
    add("does not exist", predict(lambda f: f / "nope"))
    add("folder without manifest", predict(lambda f: _mkdir(f / "empty")))
    add("manifest is a JSON list", predict(lambda f: _edited(f, lambda b: (b / "manifest.json").write_text("[]"))))
    add("manifest is not JSON", predict(lambda f: _edited(f, lambda b: (b / "manifest.json").write_text("{x"))))
    add("manifest says not simulated", predict(lambda f: _edited(f, _not_simulated)))
    add("weight file corrupted and re-hashed", predict(lambda f: _edited(f, _corrupt_member)))
    add("config.json corrupted and re-hashed", predict(lambda f: _edited(f, _corrupt("config.json", b"{\"x\": 1"))))
    add("training_oof.csv corrupted and re-hashed",
        predict(lambda f: _edited(f, _corrupt("training_oof.csv", b"a,b\n1,2\n"))))
    add("a pickle file in the bundle", predict(lambda f: _edited(f, lambda b: (b / "model.pkl").write_bytes(
        b"\x80\x04\x95"))))
    add("a listed file missing", predict(lambda f: _edited(f, lambda b: (b / "config.json").unlink())))
    add("--device banana", predict(lambda f: ROOT / "models" / "lab_rf", "--device", "banana"))
    add("--device cuda:7 without CUDA", predict(lambda f: ROOT / "models" / "lab_rf", "--device", "cuda:7"))
    return c


def _edited(folder: Path, edit: Callable[[Path], object]) -> Path:
    bundle = _bundle_copy(folder)
    edit(bundle)
    return bundle


def _not_simulated(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    text = json.dumps(manifest)
    text = text.replace('"trained_on_simulated_data": true', '"trained_on_simulated_data": false')
    text = text.replace('"simulated": true', '"simulated": false')
    (bundle / "manifest.json").write_text(text)


def _corrupt(name: str, content: bytes) -> Callable[[Path], None]:
    def edit(bundle: Path) -> None:
        (bundle / name).write_bytes(content)
        _rehash(bundle, name)
    return edit


def _corrupt_member(bundle: Path) -> None:
    member = next(p for p in sorted(bundle.iterdir()) if p.name.startswith("fold") and p.is_file())
    member.write_bytes(member.read_bytes()[:200] + os.urandom(100))
    _rehash(bundle, member.name)


def option_cases() -> list[Case]:
    c: list[Case] = []

    def add(name: str, make: Callable[[Path], list[str]], **kw: object) -> None:
        c.append(Case(f"option: {name}", "options", make, **kw))  # type: ignore[arg-type]

    train = lambda f, *more: ["train", "--cohort", str(_cohort(f)), "--model", "lab_rf",  # noqa: E731
                              "--out", str(f / "b"), *more]
    add("train --folds 1", lambda f: train(f, "--folds", "1"))
    add("train --folds 1000", lambda f: train(f, "--folds", "1000"))
    add("train --threads 0", lambda f: train(f, "--threads", "0"))
    add("train --epochs 0", lambda f: train(f, "--epochs", "0"))
    add("train --model unknown", lambda f: ["train", "--cohort", str(_cohort(f)), "--model", "resnet",
                                            "--out", str(f / "b")])
    add("train --train-config with an unknown field", lambda f: train(f, "--train-config",
                                                                      str(_labs(f, '{"lr": 1}', "t.json"))))
    add("train --train-config a JSON list", lambda f: train(f, "--train-config", str(_labs(f, "[]", "t.json"))))
    add("train --preprocess 10 MB", lambda f: train(f, "--preprocess", str(_labs(f, " " * 10_000_000 + "{}",
                                                                                   "p.json"))), big_input=True)
    add("synth --n 0", lambda f: ["synth", "--n", "0", "--out", str(f / "s")])
    add("synth --n -5", lambda f: ["synth", "--n", "-5", "--out", str(f / "s")])
    add("synth --n 10**9", lambda f: ["synth", "--n", "1000000000", "--out", str(f / "s")])
    add("unknown command", lambda f: ["frobnicate"])
    add("PFS_CORE_MAX_VOXELS=banana", lambda f: ["check", "--pet", str(_sample("pet")), "--env",
                                                 "PFS_CORE_MAX_VOXELS=banana"])
    return c


def case_cases() -> list[Case]:
    """Whole predictions from images: what reaches the answer, not only the loader."""
    pet, ct, organs = _sample("pet"), _sample("ct"), _sample("organ_masks")
    c: list[Case] = []

    def add(name: str, make: Callable[[Path], list[str]], **kw: object) -> None:
        c.append(Case(f"predict: {name}", "predict with images", make, **kw))  # type: ignore[arg-type]

    def predict(pet_path: Path | str, ct_path: Path | str = ct, *more: str) -> list[str]:
        return ["predict", "--model", "models/lab_pet_ct", "--pet", str(pet_path), "--ct", str(ct_path),
                "--organs", str(organs), *more]

    add("a sample case with its organ masks (control)", lambda f: predict(pet), expect="ok", warns="simulated")
    add("all-zero PET", lambda f: predict(_nifti(f / "pet.nii.gz", np.zeros((40, 32, 30), np.float32),
                                                 nib.load(str(pet)).affine)))
    add("PET in kBq/mL (SUV x 10)", lambda f: predict(_scaled(f, pet, 10.0)), expect="ok",
        warns="implausible for SUVbw")
    add("CT with one voxel at 3e38 HU", lambda f: predict(pet, _hot_sample_ct(f, 3e38)))
    add("CT with metal at 8000 HU", lambda f: predict(pet, _hot_sample_ct(f, 8000.0)), expect="ok", warns="HU")
    add("organ masks of another patient (far away)", lambda f: ["predict", "--model", "models/lab_pet_ct", "--pet",
                                                                str(pet), "--ct", str(ct), "--organs",
                                                                str(_moved(f, organs, 3000.0))])
    add("organ masks that are a CT", lambda f: ["predict", "--model", "models/lab_pet_ct", "--pet", str(pet),
                                                "--ct", str(ct), "--organs", str(ct)])
    add("organ masks without a CT", lambda f: ["predict", "--model", "models/lab_pet_ct", "--pet", str(pet),
                                               "--organs", str(organs)])
    add("512x512x600 CT (clinical size, 90 MB)", lambda f: predict(pet, _large_ct(f)), expect="ok",
        big_input=True)
    return c


def _hot_sample_ct(folder: Path, value: float) -> Path:
    img = nib.load(str(_sample("ct")))
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    data[data.shape[0] // 2, data.shape[1] // 2, data.shape[2] // 2] = value
    out = folder / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), out)
    return out


def _moved(folder: Path, path: Path, shift_mm: float) -> Path:
    img = nib.load(str(path))
    affine = img.affine.copy()
    affine[0, 3] += shift_mm
    out = folder / "organs.nii.gz"
    moved = nib.Nifti1Image(np.asanyarray(img.dataobj), affine)
    moved.header.extensions.extend(img.header.extensions)
    nib.save(moved, out)
    return out


def _large_ct(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_large_case import build_case

    return build_case(CASE, (512, 512, 600), folder)["ct"]


ALL = (image_cases, lab_cases, cohort_cases, output_cases, bundle_cases, option_cases, case_cases)


# ----------------------------------------------------------------------------- running


def _split_env(args: list[str]) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if "--env" in args:
        i = args.index("--env")
        key, value = args[i + 1].split("=", 1)
        env[key] = value
        args = args[:i] + args[i + 2:]
    return args, env


def run_case(case: Case) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix="pfs_hostile_"))
    try:
        try:
            args, env = _split_env(case.make(folder))
        except Exception as exc:  # the harness could not make the input: report it, do not hide it
            return Outcome(case.name, case.group, False, "harness", None, f"input not made: {exc!r}", None, None)
        return _judge(case, folder, args, env)
    finally:
        _clean(folder)


def _clean(folder: Path) -> None:
    for path in folder.rglob("*"):
        if stat.S_ISFIFO(path.lstat().st_mode):
            path.unlink()
    shutil.rmtree(folder, ignore_errors=True)


def _judge(case: Case, folder: Path, args: list[str], env: dict[str, str]) -> Outcome:
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "pfs_core", *args]
    try:
        done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Outcome(case.name, case.group, False, "hang", None, f"no answer within {TIMEOUT_S} s", None, None)
    except ValueError as exc:  # e.g. a NUL byte: the shell could not even pass it
        return Outcome(case.name, case.group, True, "refused by the OS", None, str(exc), None, None)
    stderr = done.stderr.decode(errors="replace")
    stdout = done.stdout.decode(errors="replace")
    rc, peak, wall, own = _time_report(stderr)
    errors = [line for line in own.splitlines() if line.startswith("error:")]
    problems = []
    if "Traceback (most recent call last)" in own:
        problems.append("traceback")
    if case.expect == "rows":
        listed = [line for line in (stdout + own).splitlines() if re.match(r"\s*row \d+", line)]
        verdict = "rows listed" if rc == 1 and listed else f"exit {rc}"
        if verdict != "rows listed":
            problems.append(f"expected exit 1 with the bad rows listed, got exit {rc}")
        errors = errors or listed[:1]
    elif case.expect == "error":
        verdict = "error" if rc == 2 and len(errors) == 1 else f"exit {rc}"
        if verdict != "error":
            problems.append(f"expected one error line and exit 2, got exit {rc} with {len(errors)} error lines")
    else:
        verdict = "ok" if rc == 0 else f"exit {rc}"
        if rc != 0:
            problems.append(f"expected success, got exit {rc}")
        if case.warns and case.warns.lower() not in (stdout + own).lower():
            problems.append(f"no warning mentioning {case.warns!r}")
    if peak is not None and peak > PEAK_LIMIT_MB and not case.big_input:
        problems.append(f"peak {peak} MB above {PEAK_LIMIT_MB} MB")
    if case.after is not None and (trouble := case.after(folder)):
        problems.append(trouble)
    message = errors[0] if errors else (own.strip().splitlines() or stdout.strip().splitlines() or [""])[-1]
    return Outcome(case.name, case.group, not problems, verdict, rc, message[:400], peak, wall, problems)


def _time_report(stderr: str) -> tuple[int | None, int | None, float | None, str]:
    """(exit status, peak MB, wall s, the command's own stderr) from ``/usr/bin/time -v`` output."""
    cut = stderr.find("\tCommand being timed:")
    own = stderr[:cut] if cut >= 0 else stderr
    report = stderr[cut:] if cut >= 0 else ""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", report)
    status = re.search(r"Exit status: (\d+)", report)
    signal = re.search(r"Command terminated by signal (\d+)", own + report)
    rc = int(status.group(1)) if status else (-int(signal.group(1)) if signal else None)
    own = "\n".join(line for line in own.splitlines() if not line.startswith("Command exited with non-zero status"))
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.group(1).split(":")))) if wall else None
    return rc, round(int(rss.group(1)) / 1024) if rss else None, round(seconds, 1) if seconds else None, own


def table(outcomes: list[Outcome]) -> str:
    lines = ["| # | group | input | expected | outcome | peak MB | s | what the user sees |",
             "|---|---|---|---|---|---|---|---|"]
    for i, o in enumerate(outcomes, 1):
        shown = o.message.replace("|", "\\|").replace("\n", " ")
        if len(shown) > 160:
            shown = shown[:157] + "..."
        status = "pass" if o.passed else "**FAIL**: " + "; ".join(o.problems)
        lines.append(f"| {i} | {o.group} | {o.name} | {_expected(o)} | {o.verdict} ({status}) | {o.peak_mb} | "
                     f"{o.wall_s} | {shown} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- hostile-inputs table: begin -->", "<!-- hostile-inputs table: end -->"


def write_table(path: Path, text: str, summary: dict[str, object]) -> None:
    """Put the table between the markers of ``path`` (a Markdown file), or write it as the whole file."""
    head = (f"{summary['passed']} of {summary['cases']} kinds pass; command `{summary['command']}`, "
            f"{summary['machine']}.\n\n")
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        before, rest = old.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        path.write_text(f"{before}{BEGIN}\n{head}{text}{END}{after}")
    else:
        path.write_text(head + text)


def _expected(outcome: Outcome) -> str:
    case = next(c for group in ALL for c in group() if c.name == outcome.name)
    return case.expect + (f" + warning '{case.warns}'" if case.warns else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only cases whose name holds this text")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path)
    args = parser.parse_args()
    cases = [c for group in ALL for c in group() if not args.only or args.only.lower() in c.name.lower()]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outcomes = list(pool.map(run_case, cases))
    for o in outcomes:
        print(f"{'PASS' if o.passed else 'FAIL'} {o.name}: {o.verdict} {o.peak_mb} MB {o.wall_s} s "
              f"{'; '.join(o.problems)} | {o.message[:150]}", flush=True)
    failed = [o for o in outcomes if not o.passed]
    summary = {"command": "python benchmarks/hostile_inputs.py " + " ".join(sys.argv[1:]), "cases": len(outcomes),
               "passed": len(outcomes) - len(failed), "failed": [o.name for o in failed],
               "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
               "outcomes": [o.__dict__ for o in outcomes]}
    print(json.dumps({k: v for k, v in summary.items() if k != "outcomes"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    if args.table:
        write_table(args.table, table(outcomes), summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
