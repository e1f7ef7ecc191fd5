"""The adapters of the paper's sample and fit metrics (AUC, MMD, CD, mean correlation, timing): each
takes what it needs from the :class:`~bench.evaluation.EvalContext` (generated cells in the
generator's output scale, transformed by the evaluation contract) and calls the pure function, and
returns a :class:`~bench.api.MetricOutput`. Their ``Metric`` declarations are in ``__init__.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.api import MetricOutput
from bench.metrics._auc import auc
from bench.metrics._correlation import correlation_discrepancy
from bench.metrics._mean_corr import mean_corr
from bench.metrics._mmd import mmd
from bench.metrics._timing import timing
from bench.metrics._utils import check_space


def score_auc(
    ctx,
    generated,
    *,
    seed: int,
    space: str = "genes",
    n_trees: int = 1000,
    folds: int = 5,
    n_jobs: int | None = None,
    max_cells: int | None = None,
) -> MetricOutput:
    check_space(space)
    real, fake = ctx.features(generated, space)
    res = auc(real, fake, seed=seed, n_trees=n_trees, folds=folds, n_jobs=n_jobs, max_cells=max_cells)
    artifacts: dict[str, np.ndarray] = {"fold_aucs": np.asarray(res.fold_aucs)}
    for k, (fpr, tpr) in enumerate(res.roc):
        artifacts[f"roc_fpr_{k}"] = fpr
        artifacts[f"roc_tpr_{k}"] = tpr
    info = {
        "space": ctx.space_name(space),
        "n_cells_per_side": res.n_cells,
        "n_trees": n_trees,
        "folds": folds,
    }
    return MetricOutput(values={"auc": res.auc, "auc_sd": res.auc_sd}, artifacts=artifacts, info=info)


def score_mmd(
    ctx,
    generated,
    *,
    seed: int,
    max_cells: int | None = None,
    block_size: int = 4096,
    scale_factors: tuple[float, ...] = (0.5, 1.0, 2.0),
    dtype: str = "float32",
    estimator: str = "unbiased",
) -> MetricOutput:
    real, fake = ctx.features(generated, "pca50")
    res = mmd(
        real,
        fake,
        seed=seed,
        scale_factors=tuple(scale_factors),
        max_cells=max_cells,
        block_size=block_size,
        device=ctx.device,
        dtype=dtype,
        estimator=estimator,
        cache=ctx.shared_for("mmd"),
    )
    info = {
        "space": ctx.space_name(),
        "scales": list(res.scales),
        "median_nn": res.median_nn,
        "n_cells_per_side": res.n_real,
        "device": ctx.device,
        "estimator": estimator,
        "kernel": "sum over scales",
    }
    return MetricOutput(values={"mmd": res.mmd}, info=info)


def score_cd(ctx, generated, *, seed: int, n_genes: int = 5, method: str = "wilcoxon") -> MetricOutput:
    genes = ctx.de_genes(n_genes=n_genes, method=method)
    index = {str(g): i for i, g in enumerate(ctx.train.var_names)}
    idx = np.array([index[g] for g in genes], dtype=int)
    X_log, _ = ctx.transform_generated(generated)
    res = correlation_discrepancy(ctx.test_log[:, idx], X_log[:, idx])
    artifacts = {
        "generated_corr": res.generated_corr.astype(np.float32),
        "real_corr": res.real_corr.astype(np.float32),
        "genes": np.asarray(genes, dtype=str),
        "column_sums": res.column_sums.astype(np.float32),
    }
    info = {"n_genes": len(genes), "de_method": method, "top_per_cluster": n_genes}
    return MetricOutput(values={"cd": res.cd}, artifacts=artifacts, info=info)


def score_mean_corr(ctx, generated, *, seed: int) -> MetricOutput:
    X_log, _ = ctx.transform_generated(generated)
    return MetricOutput(values={"mean_corr": mean_corr(ctx.test_log, X_log)})


def score_timing(ctx, fit_info: dict[str, Any], *, seed: int, n_cells: int = 100_000) -> MetricOutput:
    generation = fit_info["time_generation"](int(n_cells))
    values = timing(fit_info, generation)
    scaled = int(n_cells) != 100_000
    return MetricOutput(values=values, info={"generate_scaled_from": int(n_cells) if scaled else None})
