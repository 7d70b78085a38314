"""Same seed -> same bytes; independent of workers and of --no-images."""

from __future__ import annotations

from pathlib import Path

from pfs_core.synth import simulate_cohort

TABLES = ("cohort.csv", "ground_truth.csv", "lesions.csv")


def _read(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()


def test_same_seed_identical_bytes_across_workers(
    image_cohort: Path, image_cohort_w2: Path, image_spec: tuple[int, int]
) -> None:
    for name in (*TABLES, "summary.json"):
        assert _read(image_cohort, name) == _read(image_cohort_w2, name), name
    images = sorted(p.name for p in (image_cohort / "images").iterdir())
    assert len(images) == 5 * image_spec[0]  # ct, pet, lesions, organs, organ_masks
    assert images == sorted(p.name for p in (image_cohort_w2 / "images").iterdir())
    for name in images:
        assert _read(image_cohort / "images", name) == _read(image_cohort_w2 / "images", name), name


def test_no_images_tables_identical(image_cohort: Path, tmp_path: Path, image_spec: tuple[int, int]) -> None:
    n, seed = image_spec
    out = tmp_path / "tables"
    simulate_cohort(n, seed, out_dir=out, images=False)
    for name in TABLES:
        assert _read(out, name) == _read(image_cohort, name), name
    assert not (out / "images").exists()


def test_different_seed_differs_and_prefix_is_stable(
    image_cohort: Path, tmp_path: Path, image_spec: tuple[int, int]
) -> None:
    n, seed = image_spec
    other = tmp_path / "other"
    simulate_cohort(n, seed + 1, out_dir=other, images=False)
    assert _read(other, "cohort.csv") != _read(image_cohort, "cohort.csv")
    assert _read(other, "ground_truth.csv") != _read(image_cohort, "ground_truth.csv")
    # patient i does not depend on n: a 2-patient cohort is the first two rows of the 3-patient one
    short = tmp_path / "short"
    simulate_cohort(2, seed, out_dir=short, images=False)
    full = _read(image_cohort, "ground_truth.csv").decode().splitlines()
    assert _read(short, "ground_truth.csv").decode().splitlines() == full[:3]


OUTPUT_HASHES = Path(__file__).with_name("output_hashes.json")


def cohort_digest(folder: Path) -> str:
    """SHA-256 over the tables (minus summary.json's float noise-free content) and the decoded images."""
    import hashlib

    import nibabel as nib
    import numpy as np

    h = hashlib.sha256()
    for name in (*TABLES, "summary.json"):
        h.update(_read(folder, name))
    for path in sorted((folder / "images").iterdir()):
        img = nib.load(str(path))
        h.update(path.name.encode())
        h.update(np.ascontiguousarray(np.asanyarray(img.dataobj)).tobytes())
        h.update(np.asarray(img.affine, dtype=np.float64).tobytes())
    return h.hexdigest()


def test_output_changes_only_with_the_version(image_cohort: Path) -> None:
    """Any change to what the simulator writes must come with a new SIMULATOR_VERSION.

    On failure: bump ``pfs_core.synth.constants.SIMULATOR_VERSION`` and record the new
    digest under it in tests/unit/synth/output_hashes.json (old entries stay).
    """
    import json

    from pfs_core.synth import SIMULATOR_VERSION

    recorded = json.loads(OUTPUT_HASHES.read_text())
    digest = cohort_digest(image_cohort)
    assert SIMULATOR_VERSION in recorded, f"record {digest} for {SIMULATOR_VERSION} in {OUTPUT_HASHES.name}"
    assert recorded[SIMULATOR_VERSION] == digest, (
        f"simulator output changed but SIMULATOR_VERSION is still {SIMULATOR_VERSION}: bump it and record {digest}")
    assert list(recorded.values()).count(digest) == 1, "two versions share one output"
