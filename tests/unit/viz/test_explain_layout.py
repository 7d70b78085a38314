"""pfs_core.viz.explain: nothing cut off at a half-page chart width (every label shown, margins automatic)."""

from __future__ import annotations

from pfs_core.viz import explain as ve

NAMES = ["chromogranin_a", "gamma_gt", "sex", "ki67", "age", "albumin", "alkaline_phosphatase", "platelets"]
SHAP = [0.30, -0.45, 0.02, 0.50, -0.01, 0.05, 0.2, -0.1]
VALUES = [850.0, None, "F", 12.5, 63, 3.9, 123.0, 250]
UNITS = ["ng/mL", "U/L", "", "%", "years", "g/dL", "U/L", "10^9/L"]


def test_every_bar_is_labelled_and_the_margins_are_automatic() -> None:
    fig = ve.shap_bar_figure(NAMES, SHAP, VALUES, UNITS, base_value=-0.4, output_space="logit")
    bars = fig.data[0]
    assert fig.layout.yaxis.automargin and fig.layout.xaxis.automargin
    assert fig.layout.yaxis.tickmode == "array" and list(fig.layout.yaxis.tickvals) == list(bars.y)
    assert fig.layout.height >= 26 * len(bars.y) + 150  # ~26 px a bar besides title, legend and axis title
    assert len(fig.layout.xaxis.title.text) <= 48 and "log-odds" in fig.layout.xaxis.title.text
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.yanchor == "bottom"


def test_long_labels_wrap() -> None:
    fig = ve.shap_bar_figure(["a_very_long_custom_feature_name_from_a_site"], [0.2], [12345.0], ["units/L"],
                             base_value=0.0)
    assert "<br>" in fig.layout.yaxis.ticktext[0] and "<br>" not in fig.data[0].y[0]


def test_modality_and_titles_fit() -> None:
    fig = ve.modality_bar_figure({"lab": 0.12, "pet": -0.04, "ct": 0.01})
    assert fig.layout.yaxis.automargin and list(fig.layout.yaxis.tickvals) == ["Labs", "PET", "CT"]
    long = ve.modality_bar_figure({"lab": 0.1}, title="Contribution of each modality to this patient's predicted "
                                                       "probability of short progression-free survival")
    assert all(len(line) <= 58 for line in long.layout.title.text.split("<br>"))
    assert long.layout.margin.t > fig.layout.margin.t  # the second title line has room
