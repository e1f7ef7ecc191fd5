"""`bench tune`: the one procedure that sets every model's `standard` profile.

For one model and dataset: hold out a balanced 10 % of the *training* cells as a validation split
(the test split is never touched), fit the model on the rest once per point of a small grid
(by default learning rate x batch size, each generator's ``tuning`` grid), all points with the
same training budget in epochs -- the same number of training cells seen, so every point and every
model gets the same effort in data -- generate as many cells as the validation split holds, and
score them against it with the main experiment's evaluation contract (MMD on 50 PCs, which ranks
the points; CD and mean_corr are shown too). The table goes to ``OUT/<model>-<dataset>.json`` and
``.md``; the lowest MMD wins and is what the model's ``standard`` profile commits, with the sweep
table next to it (docs/tuning.md).
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.api.errors import UserError
from bench.convergence import convergence_value, snapshot_metrics

VALIDATION_FRACTION = 0.1


def validation_split(train, label_key: str, *, seed: int = 0, fraction: float = VALIDATION_FRACTION):
    """(fit part, validation part) of the training cells: a balanced split, as the test split is made."""
    from bench.datasets.preprocess import balanced_split

    labels = train.obs[label_key].astype(str).to_numpy()
    split = balanced_split(labels, test_fraction=fraction, seed=seed)
    return train[split == "train"].copy(), train[split == "test"].copy()


def parse_grid(items: list[str] | None) -> dict[str, list[Any]] | None:
    """``["lr=1e-3,5e-3", "batch_size=64,128"]`` -> ``{"lr": [0.001, 0.005], "batch_size": [64, 128]}``."""
    if not items:
        return None
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, _, values = item.partition("=")
        if not name or not values:
            raise UserError(
                f"cannot read grid axis {item!r}", "write --grid NAME=V1,V2, e.g. --grid lr=1e-3,5e-3"
            )
        grid[name.strip()] = [_grid_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def _grid_value(text: str) -> Any:
    """A number where the text reads as one (``1e-3``, ``.5``, ``64``), true/false, else the text."""
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def tune(
    model: str,
    dataset: str = "pbmc3k",
    *,
    profile: str = "standard",
    grid: dict[str, list[Any]] | None = None,
    budget: str | None = None,
    seed: int = 0,
    label_key: str | None = None,
    device: str = "cpu",
    out: str | Path = "results/tuning",
    console=None,
) -> pd.DataFrame:
    """Run the sweep; return its table (one row per grid point, best first) and write it to ``out``."""
    from bench import datasets
    from bench.api.generator import Budget
    from bench.config import PROFILES
    from bench.evaluation import EvalContext
    from bench.pipeline import Pipeline, score
    from bench.registry import get_generator

    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}'", f"use one of: {', '.join(PROFILES)}")
    cls = get_generator(model)
    grid = grid or dict(getattr(cls, "tuning", {}) or {})
    if not grid:
        raise UserError(f"generator '{model}' declares no tuning grid", "pass one with --grid NAME=V1,V2")
    budget = budget or getattr(cls, "tuning_budget", None)
    if budget is not None and Budget.parse(budget, what="--budget").unit != "epochs":
        raise UserError(
            f"tuning budget {budget!r} is not in epochs",
            'the sweep compares points at equal cells seen: give e.g. --budget "300 epochs"',
        )
    prepared = datasets.prepare(dataset, label_key=label_key, n_top_genes=PROFILES[profile]["n_top_genes"])
    fit_part, val = validation_split(prepared.train, prepared.label_key, seed=seed)
    ctx = EvalContext(
        dataset=prepared.name,
        train=fit_part,
        test=val,
        label_key=prepared.label_key,
        profile=profile,
        device=device,
        seed=seed,
    )
    earlier = _earlier_rows(Path(out) / f"{model}-{prepared.name}.json", prepared.hash, profile, budget, seed)
    rows = [r for r in earlier if _point_of(r, grid) not in [_key(p) for p in grid_points(grid)]]
    points = grid_points(grid)
    for i, point in enumerate(points, 1):
        shown = ", ".join(f"{k}={v}" for k, v in point.items())
        done = [r for r in earlier if _point_of(r, grid) == _key(point)]
        if done:  # the same point of the same sweep was measured before: reuse it, like `bench run`
            rows.append(done[0])
            if console is not None:
                console.print(
                    f"[{i}/{len(points)}] {shown}: reused ({label_of(ranked_by())} {done[0][ranked_by()]:.4f})"
                )
            continue
        overrides = {**cls.tuning_params(point)}
        if budget is not None:
            overrides["budget"] = budget
        params = cls.params_for_profile(profile, overrides)
        with tempfile.TemporaryDirectory(prefix="scgenbench-tune-") as work:
            pipe = Pipeline(cls, params, fit_part, prepared.label_key, device=device, work_dir=work)
            fitted = pipe.fit_model(fit_part, seed)
            cells = pipe.generate_cells(fitted, int(val.n_obs), seed=seed + 1)
        row: dict[str, Any] = {**point}
        # the metrics' snapshot scores (Metric.snapshot); score() keeps torch's thread count
        for name, options, values in snapshot_metrics():
            out_values = score(name, ctx, cells, seed=seed, options=options).values
            row.update({v: float(out_values[v]) for v in values if v in out_values})
        first = ranked_by()  # the ranking value first, as the table is read
        row = {**point, first: row[first], **{k: v for k, v in row.items() if k not in point and k != first}}
        row.update(
            steps=fitted.result.steps,
            cells_seen=fitted.result.cells_seen,
            fit_seconds=round(fitted.seconds, 1),
        )
        rows.append(row)
        if console is not None:
            scored = _score_keys() - BUDGET_KEYS
            scores = ", ".join(f"{label_of(v)} {row[v]:.4g}" for v in row if v in scored)
            console.print(f"[{i}/{len(points)}] {shown}: {scores}, {row['fit_seconds']:.0f} s")
    higher = direction_of(ranked_by()) == "higher"
    table = (
        pd.DataFrame(rows)
        .sort_values(ranked_by(), ascending=not higher, kind="stable")
        .reset_index(drop=True)
    )
    axes = list(dict.fromkeys([*grid, *(k for r in earlier for k in _axes_of(r))]))
    full_grid = {a: sorted({r[a] for r in rows if a in r}, key=str) for a in axes}
    _write(table, model, prepared, profile, budget, seed, full_grid, out)
    return table


def ranked_by() -> str:
    """The value a sweep ranks its points by: the metrics' declared convergence value (MMD)."""
    value = convergence_value()
    if value is None:
        raise UserError(
            "no installed metric declares a convergence value to rank a sweep by", "see `bench list metrics`"
        )
    return value


def direction_of(value: str) -> str | None:
    from bench.registry import available

    return next((m.direction_of(value) for m in available("metrics").values() if m.direction_of(value)), None)


BUDGET_KEYS = {"steps", "cells_seen", "fit_seconds"}


def label_of(value: str) -> str:
    """How a value is named to users: its metric's headline label (``MMD``), else its name."""
    from bench.registry import available

    return next((m.headline[value] for m in available("metrics").values() if value in m.headline), value)


def _score_keys() -> set[str]:
    return {v for _, _, vs in snapshot_metrics() for v in vs} | BUDGET_KEYS


def _axes_of(row: dict[str, Any]) -> list[str]:
    keys = _score_keys()
    return [k for k in row if k not in keys]


def best_point(table: pd.DataFrame) -> tuple[dict[str, Any], float]:
    """The winning grid point of a sweep's table (its first row, the best validation score of
    :func:`ranked_by`) and that score."""
    row = table.to_dict("records")[0]
    return {k: row[k] for k in _axes_of(row)}, float(row[ranked_by()])


def _key(point: dict[str, Any]) -> tuple:
    return tuple(sorted((k, float(v) if isinstance(v, int | float) else v) for k, v in point.items()))


def _point_of(row: dict[str, Any], grid: dict[str, list[Any]]) -> tuple:
    return _key({k: row[k] for k in _axes_of(row)})


def _earlier_rows(path: Path, data_hash: str, profile: str, budget, seed: int) -> list[dict[str, Any]]:
    """Rows of an earlier sweep of the same model, data, profile, budget and seed (else none)."""
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    same = (doc.get("data_hash"), doc.get("profile"), doc.get("budget"), doc.get("seed"))
    return list(doc.get("rows", [])) if same == (data_hash, profile, budget, seed) else []


def _write(table: pd.DataFrame, model: str, prepared, profile: str, budget, seed: int, grid, out) -> None:
    from bench import provenance

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{model}-{prepared.name}"
    doc = {
        "model": model,
        "dataset": prepared.name,
        "data_hash": prepared.hash,
        "profile": profile,
        "budget": budget,
        "seed": seed,
        "grid": grid,
        "validation": f"balanced {VALIDATION_FRACTION:.0%} of the training cells (split seed {seed})",
        "ranked_by": ranked_by(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": provenance.collect(None),
        "rows": json.loads(table.to_json(orient="records")),
    }
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    lines = [
        f"# {model} on {prepared.name}: tuning sweep ({profile} profile, budget {budget or 'profile default'})",
        "",
        "Validation: "
        + doc["validation"]
        + f"; ranked by {label_of(doc['ranked_by'])} ({direction_of(doc['ranked_by'])} is better).",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    for r in table.itertuples(index=False):
        cells = [f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


__all__ = ["best_point", "grid_points", "parse_grid", "tune", "validation_split"]
