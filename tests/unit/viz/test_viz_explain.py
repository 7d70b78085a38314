"""pfs_core.viz.explain: SHAP bars sorted by |value|, signed colours, readable labels."""

from __future__ import annotations

import numpy as np
import pytest

from pfs_core.viz import explain as ve
from pfs_core.viz._style import LOWERS_RISK, RAISES_RISK

NAMES = ["chromogranin_a", "gamma_gt", "sex", "ki67", "age", "albumin"]
SHAP = [0.30, -0.45, 0.02, 0.50, -0.01, 0.05]
VALUES = [850.0, None, "F", 12.5, 63, 3.9]
UNITS = ["ng/mL", "U/L", "", "%", "years", "g/dL"]


def bars(fig):
    return next(t for t in fig.data if t.name == "SHAP value" or t.name == "Contribution")


def test_shap_bars_are_sorted_by_magnitude_with_signed_colours() -> None:
    fig = ve.shap_bar_figure(NAMES, SHAP, VALUES, UNITS, base_value=-0.4, output_space="logit",
                             imputed=[False, True, False, False, False, False])
    trace = bars(fig)
    values = list(trace.x)
    assert values == [0.50, -0.45, 0.30, 0.05, 0.02, -0.01]
    assert list(np.abs(values)) == sorted(np.abs(values), reverse=True)
    assert list(trace.marker.color) == [RAISES_RISK if v > 0 else LOWERS_RISK for v in values]
    assert trace.y[0] == "Ki-67 index = 12.5 %"
    assert trace.y[1] == "Gamma-GT = missing (imputed)"
    assert trace.y[2] == "Chromogranin A = 850 ng/mL"
    assert "Sex = F" in trace.y
    assert fig.layout.yaxis.autorange == "reversed"  # first bar on top
    assert trace.marker.pattern.shape[1] == "/" and trace.marker.pattern.shape[0] == ""
    assert trace.meta["output"] == pytest.approx(-0.4 + sum(SHAP))
    assert "log-odds" in fig.layout.xaxis.title.text


def test_the_rest_is_summed_into_one_bar() -> None:
    fig = ve.shap_bar_figure(NAMES, SHAP, VALUES, UNITS, base_value=0.3, output_space="probability", max_features=3)
    trace = bars(fig)
    assert len(trace.x) == 4 and trace.y[-1] == "3 other features"
    assert trace.x[-1] == pytest.approx(0.02 - 0.01 + 0.05)
    assert sum(trace.x) == pytest.approx(sum(SHAP))
    assert "probability" in fig.layout.xaxis.title.text


def test_shap_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="one length"):
        ve.shap_bar_figure(NAMES, SHAP[:-1], VALUES, UNITS, base_value=0.0)
    with pytest.raises(ValueError, match="output_space"):
        ve.shap_bar_figure(NAMES, SHAP, VALUES, UNITS, base_value=0.0, output_space="odds")


def test_feature_labels() -> None:
    assert ve.feature_label("chromogranin_a", 12345.6, "ng/mL") == "Chromogranin A = 12,346 ng/mL"
    assert ve.feature_label("bilirubin", 0.456, "mg/dL") == "Bilirubin (total) = 0.456 mg/dL"
    assert ve.feature_label("my_score", float("nan"), "pts") == "my_score = missing"


def test_modality_bars_keep_sign_and_names() -> None:
    fig = ve.modality_bar_figure({"lab": 0.12, "pet": -0.04, "ct": 0.01}, output_space="probability")
    trace = bars(fig)
    assert list(trace.y) == ["Labs", "PET", "CT"]
    assert list(trace.marker.color) == [RAISES_RISK, LOWERS_RISK, RAISES_RISK]
    legend = [t.name for t in fig.data if t.showlegend]
    assert len(legend) == 2 and any("raises" in n for n in legend)


def test_modality_importance_is_sorted() -> None:
    fig = ve.modality_importance_figure({"ct": 0.02, "lab": 0.10, "pet": 0.05})
    assert list(fig.data[0].y) == ["Labs", "PET", "CT"]
    assert list(fig.data[0].x) == [0.10, 0.05, 0.02]
    with pytest.raises(ValueError, match="negative"):
        ve.modality_importance_figure({"ct": -0.1})
