"""Why a model predicts what it does: lab SHAP, modality Shapley values, Grad-CAM and read-out maps.

One case (:func:`explain_case`) or a whole cohort (:mod:`pfs_core.explain.cohort`); never imports training code.
"""

from pfs_core.explain.case import Explanation, explain_case, lab_background
from pfs_core.explain.shapley import LabShap, ModalityShapley

__all__ = ["Explanation", "explain_case", "lab_background", "LabShap", "ModalityShapley"]
