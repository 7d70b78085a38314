"""pfs_core.viz.curves: numbers at risk and legend of the Kaplan–Meier figure; the patient's PFS curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pfs_core import outlook as ol
from pfs_core.viz import curves as vc
from pfs_core.viz._style import legend_rows, wrap_text

# group a: times 2, 5 (event), 7 (censored), 13, 20; group b: 1, 6, 6, 30 (censored), 40
TIME = np.array([2.0, 5.0, 7.0, 13.0, 20.0, 1.0, 6.0, 6.0, 30.0, 40.0])
EVENT = np.array([1, 1, 0, 1, 1, 1, 1, 0, 0, 1])
GROUP = ["a"] * 5 + ["b"] * 5


def test_numbers_at_risk_by_hand() -> None:
    # at risk at m: PFS or censoring time >= m (a patient who progresses at exactly 6 months is at risk at 6)
    assert vc.numbers_at_risk(TIME[:5], [0, 6, 12, 18, 24, 30, 36]) == [5, 3, 2, 1, 0, 0, 0]
    assert vc.numbers_at_risk(TIME[5:], [0, 6, 12, 18, 24, 30, 36]) == [5, 4, 2, 2, 2, 2, 1]


def test_km_figure_draws_the_numbers_at_risk_under_the_plot() -> None:
    fig, _ = vc.km_figure(TIME, EVENT, GROUP, highlight="a")
    assert fig.layout.meta["at_risk_months"] == [0, 6, 12, 18, 24, 30, 36]
    assert fig.layout.meta["at_risk"] == {"a": [5, 3, 2, 1, 0, 0, 0], "b": [5, 4, 2, 2, 2, 2, 1]}
    rows = [t for t in fig.data if t.meta and "at_risk" in t.meta]
    assert [t.meta["at_risk"]["group"] for t in rows] == ["a", "b"]
    assert list(rows[1].text) == ["5", "4", "2", "2", "2", "2", "1"] and list(rows[1].y) == ["b"] * 7
    assert all(t.xaxis == "x2" and t.yaxis == "y2" for t in rows)  # the table subplot
    assert rows[0].textfont.color != rows[1].textfont.color  # each row in its group's colour
    table, plot = fig.layout.yaxis2.domain, fig.layout.yaxis.domain
    assert table[1] < plot[0]  # the table lies under the plot
    assert fig.layout.xaxis2.matches == "x"  # on the same month scale
    assert list(fig.layout.xaxis.tickvals) == [0, 6, 12, 18, 24, 30, 36]


def test_km_legend_is_horizontal_above_the_plot_and_titles_are_short() -> None:
    fig, p = vc.km_figure(TIME, EVENT, GROUP)
    legend = fig.layout.legend
    assert legend.orientation == "h" and legend.yanchor == "bottom" and legend.y >= 1.0
    title_lines = fig.layout.title.text.split("<br>")
    assert title_lines[0] == "Progression-free survival by group" and "log-rank" in title_lines[-1]
    assert all(len(line.replace("<sup>", "").replace("</sup>", "")) <= 80 for line in title_lines)
    assert fig.layout.margin.t >= 24 + 22 * len(title_lines)  # room for the title and the legend row
    assert "months" in fig.layout.xaxis.title.text.lower() and "PFS" in fig.layout.yaxis.title.text
    curves = [t for t in fig.data if t.meta and "group" in t.meta]
    assert curves[0].name.startswith("a: n=5") and curves[0].meta["events"] == 4


def test_km_custom_months_and_bad_months() -> None:
    fig, _ = vc.km_figure(TIME, EVENT, GROUP, at_risk_months=(0, 12, 24, 48))
    assert fig.layout.meta["at_risk"]["b"] == [5, 2, 2, 0]
    with pytest.raises(ValueError, match="sorted"):
        vc.km_figure(TIME, EVENT, GROUP, at_risk_months=(12, 6))


def test_patient_pfs_figure() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 300)
    t = rng.exponential(20 * np.exp(-0.7 * x))
    c = rng.uniform(10, 60, 300)
    oof = pd.DataFrame({"oof_probability": 1 / (1 + np.exp(-x)), "pfs_months": np.minimum(t, c),
                        "progressed": (t <= c).astype(int)})
    outlook = ol.outlook_from_model(ol.fit_outlook_model(oof, n_boot=50), 0.6)
    fig = vc.patient_pfs_figure(outlook, cohort=(oof["pfs_months"].to_numpy(), oof["progressed"].to_numpy()))
    names = [t.name for t in fig.data]
    assert "This patient" in names and "95 % band" in names and "Training cohort (Kaplan–Meier)" in names
    markers = next(t for t in fig.data if t.meta and "months" in t.meta)
    assert markers.meta["months"] == [6, 12, 24]
    np.testing.assert_allclose(markers.meta["pfs"], [1 - outlook.at[m] for m in (6, 12, 24)])
    assert list(markers.text) == [f"{round(100 * (1 - outlook.at[m]))}%" for m in (6, 12, 24)]
    assert "months" in fig.layout.xaxis.title.text.lower() and "PFS probability" in fig.layout.yaxis.title.text
    assert fig.layout.legend.orientation == "v" and fig.layout.legend.y < 0.5  # inside, below the curve
    band = next(t for t in fig.data if t.name == "95 % band")
    assert band.fill == "tonexty"
    plain = vc.patient_pfs_figure(ol.outlook_from_model(ol.fit_outlook_model(oof, n_boot=0), 0.6))
    assert [t.name for t in plain.data] == ["This patient", "PFS at 6, 12, 24 months"]
    assert "band" not in plain.layout.title.text


def test_titles_wrap_and_legend_rows() -> None:
    wrapped = wrap_text("This patient: 0.38, higher than 39% of the 1000 training patients in the cohort", 40)
    assert all(len(line) <= 40 for line in wrapped.split("<br>"))
    assert wrap_text("short<br><sup>a subtitle</sup>") == "short<br><sup>a subtitle</sup>"
    assert legend_rows(["a", "b"]) == 1
    assert legend_rows(["x" * 20, "y" * 20, "z" * 20], width_px=460) == 2  # 164 px each: two columns
    assert legend_rows(["x" * 40, "y" * 40, "z" * 40], width_px=460) == 3  # 288 px each: one column
