"""The Generator interface every model implements (built-ins and plugins alike).

A generator is one short class: declarative metadata plus four verbs (fit, generate, save, load).
The harness owns everything else: data preparation, seeds, timing, validation, scoring, storage.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.errors import TaskFailed, UserError

OUTPUT_SCALES = ("counts", "library-size-20000", "log1p")
LIBRARY_SIZE = 20_000


@dataclass
class FitResult:
    """What ``fit`` reports. ``train_seconds`` is wall time of training only (no data loading)."""

    train_seconds: float
    steps: int | None = None
    epochs: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(ABC):
    """Base class of every generative model.

    Subclasses set the class metadata and implement ``fit``, ``generate``, ``save`` and ``load``.

    * ``parameters``: every tunable parameter with its default; ``__init__`` rejects unknown ones.
    * ``profiles``: parameter overrides per run profile (``quick`` for CPUs/CI, ``paper`` for the
      published settings).
    * ``resources``: what one training task needs (used by the Slurm executor).
    """

    name: ClassVar[str] = ""
    conditional: ClassVar[bool] = False
    output_scale: ClassVar[str] = "library-size-20000"
    needs_gpu: ClassVar[bool] = False
    paper: ClassVar[str] = ""
    code_url: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Any]] = {}
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    resources: ClassVar[dict[str, Any]] = {"cpus": 2, "gpus": 0, "mem_gb": 8, "time_min": 60}

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise UserError(
                f"unknown parameter(s) {', '.join(unknown)} for generator '{self.name}'",
                f"known parameters: {', '.join(sorted(self.parameters)) or 'none'}",
            )
        self.params: dict[str, Any] = {**self.parameters, **params}
        # set by the harness before fit: a private work dir for this task (logs, container
        # mounts, checkpoints) and a wall-clock limit in seconds (None = no limit)
        self.work_dir: Path | None = None
        self.timeout_s: float | None = None
        self.label_key: str | None = None
        self.var_names: list[str] | None = None
        self.labels: list[str] | None = None

    @classmethod
    def params_for_profile(cls, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Parameters for a run profile, with user overrides on top."""
        return {**cls.parameters, **cls.profiles.get(profile, {}), **(overrides or {})}

    # -- verbs -----------------------------------------------------------------------------
    @abstractmethod
    def fit(
        self, train: ad.AnnData, *, label_key: str, seed: int, device: str = "cpu", progress: bool = False
    ) -> FitResult:
        """Train on ``train`` (X: library-size-normalised to 20,000, not logged;
        ``layers['counts']``: the raw counts of the same cells and genes; ``obs[label_key]``)."""

    @abstractmethod
    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        """Return generated cells: var_names equal to the training data's, obs[label_key] set when
        ``n_cells`` is a dict (conditional generation: exactly that many cells per label)."""

    def save(self, path: str | Path) -> None:  # pragma: no cover - overridden where supported
        raise NotImplementedError(f"{self.name} does not support save")

    @classmethod
    def load(cls, path: str | Path) -> Generator:  # pragma: no cover - overridden where supported
        raise NotImplementedError(f"{cls.name} does not support load")

    def time_generation(self, n_cells: int, *, seed: int, chunk: int = 10_000) -> float:
        """Seconds to generate ``n_cells`` cells, in chunks so memory stays bounded."""
        start = time.perf_counter()
        done = 0
        while done < n_cells:
            k = min(chunk, n_cells - done)
            self.generate(k, seed=seed + done)
            done += k
        return time.perf_counter() - start

    # -- helpers for subclasses -----------------------------------------------------------------
    def _remember_training_data(self, train: ad.AnnData, label_key: str) -> None:
        self.label_key = label_key
        self.var_names = [str(v) for v in train.var_names]
        self.labels = sorted(str(x) for x in train.obs[label_key].unique())

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
        ok = (np.abs(totals - LIBRARY_SIZE) <= 1e-2 * LIBRARY_SIZE) | (totals == 0)
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
    X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    out = ad.AnnData(X=X.astype(np.float32))
    out.var_names = list(var_names)
    out.obs_names = [f"gen-{i}" for i in range(out.n_obs)]
    if label_key is not None and labels is not None:
        out.obs[label_key] = np.asarray(labels, dtype=str)
        out.obs[label_key] = out.obs[label_key].astype("category")
    return out
