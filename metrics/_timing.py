"""Training and generation cost (ACTIVA paper, section 5.1, Table 1), from the runner's measurements."""

from __future__ import annotations

import math
from typing import Any

from bench.api import FIT_VALUES


def timing(fit: dict[str, Any], generation) -> dict[str, float]:
    """Values of the timing metric.

    ``fit``: the runner's measurements of ``fit`` -- ``train_seconds`` (the model's own training
    time where it reports one, e.g. measured inside its container, else the wall time of ``fit``),
    ``fit_wall_seconds`` (wall time of the whole ``fit`` call: container start and data loading
    included, convergence snapshots excluded), ``peak_rss_mb`` / ``peak_gpu_mb`` (peak memory
    increase during ``fit``), ``train_steps`` and ``cells_seen`` (the budget it trained for).
    ``generation``: a :class:`bench.timing.GenerationTiming` of ``generate()`` for
    ``generation.n_cells`` cells; both times are scaled linearly to 100,000 cells (the paper
    reports inference time for 100K cells): ``generate_seconds_per_100k`` is the model's own time
    where it reports one, else the wall time; ``generate_wall_seconds_per_100k`` the wall time
    around ``generate()``; ``generate_cells_timed`` records ``n_cells`` so a scaled figure is
    recognisable. Missing or ``None`` measurements are left out.
    """
    values: dict[str, float] = {}
    for key in FIT_VALUES:
        v = fit.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            values[key] = float(v)
    scale = 100_000 / generation.n_cells
    own = generation.own_seconds if generation.own_seconds is not None else generation.wall_seconds
    values["generate_seconds_per_100k"] = own * scale
    values["generate_wall_seconds_per_100k"] = generation.wall_seconds * scale
    values["generate_cells_timed"] = float(generation.n_cells)
    return values
