"""What the report's figures read from the store: the planned tasks of the report (per task
slot, the latest run's), the finished ones, their values and artifacts, and the title and caption
each figure's metric declares (``Metric.figures``), filled with the options recorded with the values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.registry import available
from bench.report.summary import metric_options, order_models
from bench.report.tables import Report, build


def declared_figures() -> dict[str, tuple[Any, Any]]:
    """{section: (metric, FigureSpec)} over the installed metrics (the first to declare a section)."""
    out: dict[str, tuple[Any, Any]] = {}
    for metric in available("metrics").values():
        for fig in metric.figures:
            out.setdefault(fig.section, (metric, fig))
    return out


class RunView:
    """What the figures read from the store: the planned tasks of the report (per task slot, the
    latest run's), the finished ones and their artifacts."""

    def __init__(self, store, report: Report | None = None):
        self.store = store
        report = report if report is not None else build(store)
        planned = report.planned
        tasks = store.tasks()
        self.all_tasks = tasks[tasks.key.isin(set(planned.key))].reset_index(drop=True)
        self.tasks = self.all_tasks[self.all_tasks.status == "done"].reset_index(drop=True)
        self.values = report.values

    def main_tasks(self, dataset: str) -> pd.DataFrame:
        t = self.tasks
        return t[(t.dataset == dataset) & (t.experiment == "main")]

    def models(self, dataset: str) -> list[str]:
        return order_models(sorted(set(self.tasks[self.tasks.dataset == dataset].model)))

    def artifacts(self, key: str, prefix: str) -> dict[str, np.ndarray]:
        names = [n for n in self.store.artifact_names(key) if n.startswith(prefix + "/")]
        return {n[len(prefix) + 1 :]: self.store.artifact(key, n) for n in names}

    def figure_tasks(self, dataset: str, prefix: str, required: str) -> tuple[int | None, dict[str, str]]:
        """One main task per model holding artifact ``prefix/required``, all of one seed when
        possible (the lowest seed the most models share): {model: task key}."""
        t = self.main_tasks(dataset)
        have: dict[str, dict[int, str]] = {}
        for r in t.itertuples():
            if f"{prefix}/{required}" in self.store.artifact_names(r.key):
                have.setdefault(r.model, {})[int(r.seed)] = r.key
        if not have:
            return None, {}
        seeds = sorted({s for d in have.values() for s in d})
        seed = max(seeds, key=lambda s: (sum(s in d for d in have.values()), -s))
        chosen = {m: d.get(seed, d[min(d)]) for m, d in have.items()}
        order = order_models(list(chosen))
        return seed, {m: chosen[m] for m in order}

    def options(self, metric: str, keys) -> list[dict[str, Any]]:
        """The distinct options ``metric`` ran with over the given tasks (from their specs)."""
        opts = metric_options(self.store, keys).get(metric)
        return [] if opts is None else opts if isinstance(opts, list) else [opts]

    def title(self, section: str) -> str:
        """The heading of a figure section, as its metric declares it."""
        found = declared_figures().get(section)
        return found[1].title if found else section

    def caption(self, section: str, dataset: str, keys=None, seed: int | None = None) -> str:
        """The caption of a figure section: its metric's template filled with the options recorded
        with the values of ``keys`` (default: every finished task of the dataset); when tasks ran
        with different options, one caption per set of options. ``seed``: the seed drawn."""
        found = declared_figures().get(section)
        if found is None:
            return ""
        metric, _ = found
        if keys is None:
            keys = self.tasks[self.tasks.dataset == dataset].key
        texts: list[str] = []
        for opts in self.options(metric.name, list(keys)) or [{}]:
            text = metric.caption(section, opts)
            if text not in texts:
                texts.append(text)
        return " / ".join(texts) + (f" Seed {seed}." if seed is not None else "")

    def task_value(self, key: str, metric: str) -> float | None:
        hit = self.values[(self.values.task_key == key) & (self.values.metric == metric)]
        return float(hit.value.iloc[0]) if len(hit) else None

    def seed_of(self, key: str) -> int:
        return int(self.tasks[self.tasks.key == key].seed.iloc[0])
