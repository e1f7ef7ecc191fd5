"""The Generator interface every model implements (built-ins and plugins alike).

A generator is one short class: declarative metadata plus two required verbs (``fit``,
``generate``) and two optional ones (``save``, ``load``). The harness owns everything else: data
preparation, seeds, the training genes and labels, timing, memory, output validation, scoring and
storage. ``fit`` receives a frozen :class:`FitContext` with what the harness decided for this fit.
This package: the :class:`Generator` class here (and :func:`bind_training_data`); what a fit gets
and reports in :mod:`.fit`; the output check and helpers in :mod:`.output`. A generator's code
version covers the whole package (``bench.codeversion``: the modules of its class's MRO).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.api.contract import DEFAULT_RESOURCES
from bench.api.errors import UserError
from bench.api.generator.fit import (
    BUDGET_UNITS,
    SNAPSHOT_FRACTIONS,
    Budget,
    FitContext,
    FitResult,
    Snapshot,
)
from bench.api.generator.output import (
    gene_mismatch,
    make_output,
    split_request,
    to_library_size,
    validate_output,
)
from bench.api.options import check_declared, check_value

if TYPE_CHECKING:  # AnnData loads where cells are made or checked: the torch-only path has none
    import anndata as ad

    from bench.api.speed import SpeedProbe

__all__ = [
    "BUDGET_UNITS",
    "SNAPSHOT_FRACTIONS",
    "Budget",
    "FitContext",
    "FitResult",
    "Generator",
    "Snapshot",
    "bind_training_data",
    "gene_mismatch",
    "make_output",
    "split_request",
    "to_library_size",
    "validate_output",
]


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
