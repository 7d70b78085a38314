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
    assert len(images) == 4 * image_spec[0]
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
