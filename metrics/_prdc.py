"""k-NN precision, recall, density and coverage (Kynkäänniemi et al. 2019; Naeem et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.api import INTEGER_1, INTEGER_2, FigureSpec, Metric, MetricOutput
from bench.metrics._distances import as_tensors, distance_tiles, kth_neighbour_distances
from bench.metrics._utils import EVERY_PROTOCOL, check_same_genes, equal_size
from bench.metrics.figures.suite import draw_prdc


@dataclass
class PrdcResult:
    """The four scores, the neighbourhood size k and the cells used per side."""

    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    n_real: int
    n_fake: int


def prdc(
    real,
    fake,
    *,
    seed: int,
    k: int = 5,
    max_cells: int | None = 5000,
    device: str = "cpu",
    block_size: int = 2048,
) -> PrdcResult:
    """Fidelity (precision, density) and diversity (recall, coverage) of generated cells.

    Definitions (Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing
    generative models", NeurIPS, Eq. 1-2; Naeem et al. 2020, "Reliable fidelity and diversity
    metrics for generative models", ICML, Eq. 3-4; the reference code clovaai/generative-evaluation-prdc),
    with X_i the m real cells, Y_j the n generated cells, NND_k(c) the distance from a cell to its
    k-th nearest neighbour *within its own set* (itself excluded) and B(c, r) the open ball::

        precision = 1/n sum_j 1[ exists i: Y_j in B(X_i, NND_k(X_i)) ]
        recall    = 1/m sum_i 1[ exists j: X_i in B(Y_j, NND_k(Y_j)) ]
        density   = 1/(k n) sum_j sum_i 1[ Y_j in B(X_i, NND_k(X_i)) ]
        coverage  = 1/m sum_i 1[ min_j |X_i - Y_j| < NND_k(X_i) ]

    Precision: share of generated cells inside the real manifold; recall: share of real cells inside
    the generated manifold; density: how many real neighbourhoods contain a generated cell on average
    (1 for a sample of the real distribution, > 1 when generated cells crowd dense real regions);
    coverage: share of real neighbourhoods holding at least one generated cell (robust to outliers in
    the generated set). All in [0, 1] except density (>= 0); higher is better. For two samples of one
    distribution (equal sizes) precision and recall are near 1, density is ~1 and coverage ~1 - 2^-k
    (0.97 for k = 5; Naeem et al., section 4.1, for large m = n); strict ``<`` as in the reference code.

    Parameters
    ----------
    real, fake
        Cells x features (dense), e.g. the 50 principal components of the evaluation space.
    seed
        Seeds the equal-size / ``max_cells`` subsample (the reference code assumes equal sizes).
    k
        Neighbourhood size, 5 as in Naeem et al. (their recommendation for 10,000 samples) and CFGen.
    max_cells
        Cap on cells per side (``None``: all); cost is O(m n) distances in tiles.
    device
        Torch device (float64).
    """
    check_same_genes(real, fake)
    real, fake = equal_size(np.asarray(real), np.asarray(fake), seed, max_cells)
    m, n = real.shape[0], fake.shape[0]
    if min(m, n) <= k:
        raise ValueError(
            f"PRDC with k={k} needs more than {k} cells per side, got {m} real and {n} generated"
        )
    X, Y = as_tensors(real, fake, device=device)
    r_real = torch.as_tensor(kth_neighbour_distances(X, k, block_size), device=X.device)
    r_fake = torch.as_tensor(kth_neighbour_distances(Y, k, block_size), device=X.device)
    balls = torch.zeros(n, dtype=torch.float64, device=X.device)  # real balls holding each fake cell
    real_recalled = torch.zeros(m, dtype=torch.bool, device=X.device)
    real_covered = torch.zeros(m, dtype=torch.bool, device=X.device)
    for i, d in distance_tiles(X, Y, block_size):
        r = r_real[i : i + d.shape[0], None]
        balls += (d < r).sum(0)
        real_recalled[i : i + d.shape[0]] = (d < r_fake[None, :]).any(1)
        real_covered[i : i + d.shape[0]] = d.min(1).values < r[:, 0]
    return PrdcResult(
        precision=float((balls > 0).double().mean()),
        recall=float(real_recalled.double().mean()),
        density=float(balls.mean() / k),
        coverage=float(real_covered.double().mean()),
        k=int(k),
        n_real=m,
        n_fake=n,
    )


def _score_prdc(ctx, generated, *, seed: int, k: int = 5, max_cells: int | None = 5000) -> MetricOutput:
    real, fake = ctx.features(generated)
    res = prdc(real, fake, seed=seed, k=k, max_cells=max_cells, device=ctx.device)
    values = {
        "precision": res.precision,
        "recall": res.recall,
        "density": res.density,
        "coverage": res.coverage,
    }
    return MetricOutput(
        values=values, info={"space": ctx.space_name(), "k": res.k, "n_cells_per_side": res.n_real}
    )


PRDC = Metric(
    name="prdc",
    measures="realism",
    func=_score_prdc,
    directions={"precision": "higher", "recall": "higher", "density": "higher", "coverage": "higher"},
    description="k-NN precision, recall, density, coverage (k = 5) of generated vs real test cells on 50 PCs",
    reference="Kynkäänniemi et al. 2019; Naeem et al. 2020",
    options={"k": 5, "max_cells": 5000},
    bounds={"k": INTEGER_1, "max_cells": INTEGER_2},
    table="fidelity and coverage",
    # the shuffled control spreads cells over the product of the gene marginals, wider than the data:
    # real cells fall inside its large k-NN balls, so it is not built to fail recall
    not_scaled=("recall",),
    protocols=EVERY_PROTOCOL,
    figures=(
        FigureSpec(
            "prdc",
            "Fidelity and coverage: k-NN precision, recall, density, coverage",
            "Precision and density: how much of the generated cells lies on the real data (fidelity); "
            "recall and coverage: how much of the real data the generated cells reach (diversity). k-NN "
            "balls (k = {k}) on the 50 PCs; density is ~1 for a fresh real sample, and coverage ~0.97 at "
            "k = 5. Mean ± sd over seeds.",
            draw=draw_prdc,
            order=10,
            missing="no PRDC values in this run (metric 'prdc')",
        ),
    ),
)


__all__ = ["PrdcResult", "prdc"]
