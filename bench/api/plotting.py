"""What a metric's report figure draws with (matplotlib, imported on first use): the figure class
(no pyplot state, so figures are safe in any thread), a grid of panels, a colour per name and the
colour of real cells. Every built-in figure uses them, so a plugin's figure looks like ours."""

from __future__ import annotations

from typing import Any

import numpy as np

REAL_COLOUR = "#9e9e9e"


def figure_class():
    """matplotlib's ``Figure`` (drawn without pyplot)."""
    from matplotlib.figure import Figure

    return Figure


def colour_map(names: list[str], cmap: str = "tab10") -> dict[str, Any]:
    """One colour per name (``tab20`` beyond ten names)."""
    import matplotlib

    n = len(names)
    cm = matplotlib.colormaps[cmap if n <= 10 else "tab20"]
    return {name: cm(i % cm.N) for i, name in enumerate(names)}


def figure_grid(n: int, ncol: int, width: float, height: float, **kw):
    """A figure of ``n`` panels in rows of at most ``ncol`` (each ``width`` x ``height`` inches) and
    its axes, flat; the unused ones hidden."""
    ncol = max(1, min(ncol, n))
    nrow = int(np.ceil(n / ncol))
    fig = figure_class()(figsize=(width * ncol, height * nrow), **kw)
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes
