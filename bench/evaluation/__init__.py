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

This package: :class:`EvalContext` and the control reserve here; the evaluation scale in
:mod:`.scale` (:func:`lognorm`, :func:`to_lognorm`); the real-data work shared by tasks and
processes in :mod:`.shared` (:class:`SharedWork`, :class:`MetricWork`). The whole package is scoring
code (``bench.codeversion.SCORING_MODULES``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api.errors import TaskFailed
from bench.evaluation.scale import generated_scale, infer_scale, lognorm, scale_in_uns, to_lognorm
from bench.evaluation.shared import METRIC_WORK, PERSISTED, MetricWork, SharedWork, shared_cache

__all__ = [
    "METRIC_WORK",
    "N_PCS",
    "PERSISTED",
    "EvalContext",
    "MetricWork",
    "SharedWork",
    "control_reserve",
    "generated_scale",
    "infer_scale",
    "lognorm",
    "to_lognorm",
]

N_PCS = 50


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
        return shared_cache(self.train, self.test)

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
        if scale is None and not scale_in_uns(adata):
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
