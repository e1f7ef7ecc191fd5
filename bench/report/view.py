"""What the report's figures read from the store: the planned tasks of the report (per task
slot, the latest run's), the finished ones, their values and artifacts, and the title and caption
each figure's metric declares (``Metric.figures``), filled with the options recorded with the values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.config import CONTROLS
from bench.registry import available
from bench.report.summary import (
    align_augmentation_arms,
    cell_text,
    finite,
    metric_options,
    order_models,
    params_of,
)
from bench.report.tables import Report, build


def model_label(model: str) -> str:
    """A model's name in a figure, a control marked."""
    return f"{model} (control)" if model in CONTROLS else model


def summary_cell(summary: pd.DataFrame, dataset: str, model: str, metric: str) -> tuple[float, float, str]:
    """(mean, sd, table text) of a main-experiment value; NaN and 'n/a' when absent."""
    hit = summary[
        (summary.dataset == dataset)
        & (summary.model == model)
        & (summary.metric == metric)
        & (summary.experiment == "main")
    ]
    if hit.empty:
        return float("nan"), float("nan"), "n/a"
    r = hit.iloc[0]
    return float(r["mean"]), float(r["sd"]), cell_text(r)


def declared_figures() -> dict[str, tuple[Any, Any]]:
    """{section: (metric, FigureSpec)} over the installed metrics (the first to declare a section)."""
    out: dict[str, tuple[Any, Any]] = {}
    for metric in available("metrics").values():
        for fig in metric.figures:
            out.setdefault(fig.section, (metric, fig))
    return out


def figures_of(part: str) -> list[tuple[Any, Any]]:
    """(metric, FigureSpec) of the drawable figures the installed metrics declare for one part of the
    report ("paper" or "suite"), by their ``order`` (ties: registry order)."""
    found = [(m, f) for m, f in declared_figures().values() if f.part == part and f.draw is not None]
    return sorted(found, key=lambda mf: mf[1].order)


class RunView:
    """What the figures read from the store (the ``view`` a metric's ``FigureSpec.draw`` gets): the
    planned tasks of the report (per task slot, the latest run's), the finished ones, their values
    (``values``: long format with params) and artifacts, and the ``summary`` over seeds."""

    def __init__(self, store, report: Report | None = None):
        self.store = store
        report = report if report is not None else build(store)
        planned = report.planned
        tasks = store.tasks()
        self.all_tasks = tasks[tasks.key.isin(set(planned.key))].reset_index(drop=True)
        self.tasks = self.all_tasks[self.all_tasks.status == "done"].reset_index(drop=True)
        self.values = report.values
        self.summary = report.summary

    @staticmethod
    def label(model: str) -> str:
        """A model's name in a figure, a control marked."""
        return model_label(model)

    @staticmethod
    def order(models: list[str]) -> list[str]:
        """Models in the report's order: by name, the controls last."""
        return order_models(models)

    def summary_cell(self, dataset: str, model: str, value: str) -> tuple[float, float, str]:
        """(mean, sd, table text) of a main-experiment value over seeds; NaN and 'n/a' when absent."""
        return summary_cell(self.summary, dataset, model, value)

    def arm_values(self, dataset: str, experiment: str) -> pd.DataFrame:
        """The finite values of an experiment's tasks on a dataset, each arm (values with a
        ``condition`` param) kept over the seeds every arm shares; ``params`` as dicts."""
        v = self.values[(self.values.dataset == dataset) & (self.values.experiment == experiment)]
        v = align_augmentation_arms(finite(v))
        return v.assign(params=list(params_of(v))) if len(v) else v.assign(params=[])

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
