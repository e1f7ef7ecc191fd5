"""Energy distance between real and generated cells (Székely & Rizzo 2013)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.api import INTEGER_1, Metric, MetricOutput
from bench.metrics._distances import as_tensors, distance_sum
from bench.metrics._utils import EVERY_PROTOCOL, check_same_genes, equal_size


@dataclass
class EnergyResult:
    """``energy``: the squared energy distance D^2 (V-statistic); ``n_real``/``n_fake``: cells used."""

    energy: float
    n_real: int
    n_fake: int


def energy_distance(
    real, fake, *, seed: int, max_cells: int | None = 5000, device: str = "cpu", block_size: int = 2048
) -> EnergyResult:
    """Squared energy distance between two sets of cells.

    Definition (Székely & Rizzo 2013, "Energy statistics: a class of statistics based on
    distances", J. Stat. Plan. Inference 143, Eq. 2.1; on principal components of single cells as
    the "E-distance" of scPerturb, Peidli et al. 2024)::

        D^2(X, Y) = 2/(mn) sum_{i,j} |x_i - y_j| - 1/m^2 sum_{i,i'} |x_i - x_i'| - 1/n^2 sum_{j,j'} |y_j - y_j'|

    with Euclidean |.|, over the empirical distributions of the real cells x and the generated
    cells y (V-statistic: every pair, the zero self-distances included). D^2 >= 0, and D^2 = 0 if and
    only if the two empirical distributions are equal; for two samples of one distribution it is
    small and positive (of order E|X - X'| / n). In one dimension ``sqrt(D^2)`` equals
    ``scipy.stats.energy_distance`` (which integrates the squared difference of the empirical
    CDFs, Eq. 2.3 of the paper). Lower is better.

    Parameters
    ----------
    real, fake
        Cells x features (dense), e.g. the 50 principal components of the evaluation space.
    seed
        Seeds the equal-size / ``max_cells`` subsample (evaluation contract: the larger side is
        subsampled without replacement to the smaller one's size).
    max_cells
        Cap on cells per side (``None``: all). Cost is O(n^2) distances, computed in tiles.
    device
        Torch device for the distance tiles (float64).
    """
    check_same_genes(real, fake)
    real, fake = equal_size(np.asarray(real), np.asarray(fake), seed, max_cells)
    m, n = real.shape[0], fake.shape[0]
    if m < 1 or n < 1:
        raise ValueError("energy distance needs at least one cell per side")
    X, Y = as_tensors(real, fake, device=device)
    xy = distance_sum(X, Y, block_size) / (m * n)
    xx = distance_sum(X, X, block_size) / (m * m)
    yy = distance_sum(Y, Y, block_size) / (n * n)
    return EnergyResult(energy=float(max(2.0 * xy - xx - yy, 0.0)), n_real=m, n_fake=n)


def _score_energy(ctx, generated, *, seed: int, max_cells: int | None = 5000) -> MetricOutput:
    real, fake = ctx.features(generated)
    res = energy_distance(real, fake, seed=seed, max_cells=max_cells, device=ctx.device)
    return MetricOutput(
        values={"energy": res.energy}, info={"space": ctx.space_name(), "n_cells_per_side": res.n_real}
    )


ENERGY = Metric(
    name="energy",
    measures="realism",
    func=_score_energy,
    directions={"energy": "lower"},
    description="squared energy distance, real test vs generated cells, on 50 PCs",
    reference="Székely & Rizzo 2013; scPerturb E-distance (Peidli et al. 2024)",
    options={"max_cells": 5000},
    bounds={"max_cells": INTEGER_1},
    table="distances",
    protocols=EVERY_PROTOCOL,
)


__all__ = ["EnergyResult", "energy_distance"]
