"""Tasks: the unit of work (dataset x model x seed x experiment), what runs it and what it returns.

A task is a pure function of (prepared data hash, model name + parameters + code version, seed,
experiment, metric options, scoring code version): its key is the hash of those, which makes
resume and caching safe; editing a model's or the scoring's code changes the key
(bench.codeversion). A task's
result is a :class:`TaskRecord`, written to the store in one transaction (local executor) or to a
record file that the driver merges (Slurm), so a task killed midway leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.contract import resolve_device
from bench.errors import TaskFailed, UserError


@contextlib.contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Keep torch's CPU thread count across a scoring call.

    scanpy's ``rank_genes_groups`` (the DE genes of CD and of other metrics) runs numba kernels whose
    OpenMP layer sets the thread count of the libgomp that torch shares to every core. Measured:
    ``torch.get_num_threads()`` went from 1 (``OMP_NUM_THREADS=1``) to 2 after one CD, so ACTIVA's
    fit changed thread count at its first convergence snapshot, and with the other core busy its
    OpenMP barrier spun: 16 s per epoch instead of 1.3."""
    torch = sys.modules.get("torch")
    n = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if n is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _threads_kept(fn: Callable) -> Callable:
    def call(*args, **kwargs):
        with torch_threads_kept():
            return fn(*args, **kwargs)

    return call


@dataclass
class DataSpec:
    dataset: str
    label_key: str | None
    split_seed: int
    test_fraction: float
    n_top_genes: int | None

    def prepare(self, progress: bool = False, write_cache: bool = True, check_orientation: bool = True):
        from bench import datasets

        return datasets.prepare(
            self.dataset,
            label_key=self.label_key,
            split_seed=self.split_seed,
            test_fraction=self.test_fraction,
            n_top_genes=self.n_top_genes,
            progress=progress,
            write_cache=write_cache,
            check_orientation=check_orientation,
        )


def task_label(dataset: str, model: str, seed: int, experiment: str) -> str:
    """How a task is named to users (progress lines, failures, `bench status`)."""
    return f"{dataset}/{model}/seed{seed}/{experiment}"


@dataclass
class TaskSpec:
    dataset: str  # display name
    data: DataSpec
    data_hash: str
    model: str
    params: dict[str, Any]
    seed: int
    experiment: str  # "main" or the experiment metric's name
    metrics: dict[str, dict[str, Any]]  # metric name -> options
    profile: str
    rare_class: str | None = None
    device: str = "cpu"
    timeout_s: float | None = None
    generation: str = "unconditional"  # main experiment: "unconditional" or "per-label"
    # code versions (bench.codeversion): the generator's {distribution, version, code_hash, ...}
    # and the hash of the scoring code; both go into the key
    code: dict[str, Any] = field(default_factory=dict)
    scoring: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            ident = {
                "data": self.data_hash,
                "model": self.model,
                "code": self.code,
                "params": self.params,
                "seed": self.seed,
                "experiment": self.experiment,
                "metrics": self.metrics,
                "rare_class": self.rare_class,
                "generation": self.generation,
                "scoring": self.scoring,
            }
            blob = json.dumps(ident, sort_keys=True, default=str).encode()
            self.key = hashlib.sha256(blob).hexdigest()[:20]

    @property
    def label(self) -> str:
        return task_label(self.dataset, self.model, self.seed, self.experiment)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        d = dict(d)
        d["data"] = DataSpec(**d["data"])
        return cls(**d)


@dataclass
class TaskRecord:
    key: str
    status: str  # "done" | "failed"
    values: list[tuple[str, float]] = field(default_factory=list)  # (metric value name, value)
    # value name -> its parameters (MetricOutput.params: condition, fraction, cell type ...)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    fit_seconds: float | None = None
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    error: str | None = None
    log_tail: str | None = None
    host: str = field(default_factory=lambda: os.uname().nodename)

    # -- record files (Slurm jobs write these; the driver merges them) -------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: the file appears complete or not at all."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in asdict(self).items() if k != "artifacts"}
        buf = io.BytesIO()
        np.savez_compressed(
            buf, __meta__=np.frombuffer(json.dumps(meta, default=str).encode(), np.uint8), **self.artifacts
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> TaskRecord:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["__meta__"].tobytes().decode())
            arts = {k: z[k] for k in z.files if k != "__meta__"}
        meta["values"] = [tuple(v) for v in meta["values"]]
        return cls(**meta, artifacts=arts)


# -- running one task ---------------------------------------------------------------------------

_DATA_CACHE: dict[str, Any] = {}


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
) -> TaskRecord:
    """Fit, generate and score one task; never raises for task failures (returns status 'failed').
    ``shared_dir``: where the model-independent work is kept for the whole run (the run dir's
    ``shared/``; bench.evaluation.SharedWork)."""
    from bench.convergence import ConvergenceMonitor
    from bench.evaluation import EvalContext
    from bench.generators.base import (
        SNAPSHOT_FRACTIONS,
        FitContext,
        FitResult,
        bind_training_data,
        validate_output,
    )
    from bench.registry import get_generator, get_metric
    from bench.timing import measure, time_generation

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
        data = data or _prepared(spec, progress)
        gen_cls = get_generator(spec.model)
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
        ctx.cache["output_scale"] = gen_cls.output_scale
        if shared_dir is not None:
            ctx.share_on_disk(shared_dir, spec.data_hash)
        known = sorted(data.train.obs[data.label_key].astype(str).unique())
        genes = list(map(str, data.train.var_names))

        def validate(gen, out, request):
            return validate_output(
                gen, out, var_names=genes, label_key=data.label_key, known_labels=known, requested=request
            )

        def fit(train, seed, on_snapshot=None, n_snapshot=0):
            """A fresh generator of the task's model, fitted on ``train``: (generator, measurement)."""
            gen = gen_cls(**spec.params)
            bind_training_data(gen, train, data.label_key)
            deadline = None if spec.timeout_s is None else time.monotonic() + float(spec.timeout_s)
            fctx = FitContext(
                label_key=data.label_key,
                seed=int(seed),
                device=device,
                work_dir=work_dir / "model",
                deadline=deadline,
                progress=progress,
                snapshot_fractions=SNAPSHOT_FRACTIONS if on_snapshot is not None else (),
                snapshot_cells=int(n_snapshot),
                on_snapshot=_threads_kept(on_snapshot) if on_snapshot else None,
            )
            fctx.work_dir.mkdir(parents=True, exist_ok=True)
            return gen, measure(lambda: gen.fit(train, fctx))

        def fit_generate(train_subset, request, seed):
            gen, _ = fit(train_subset, seed)
            return validate(gen, gen.generate(request, seed=seed + 1), request)

        if spec.experiment == "main":
            monitor = ConvergenceMonitor(
                ctx, lambda cells, n: validate(gen_cls, cells, n), n_cells=data.test.n_obs, seed=spec.seed
            )
            monitor.start()
            # a positive control draws from the control reserve, the training cells the evaluation's
            # fits leave out (bench.evaluation); every other model trains on all training cells
            train = (
                data.train[ctx.control_reserve]
                if getattr(gen_cls, "uses_control_reserve", False)
                else data.train
            )
            gen, m = fit(train, spec.seed, monitor, data.test.n_obs)
            result = m.result if isinstance(m.result, FitResult) else FitResult()
            fit_wall = m.seconds - monitor.seconds
            fit_info: dict[str, Any] = {
                "train_seconds": result.train_seconds if result.train_seconds is not None else fit_wall,
                "fit_wall_seconds": fit_wall,
                "peak_rss_mb": m.peak_rss_mb,
                "peak_gpu_mb": m.peak_gpu_mb,
                "train_steps": result.steps,
                "cells_seen": result.cells_seen,
            }
            rec.fit_seconds, rec.peak_rss_mb, rec.peak_gpu_mb = fit_wall, m.peak_rss_mb, m.peak_gpu_mb
            rec.info["fit"] = result.to_dict()
            if gen_cls.conditional and spec.generation == "per-label":
                test_labels = data.test.obs[data.label_key].astype(str)
                request: int | dict[str, int] = {
                    k: int(v) for k, v in test_labels.value_counts().items() if v > 0
                }
            else:
                request = int(data.test.n_obs)
            generated = validate(gen, gen.generate(request, seed=spec.seed + 1), request)
            ctx.cache["generated"] = generated
            fit_info["time_generation"] = lambda n: time_generation(
                lambda k, s: gen.generate(k, seed=s), n, seed=spec.seed + 2
            )
            per_label = PerLabelCells(gen, generated, request, data, validate, spec.seed)
            # what each metric declares it takes (Metric.main_input); experiment metrics run as their own task
            inputs = {"main": lambda: generated, "per-label": per_label.get, "fit": lambda: fit_info}
            for name, options in spec.metrics.items():
                metric = get_metric(name)
                if metric.main_input is None:
                    continue
                arg = inputs[metric.main_input]()
                if arg is None:  # per-label cells of an unconditional model: n/a
                    continue
                with torch_threads_kept():  # each metric: the next one, and generation, keep the count
                    out = metric.func(ctx, arg, seed=spec.seed, **options)
                _collect(rec, name, out)
            for name, value in monitor.values().items():
                rec.values.append((name, float(value)))
            for name, arr in monitor.artifacts().items():
                rec.artifacts[f"convergence/{name}"] = arr
            rec.info["output_scale"] = gen_cls.output_scale
        else:
            metric = get_metric(spec.experiment)
            options = spec.metrics.get(spec.experiment, {})
            with torch_threads_kept():
                out = metric.func(ctx, fit_generate, seed=spec.seed, **options)
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


class PerLabelCells:
    """The cells that ``cells="per-label"`` metrics score (per-type metrics): for a conditional
    model, exactly the test set's count of each label. The main generation when it already was
    per-label; otherwise one extra generation (seed + 3; the main one uses seed + 1, the timing
    seed + 2), made on first use and validated like every output. ``None`` for unconditional models."""

    def __init__(self, gen, generated, request, data, validate, seed: int):
        self.gen, self.generated, self.request = gen, generated, request
        self.data, self.validate, self.seed = data, validate, seed
        self._cells = None

    def get(self):
        if not type(self.gen).conditional:
            return None
        if isinstance(self.request, dict):
            return self.generated
        if self._cells is None:
            counts = self.data.test.obs[self.data.label_key].astype(str).value_counts()
            request = {str(k): int(v) for k, v in counts.items() if v > 0}
            self._cells = self.validate(self.gen, self.gen.generate(request, seed=self.seed + 3), request)
        return self._cells


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


def _collect(rec: TaskRecord, metric: str, out) -> None:
    for name, value in out.values.items():
        rec.values.append((name, float(value) if value is not None else float("nan")))
        if out.params.get(name):
            rec.params[name] = dict(out.params[name])
    for name, arr in out.artifacts.items():
        rec.artifacts[f"{metric}/{name}"] = np.asarray(arr)
    if out.info:
        rec.info.setdefault("metrics", {})[metric] = out.info
