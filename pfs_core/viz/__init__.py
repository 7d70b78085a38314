"""Figures for the pages and reports: plotly objects built from plain arrays; nothing is drawn here.

- :mod:`pfs_core.viz.curves`: ROC, precision–recall, calibration, decision curve, Kaplan–Meier, risk histogram.
- :mod:`pfs_core.viz.explain`: SHAP bars, modality contributions and importance.
- :mod:`pfs_core.viz.images`: slice with overlay, PET maximum-intensity projection.
- :mod:`pfs_core.viz.scene`: 3D meshes (:mod:`pfs_core.viz.mesh`) and the cohort embedding.

Every function returns a ``plotly.graph_objects.Figure`` (``km_figure`` also the
log-rank p-value); colours are colour-blind safe (Okabe & Ito) and no figure
loads anything from the network. Static PNGs of 3D scenes come from
:func:`pfs_core.viz.mesh.render_png` (pyvista), not from plotly.
"""

from pfs_core.viz.curves import (
    calibration_figure,
    cohort_percentile,
    decision_curve_figure,
    km_figure,
    net_benefit,
    pr_figure,
    risk_distribution_figure,
    roc_figure,
)
from pfs_core.viz.explain import modality_bar_figure, modality_importance_figure, shap_bar_figure
from pfs_core.viz.images import mip_figure, slice_count, slice_figure
from pfs_core.viz.scene import embedding_figure, mesh3d_figure

__all__ = [
    "calibration_figure",
    "cohort_percentile",
    "decision_curve_figure",
    "embedding_figure",
    "km_figure",
    "mesh3d_figure",
    "mip_figure",
    "modality_bar_figure",
    "modality_importance_figure",
    "net_benefit",
    "pr_figure",
    "risk_distribution_figure",
    "roc_figure",
    "shap_bar_figure",
    "slice_count",
    "slice_figure",
]
