"""pfs_core.viz.scene: 3D traces keep names/colours; embedding groups by outcome; nothing loads from the web."""

from __future__ import annotations

import numpy as np
import pytest

from pfs_core import viz
from pfs_core.viz.mesh import Mesh


def tetrahedron(name: str, color: str, shift: float = 0.0) -> Mesh:
    vertices = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], float) + shift
    return Mesh(vertices, np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]), name=name, color=color,
                opacity=0.3)


def test_mesh3d_traces_keep_names_colours_and_proportions() -> None:
    meshes = [tetrahedron("Body surface", "#BBBBBB"), tetrahedron("PET SUV ≥ 4", "#E69F00", 20.0),
              Mesh.empty(name="Grad-CAM ≥ 0.5")]
    fig = viz.mesh3d_figure(meshes)
    assert [t.name for t in fig.data] == ["Body surface", "PET SUV ≥ 4"]
    assert [t.color for t in fig.data] == ["#BBBBBB", "#E69F00"]
    assert all(t.type == "mesh3d" and t.opacity == 0.3 for t in fig.data)
    np.testing.assert_allclose(fig.data[1].x, meshes[1].vertices[:, 0])
    np.testing.assert_array_equal(fig.data[1].k, meshes[1].faces[:, 2])
    assert fig.layout.scene.aspectmode == "data"
    assert all("mm" in a.title.text for a in (fig.layout.scene.xaxis, fig.layout.scene.yaxis, fig.layout.scene.zaxis))
    assert "Grad-CAM ≥ 0.5" in fig.layout.title.text  # the empty mesh is named, not drawn


def test_embedding_groups_by_outcome_and_marks_the_patient() -> None:
    points = np.random.default_rng(0).normal(size=(30, 2))
    labels = [1] * 10 + [0] * 15 + [float("nan")] * 5
    fig = viz.embedding_figure(points, labels, title="UMAP", highlight_index=4, hover=[f"P{i}" for i in range(30)])
    assert [t.name for t in fig.data] == ["PFS > 12 months (n=15)", "PFS ≤ 12 months (n=10)", "no label (n=5)",
                                          "This patient"]
    assert fig.data[-1].x[0] == pytest.approx(points[4, 0])
    assert fig.data[0].marker.color != fig.data[1].marker.color and fig.data[0].marker.symbol != fig.data[1].marker.symbol
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        viz.embedding_figure(np.zeros((5, 3)), [0] * 5)


def test_no_figure_references_the_network() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20), np.zeros(20)]
    p = rng.random(40)
    volume = rng.normal(size=(10, 10, 10))
    figures = [
        viz.roc_figure({"m": (y, p)}), viz.pr_figure({"m": (y, p)}), viz.calibration_figure({"m": (y, p)}),
        viz.decision_curve_figure({"m": (y, p)}), viz.km_figure(rng.exponential(12, 40), y, ["a", "b"] * 20)[0],
        viz.risk_distribution_figure(p, 0.5, threshold=None),
        viz.shap_bar_figure(["age"], [0.1], [60], ["years"], base_value=0.0),
        viz.modality_bar_figure({"lab": 0.1}), viz.modality_importance_figure({"lab": 0.1}),
        viz.slice_figure(volume, volume, affine=np.eye(4), axis="axial", index=0, opacity=0.5, background_kind="ct"),
        viz.mip_figure(np.abs(volume), None, affine=np.eye(4)),
        viz.mesh3d_figure([tetrahedron("t", "#000000")]), viz.embedding_figure(rng.normal(size=(40, 2)), y),
    ]
    for fig in figures:
        text = fig.to_json()
        assert "http" not in text and "$" not in (fig.layout.title.text or "")
