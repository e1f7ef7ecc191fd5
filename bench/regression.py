"""Regression gate: compare a run's metric means with a committed baseline.

Every gated value is put on a lower-is-better scale first (:func:`bench.api.metric.badness`:
``value`` for ↓ metrics, ``-value`` for ↑ ones, ``|value - target|`` for a target such as AUC's
0.5). A value *regressed* when that moved up by more than the slack

    slack = max(sd_units × baseline sd, rel × scale),    scale = |baseline mean|  (↓, ↑)
                                                         scale = |baseline mean − target|  (→)

i.e. relative to the value's own size and its seed-to-seed spread, with no absolute floor (an
absolute floor of 0.01 once let an MMD rise of 36 % through); it *improved* when it moved the
other way by more than the slack. A baseline value the run lacks is ``not run`` when the run did
not plan it (that model, experiment or metric was not part of the run: missing by design; not a
failure) and ``missing`` when the run planned it but has no value (its tasks failed or did not
finish: a failure); ``incomplete`` when fewer seeds than planned have a value (a failure too).
Hardware-dependent values (times, memory) and informational values (``auc_sd``) are not gated:
speed has its own pytest-benchmark suite.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.api.errors import UserError
from bench.api.metric import badness
from bench.registry import available
from bench.report import direction_of, summarise
from bench.timing import HARDWARE_VALUES

FORMAT = 2
READABLE_FORMATS = (1, 2)
HARDWARE_DEPENDENT = frozenset(HARDWARE_VALUES)
DEFAULT_TOLERANCE = {"sd_units": 3.0, "rel": 0.05}
FAILING = ("regressed", "missing", "incomplete")
COLOUR = {
    "pass": "green",
    "improved": "cyan",
    "regressed": "red",
    "missing": "red",
    "incomplete": "red",
    "not run": "yellow",
}


def _scoped(df: pd.DataFrame, experiments: list[str] | None, models: list[str] | None) -> pd.DataFrame:
    if experiments is not None:
        df = df[df.experiment.isin(experiments)]
    if models is not None:
        df = df[df.model.isin(models)]
    return df


def _run_state(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(summary with n / n_planned / status, planned tasks, last run) of a run dir: per task slot the
    task its latest run planned."""
    from bench.store import Store

    with Store(run_dir, create=False) as store:
        planned = store.planned()
        values = store.values(list(planned.key))
        runs = store.runs()
    if planned.empty:
        raise UserError(f"no tasks in {run_dir}", "run `bench run` first")
    return summarise(values, planned), planned, (runs[-1] if runs else {})


def gated(metric: str) -> tuple[str, float | None] | None:
    """(direction, target) of a value the gate checks; None for informational and hardware values."""
    if metric in HARDWARE_DEPENDENT:
        return None
    direction, target = direction_of(metric)
    return None if direction is None else (direction, target)


def write_baseline(
    run_dir: str | Path,
    out: str | Path,
    tolerance: dict[str, float] | None = None,
    *,
    experiments: list[str] | None = None,
    models: list[str] | None = None,
    console=None,
) -> Path:
    """Write the baseline of a run dir: every gated value's mean, seed sd, n, direction (and
    target) within ``experiments`` / ``models`` (default: all). Refuses a run with failed or
    unfinished tasks in scope; warns when a value has a single seed (no seed spread)."""
    summary, planned, last = _run_state(run_dir)
    summary = _scoped(summary, experiments, models)
    planned = _scoped(planned, experiments, models)
    if summary.empty:
        raise UserError(
            f"no values in {run_dir} for experiments {experiments or 'all'} and models {models or 'all'}",
            "check --experiments / --models against the run",
        )
    bad = planned[planned.status != "done"]
    if len(bad):
        what = ", ".join(
            f"{r.model}/seed{r.seed}/{r.experiment} ({r.status})" for r in bad.head(5).itertuples()
        )
        raise UserError(
            f"{len(bad)} task(s) of {run_dir} did not finish: {what}",
            "a baseline must come from a complete run: rerun them, or leave those models out with --models",
        )
    rows = []
    for r in summary.itertuples():
        kind = gated(r.metric)
        if kind is None or r.n == 0 or math.isnan(r.mean):
            continue
        sd = None if math.isnan(r.sd) else float(r.sd)
        rows.append(
            {
                "dataset": r.dataset,
                "model": r.model,
                "experiment": r.experiment,
                "metric": r.metric,
                "direction": kind[0],
                "target": kind[1],
                "mean": float(r.mean),
                "sd": sd,
                "n": int(r.n),
                "n_planned": int(r.n_planned),
            }
        )
    single = sorted({f"{v['model']}/{v['experiment']}" for v in rows if v["n"] < 2})
    if single and console is not None:
        console.print(
            f"[yellow]warning[/yellow]: {', '.join(single)} ha{'s' if len(single) == 1 else 've'} a "
            "single seed, so the baseline has no seed spread for them: the gate's slack is then only "
            f"rel × |value| ({DEFAULT_TOLERANCE['rel']:.0%}); write it from a run with several seeds "
            "(e.g. --seeds 0,1,2)"
        )
    doc = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tolerance": {**DEFAULT_TOLERANCE, **(tolerance or {})},
        "scope": {"experiments": experiments, "models": models},
        "scoring": ((last.get("provenance") or {}).get("code") or {}).get("scoring"),
        "spec": last.get("spec"),
        "provenance": last.get("provenance"),
        "values": rows,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return out


def _upgrade_v1(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A format-1 baseline read with today's conventions: directions from the installed metrics
    (AUC towards 0.5; auc_sd no longer gated), no absolute floor, and MMD values multiplied by the
    number of kernel scales (format 1 averaged the kernel over its scales; it is now summed)."""
    notes = [
        "baseline format 1: read with today's conventions (AUC gated by |AUC - 0.5|, auc_sd not "
        "gated, no absolute floor, MMD x number of scales as the kernel now sums them); regenerate it "
        "with `bench baseline` when convenient"
    ]
    options = (doc.get("spec") or {}).get("metric_options") or {}
    factors = {  # value -> factor, as the metrics declare (Metric.from_v1: MMD x its number of scales)
        value: metric.from_v1(value, options.get(metric.name) or {})
        for metric in available("metrics").values()
        if metric.from_v1 is not None
        for value in metric.directions
    }
    values = []
    for v in doc["values"]:
        kind = gated(v["metric"])
        if kind is None:
            continue
        v = {**v, "direction": kind[0], "target": kind[1]}
        factor = factors.get(v["metric"], 1.0)
        if factor != 1.0:
            v["mean"] = v["mean"] * factor
            v["sd"] = None if v.get("sd") is None else v["sd"] * factor
        values.append(v)
    tol = {k: val for k, val in (doc.get("tolerance") or {}).items() if k in DEFAULT_TOLERANCE}
    return {**doc, "format": FORMAT, "tolerance": {**DEFAULT_TOLERANCE, **tol}, "values": values}, notes


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read a baseline file (format 1 is upgraded, see :func:`_upgrade_v1`; its notes in
    ``doc['notes']``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"baseline file not found: {path}", "write one with `bench baseline RUN_DIR -o FILE`")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(
            f"baseline {path} is not valid JSON: {exc}", "regenerate it with `bench baseline`"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") not in READABLE_FORMATS or "values" not in doc:
        raise UserError(
            f"{path} is not a scgenbench baseline (format {FORMAT})", "regenerate it with `bench baseline`"
        )
    notes: list[str] = []
    if doc["format"] == 1:
        doc, notes = _upgrade_v1(doc)
    doc["notes"] = notes
    return doc


def _plugin_of(metric: str) -> str | None:
    """The installed metric plugin that writes a value name."""
    for name, m in available("metrics").items():
        if m.direction_of(metric) is not None:
            return name
    return None


def compare(
    summary: pd.DataFrame,
    baseline: dict[str, Any],
    *,
    planned: pd.DataFrame | None = None,
    rel: float | None = None,
    sd_units: float | None = None,
    experiments: list[str] | None = None,
    models: list[str] | None = None,
) -> pd.DataFrame:
    """One row per baseline value in scope: baseline, current, slack, status (see the module doc).
    ``planned`` (the run's planned tasks) tells values missing by design from missing by failure;
    without it every absent value is ``missing``."""
    tol = {**DEFAULT_TOLERANCE, **(baseline.get("tolerance") or {})}
    if rel is not None:
        tol["rel"] = rel
    if sd_units is not None:
        tol["sd_units"] = sd_units
    current = {(r.dataset, r.model, r.experiment, r.metric): r for r in summary.itertuples()}
    plan: dict[tuple[str, str, str], set[str]] = {}
    if planned is not None:
        for r in planned.itertuples():
            plan.setdefault((r.dataset, r.model, r.experiment), set()).update(r.metrics or [])
    rows = []
    for b in baseline["values"]:
        if (experiments is not None and b["experiment"] not in experiments) or (
            models is not None and b["model"] not in models
        ):
            continue
        key = (b["dataset"], b["model"], b["experiment"], b["metric"])
        kind = gated(b["metric"])
        direction, target = kind if kind is not None else (b.get("direction", "lower"), b.get("target"))
        scale = abs(badness(b["mean"], direction, target))
        slack = max(tol["sd_units"] * (b.get("sd") or 0.0), tol["rel"] * scale)
        cur = current.get(key)
        value = float("nan") if cur is None or cur.n == 0 else float(cur.mean)
        if math.isnan(value):
            status = "missing"
            if planned is not None:
                tasks = plan.get(key[:3])
                plugin = _plugin_of(b["metric"])
                if tasks is None or (plugin is not None and tasks and plugin not in tasks):
                    status = "not run"
        else:
            worse = badness(value, direction, target) - badness(b["mean"], direction, target)
            status = "regressed" if worse > slack else "improved" if worse < -slack else "pass"
            if status != "regressed" and cur.n < cur.n_planned:
                status = "incomplete"
        rows.append(
            {
                "dataset": key[0],
                "model": key[1],
                "experiment": key[2],
                "metric": key[3],
                "direction": direction,
                "target": target,
                "baseline": b["mean"],
                "current": value,
                "slack": slack,
                "n": 0 if cur is None else int(cur.n),
                "n_planned": 0 if cur is None else int(cur.n_planned),
                "status": status,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "model",
            "experiment",
            "metric",
            "direction",
            "target",
            "baseline",
            "current",
            "slack",
            "n",
            "n_planned",
            "status",
        ],
    )


def check(
    run_dir: str | Path,
    baseline_path: str | Path,
    *,
    console=None,
    rel: float | None = None,
    sd_units: float | None = None,
    experiments: list[str] | None = None,
    models: list[str] | None = None,
) -> int:
    """Print the comparison; return 1 on any regressed, missing or incomplete value, else 0."""
    baseline = load_baseline(baseline_path)
    summary, planned, last = _run_state(run_dir)
    result = compare(
        summary, baseline, planned=planned, rel=rel, sd_units=sd_units, experiments=experiments, models=models
    )
    if result.empty:
        raise UserError(
            f"the baseline {baseline_path} has no value for experiments {experiments or 'all'} and "
            f"models {models or 'all'}",
            "check --experiments / --models",
        )
    if (result.status == "not run").all():
        raise UserError(
            f"{run_dir} planned none of the {len(result)} value(s) of {baseline_path} (other datasets, "
            "models or experiments)",
            "run the baseline's config (its `spec`) into the run dir first",
        )
    if console is not None:
        from rich.table import Table

        for note in baseline.get("notes", []):
            console.print(f"[yellow]note[/yellow]: {note}")
        run_scoring = ((last.get("provenance") or {}).get("code") or {}).get("scoring")
        if baseline.get("scoring") and run_scoring and baseline["scoring"] != run_scoring:
            console.print(
                f"[yellow]note[/yellow]: the scoring code changed since the baseline "
                f"({baseline['scoring']} -> {run_scoring}): if a metric's definition changed, "
                "regenerate the baseline"
            )
        t = Table(title=f"regression check against {baseline_path}", title_justify="left")
        for col in (
            "dataset",
            "model",
            "experiment",
            "metric",
            "baseline",
            "current",
            "slack",
            "seeds",
            "status",
        ):
            t.add_column(col, justify="right" if col in ("baseline", "current", "slack", "seeds") else "left")
        for r in result.itertuples():
            metric = f"{r.metric} (→{r.target:g})" if r.direction == "target" else r.metric
            t.add_row(
                r.dataset,
                r.model,
                r.experiment,
                metric,
                f"{r.baseline:.4g}",
                f"{r.current:.4g}",
                f"{r.slack:.3g}",
                f"{r.n}/{r.n_planned}" if r.n_planned else "-",
                f"[{COLOUR[r.status]}]{r.status}[/]",
            )
        console.print(t)
        counts = result.status.value_counts().to_dict()
        console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
        if counts.get("not run"):
            console.print(
                f"{counts['not run']} baseline value(s) are not part of this run (model, experiment or "
                "metric not planned): not checked; scope the check with --experiments / --models "
                "to say so explicitly"
            )
    return 1 if result.status.isin(FAILING).any() else 0
