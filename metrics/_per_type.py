"""Distribution metrics within each cell type: generated cells of type t against real cells of type t."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.api import INTEGER_1, INTEGER_2, FigureSpec, Metric, MetricOutput
from bench.metrics._auc import auc
from bench.metrics._de_recovery import generated_labels
from bench.metrics._energy import energy_distance
from bench.metrics._mmd import mmd
from bench.metrics._utils import check_same_genes
from bench.metrics.figures.suite import draw_per_type

PER_TYPE_METRICS = ("mmd", "energy", "auc")
# per-type values with an ideal value rather than "lower is better": AUC's is 0.5
TARGETS = {"auc": 0.5}


@dataclass
class PerTypeResult:
    """``types``: the cell types scored (sorted); ``values[metric]``: one value per type, in that
    order; ``n_cells``: cells per side per type; ``skipped``: type -> why it was not scored."""

    types: list[str]
    values: dict[str, np.ndarray]
    n_cells: np.ndarray
    skipped: dict[str, str] = field(default_factory=dict)

    def mean(self, metric: str) -> float:
        v = self.values[metric]
        return float(np.mean(v)) if len(v) else float("nan")

    def worst(self, metric: str) -> float:
        """The worst value over types: the largest MMD or energy distance; for AUC (ideal 0.5, so
        0.3 is as bad as 0.7) the AUC furthest from 0.5, as it is."""
        v = np.asarray(self.values[metric], dtype=np.float64)
        if not len(v):
            return float("nan")
        if metric in TARGETS:
            return float(v[np.argmax(np.abs(v - TARGETS[metric]))])
        return float(np.max(v))


def per_type(
    real,
    real_labels,
    fake,
    fake_labels,
    *,
    seed: int,
    metrics: tuple[str, ...] = PER_TYPE_METRICS,
    min_cells: int = 10,
    n_trees: int = 200,
    folds: int = 5,
    n_jobs: int | None = None,
    max_cells: int | None = 2000,
    device: str = "cpu",
    cache: dict | None = None,
) -> PerTypeResult:
    """MMD, energy distance and classifier AUC computed within each cell type.

    Definition: for every type t with at least ``min_cells`` real and ``min_cells`` generated cells,
    the metric between the real cells labelled t and the generated cells *generated for* t (a
    conditional model asked for the test set's per-type counts)::

        M_t = M(real[labels == t], fake[fake_labels == t])      M in {mmd, energy, auc}
        mean = 1/|T| sum_t M_t          worst = max_t M_t

    with M as in :func:`~bench.metrics.mmd` (unbiased MMD^2, bandwidths from the real cells of
    type t), :func:`~bench.metrics.energy_distance` and :func:`~bench.metrics.auc` (random forest,
    ``folds``-fold CV). A generator that produces the right cells under the wrong label, or that
    gets the abundant types right and the rare ones wrong, scores well on the pooled metrics and
    badly here. MMD and energy: lower is better; AUC: 0.5 is ideal, ranked and gated by
    |AUC - 0.5| (``auc_type_mean`` is the mean AUC over types, ``auc_type_worst`` the AUC of the
    type furthest from 0.5).

    Parameters
    ----------
    real, fake
        Cells x features (dense), e.g. the 50 principal components of the evaluation space.
    real_labels, fake_labels
        Cell type of every row of ``real`` / ``fake``.
    seed
        Seeds every subsample, fold split and forest (the same seed for each type).
    metrics
        Which of ``("mmd", "energy", "auc")`` to compute.
    min_cells
        Types with fewer cells on either side are skipped (and listed in ``skipped``); the AUC needs
        at least ``folds`` per side.
    n_trees, folds, n_jobs
        The forest of :func:`~bench.metrics.auc`.
    max_cells
        Cap on cells per side within a type.
    device, cache
        Passed to MMD (torch device; cache of the real-real kernel term) and the energy distance.
    """
    check_same_genes(real, fake)
    unknown = sorted(set(metrics) - set(PER_TYPE_METRICS))
    if unknown:
        raise ValueError(f"unknown per-type metric(s) {unknown}; use {PER_TYPE_METRICS}")
    real, fake = np.asarray(real), np.asarray(fake)
    real_labels = np.asarray(real_labels, dtype=str)
    fake_labels = np.asarray(fake_labels, dtype=str)
    if len(real_labels) != len(real) or len(fake_labels) != len(fake):
        raise ValueError("one label per cell is needed on both sides")
    minimum = max(int(min_cells), folds if "auc" in metrics else 2, 2)
    types: list[str] = []
    skipped: dict[str, str] = {}
    values: dict[str, list[float]] = {m: [] for m in metrics}
    n_cells: list[int] = []
    for t in sorted(set(real_labels) | set(fake_labels)):
        x, y = real[real_labels == t], fake[fake_labels == t]
        if len(x) < minimum or len(y) < minimum:
            skipped[t] = f"{len(x)} real and {len(y)} generated cells (< {minimum})"
            continue
        types.append(t)
        if "mmd" in metrics:
            values["mmd"].append(mmd(x, y, seed=seed, max_cells=max_cells, device=device, cache=cache).mmd)
        if "energy" in metrics:
            values["energy"].append(
                energy_distance(x, y, seed=seed, max_cells=max_cells, device=device).energy
            )
        n_side = min(len(x), len(y), max_cells or len(x))
        if "auc" in metrics:
            res = auc(x, y, seed=seed, n_trees=n_trees, folds=folds, n_jobs=n_jobs, max_cells=max_cells)
            values["auc"].append(res.auc)
        n_cells.append(n_side)
    return PerTypeResult(
        types=types,
        values={m: np.asarray(v, dtype=np.float64) for m, v in values.items()},
        n_cells=np.asarray(n_cells, dtype=int),
        skipped=skipped,
    )


def _score_per_type(
    ctx,
    generated,
    *,
    seed: int,
    metrics: tuple[str, ...] = PER_TYPE_METRICS,
    min_cells: int = 10,
    n_trees: int = 200,
    folds: int = 5,
    n_jobs: int | None = None,
    max_cells: int | None = 2000,
) -> MetricOutput:
    _, pcs = ctx.transform_generated(generated)
    res = per_type(
        ctx.test_pcs,
        ctx.labels("test"),
        pcs,
        generated_labels(ctx, generated),
        seed=seed,
        metrics=tuple(metrics),
        min_cells=min_cells,
        n_trees=n_trees,
        folds=folds,
        n_jobs=n_jobs,
        max_cells=max_cells,
        device=ctx.device,
        cache=ctx.shared_for("per_type"),
    )
    values: dict[str, float] = {}
    for m in metrics:
        values[f"{m}_type_mean"] = res.mean(m)
        values[f"{m}_type_worst"] = res.worst(m)
    artifacts = {"types": np.asarray(res.types, dtype=str), "n_cells": res.n_cells, **res.values}
    info = {"space": "pca50", "types": res.types, "skipped": res.skipped, "n_trees": n_trees, "folds": folds}
    return MetricOutput(values=values, artifacts=artifacts, info=info)


PER_TYPE = Metric(
    name="per_type",
    measures="biology",
    func=_score_per_type,
    directions={
        f"{m}_type_{s}": "target" if m in TARGETS else "lower"
        for m in PER_TYPE_METRICS
        for s in ("mean", "worst")
    },
    targets={f"{m}_type_{s}": t for m, t in TARGETS.items() for s in ("mean", "worst")},
    description="MMD, energy distance and RF AUC within each cell type (generated for t vs real test t, "
    "50 PCs): mean over types and worst type",
    reference="per-type form of the paper's MMD/AUC (sections 5.2-5.3) and the energy distance",
    requires_conditional=True,
    cells="per-label",
    options={
        "metrics": PER_TYPE_METRICS,
        "min_cells": 10,
        "n_trees": 200,
        "folds": 5,
        "n_jobs": None,
        "max_cells": 2000,
    },
    choices={"metrics": PER_TYPE_METRICS},
    bounds={"min_cells": INTEGER_2, "n_trees": INTEGER_1, "folds": INTEGER_2, "max_cells": INTEGER_2},
    profiles={"quick": {"n_trees": 100}},
    table="per type",
    figures=(
        FigureSpec(
            "per_type",
            "Per cell type: MMD, energy distance and AUC within each type",
            "MMD, energy distance and random-forest AUC ({n_trees} trees, {folds} folds) between the cells a "
            "conditional model generated for a type and the real test cells of that type (blank: fewer than "
            "{min_cells} cells on a side). A model that mixes types up scores well on the pooled metrics and "
            "badly here.",
            draw=draw_per_type,
            order=30,
            missing="no per-type values (metric 'per_type'; conditional models, types with enough cells)",
        ),
    ),
)


__all__ = ["PER_TYPE_METRICS", "PerTypeResult", "per_type"]
