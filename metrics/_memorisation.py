"""Memorisation: are generated cells closer to training cells than new real cells are?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.api import INTEGER_1, FigureSpec, Metric, MetricOutput
from bench.metrics._distances import as_tensors, nearest_distances
from bench.metrics._utils import QUICK_MAX_CELLS, check_same_genes, equal_size
from bench.metrics.figures.suite import draw_memorisation


@dataclass
class MemorisationResult:
    """``ratio``: median generated-to-train over median test-to-train nearest distance; ``share``:
    share of generated cells closer to a training cell than ``threshold`` (the ``quantile`` of the
    test-to-train distances); ``generated_distances``/``test_distances``: the per-cell distances."""

    ratio: float
    share: float
    threshold: float
    quantile: float
    generated_distances: np.ndarray
    test_distances: np.ndarray


def memorisation(
    train,
    test,
    fake,
    *,
    seed: int,
    quantile: float = 0.01,
    max_cells: int | None = None,
    device: str = "cpu",
) -> MemorisationResult:
    """Distance to the closest training cell, generated cells against held-out real cells.

    Definition (distance to closest record, DCR, of synthetic-data privacy evaluations since
    Park et al. 2018, "Data synthesis based on generative adversarial networks", VLDB; the held-out
    real cells give the reference distribution, as in holdout-based DCR audits): for every
    generated cell y and every real test cell x, the Euclidean distance to its nearest *training*
    cell, d(y) = min_t |y - t| and d(x) = min_t |x - t|. Two summaries::

        ratio = median_y d(y) / median_x d(x)
        share = 1/n sum_y 1[ d(y) < q ],   q = the ``quantile`` (1 %) quantile of d(x)

    A generator that produces new cells from the data distribution behaves like the test cells:
    ratio ~1 and share ~``quantile`` (0.01). A generator that copies training cells, even with small
    noise, has ratio << 1 and share >> 0.01 (exact copies: ratio 0, share 1). Higher ratio / lower
    share = less copying. A ratio well above 1 means generated cells lie *off* the data (a quality
    problem, not memorisation), which the distribution metrics see.

    Parameters
    ----------
    train
        The real training cells the generator was fit on (cells x features, e.g. 50 PCs).
    test, fake
        Real held-out test cells and generated cells, same features.
    seed
        Seeds the equal-size / ``max_cells`` subsample of test and generated cells.
    quantile
        Quantile of the test-to-train distances below which a generated cell counts as a copy.
    max_cells
        Cap on test and generated cells (``None``: all); every training cell is always searched.
    device
        Torch device for the distance tiles (float64).
    """
    check_same_genes(train, fake)
    check_same_genes(test, fake)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    test, fake = equal_size(np.asarray(test), np.asarray(fake), seed, max_cells)
    T, X, Y = as_tensors(train, test, fake, device=device)
    if T.shape[0] < 1 or X.shape[0] < 1 or Y.shape[0] < 1:
        raise ValueError("memorisation needs at least one training, test and generated cell")
    d_test = nearest_distances(X, T)
    d_gen = nearest_distances(Y, T)
    med_test = float(np.median(d_test))
    threshold = float(np.quantile(d_test, quantile))
    ratio = float(np.median(d_gen) / med_test) if med_test > 0 else float("nan")
    return MemorisationResult(
        ratio=ratio,
        share=float(np.mean(d_gen < threshold)),
        threshold=threshold,
        quantile=float(quantile),
        generated_distances=d_gen,
        test_distances=d_test,
    )


def _score_memorisation(
    ctx, generated, *, seed: int, quantile: float = 0.01, max_cells: int | None = None
) -> MetricOutput:
    _, pcs = ctx.transform_generated(generated)
    res = memorisation(
        ctx.train_pcs, ctx.test_pcs, pcs, seed=seed, quantile=quantile, max_cells=max_cells, device=ctx.device
    )
    artifacts = {
        "generated_distances": res.generated_distances.astype(np.float32),
        "test_distances": res.test_distances.astype(np.float32),
        "threshold": np.asarray([res.threshold], dtype=np.float32),
    }
    info = {"space": "pca50", "quantile": res.quantile, "threshold": res.threshold}
    values = {"memorisation_ratio": res.ratio, "memorisation_share": res.share}
    return MetricOutput(values=values, artifacts=artifacts, info=info)


MEMORISATION = Metric(
    name="memorisation",
    measures="privacy",
    func=_score_memorisation,
    directions={"memorisation_ratio": "higher", "memorisation_share": "lower"},
    description="distance of generated cells to their closest training cell vs real test cells' (50 PCs): "
    "ratio of medians, share closer than the test cells' 1st percentile",
    reference="distance to closest record (Park et al. 2018) against held-out real cells",
    options={"quantile": 0.01, "max_cells": None},
    bounds={"quantile": "(0, 1)", "max_cells": INTEGER_1},
    # quadratic in cells (every test and generated cell against every training cell): capped in quick
    profiles={"quick": {"max_cells": QUICK_MAX_CELLS}},
    table="memorisation",
    # the `real` control returns training cells: it is the copying extreme here, not the ideal
    not_scaled=("memorisation_ratio", "memorisation_share"),
    figures=(
        FigureSpec(
            "memorisation",
            "Memorisation: distance to the closest training cell",
            "Distance from each generated cell (red) and each real test cell (grey) to its closest training "
            "cell. A generator that copies training cells piles up left of the dashed line (the {quantile:g} "
            "quantile of the test cells' distances); the `real` control returns training cells, so it sits "
            "at 0 by construction.",
            draw=draw_memorisation,
            order=20,
            missing="no memorisation distances stored (metric 'memorisation')",
        ),
    ),
)


__all__ = ["MemorisationResult", "memorisation"]
