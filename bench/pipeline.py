"""The one place that instantiates, fits, generates, validates and scores a generator.

``bench.tasks.execute_task`` (every task of ``bench run``), ``bench tune``, the scaling curve
(bench/scalecurve.py), the investigations (scripts/investigations/) and the test helpers
(tests/conftest.py) all go through here; no other module calls a generator's ``fit`` or
``generate`` or a metric's ``func`` (``tests/test_pipeline.py`` holds the rule).

* :class:`Pipeline`: one model (class and parameters) against one training set (its genes and
  label set, what every output is validated against): :meth:`Pipeline.fit_model` a fresh generator
  (:class:`Fitted`), :meth:`Pipeline.generate_cells` validated cells, :meth:`Pipeline.fit_generate`
  (what an experiment metric is handed);
* :func:`fit`: record the training genes and labels on a generator, then time and measure its
  ``fit`` (bench.timing.measure);
* :func:`score`: one metric on one set of cells, keeping torch's thread count;
* :func:`speed_probe`: the torch-only path (no AnnData): a model's speed probe, which the GPU check
  (bench/gpucheck.py) trains and samples on tensors.

Every output is validated (``bench.api.validate_output``), which records the generator's declared
output scale on the AnnData (``uns['scgenbench']['output_scale']``): the scale travels with the
cells and nowhere else. Under the ``all-genes`` normalisation (docs/datasets.md) a
``library-size-20000`` cell is one on the training data's scale: its selected genes sum to at most
20,000 (their share of a library size of 20,000 over all genes), which is what is checked there.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.api.contract import LIBRARY_SIZE, LIBRARY_SIZE_TOLERANCE
from bench.api.errors import TaskFailed
from bench.api.generator import (
    SNAPSHOT_FRACTIONS,
    FitContext,
    FitResult,
    Generator,
    Snapshot,
    bind_training_data,
    validate_output,
)
from bench.api.metric import Metric, MetricOutput
from bench.api.speed import SpeedProbe
from bench.timing import GenerationTiming, measure, time_generation

if TYPE_CHECKING:  # not imported at run time: the torch-only path (speed_probe) runs without AnnData
    import anndata as ad


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


def threads_kept(fn: Callable) -> Callable:
    """``fn`` wrapped in :func:`torch_threads_kept`."""

    def call(*args, **kwargs):
        with torch_threads_kept():
            return fn(*args, **kwargs)

    return call


@dataclass
class Fitted:
    """A fitted generator and the harness's measurement of its ``fit``: ``result`` (what ``fit``
    returned; an empty FitResult when it returned something else), ``seconds`` (wall time),
    ``peak_rss_mb`` and ``peak_gpu_mb`` (bench.timing.measure)."""

    generator: Generator
    result: FitResult
    seconds: float
    peak_rss_mb: float | None
    peak_gpu_mb: float | None


def generator_class(model: str | type[Generator]) -> type[Generator]:
    """A generator class by registered name (bench.registry), or the class itself."""
    if isinstance(model, str):
        from bench.registry import get_generator

        return get_generator(model)
    return model


def speed_probe(
    model: str | type[Generator],
    n_genes: int,
    n_classes: int,
    *,
    seed: int,
    device: str,
    batch_size: int,
    precision: str,
    mode: str,
) -> SpeedProbe:
    """A fresh model's torch-only speed probe (``Generator.speed_probe``). A name is looked up
    alone (bench.registry.get_alone): the other plugins are not imported, so this runs with PyTorch
    and without AnnData."""
    if isinstance(model, str):
        from bench.registry import get_alone

        model = get_alone("generators", model)
    return model.speed_probe(
        n_genes, n_classes, seed=seed, device=device, batch_size=batch_size, precision=precision, mode=mode
    )


def fit(gen: Generator, train: ad.AnnData, ctx: FitContext) -> Fitted:
    """What the harness does around ``gen.fit``: record the training genes (in order), the sorted
    training labels and the label key on the generator, then call ``fit(train, ctx)`` under
    :func:`bench.timing.measure`."""
    bind_training_data(gen, train, ctx.label_key)
    m = measure(lambda: gen.fit(train, ctx))
    result = m.result if isinstance(m.result, FitResult) else FitResult()
    return Fitted(gen, result, m.seconds, m.peak_rss_mb, m.peak_gpu_mb)


def score(
    metric: str | Metric, ctx: Any, cells: Any, *, seed: int, options: dict[str, Any] | None = None
) -> MetricOutput:
    """One metric (by registered name or declaration) on ``cells`` (what its kind takes: generated
    cells, the fit measurements, or the ``fit_generate`` callable of an experiment), with the
    task's :class:`~bench.evaluation.EvalContext`; torch's thread count is kept across the call."""
    if isinstance(metric, str):
        from bench.registry import get_metric

        metric = get_metric(metric)
    with torch_threads_kept():
        return metric.func(ctx, cells, seed=seed, **(options or {}))


class Pipeline:
    """One model against one training set.

    ``model``: a registered name or a Generator class; ``params``: its parameters (resolved: the
    profile's and the user's); ``train``: the training cells whose genes and label set every output
    is validated against (a fit may use a subset of them); ``label_key``; ``device``: already
    resolved; ``work_dir``: the fits' private directory (made on first use; ``None``: none);
    ``timeout_s``: each fit's time limit (FitContext.deadline); ``progress``: show bars."""

    def __init__(
        self,
        model: str | type[Generator],
        params: dict[str, Any] | None,
        train: ad.AnnData,
        label_key: str,
        *,
        device: str = "cpu",
        work_dir: str | Path | None = None,
        timeout_s: float | None = None,
        progress: bool = False,
    ):
        self.cls = generator_class(model)
        self.params = dict(params or {})
        self.label_key = label_key
        self.genes = list(map(str, train.var_names))
        self.known_labels = sorted(train.obs[label_key].astype(str).unique())
        self.device = device
        self.work_dir = None if work_dir is None else Path(work_dir)
        self.timeout_s = timeout_s
        self.progress = progress
        self.normalisation = normalisation_of(train)

    def context(
        self,
        seed: int,
        *,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        snapshot_cells: int = 0,
    ) -> FitContext:
        """The frozen FitContext of one fit (the deadline counts from now)."""
        deadline = None if self.timeout_s is None else time.monotonic() + float(self.timeout_s)
        ctx = FitContext(
            label_key=self.label_key,
            seed=int(seed),
            device=self.device,
            work_dir=self.work_dir,
            deadline=deadline,
            progress=self.progress,
            snapshot_fractions=SNAPSHOT_FRACTIONS if on_snapshot is not None else (),
            snapshot_cells=int(snapshot_cells),
            on_snapshot=threads_kept(on_snapshot) if on_snapshot else None,
        )
        if ctx.work_dir is not None:
            ctx.work_dir.mkdir(parents=True, exist_ok=True)
        return ctx

    def fit_model(
        self,
        train: ad.AnnData,
        seed: int,
        *,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        snapshot_cells: int = 0,
    ) -> Fitted:
        """A fresh generator of the model, fitted on ``train`` with ``seed``."""
        gen = self.cls(**self.params)
        return fit(gen, train, self.context(seed, on_snapshot=on_snapshot, snapshot_cells=snapshot_cells))

    def validate(self, cells: ad.AnnData, request: int | dict[str, int]) -> ad.AnnData:
        """``cells`` checked against the request, the training genes and labels and the model's
        declared output scale (recorded on the cells); TaskFailed otherwise. Under the ``all-genes``
        normalisation a ``library-size-20000`` cell must sum to at most 20,000 (+1 %), not to 20,000."""
        declared = self.cls.output_scale
        relaxed = self.normalisation == "all-genes" and declared == "library-size-20000"
        if relaxed:
            import anndata as ad

            totals = np.asarray(cells.X.sum(axis=1)).ravel() if isinstance(cells, ad.AnnData) else np.zeros(0)
            over = int((totals > LIBRARY_SIZE * (1 + LIBRARY_SIZE_TOLERANCE)).sum())
            if over:
                raise TaskFailed(
                    f"{self.cls.name}: declares output_scale 'library-size-20000' but {over} cells sum to more "
                    "than 20,000 (under the all-genes normalisation the selected genes sum to at most 20,000)"
                )
        checked = SimpleNamespace(name=self.cls.name, output_scale="counts") if relaxed else self.cls
        out = validate_output(
            checked,
            cells,
            var_names=self.genes,
            label_key=self.label_key,
            known_labels=self.known_labels,
            requested=request,
        )
        if relaxed:  # the evaluation treats both scales alike; the declared one is what is recorded
            out.uns["scgenbench"]["output_scale"] = declared
        return out

    def generate_cells(self, fitted: Fitted, request: int | dict[str, int], *, seed: int) -> ad.AnnData:
        """Validated cells from a fitted generator: ``request`` cells, or per label for a dict."""
        return self.validate(fitted.generator.generate(request, seed=seed), request)

    def fit_generate(self, train: ad.AnnData, request: int | dict[str, int], seed: int) -> ad.AnnData:
        """Fit a fresh generator on ``train`` with ``seed`` and return validated cells generated
        with ``seed + 1``: what an experiment metric (augmentation) is handed."""
        return self.generate_cells(self.fit_model(train, seed), request, seed=seed + 1)

    def time_generation(self, fitted: Fitted, n_cells: int, *, seed: int) -> GenerationTiming:
        """Time the fitted generator's ``generate()`` for ``n_cells`` cells (bench.timing)."""
        return time_generation(lambda k, s: fitted.generator.generate(k, seed=s), n_cells, seed=seed)


def normalisation_of(train: ad.AnnData) -> str:
    """The normalisation the prepared data ``train`` was made with (``uns['scgenbench']``'s
    ``info_json``; 'hvg', the default, for data prepared before the option or elsewhere)."""
    meta = train.uns.get("scgenbench")
    try:
        info = json.loads(meta["info_json"]) if isinstance(meta, dict) and "info_json" in meta else {}
    except (TypeError, ValueError):
        info = {}
    params = info.get("params") if isinstance(info.get("params"), dict) else {}
    if params.get("n_top_genes") is None:
        return "hvg"  # no gene selection: both normalisations are the same data
    return str(params.get("normalisation") or info.get("normalisation") or "hvg")


class PerLabelCells:
    """The cells that ``cells="per-label"`` metrics score (per-type metrics): for a conditional
    model, exactly the test set's count of each label. The main generation when it already was
    per-label; otherwise one extra generation (seed + 3; the main one uses seed + 1, the timing
    seed + 2), made on first use and validated like every output. ``None`` for unconditional models."""

    def __init__(self, pipe: Pipeline, fitted: Fitted, generated, request, test: ad.AnnData, seed: int):
        self.pipe, self.fitted, self.generated, self.request = pipe, fitted, generated, request
        self.test, self.seed = test, seed
        self._cells = None

    def get(self):
        if not self.pipe.cls.conditional:
            return None
        if isinstance(self.request, dict):
            return self.generated
        if self._cells is None:
            self._cells = self.pipe.generate_cells(
                self.fitted, per_label_request(self.test, self.pipe.label_key), seed=self.seed + 3
            )
        return self._cells


def per_label_request(test: ad.AnnData, label_key: str) -> dict[str, int]:
    """The test set's count of each label (labels without cells left out)."""
    counts = test.obs[label_key].astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items() if v > 0}
