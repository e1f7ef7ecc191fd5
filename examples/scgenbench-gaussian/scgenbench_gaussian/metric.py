"""A complete minimal scgenbench metric plugin with its own report figure.

``zero_fraction``: how far the share of zero entries in the generated cells is from the real test
cells' (both on the evaluation scale), and a bar chart of the shares per model in the HTML report
(``FigureSpec(..., draw=...)``). Like the generator, it imports only ``bench.api``.
"""

from __future__ import annotations

import numpy as np

from bench.api import FigureSpec, Metric, MetricOutput


def zero_fraction(X) -> float:
    """Share of zero entries of a cells x genes matrix (dense or sparse)."""
    n = X.shape[0] * X.shape[1]
    nonzero = X.nnz if hasattr(X, "nnz") else int(np.count_nonzero(X))
    return float(1.0 - nonzero / n) if n else float("nan")


def score_zero_fraction(ctx, generated, *, seed: int) -> MetricOutput:
    X_log, _ = ctx.transform_generated(generated)
    real, fake = zero_fraction(ctx.test_log), zero_fraction(X_log)
    return MetricOutput(
        values={"zero_fraction_gap": abs(fake - real)},
        artifacts={"shares": np.array([real, fake])},
    )


def draw_shares(view, dataset: str):
    """Bars: the generated cells' share of zeros per model; a line: the real test cells'."""
    _, keys = view.figure_tasks(dataset, "zero_fraction", "shares")
    if not keys:
        return None
    from matplotlib.figure import Figure

    shares = {model: view.artifacts(key, "zero_fraction")["shares"] for model, key in keys.items()}
    fig = Figure(figsize=(5, 3))
    ax = fig.add_subplot()
    ax.bar(list(shares), [s[1] for s in shares.values()], color="#4c72b0")
    ax.axhline(next(iter(shares.values()))[0], color="#9e9e9e", label="real test cells")
    ax.set_ylabel("share of zero entries")
    ax.legend()
    fig.tight_layout()
    return fig


ZERO_FRACTION = Metric(
    name="zero_fraction",
    func=score_zero_fraction,
    directions={"zero_fraction_gap": "lower"},
    description="Example plugin: |share of zeros, generated - real| on the evaluation scale",
    figures=(
        FigureSpec(
            "zero_fraction",
            "Share of zero entries",
            "Share of zero entries of each model's generated cells (bars) and of the real test cells (line).",
            draw=draw_shares,
        ),
    ),
)
