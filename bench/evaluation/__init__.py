"""The evaluation transform: real and generated cells go through one transform before any metric (DESIGN.md).

Real test cells and generated cells are library-size normalised to 20,000 and log1p-transformed;
PCA (50 components) is fit on the real *training* cells and both sides are projected.

The control reserve: per seed, a stratified subset of the training cells (as many of each label as
the test split holds, at most half of the label's training cells) that the `real` positive control
draws from and that every fit of the evaluation leaves out (the PCA, the DE genes of CD). Cells a
PCA was fit on have larger projections than new cells (on pbmc3k, 2,000 HVGs: 1.37-1.44x the test
cells' variance over the 50 PCs, and an MMD of 0.029-0.033 to the test cells, against 1.00x and
MMD ~0 for held-out training cells; results/investigations/pca-in-sample.json), so a control drawn
from the fitted cells would score worse than a model that generates new cells. Real-data
quantities are computed once per dataset (shared by every context over the same AnnData objects);
the transform of generated cells once per task, shared by all metrics of that task.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api.contract import LIBRARY_SIZE, OUTPUT_SCALES, at_library_size
from bench.api.errors import TaskFailed

N_PCS = 50


def lognorm(X: np.ndarray | sp.spmatrix, target: float = LIBRARY_SIZE) -> sp.csr_matrix:
    """Per-cell library-size normalisation to ``target`` then log1p; sparse CSR float32 out."""
    X = sp.csr_matrix(X, dtype=np.float32, copy=True)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    X = sp.diags(scale.astype(np.float32)) @ X
    X = sp.csr_matrix(X, dtype=np.float32)
    np.log1p(X.data, out=X.data)
    return X


def generated_scale(adata: ad.AnnData, scale: str | None = None) -> str:
    """The output scale of generated cells: ``scale`` if given, else the one the runner recorded in
    ``adata.uns['scgenbench']['output_scale']`` (or ``adata.uns['output_scale']``)."""
    if scale is None:
        meta = adata.uns.get("scgenbench", {})
        scale = meta.get("output_scale") if isinstance(meta, dict) else None
        scale = scale or adata.uns.get("output_scale")
    if scale is None:
        raise TaskFailed(
            "generated cells carry no output scale: pass scale= or set uns['scgenbench']['output_scale']"
        )
    if scale not in OUTPUT_SCALES:
        raise TaskFailed(f"unknown output scale {scale!r}; use one of {OUTPUT_SCALES}")
    return str(scale)


def infer_scale(X: np.ndarray | sp.spmatrix) -> str | None:
    """The scale of ``X`` when it is unambiguous for the evaluation transform, else None.

    Only ``log1p`` needs a different transform (counts and library-size-20000 both go straight
    through :func:`lognorm`), so only "certainly not log1p" is inferred: every row summing to
    20,000 (+-1 %, the rule ``validate_output`` applies) -> "library-size-20000"; all values
    integers -> "counts". Anything else is ambiguous."""
    data = X.data if sp.issparse(X) else np.asarray(X)
    totals = np.asarray(X.sum(axis=1)).ravel()
    if totals.size and np.all(at_library_size(totals)):
        return "library-size-20000"
    if data.size and np.all(data == np.round(data)) and data.max() > 0:
        return "counts"
    return None


def _scale_in_uns(adata: ad.AnnData) -> bool:
    meta = adata.uns.get("scgenbench", {})
    return bool((isinstance(meta, dict) and meta.get("output_scale")) or adata.uns.get("output_scale"))


def to_lognorm(X: np.ndarray | sp.spmatrix, scale: str) -> sp.csr_matrix:
    """Bring generated values in ``scale`` onto the evaluation scale (library size 20,000, log1p).

    ``counts`` and ``library-size-20000`` go through :func:`lognorm` directly (re-normalising a
    library-size-20000 matrix is a no-op up to rounding); ``log1p`` values are inverted with expm1
    first, so every generator ends on exactly the transform the real cells get.
    """
    if scale not in OUTPUT_SCALES:
        raise TaskFailed(f"unknown output scale {scale!r}; use one of {OUTPUT_SCALES}")
    if scale == "log1p":
        X = sp.csr_matrix(X, dtype=np.float32, copy=True)
        np.expm1(X.data, out=X.data)
    return lognorm(X)


# the evaluation's real-data quantities worth keeping on disk (costly, small next to the data): the
# first element of their key in EvalContext.shared. A metric's own shared work (EvalContext.shared_for)
# is kept on disk too, under the metric's name.
PERSISTED = frozenset({"pca", "test_pcs", "train_pcs", "de_genes"})
# the first element of a key that a metric owns: (METRIC_WORK, metric name, *the metric's key)
METRIC_WORK = "metric"


class SharedWork:
    """Model-independent work on one dataset's real cells: a dict in memory and, once :meth:`attach`
    gives it a folder (the run dir's ``shared/``), a file per :data:`PERSISTED` entry.

    Files are .npz arrays read without pickle (nothing in a run dir, which users share, is
    code); a value that is not a number, an array, a list of strings, a dict of those or a fitted
    PCA stays in memory. A file is named by the sha256 of (the prepared data's content hash, the scoring code's hash, the
    entry's key), so it is reused by every task, process and Slurm job of the run on the same data,
    and never by other data or other scoring code. Files are written atomically (temp file, rename);
    an unreadable file is recomputed. Never holds generated cells.
    """

    def __init__(self) -> None:
        self._memory: dict[Any, Any] = {}
        self._folder: Path | None = None
        self._namespace = ""

    def attach(self, folder: str | Path | None, namespace: str) -> None:
        self._folder = Path(folder) if folder is not None else None
        self._namespace = namespace

    def _file(self, key) -> Path | None:
        if self._folder is None or not (isinstance(key, tuple) and key):
            return None
        if key[0] == METRIC_WORK and len(key) > 1:
            prefix = f"{METRIC_WORK}-{key[1]}"
        elif key[0] in PERSISTED:
            prefix = str(key[0])
        else:
            return None
        digest = hashlib.sha256(repr((self._namespace, key)).encode()).hexdigest()[:24]
        return self._folder / f"{prefix}-{digest}.npz"  # arrays only: nothing in a run dir is code

    def _load(self, key) -> bool:
        path = self._file(key)
        if path is None or not path.exists():
            return False
        try:
            self._memory[key] = _decode(path)
        except Exception:  # a damaged or foreign file is recomputed, never trusted
            return False
        return True

    def __len__(self) -> int:
        """Entries in memory (files of other processes count once read)."""
        return len(self._memory)

    def __contains__(self, key) -> bool:
        return key in self._memory or self._load(key)

    def __getitem__(self, key):
        if key not in self:
            raise KeyError(key)
        return self._memory[key]

    def get(self, key, default=None):
        if key in self:
            return self._memory[key]
        return default

    def __setitem__(self, key, value) -> None:
        self._memory[key] = value
        path = self._file(key)
        arrays = _encode(value) if path is not None else None
        if arrays is not None:  # a value of another type stays in memory
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from jobs of another user
            os.replace(tmp, path)


def _plain(value) -> np.ndarray | None:
    """A number or a numeric / string array as an array that loads without pickle; None otherwise."""
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufcU":
        return value
    return None


def _encode(value) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file that :func:`_decode` turns back into ``value`` (a number, an
    array, a list of strings, a dict of those, or a fitted sklearn PCA); None for other types."""
    from sklearn.decomposition import PCA

    plain = _plain(value)
    if plain is not None:
        return {"__kind__": np.asarray("scalar" if plain.ndim == 0 and not isinstance(value, np.ndarray) else "array"),
                "value": plain}  # fmt: skip
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return {"__kind__": np.asarray("strings"), "value": np.asarray(value, dtype=str)}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {f"d:{k}": _plain(v) for k, v in value.items()}
        return None if any(v is None for v in items.values()) else {"__kind__": np.asarray("dict"), **items}
    if type(value) is PCA:
        fitted = {k: _plain(v) for k, v in vars(value).items() if k.endswith("_") and v is not None}
        if any(v is None for v in fitted.values()):
            return None
        params = json.dumps(value.get_params())
        return {
            "__kind__": np.asarray("pca"),
            "params": np.asarray(params),
            **{f"a:{k}": v for k, v in fitted.items()},
        }
    return None


def _decode(path: Path):
    """The value :func:`_encode` wrote to ``path`` (read without pickle: an object array fails)."""
    from sklearn.decomposition import PCA

    with np.load(path, allow_pickle=False) as z:
        kind = str(z["__kind__"])
        if kind == "scalar":
            return z["value"].item()
        if kind == "array":
            return z["value"]
        if kind == "strings":
            return [str(v) for v in z["value"]]
        if kind == "dict":
            return {k[2:]: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files if k.startswith("d:")}
        if kind == "pca":
            pca = PCA(**json.loads(str(z["params"])))
            for k in z.files:
                if k.startswith("a:"):
                    setattr(pca, k[2:], z[k].item() if z[k].ndim == 0 else z[k])
            return pca
    raise ValueError(f"{path}: unknown kind {kind!r}")


# one SharedWork per (train, test) pair of AnnData objects: the runner keeps one PreparedData per
# dataset in memory and builds one context per task. (id(train), id(test)) -> (weakrefs, work);
# entries die with the data.
_SHARED: dict[tuple[int, int], tuple[weakref.ref, weakref.ref, SharedWork]] = {}


def _shared_cache(train: ad.AnnData, test: ad.AnnData) -> SharedWork:
    for key in [k for k, (tr, te, _) in _SHARED.items() if tr() is None or te() is None]:
        del _SHARED[key]
    key = (id(train), id(test))
    hit = _SHARED.get(key)
    if hit is None or hit[0]() is not train or hit[1]() is not test:
        hit = (weakref.ref(train), weakref.ref(test), SharedWork())
        _SHARED[key] = hit
    return hit[2]


class MetricWork:
    """A metric's view of :class:`SharedWork`: a mapping (``get``, ``[key]``, ``in``) whose keys are
    stored as ``(METRIC_WORK, metric, *key)``; ``work(key, compute)`` returns the stored value or
    computes and stores it. What a metric keeps here must not depend on generated cells."""

    def __init__(self, work: SharedWork, metric: str):
        self._work, self.metric = work, metric

    def _key(self, key) -> tuple:
        return (METRIC_WORK, self.metric, *(key if isinstance(key, tuple) else (key,)))

    def __contains__(self, key) -> bool:
        return self._key(key) in self._work

    def __getitem__(self, key):
        return self._work[self._key(key)]

    def __setitem__(self, key, value) -> None:
        self._work[self._key(key)] = value

    def get(self, key, default=None):
        return self._work.get(self._key(key), default)

    def __call__(self, key, compute: Callable[[], Any]) -> Any:
        full = self._key(key)
        if full not in self._work:
            self._work[full] = compute()
        return self._work[full]


def control_reserve(train_labels: np.ndarray, test_labels: np.ndarray, seed: int) -> np.ndarray:
    """Boolean mask over the training cells: per label, as many cells as the test split holds of it
    (at most half of the label's training cells, so the fits keep the rest), drawn at random with
    ``seed``. The `real` control draws from these cells; the evaluation's fits leave them out."""
    rng = np.random.default_rng([seed, 7411])
    train_labels, test_labels = np.asarray(train_labels, dtype=str), np.asarray(test_labels, dtype=str)
    mask = np.zeros(len(train_labels), dtype=bool)
    wanted = dict(zip(*np.unique(test_labels, return_counts=True), strict=True))
    for label in sorted(wanted):
        pool = np.flatnonzero(train_labels == label)
        k = min(int(wanted[label]), len(pool) // 2)
        if k:
            mask[rng.choice(pool, size=k, replace=False)] = True
    return mask


@dataclass
class EvalContext:
    """Prepared real data of one dataset, plus the shared transforms metrics use.

    ``train`` and ``test``: AnnData with X library-size normalised to 20,000 (not logged) and
    ``obs[label_key]``. ``rare_class``: the class the augmentation experiment downsamples.
    """

    dataset: str
    train: ad.AnnData
    test: ad.AnnData
    label_key: str
    profile: str = "quick"
    device: str = "cpu"
    rare_class: str | None = None
    seed: int = 0
    cache: dict[str, Any] = field(default_factory=dict)
    # the evaluation protocol the metrics score in (bench.protocols) and, for any but "genes", the
    # (real test cells, generated cells) the protocol embedded for this task's model
    protocol: str = "genes"
    embedding: tuple[Any, Any] | None = None

    @property
    def shared(self) -> SharedWork:
        """Cache of real-data quantities shared with every context over the same ``train`` and
        ``test`` objects (log-normalised cells, PCA per seed, DE genes, MMD's real-real term, the
        augmentation arms without generated cells), so the tasks of one dataset compute them once
        per process, and, with :meth:`share_on_disk`, once per run. Never holds generated cells."""
        return _shared_cache(self.train, self.test)

    def share_on_disk(self, folder: str | Path | None, data_hash: str) -> None:
        """Keep the costly shared quantities in ``folder`` too (:class:`SharedWork`), for every task,
        process and Slurm job of the run on the data with content hash ``data_hash``."""
        from bench.codeversion import scoring_version

        self.shared.attach(folder, f"{data_hash}|{scoring_version()}")

    def _shared(self, key, make):
        cache = self.shared
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def shared_for(self, metric: str) -> MetricWork:
        """The shared work of one metric (:class:`MetricWork`): its keys live in the metric's own
        namespace, so two metrics never collide, and are kept on disk like the evaluation's."""
        return MetricWork(self.shared, metric)

    @cached_property
    def train_log(self) -> sp.csr_matrix:
        return self._shared("train_log", lambda: lognorm(self.train.X))

    @cached_property
    def test_log(self) -> sp.csr_matrix:
        return self._shared("test_log", lambda: lognorm(self.test.X))

    @cached_property
    def control_reserve(self) -> np.ndarray:
        """Boolean mask over the training cells: this seed's control reserve (module docstring)."""
        return self._shared(
            ("control_reserve", self.seed),
            lambda: control_reserve(self.labels("train"), self.labels("test"), self.seed),
        )

    @cached_property
    def fit_cells(self) -> np.ndarray:
        """Indices of the training cells the evaluation's fits use (all but the control reserve)."""
        return np.flatnonzero(~self.control_reserve)

    @cached_property
    def pca(self):
        """PCA with 50 components fit on the log-normalised real training cells outside the control
        reserve (seeded)."""
        from sklearn.decomposition import PCA

        def fit():
            X = self.train_log[self.fit_cells]
            n = min(N_PCS, X.shape[0] - 1, self.train.n_vars - 1)  # arpack needs n < min(shape)
            pca = PCA(n_components=n, svd_solver="arpack", random_state=self.seed).fit(X)
            # arpack leaves components_ a reversed, strided view; a stored and reloaded PCA has a
            # contiguous copy, and BLAS rounds the two layouts differently (~1e-8): make the fresh
            # one contiguous too, so a reloaded PCA projects to the same bits
            pca.components_ = np.ascontiguousarray(pca.components_)
            return pca

        return self._shared(("pca", self.seed), fit)

    def project(self, X_log: np.ndarray | sp.spmatrix) -> np.ndarray:
        return np.asarray(self.pca.transform(X_log), dtype=np.float32)

    @cached_property
    def test_pcs(self) -> np.ndarray:
        return self._shared(("test_pcs", self.seed), lambda: self.project(self.test_log))

    @cached_property
    def train_pcs(self) -> np.ndarray:
        return self._shared(("train_pcs", self.seed), lambda: self.project(self.train_log))

    def labels(self, which: str = "test") -> np.ndarray:
        adata = self.test if which == "test" else self.train
        return adata.obs[self.label_key].astype(str).to_numpy()

    # -- generated cells ---------------------------------------------------------------------
    def transform_generated(
        self, adata: ad.AnnData, scale: str | None = None
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """Generated cells on the evaluation scale: (log-normalised CSR, projection on the 50 PCs).

        ``scale`` defaults to the one recorded in ``adata.uns`` (see :func:`generated_scale`; the
        harness's output check records the generator's declared scale there, bench.pipeline), else
        to :func:`infer_scale` when that is unambiguous; otherwise TaskFailed. The
        result is cached for the two most recent AnnData objects, so all metrics of one task share
        one transform per set of generated cells.
        """
        if scale is None and not _scale_in_uns(adata):
            scale = infer_scale(adata.X)
        scale = generated_scale(adata, scale)
        slots = self.cache.setdefault("_generated_transform", [])
        for hit in slots:
            if hit[0] is adata and hit[1] == scale:
                return hit[2], hit[3]
        from bench.api.generator import gene_mismatch

        mismatch = gene_mismatch(list(map(str, adata.var_names)), list(map(str, self.train.var_names)))
        if mismatch:
            raise TaskFailed(mismatch)
        X_log = to_lognorm(adata.X, scale)
        pcs = self.project(X_log)
        # two slots: the metrics of one task share them (the main cells and, for per-type metrics,
        # the per-label cells); the next task's cells replace them
        slots[:] = [*slots[-1:], (adata, scale, X_log, pcs)]
        return X_log, pcs

    def features(self, adata: ad.AnnData, space: str = "pca50") -> tuple[Any, Any]:
        """(real test cells, generated cells) in the space a metric compares them in. Under the
        ``genes`` protocol the contract's: ``space`` "genes" (log-normalised, every gene) or "pca50"
        (their projection on the 50 PCs fit on the real training cells); under any other protocol
        the protocol's embedding of this task's model (``embedding``), whatever ``space`` says."""
        if self.protocol != "genes":
            if self.embedding is None:
                raise TaskFailed(f"protocol {self.protocol}: no embedding of the generated cells was made")
            return self.embedding
        X_log, pcs = self.transform_generated(adata)
        return (self.test_log, X_log) if space == "genes" else (self.test_pcs, pcs)

    def space_name(self, space: str = "pca50") -> str:
        """What :meth:`features` compares in, as recorded with the values: ``space`` under ``genes``,
        else the protocol's key."""
        return space if self.protocol == "genes" else self.protocol

    # -- differentially expressed genes of the real data -------------------------------------
    def de_genes(self, n_genes: int = 5, method: str = "wilcoxon") -> list[str]:
        """Top ``n_genes`` DE genes per label of the real training cells outside the control reserve
        (scanpy ``rank_genes_groups`` on log-normalised cells grouped by ``label_key``), concatenated
        in label order, deduplicated keeping the first occurrence. Cached per (n_genes, method, seed)."""
        key = ("de_genes", n_genes, method, self.seed)
        cache = self.shared
        if key not in cache:
            from bench.metrics import top_de_genes

            rows = self.fit_cells
            adata = ad.AnnData(X=self.train_log[rows], obs=self.train.obs[[self.label_key]].iloc[rows].copy())
            adata.var_names = list(map(str, self.train.var_names))
            cache[key] = top_de_genes(adata, self.label_key, n_genes=n_genes, method=method)
        return list(cache[key])
