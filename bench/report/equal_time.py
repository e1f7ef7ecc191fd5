"""Quality at equal training seconds, from the convergence snapshots (bench.convergence).

Each iteratively trained model is scored at 1/8, 1/4, 1/2 and all of its own budget, and each
snapshot records the training seconds spent so far. This table reads those curves at common
budgets in seconds: the columns are the models' own full training times (median over seeds,
shortest first), and a cell holds the convergence value (MMD for the built-ins) of the model's
last snapshot taken within that many seconds, as mean ± sd over the seeds that had one (``(n/N)``
when n of its N seeds had one). So each
column compares every model after the same training time; a model whose training had ended
within the column's seconds shows its final value, marked, since it could have trained longer.
Training seconds count the fit alone (snapshot scoring is left out, bench.convergence), so the
columns are equal compute only where the tasks ran on the same hardware and thread count
(provenance)."""

from __future__ import annotations

import numpy as np
import pandas as pd

ENDED = "‡"
NOT_YET = "–"


def value_at(curve: dict[str, np.ndarray], value: str, seconds: float) -> tuple[float, bool] | None:
    """(value of the last snapshot within ``seconds`` of training, whether it was the run's last
    snapshot); None when the first snapshot came later or the curve lacks the value."""
    if value not in curve:
        return None
    t = np.asarray(curve["train_seconds"], float)
    v = np.asarray(curve[value], float)
    within = np.flatnonzero(t <= seconds * (1 + 1e-9))
    if not len(within):
        return None
    i = int(within[np.argmax(t[within])])
    return float(v[i]), i == int(np.argmax(t))


def budgets(curves: dict[str, list[dict[str, np.ndarray]]]) -> dict[str, float]:
    """{model: median over seeds of its full training seconds (its last snapshot's)}."""
    return {m: float(np.median([np.max(c["train_seconds"]) for c in runs])) for m, runs in curves.items()}


def _cell(points: list[tuple[float, bool]], of: int) -> str:
    """mean ± sd of ``points``; ``of``: the model's seeds with a curve, shown as ``(n/of)`` when
    fewer of them had a snapshot within the column's seconds (as the other tables show n/N)."""
    if not points:
        return NOT_YET
    v = np.array([p for p, _ in points])
    text = f"{v.mean():.3f}" if len(v) == 1 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"
    text += ENDED if all(ended for _, ended in points) else ""
    return text + (f" ({len(v)}/{of})" if len(v) < of else "")


def equal_seconds_table(
    curves: dict[str, list[dict[str, np.ndarray]]], value: str | None = None
) -> pd.DataFrame:
    """Models x common budgets (columns ``at N s``: each model's own full training time, shortest
    first): the value (default: the convergence value, bench.convergence) each model had reached
    within that many training seconds. ``curves``: the snapshots per model and seed
    (:func:`bench.report.figures_training.convergence_curves`). Empty when no model kept snapshots
    with that value."""
    from bench.convergence import convergence_value

    value = value or convergence_value()
    curves = {m: kept for m, runs in curves.items() if (kept := [c for c in runs if value in c])}
    if not curves:
        return pd.DataFrame()
    ends = budgets(curves)
    table = {
        f"at {t:,.0f} s ({', '.join(m for m, e in ends.items() if e == t)})": [
            _cell([p for c in curves[m] if (p := value_at(c, value, t)) is not None], len(curves[m]))
            for m in curves
        ]
        for t in sorted(set(ends.values()))
    }
    df = pd.DataFrame(table, index=pd.Index(list(curves), name="model"))
    df.attrs["value"] = value
    return df


def caption(value: str) -> str:
    return (
        f"{value} (mean ± sd over seeds) of each model's last convergence snapshot taken within the "
        "column's training seconds; each column is one model's own full training time (median over "
        f"seeds; (n/N): only n of the model's N seeds had a snapshot by then). {NOT_YET}: its first snapshot (1/8 of its budget) came later. {ENDED}: its training "
        "had ended by then (its final value; it could have trained longer). Training seconds are the "
        "fit's alone, so the columns are equal compute only for tasks on the same hardware and thread "
        "count (provenance)."
    )
