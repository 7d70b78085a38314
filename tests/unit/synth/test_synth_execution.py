"""The images of `synth` render as tasks of pfs_core.execution: same files in this process, in 2 local
processes and on Ray; task batching, labels and progress lines; --workers as the alias of --jobs."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from pfs_core.errors import UsageError
from pfs_core.execution import Execution, ray_available
from pfs_core.progress import writing_to
from pfs_core.synth import SimOptions, simulate_cohort
from pfs_core.synth.cohort import RENDER_STAGE, patients_per_task, render_tasks, resolve_execution
from pfs_core.synth.patient import patient_streams


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path (summary.json holds no wall time: the run's
    wall time is only returned, so every file must be identical)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_local_processes_write_the_same_files(image_cohort: Path, image_cohort_w2: Path,
                                                  image_spec: tuple[int, int]) -> None:
    """image_cohort: jobs 1 (in this process); image_cohort_w2: jobs 2 (two spawned processes)."""
    hashes = file_hashes(image_cohort)
    assert len([name for name in hashes if name.startswith("images/")]) == 5 * image_spec[0]
    assert file_hashes(image_cohort_w2) == hashes


@pytest.mark.slow
@pytest.mark.skipif(not ray_available(), reason="ray is not installed (pip install .[ray])")
def test_ray_writes_the_same_files(image_cohort: Path, image_spec: tuple[int, int], tmp_path: Path) -> None:
    n, seed = image_spec
    out = tmp_path / "ray"
    simulate_cohort(n, seed, out_dir=out, images=True, execution=Execution(backend="ray", jobs=2))
    assert file_hashes(out) == file_hashes(image_cohort)


def test_render_tasks_are_small_batches_in_patient_order(tmp_path: Path) -> None:
    assert patients_per_task(8, 2) == 1  # 8 tasks for 2 jobs
    assert patients_per_task(116, 2) == 4 and patients_per_task(116, 1) == 4
    assert patients_per_task(3, 1) == 1
    tasks = render_tasks(patient_streams(5, 10), tmp_path / "images", SimOptions(), jobs=1)
    assert [t.label for t in tasks] == ["images of patients SIM0001–SIM0003", "images of patients SIM0004–SIM0006",
                                        "images of patients SIM0007–SIM0009", "images of patient SIM0010"]
    assert [t.info["patients"] for t in tasks] == [3, 3, 3, 1]
    for task in tasks:
        assert task.cpus == 1 and task.memory_mb > 0
        assert Path(task.args[1]).is_absolute()
        assert len(pickle.dumps(task)) < 4096  # ids and seed sequences, no arrays


def test_progress_lines_count_patients(tmp_path: Path) -> None:
    progress = tmp_path / "progress.jsonl"
    with writing_to(progress):
        simulate_cohort(2, 11, out_dir=tmp_path / "o", images=True, execution=Execution(jobs=1))
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert [(s["stage"], s["done"], s["total"]) for s in lines] == [(RENDER_STAGE, d, 2) for d in (0, 1, 2)]


def test_workers_is_local_jobs() -> None:
    assert resolve_execution(None, 3) == Execution(jobs=3)
    assert resolve_execution(None, np.int64(2)) == Execution(jobs=2)
    assert resolve_execution(Execution(jobs=2), 2) == Execution(jobs=2)
    with pytest.raises(UsageError, match="--workers is another name for --jobs"):
        resolve_execution(Execution(jobs=1), 2)
    with pytest.raises(UsageError, match="--workers"):
        resolve_execution(None, 0)
