"""Convergence evidence: cheap metrics of the cells an iterative generator hands the harness
part-way through training (``FitContext.snapshot``, at 1/8, 1/4, 1/2 and all of its budget).

The harness scores each snapshot against the real test cells with every installed metric that
declares ``Metric.snapshot`` (its cheap options; the built-ins: MMD and AUC on 50 PCs, AUC with a
100-tree forest, correlation discrepancy and mean_corr) and keeps one row per snapshot: step, cells
seen, training seconds so far, and each metric's directional values. ``<value>_gain_last_doubling``,
for the value a metric declares as ``Metric.convergence`` (the built-ins: MMD) = (value at half the
budget - value at the full budget) / value at half: above 0.1 the last doubling of the budget still
improved it by more than 10 %, i.e. the model had not converged.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anndata as ad
import numpy as np

from bench.api.generator import Snapshot

NOT_CONVERGED_GAIN = 0.10


def snapshot_metrics() -> list[tuple[str, dict, list[str]]]:
    """(metric, its snapshot options, the values it contributes) of every installed metric that
    declares ``snapshot``, in registry order."""
    from bench.registry import available

    return [
        (m.name, dict(m.snapshot), list(m.directions))
        for m in available("metrics").values()
        if m.snapshot is not None
    ]


def convergence_value() -> str | None:
    """The value an installed metric declares as its ``convergence`` value (None: none does)."""
    from bench.registry import available

    return next((m.convergence for m in available("metrics").values() if m.convergence), None)


def gain_name(value: str | None = None) -> str:
    """The name of the convergence value's gain over the last doubling (``mmd_gain_last_doubling``)."""
    return f"{value or convergence_value()}_gain_last_doubling"


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
        for name, options, values in snapshot_metrics():
            out = score(name, self.ctx, cells, seed=self.seed, options=options)
            row.update({v: float(out.values[v]) for v in values if v in out.values})
        self.rows.append(row)
        self.seconds += time.perf_counter() - t0

    # -- results ------------------------------------------------------------------------------
    def artifacts(self) -> dict[str, np.ndarray]:
        if not self.rows:
            return {}
        rows = sorted(self.rows, key=lambda r: r["step"])
        columns = list(dict.fromkeys(c for r in rows for c in r))
        return {col: np.array([r.get(col, np.nan) for r in rows], dtype=np.float64) for col in columns}

    def values(self) -> dict[str, float]:
        """``snapshots`` (count) and the convergence value's gain over the last doubling
        (:func:`gain_name`), when there are snapshots."""
        if not self.rows:
            return {}
        rows = sorted(self.rows, key=lambda r: r["step"])
        out = {"snapshots": float(len(rows))}
        last = rows[-1]
        half = [r for r in rows[:-1] if abs(r["step"] - last["step"] / 2) <= 0.1 * last["step"]]
        value = convergence_value()
        if value is not None and half and half[-1].get(value, 0) != 0:
            out[gain_name(value)] = (half[-1][value] - last[value]) / abs(half[-1][value])
        return out
