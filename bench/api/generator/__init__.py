"""The Generator interface every model implements (built-ins and plugins alike).

A generator is one short class: declarative metadata plus two required verbs (``fit``,
``generate``) and two optional ones (``save``, ``load``). The harness owns everything else: data
preparation, seeds, the training genes and labels, timing, memory, output validation, scoring and
storage. ``fit`` receives a frozen :class:`FitContext` with what the harness decided for this fit.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp

from bench.api.contract import DEFAULT_RESOURCES, LIBRARY_SIZE, OUTPUT_SCALES, at_library_size
from bench.api.errors import TaskFailed, UserError
from bench.api.options import check_declared, check_value

if TYPE_CHECKING:  # AnnData loads where cells are made or checked: the torch-only path has none
    import anndata as ad

    from bench.api.speed import SpeedProbe

# where in its budget an iterative model hands the harness generated cells (convergence evidence)
SNAPSHOT_FRACTIONS = (0.125, 0.25, 0.5, 1.0)


@dataclass
class FitResult:
    """What ``fit`` reports; every field is optional.

    ``train_seconds``: the model's own training time when it can measure it better than the
    harness (e.g. inside a container, without the container start); the harness always measures
    the wall time of the whole ``fit`` itself. ``steps``: optimizer steps (iterations) taken;
    ``cells_seen``: training cells processed over all steps (steps x batch size), the budget
    measure that is comparable across datasets; ``epochs``; ``history``: per-step or per-epoch
    logs; ``extra``: anything else worth keeping (stored in the task's info).
    """

    train_seconds: float | None = None
    steps: int | None = None
    cells_seen: int | None = None
    epochs: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BUDGET_UNITS = ("steps", "epochs", "minutes")


@dataclass(frozen=True)
class Budget:
    """How long an iteratively trained model trains: ``amount`` optimizer ``steps``, ``epochs``
    (passes over the training cells) or ``minutes`` of training. Written ``"20000 steps"``,
    ``"600 epochs"``, ``"30 minutes"`` (or ``{"steps": 20000}``) in a profile or run config.

    Steps are what a model's quality depends on, and they are the same whatever the dataset's
    size, whereas 600 epochs are 11,600 steps on pbmc3k and 290,000 on pbmc68k; minutes depend on
    the hardware, so results under a minutes budget are not reproducible elsewhere."""

    amount: float
    unit: str

    @classmethod
    def parse(cls, value: Any, *, what: str = "budget") -> Budget | None:
        if value is None or isinstance(value, Budget):
            return value
        if isinstance(value, dict) and len(value) == 1:
            ((unit, amount),) = value.items()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            unit, amount = "steps", value
        elif isinstance(value, str) and len(value.split()) == 2:
            amount, unit = value.split()
        else:
            unit, amount = None, None
        unit = {"step": "steps", "epoch": "epochs", "min": "minutes", "minute": "minutes"}.get(unit, unit)
        try:
            amount = float(amount)
        except (TypeError, ValueError):
            amount = float("nan")
        if unit not in BUDGET_UNITS or not amount > 0:
            raise UserError(
                f"{what} {value!r} is not a training budget",
                'write e.g. "20000 steps", "600 epochs" or "30 minutes"',
            )
        return cls(amount, unit)

    def steps(self, steps_per_epoch: int) -> int | None:
        """The budget in steps (epochs x steps per epoch); ``None`` for a minutes budget."""
        if self.unit == "minutes":
            return None
        per = 1 if self.unit == "steps" else steps_per_epoch
        return max(1, int(round(self.amount * per)))

    @property
    def seconds(self) -> float | None:
        return self.amount * 60.0 if self.unit == "minutes" else None

    def __str__(self) -> str:
        return f"{self.amount:g} {self.unit}"


@dataclass(frozen=True)
class Snapshot:
    """Cells generated part-way through training (see :meth:`FitContext.snapshot`): an AnnData,
    or a callable ``(n_cells, seed) -> AnnData`` the harness calls."""

    step: int
    cells_seen: int | None
    train_seconds: float | None
    cells: ad.AnnData | Callable[[int, int], ad.AnnData]


@dataclass(frozen=True)
class FitContext:
    """What the harness decided for one ``fit`` (built by the runner; a plugin only reads it).

    ``label_key``: the obs column of cell types; ``seed``: the seed of this fit (seed every random
    draw from it); ``device``: ``'cpu'`` or ``'cuda'``, already resolved; ``work_dir``: a private
    directory for this fit (logs, container mounts, checkpoints); ``deadline``: a
    :func:`time.monotonic` time after which training must stop (``None``: no limit; see
    :meth:`check_deadline`); ``progress``: show a progress bar (a terminal is attached).

    Convergence evidence: an iteratively trained model calls :meth:`snapshot` at the steps
    :meth:`snapshot_steps` returns (1/8, 1/4, 1/2 and all of its budget) with generated cells;
    the harness scores them and draws quality against steps and time.
    """

    label_key: str
    seed: int
    device: str = "cpu"
    work_dir: Path | None = None
    deadline: float | None = None
    progress: bool = False
    snapshot_fractions: tuple[float, ...] = ()
    snapshot_cells: int = 0
    on_snapshot: Callable[[Snapshot], None] | None = field(default=None, repr=False, compare=False)

    def time_left(self) -> float | None:
        """Seconds until the deadline (negative once past it), or ``None`` without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check_deadline(self, what: str) -> None:
        """Raise :class:`TaskFailed` when the deadline has passed (call it once per epoch or so)."""
        left = self.time_left()
        if left is not None and left < 0:
            raise TaskFailed(f"{what}: training exceeded its time limit (--timeout) and was stopped")

    def snapshot_steps(self, total_steps: int) -> list[int]:
        """The steps (1-based, ascending, unique) at which to call :meth:`snapshot` for a budget of
        ``total_steps``; empty when the harness wants no snapshots."""
        if self.on_snapshot is None or not self.snapshot_fractions or total_steps < 1:
            return []
        return sorted({min(total_steps, max(1, round(f * total_steps))) for f in self.snapshot_fractions})

    def snapshot(
        self,
        *,
        step: int,
        cells: ad.AnnData | Callable[[int, int], ad.AnnData],
        cells_seen: int | None = None,
        train_seconds: float | None = None,
    ) -> float:
        """Hand the harness cells generated after ``step`` steps: an AnnData of ``snapshot_cells``
        cells, or a callable ``(n_cells, seed) -> AnnData`` that the harness calls (the callable
        form lets the harness time the generation too). Returns the seconds spent here, which a model that times its own training
        should leave out of ``train_seconds``."""
        if self.on_snapshot is None:
            return 0.0
        start = time.perf_counter()
        self.on_snapshot(Snapshot(int(step), cells_seen, train_seconds, cells))
        return time.perf_counter() - start


class Generator(ABC):
    """Base class of every generative model.

    Subclasses set the class metadata and implement ``fit`` and ``generate`` (``save`` and
    ``load`` are optional: the harness never calls them in a run; ACTIVA uses them for resume).

    * ``parameters``: every tunable parameter with its default; ``__init__`` rejects unknown ones,
      and values whose type differs from the default's or that miss ``choices`` / ``bounds``
      (allowed values; intervals such as ``"[1, inf) integer"``, see :mod:`bench.api.options`).
    * ``profiles``: parameter overrides per run profile (``quick`` for CPUs/CI, ``standard`` for
      converged results on the bundled data, ``paper`` for the published settings).
    * ``resources``: what one training task needs (used by the Slurm executor and containers).

    The harness sets three public attributes before ``fit`` (and ``load`` restores them):
    ``var_names`` (training genes, in order), ``labels`` (sorted training labels) and
    ``label_key``.
    """

    name: ClassVar[str] = ""
    conditional: ClassVar[bool] = False
    output_scale: ClassVar[str] = "library-size-20000"
    needs_gpu: ClassVar[bool] = False
    paper: ClassVar[str] = ""
    code_url: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    bounds: ClassVar[dict[str, str]] = {}
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    resources: ClassVar[dict[str, Any]] = dict(DEFAULT_RESOURCES)
    # `bench tune`: the grid the standard profile's settings were chosen from (axis -> values; an
    # axis may stand for several parameters, see tuning_params) and the sweep's budget in epochs
    tuning: ClassVar[dict[str, list[Any]]] = {}
    tuning_budget: ClassVar[str | None] = None
    # a positive control: in the main experiment the harness fits it on the control reserve only,
    # the training cells the evaluation's own fits leave out (bench.evaluation)
    uses_control_reserve: ClassVar[bool] = False

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise UserError(
                f"unknown parameter(s) {', '.join(unknown)} for generator '{self.name}'",
                f"known parameters: {', '.join(sorted(self.parameters)) or 'none'}",
            )
        self.params: dict[str, Any] = {**self.parameters, **params}
        for key, value in self.params.items():
            check_value(
                f"generator '{self.name}'",
                f"[models.{self.name}]",
                key,
                value,
                self.parameters[key],
                choices=self.choices.get(key),
                bound=self.bounds.get(key),
            )
        self.label_key: str | None = None
        self.var_names: list[str] | None = None
        self.labels: list[str] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_declared(f"generator {cls.__name__}", cls.parameters, cls.choices, cls.bounds)

    @classmethod
    def params_for_profile(cls, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Parameters for a run profile, with user overrides on top."""
        return {**cls.parameters, **cls.profiles.get(profile, {}), **(overrides or {})}

    @classmethod
    def tuning_params(cls, point: dict[str, Any]) -> dict[str, Any]:
        """Parameters for one point of the tuning grid (axis names are parameter names unless a
        model maps an axis onto several, e.g. ACTIVA's ``lr`` onto ``lr_e`` and ``lr_g``)."""
        return dict(point)

    # -- verbs -----------------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: ad.AnnData, ctx: FitContext) -> FitResult:
        """Train on ``train`` (X: library-size-normalised to 20,000, not logged;
        ``layers['counts']``: the raw counts of the same cells and genes; ``obs[ctx.label_key]``)."""

    @abstractmethod
    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        """Return generated cells: var_names equal to the training data's, obs[label_key] set when
        ``n_cells`` is a dict (conditional generation: exactly that many cells per label)."""

    def save(self, path: str | Path) -> None:  # pragma: no cover - overridden where supported
        raise NotImplementedError(f"{self.name} does not support save")

    @classmethod
    def load(cls, path: str | Path) -> Generator:  # pragma: no cover - overridden where supported
        raise NotImplementedError(f"{cls.name} does not support load")

    @classmethod
    def speed_probe(
        cls,
        n_genes: int,
        n_classes: int,
        *,
        seed: int,
        device: str,
        batch_size: int,
        precision: str,
        mode: str,
    ) -> SpeedProbe:
        """Optional, torch only (no AnnData): a freshly initialised model of ``n_genes`` genes and
        ``n_classes`` cell types on ``device`` that the GPU check trains and samples on tensors
        (:class:`bench.api.speed.SpeedProbe`); ``precision`` and ``mode``: one of
        ``bench.api.speed.PRECISIONS`` and ``MODES``."""
        raise UserError(
            f"generator '{cls.name}' has no torch-only speed probe",
            "the GPU check measures a model that defines Generator.speed_probe (activa)",
        )

    # -- helpers for subclasses' save/load ----------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "label_key": self.label_key,
            "var_names": self.var_names,
            "labels": self.labels,
        }

    def _write_meta(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "generator.json").write_text(json.dumps(self._meta()))

    @classmethod
    def _read_meta(cls, path: Path) -> Generator:
        meta = json.loads((Path(path) / "generator.json").read_text())
        gen = cls(**meta["params"])
        gen.label_key, gen.var_names, gen.labels = meta["label_key"], meta["var_names"], meta["labels"]
        return gen

    @classmethod
    def sandbox_relaxations(cls) -> list[str]:
        """``field=value`` for every sandbox default the model relaxes (docs/docker.md, security
        model); a run needs the user's opt-in for each model that has any. A model that runs in the
        harness's own process has none to relax (it is not sandboxed: ``bench list`` says so)."""
        return []

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "conditional": cls.conditional,
            "output_scale": cls.output_scale,
            "needs_gpu": cls.needs_gpu,
            "paper": cls.paper,
            "code_url": cls.code_url,
            "description": cls.description,
        }


def bind_training_data(gen: Generator, train: ad.AnnData, label_key: str) -> None:
    """What the harness records on a generator before ``fit``: the training genes (in order), the
    sorted training labels and the label key."""
    if label_key not in train.obs:
        raise UserError(f"training data has no obs['{label_key}']", "pass the label column with --label-key")
    gen.label_key = label_key
    gen.var_names = [str(v) for v in train.var_names]
    gen.labels = sorted(str(x) for x in train.obs[label_key].unique())


def split_request(n_cells: int | dict[str, int]) -> tuple[int, dict[str, int] | None]:
    """Total number of cells and the per-label request (None when unconditional)."""
    if isinstance(n_cells, dict):
        return int(sum(n_cells.values())), {str(k): int(v) for k, v in n_cells.items()}
    return int(n_cells), None


def validate_output(
    gen_cls: type[Generator] | Generator,
    generated: ad.AnnData,
    *,
    var_names: list[str],
    label_key: str,
    known_labels: list[str],
    requested: int | dict[str, int],
) -> ad.AnnData:
    """Check a generator's output before anything scores it; raise TaskFailed naming the problem.

    Checks: cell count (and per-label counts for conditional requests), gene order, finite,
    non-negative, the declared output scale, labels in the training label set.
    """
    import anndata as ad

    name = gen_cls.name
    scale = gen_cls.output_scale
    total, per_label = split_request(requested)
    if not isinstance(generated, ad.AnnData):
        raise TaskFailed(f"{name}: generate() returned {type(generated).__name__}, expected AnnData")
    if generated.n_obs != total:
        raise TaskFailed(f"{name}: generated {generated.n_obs} cells, {total} were requested")
    mismatch = gene_mismatch(list(map(str, generated.var_names)), list(map(str, var_names)))
    if mismatch:
        raise TaskFailed(f"{name}: {mismatch}")
    X = generated.X
    data = X.data if sp.issparse(X) else np.asarray(X)
    if not np.all(np.isfinite(data)):
        raise TaskFailed(f"{name}: generated values contain NaN or inf")
    if data.size and data.min() < 0:
        raise TaskFailed(f"{name}: generated values are negative (min {data.min():.3g})")
    if scale not in OUTPUT_SCALES:
        raise TaskFailed(f"{name}: unknown output_scale {scale!r}; use one of {OUTPUT_SCALES}")
    totals = np.asarray(X.sum(axis=1)).ravel()
    if scale == "library-size-20000":
        ok = at_library_size(totals) | (totals == 0)
        if not ok.all():
            raise TaskFailed(
                f"{name}: declares output_scale 'library-size-20000' but {int((~ok).sum())} cells do not sum to 20,000"
            )
    elif scale == "log1p" and data.size and data.max() > 30:
        raise TaskFailed(f"{name}: declares output_scale 'log1p' but values reach {data.max():.3g}")
    if per_label is not None:
        if label_key not in generated.obs:
            raise TaskFailed(f"{name}: conditional output lacks obs['{label_key}']")
        got = generated.obs[label_key].astype(str).value_counts().to_dict()
        unknown = sorted(set(got) - set(map(str, known_labels)))
        if unknown:
            raise TaskFailed(f"{name}: generated labels not in the training set: {unknown}")
        want = {k: v for k, v in per_label.items() if v > 0}
        if {k: int(v) for k, v in got.items() if v > 0} != want:
            raise TaskFailed(f"{name}: per-label counts {got} differ from the request {want}")
    generated.uns["scgenbench"] = {
        **generated.uns.get("scgenbench", {}),
        "model": name,
        "output_scale": scale,
    }
    return generated


def gene_mismatch(generated: list[str], training: list[str]) -> str | None:
    """None when the generated genes are the training genes in the same order, else a message that
    names the first mismatching position and both names (and both counts if they differ)."""
    if generated == training:
        return None
    pos = next((i for i, (g, t) in enumerate(zip(generated, training, strict=False)) if g != t), None)
    if len(generated) != len(training):
        where = (
            f"; first difference at position {pos}, '{generated[pos]}' where the training data has "
            f"'{training[pos]}'"
            if pos is not None
            else ""
        )
        return f"generated cells have {len(generated)} genes, the training data has {len(training)}{where}"
    return (
        f"generated var_names differ from the training genes: first at position {pos}, "
        f"'{generated[pos]}' where the training data has '{training[pos]}'"
    )


def to_library_size(X: np.ndarray | sp.spmatrix, target: float = LIBRARY_SIZE) -> np.ndarray:
    """Scale each row to sum to ``target`` (rows summing to zero stay zero). Returns dense float32."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float32, copy=False)
    totals = X.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(totals > 0, X * (target / np.where(totals > 0, totals, 1)), 0.0)
    return out.astype(np.float32)


def make_output(
    X: np.ndarray | sp.spmatrix, var_names: list[str], label_key: str | None = None, labels=None
) -> ad.AnnData:
    """Wrap generated values in an AnnData with the training genes (and labels when given)."""
    import anndata as ad

    X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    out = ad.AnnData(X=X.astype(np.float32))
    out.var_names = list(var_names)
    out.obs_names = [f"gen-{i}" for i in range(out.n_obs)]
    if label_key is not None and labels is not None:
        out.obs[label_key] = np.asarray(labels, dtype=str)
        out.obs[label_key] = out.obs[label_key].astype("category")
    return out
