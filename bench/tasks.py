"""Running one task: :func:`execute_task` fits, generates and scores a task through
bench.pipeline and returns its :class:`TaskRecord`, written to the store in one transaction (local
executor) or to a record file that the driver merges (Slurm), so a task killed midway leaves nothing
behind. What a task is (its spec, key and record) is :mod:`bench.taskspec`, re-exported here.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from bench.api.contract import resolve_device
from bench.api.errors import TaskFailed, UserError
from bench.taskspec import (
    DataSpec,
    TaskRecord,
    TaskSpec,
    kept_cells,
    load_prepared,
    protocol_experiment,
    task_label,
)

__all__ = [
    "DataSpec",
    "TaskRecord",
    "TaskSpec",
    "describe_exception",
    "execute_task",
    "keep_cells",
    "kept_cells",
    "load_prepared",
    "protocol_experiment",
    "task_label",
]


_DATA_CACHE: dict[str, Any] = {}


@contextlib.contextmanager
def _clock(rec: TaskRecord, name: str):
    """Where the task's time went: the wall seconds of the block, kept as ``rec.info["seconds"][name]``
    (data preparation, the fit and its convergence snapshots, the generation, then each metric; the
    first metric to need them also pays the shared work: DE genes, PCA, ...)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        rec.info.setdefault("seconds", {})[name] = time.perf_counter() - t0


def _prepared(spec: TaskSpec, progress: bool):
    if spec.data_hash not in _DATA_CACHE:
        _DATA_CACHE.clear()
        data = spec.data.prepare(progress=progress)
        if data.hash != spec.data_hash:
            raise TaskFailed(
                f"prepared data hash {data.hash} differs from the planned {spec.data_hash}: "
                "the input file or preprocessing changed since the run was planned"
            )
        _DATA_CACHE[spec.data_hash] = data
    return _DATA_CACHE[spec.data_hash]


def execute_task(
    spec: TaskSpec,
    work_dir: str | Path,
    *,
    progress: bool = False,
    data=None,
    shared_dir: str | Path | None = None,
    kept_dir: str | Path | None = None,
) -> TaskRecord:
    """Fit, generate and score one task (through bench.pipeline); never raises for task failures
    (returns status 'failed'). ``shared_dir``: where the model-independent work is kept for the
    whole run (the run dir's ``shared/``; bench.evaluation.SharedWork); ``kept_dir``: where main
    tasks keep their generated cells for the protocol tasks (the run dir's ``generated/``)."""
    from bench.evaluation import EvalContext
    from bench.pipeline import Pipeline, score

    started = time.time()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rec = TaskRecord(key=spec.key, status="failed", started=started)
    device = None
    try:
        device = resolve_device(spec.device)
        if (
            data is not None and data.hash != spec.data_hash
        ):  # never score one dataset's task on another's cells
            raise TaskFailed(
                f"the task was planned on data {spec.data_hash} but handed data {data.hash} ({data.name})"
            )
        if data is None:
            with _clock(rec, "data"):
                data = _prepared(spec, progress)
        ctx = EvalContext(
            dataset=spec.dataset,
            train=data.train,
            test=data.test,
            label_key=data.label_key,
            profile=spec.profile,
            device=device,
            rare_class=spec.rare_class,
            seed=spec.seed,
        )
        if shared_dir is not None:
            ctx.share_on_disk(shared_dir, spec.data_hash)
        if spec.protocol != "genes":  # fits nothing: scores the main tasks' kept cells
            _protocol_experiment(spec, ctx, data, rec, kept_dir, shared_dir, work_dir)
        else:
            pipe = Pipeline(
                spec.model,
                spec.params,
                data.train,
                data.label_key,
                device=device,
                work_dir=work_dir / "model",
                timeout_s=spec.timeout_s,
                progress=progress,
            )
            if spec.experiment == "main":
                _main_experiment(spec, pipe, ctx, data, rec, kept_dir)
            else:
                options = spec.metrics.get(spec.experiment, {})
                with _clock(rec, f"metric {spec.experiment}"):
                    out = score(spec.experiment, ctx, pipe.fit_generate, seed=spec.seed, options=options)
                _collect(rec, spec.experiment, out)
        rec.status = "done"
    except UserError as exc:
        rec.error = f"{exc}"
    except TaskFailed as exc:
        rec.error = str(exc)
        rec.log_tail = exc.log_tail or None
    except Exception as exc:  # a bug in a plugin must not take the other tasks down
        rec.error = describe_exception(exc, spec, work_dir)
    rec.finished = time.time()
    rec.info["device"] = device
    return rec


def _main_experiment(spec: TaskSpec, pipe, ctx, data, rec: TaskRecord, kept_dir=None) -> None:
    """The main experiment's task: one fit (with convergence snapshots), one generation of the test
    set's size, and every metric that takes the main cells, the per-label cells or the fit."""
    from bench.convergence import ConvergenceMonitor
    from bench.pipeline import PerLabelCells, per_label_request, score
    from bench.registry import get_metric

    monitor = ConvergenceMonitor(ctx, pipe.validate, n_cells=data.test.n_obs, seed=spec.seed)
    monitor.start()
    # a positive control draws from the control reserve, the training cells the evaluation's fits
    # leave out (bench.evaluation); every other model trains on all training cells
    train = data.train[ctx.control_reserve] if pipe.cls.uses_control_reserve else data.train
    fitted = pipe.fit_model(train, spec.seed, on_snapshot=monitor, snapshot_cells=data.test.n_obs)
    result = fitted.result
    fit_wall = fitted.seconds - monitor.seconds
    rec.info.setdefault("seconds", {}).update({"fit": fit_wall, "convergence_snapshots": monitor.seconds})
    fit_info: dict[str, Any] = {
        "train_seconds": result.train_seconds if result.train_seconds is not None else fit_wall,
        "fit_wall_seconds": fit_wall,
        "peak_rss_mb": fitted.peak_rss_mb,
        "peak_gpu_mb": fitted.peak_gpu_mb,
        "train_steps": result.steps,
        "cells_seen": result.cells_seen,
    }
    rec.fit_seconds, rec.peak_rss_mb, rec.peak_gpu_mb = fit_wall, fitted.peak_rss_mb, fitted.peak_gpu_mb
    rec.info["fit"] = result.to_dict()
    if pipe.cls.conditional and spec.generation == "per-label":
        request: int | dict[str, int] = per_label_request(data.test, data.label_key)
    else:
        request = int(data.test.n_obs)
    with _clock(rec, "generate"):
        generated = pipe.generate_cells(fitted, request, seed=spec.seed + 1)
    ctx.cache["generated"] = generated
    if spec.keep_generated and kept_dir is not None:
        keep_cells(generated, kept_cells(kept_dir, spec.key))
    fit_info["time_generation"] = lambda n: pipe.time_generation(fitted, n, seed=spec.seed + 2)
    per_label = PerLabelCells(pipe, fitted, generated, request, data.test, spec.seed)
    # what each metric declares it takes (Metric.main_input); experiment metrics run as their own task
    inputs = {"main": lambda: generated, "per-label": per_label.get, "fit": lambda: fit_info}
    for name, options in spec.metrics.items():
        metric = get_metric(name)
        if metric.main_input is None:
            continue
        arg = inputs[metric.main_input]()
        if arg is None:  # per-label cells of an unconditional model: n/a
            continue
        # score() keeps torch's thread count for the next metric and for generation
        with _clock(rec, f"metric {name}"):
            out = score(metric, ctx, arg, seed=spec.seed, options=options)
        _collect(rec, name, out, protocol="genes" if metric.kind == "sample" else None)
    for name, value in monitor.values().items():
        rec.values.append((name, float(value)))
    for name, arr in monitor.artifacts().items():
        rec.artifacts[f"convergence/{name}"] = arr
    rec.info["output_scale"] = pipe.cls.output_scale


def _protocol_experiment(spec: TaskSpec, ctx, data, rec: TaskRecord, kept_dir, shared_dir, work_dir) -> None:
    """A protocol task: the kept cells of ``spec.inputs`` embedded with the real test cells in
    ``spec.protocol`` (bench.protocols.shared), then every metric of the task scored on its own model's
    embedding, with the main task's seed (so the metrics draw the subsamples the main task drew)."""
    import anndata as ad

    from bench.pipeline import score
    from bench.protocols.shared import embedding

    if kept_dir is None:
        raise TaskFailed(f"protocol {spec.protocol}: no run dir holds the main tasks' generated cells")
    cells = {}
    for model, key in spec.inputs.items():
        path = kept_cells(kept_dir, key)
        if not path.is_file():
            joint = (
                " (a joint grouping needs every model's cells; a pairwise one does not)"
                if len(spec.inputs) > 1
                else ""
            )
            raise TaskFailed(
                f"protocol {spec.protocol}: no generated cells of {model} (main task {key}) in {kept_dir}: "
                f"its main task failed or did not keep them; they are made when it runs again{joint}"
            )
        cells[model] = ad.read_h5ad(path)
    embedded = embedding(spec, ctx, data, cells, shared_dir, Path(work_dir))
    ctx.protocol, ctx.embedding = spec.protocol, embedded.pairs[spec.model]
    for name, options in spec.metrics.items():
        _collect(
            rec, name, score(name, ctx, cells[spec.model], seed=spec.seed, options=options), spec.protocol
        )
    rec.info["protocol"] = embedded.record
    meta = cells[spec.model].uns.get("scgenbench", {})
    rec.info["output_scale"] = meta.get("output_scale") if isinstance(meta, dict) else None


def describe_exception(exc: BaseException, spec: TaskSpec, work_dir: Path) -> str:
    """One line for an unexpected exception (type, message, the generator's file:line, where the
    traceback is); the full traceback goes to ``work_dir/task.log``."""
    frames = traceback.extract_tb(exc.__traceback__)
    where, base = (frames[-1] if frames else None), None
    try:  # the innermost frame in the generator's own code: its package folder, or its lone module
        from bench.registry import get_generator

        cls = get_generator(spec.model)
        source = Path(inspect.getfile(cls)).resolve()
        in_package = "." in cls.__module__ or source.name == "__init__.py"
        home = source.parent if in_package else source
        mine = [f for f in frames if Path(f.filename).resolve().is_relative_to(home)]
        if mine:
            where, base = mine[-1], source.parent.parent if in_package else source.parent
    except Exception:  # unknown model or no source file: the innermost frame will do
        pass
    place = ""
    if where is not None:
        path = Path(where.filename)
        if base is not None:
            path = path.resolve().relative_to(base)
        place = f" ({path}:{where.lineno})"
    message = (str(exc).strip().splitlines() or [""])[0]
    log = Path(work_dir) / "task.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(exc))
    log.write_text(f"{spec.label} (task {spec.key}) failed:\n{text}")
    return f"{type(exc).__name__}: {message}{place}; traceback in {log}"


def keep_cells(generated, path: Path) -> None:
    """Write generated cells to ``path`` atomically (a temp file renamed), for the protocol tasks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    generated.write_h5ad(tmp)
    os.replace(tmp, path)


def _collect(rec: TaskRecord, metric: str, out, protocol: str | None = None) -> None:
    """Add a metric's output to the record; ``protocol``: the evaluation protocol its values were
    scored in, recorded in each value's params (None: a value no protocol applies to, e.g. a time)."""
    for name, value in out.values.items():
        rec.values.append((name, float(value) if value is not None else float("nan")))
        params = {**out.params.get(name, {}), **({"protocol": protocol} if protocol else {})}
        if params:
            rec.params[name] = params
    for name, arr in out.artifacts.items():
        rec.artifacts[f"{metric}/{name}"] = np.asarray(arr)
    if out.info:
        rec.info.setdefault("metrics", {})[metric] = out.info
