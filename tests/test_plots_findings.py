"""The critical-β vs critical-ε figure on synthetic search frames: one column per model,
ECDFs on top, per-input points below, violations drawn in red, a note when one family is
missing."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
from test_findings import beta_eps_frame

from medverify import plots, stats
from medverify.plots import plt


def _inputs(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(
        [stats.per_input(frame, stats.COUPLED), stats.per_input(frame, stats.UNCOUPLED)],
        ignore_index=True,
    )


def _red_points(ax) -> int:
    red = np.array(mcolors.to_rgba("#c92a2a"))
    n = 0
    for coll in ax.collections:
        colors = coll.get_facecolors() if len(coll.get_facecolors()) else coll.get_edgecolors()
        if len(colors) and np.allclose(colors[0], red):
            n += len(coll.get_offsets())
    return n


def test_beta_eps_figure_layout_and_violations():
    two = pd.concat([beta_eps_frame(), beta_eps_frame().assign(model="cnn3")], ignore_index=True)
    fig = plots.critical_beta_eps(_inputs(two), stats.beta_eps_pairs(two))
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == ["pneumoniamnist/mlp", "pneumoniamnist/cnn3"]
    # ECDF: brightness and linf lines of the test split; the β curve stops below 1 (one
    # of its four finished searches is beyond the range)
    lines = {ln.get_label(): ln for ln in axes[0][0].get_lines()}
    beta = next(ln for name, ln in lines.items() if name.startswith("β brightness"))
    assert max(beta.get_ydata()) == 0.75
    assert _red_points(axes[1][0]) == 0
    plt.close(fig)

    bad = beta_eps_frame(violate=True)
    fig = plots.critical_beta_eps(_inputs(bad), stats.beta_eps_pairs(bad))
    assert _red_points(fig.axes[1]) == 1
    plt.close(fig)


def test_beta_eps_figure_without_brightness_is_a_note():
    only = beta_eps_frame().query("family == 'linf'")
    fig = plots.critical_beta_eps(_inputs(only), stats.beta_eps_pairs(only))
    assert "not both searched" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


def test_example_images_show_both_ends_of_every_family():
    """Issue 11 section 4: each family's example row shows its -k and +k images; both are
    members of the family's set, differ from the image and from each other."""
    from medverify import perturbations

    image = np.random.default_rng(2).uniform(0.2, 0.8, size=(1, 28, 28))
    families = {name: [8] for name in perturbations.FAMILIES}
    fig = plots.example_images(image, families)
    titles = [a.get_title() for a in fig.axes]
    for name in perturbations.FAMILIES:
        assert f"{name} -8" in titles and f"{name} +8" in titles
        low, high = plots.perturbed_ends(image, name, 8)
        fam = perturbations.make(name, image, 8)
        assert fam.contains(low) and fam.contains(high), name
        assert not np.allclose(low, image) and not np.allclose(high, image), name
        assert not np.allclose(low, high), name
    plt.close(fig)
