"""Convergence evidence: cheap metrics of the cells an iterative generator hands the harness
part-way through training (``FitContext.snapshot``, at 1/8, 1/4, 1/2 and all of its budget).

The harness scores each snapshot against the real test cells with the main experiment's
evaluation contract -- MMD and AUC on 50 PCs (AUC with a 100-tree forest), correlation
discrepancy and mean_corr -- and keeps one row per snapshot: step, cells seen, training seconds
so far, and the four scores. ``mmd_gain_last_doubling`` = (MMD at half the budget - MMD at the
full budget) / MMD at half: above 0.1 the last doubling of the budget still improved MMD by more
than 10 %, i.e. the model had not converged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anndata as ad
import numpy as np

from bench.api.generator import Snapshot

# (metric, options, value it contributes)
CHEAP_METRICS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("mmd", {}, "mmd"),
    ("correlation_discrepancy", {}, "cd"),
    ("mean_corr", {}, "mean_corr"),
    ("auc", {"space": "pca50", "n_trees": 100}, "auc"),
)
COLUMNS = ("step", "cells_seen", "train_seconds", *(v for _, _, v in CHEAP_METRICS))
NOT_CONVERGED_GAIN = 0.10


class ConvergenceMonitor:
    """The ``on_snapshot`` callback the runner puts into a :class:`FitContext`.

    ``ctx``: the task's :class:`~bench.evaluation.EvalContext`; ``validate(adata, n_cells)``: the
    runner's output validation; ``n_cells``: cells wanted per snapshot (the test set's size).
    ``seconds`` accumulates the time spent here (generating and scoring), which the runner
    leaves out of the fit's wall time."""

    def __init__(self, ctx, validate: Callable[[ad.AnnData, int], ad.AnnData], *, n_cells: int, seed: int):
        self.ctx, self.validate, self.n_cells, self.seed = ctx, validate, int(n_cells), int(seed)
        self.rows: list[dict[str, float]] = []
        self.seconds = 0.0
        self._fit_start = time.perf_counter()

    def start(self) -> None:
        """Mark the start of fit (training seconds of a snapshot default to fit time so far)."""
        self._fit_start = time.perf_counter()
        self.seconds = 0.0

    def __call__(self, snap: Snapshot) -> None:
        from bench.pipeline import score

        t0 = time.perf_counter()
        elapsed = t0 - self._fit_start - self.seconds
        cells = snap.cells
        if callable(cells):
            cells = cells(self.n_cells, self.seed + 7919 * (snap.step + 1))
        cells = self.validate(cells, self.n_cells)
        row: dict[str, float] = {
            "step": float(snap.step),
            "cells_seen": float("nan") if snap.cells_seen is None else float(snap.cells_seen),
            "train_seconds": float(elapsed if snap.train_seconds is None else snap.train_seconds),
        }
        for name, options, value in CHEAP_METRICS:
            out = score(name, self.ctx, cells, seed=self.seed, options=options)
            row[value] = float(out.values[value])
        self.rows.append(row)
        self.seconds += time.perf_counter() - t0

    # -- results ------------------------------------------------------------------------------
    def artifacts(self) -> dict[str, np.ndarray]:
        if not self.rows:
            return {}
        rows = sorted(self.rows, key=lambda r: r["step"])
        return {col: np.array([r[col] for r in rows], dtype=np.float64) for col in COLUMNS}

    def values(self) -> dict[str, float]:
        """``mmd_gain_last_doubling`` and ``snapshots`` (count), when there are snapshots."""
        if not self.rows:
            return {}
        rows = sorted(self.rows, key=lambda r: r["step"])
        out = {"snapshots": float(len(rows))}
        last = rows[-1]
        half = [r for r in rows[:-1] if abs(r["step"] - last["step"] / 2) <= 0.1 * last["step"]]
        if half and half[-1]["mmd"] != 0:
            out["mmd_gain_last_doubling"] = (half[-1]["mmd"] - last["mmd"]) / abs(half[-1]["mmd"])
        return out
