"""Baselines every table needs: the ``real`` positive control, the ``shuffled`` negative control and
the ``nb`` negative-binomial model."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api import (
    FitContext,
    FitResult,
    Generator,
    TaskFailed,
    make_output,
    split_request,
    to_library_size,
)


def label_plan(labels: list[str], weights: np.ndarray, n_cells, rng: np.random.Generator) -> np.ndarray:
    """Labels of the cells to generate: the request per label, or drawn by training proportions."""
    total, per_label = split_request(n_cells)
    if per_label is not None:
        unknown = sorted(set(per_label) - set(labels))
        if unknown:
            raise TaskFailed(f"cannot generate unknown label(s) {unknown}; known: {labels}")
        return np.repeat(list(per_label), list(per_label.values())).astype(str)
    return rng.choice(np.asarray(labels, dtype=str), size=total, p=weights)


def draw_nb(
    mu: np.ndarray, size: np.ndarray, n: int, rng: np.random.Generator, pi: np.ndarray | None = None
) -> np.ndarray:
    """``n`` independent draws (rows) of every gene (columns), float32: NB(mean ``mu``, size
    ``size``), Poisson where ``size`` is inf, always 0 where ``mu`` is 0; with ``pi``, each draw is
    a structural zero with that probability (zero-inflated)."""
    out = np.zeros((n, mu.size), dtype=np.float32)
    pois = ~np.isfinite(size)
    if pois.any():
        out[:, pois] = rng.poisson(mu[pois], size=(n, int(pois.sum())))
    nbm = ~pois & (mu > 0)
    if nbm.any():
        r = size[nbm]
        out[:, nbm] = rng.negative_binomial(r, r / (r + mu[nbm]), size=(n, int(nbm.sum())))
    if pi is not None and (pi > 0).any():
        zi = pi > 0
        out[:, zi] *= rng.random((n, int(zi.sum()))) >= pi[zi]
    return out


def nb_moments(
    counts, labels: np.ndarray, classes: list[str], min_dispersion: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment fit of a negative binomial per class and gene: (mean, size, class weights).

    ``var = mu + mu^2 / r`` gives ``r = mu^2 / (var - mu)``; a gene with ``var <= mu`` gets
    ``r = inf`` (Poisson); ``r`` is at least ``min_dispersion``. ``var`` is the unbiased sample
    variance. One class's rows are copied (float64) at a time.
    """
    counts = sp.csr_matrix(counts)
    y = np.asarray(labels).astype(str)
    mus, sizes, weights = [], [], []
    for lab in classes:
        rows = sp.csr_matrix(counts[y == lab], dtype=np.float64)
        n = rows.shape[0]
        mu = np.asarray(rows.mean(axis=0)).ravel()
        ex2 = np.asarray(rows.multiply(rows).mean(axis=0)).ravel()
        var = (ex2 - mu**2) * (n / max(n - 1, 1))
        excess = var - mu
        size = np.where(excess > 0, mu**2 / np.maximum(excess, 1e-12), np.inf)
        mus.append(mu)
        sizes.append(np.maximum(size, min_dispersion))
        weights.append(n)
    weights_arr = np.asarray(weights, dtype=np.float64) / sum(weights)
    return np.vstack(mus).astype(np.float64), np.vstack(sizes).astype(np.float64), weights_arr


class RealControl(Generator):
    """Positive control: real training cells (never test cells) that the evaluation's PCA and DE genes
    were not fit on (the control reserve), drawn without replacement, or with replacement for a label
    that asks for more cells than the reserve holds.

    In the main experiment the runner fits it on the control reserve only (``uses_control_reserve``,
    bench.evaluation), so its cells are as new to the evaluation as generated cells; elsewhere (the
    augmentation experiment) it draws from the training cells it is given.

    Its scores are the noise floor of every metric (Table 2's "Training Set" column): a model
    cannot be expected to be closer to the test set than other real cells are. An unconditional
    request larger than the training set is likewise drawn with replacement; a label with no
    training cells fails the task.
    """

    name = "real"
    conditional = True
    output_scale = "library-size-20000"
    description = (
        "Positive control: real training cells (never test cells) that the evaluation's PCA and DE genes "
        "were not fit on (the control reserve), drawn without replacement, or with replacement for a label "
        "that asks for more cells than the reserve holds"
    )
    paper = "ACTIVA paper, Table 2 'Training Set' control"
    resources = {"cpus": 1, "gpus": 0, "mem_gb": 4, "time_min": 10}
    uses_control_reserve = True

    def fit(self, train, ctx: FitContext) -> FitResult:
        self._X = sp.csr_matrix(train.X, dtype=np.float32)
        self._y = train.obs[ctx.label_key].astype(str).to_numpy()
        return FitResult()

    def generate(self, n_cells, *, seed) -> ad.AnnData:
        rng = np.random.default_rng(seed)
        total, per_label = split_request(n_cells)
        if per_label is None:
            pools = {None: np.arange(self._X.shape[0])}
            want = {None: total}
        else:
            pools = {lab: np.flatnonzero(self._y == lab) for lab in per_label}
            want = per_label
        rows, labs = [], []
        for lab, n in want.items():
            pool = pools[lab]
            if len(pool) == 0 and n > 0:
                raise TaskFailed(f"real: no training cells of label {lab!r}")
            idx = rng.choice(pool, size=n, replace=n > len(pool))
            rows.append(idx)
            labs.append(self._y[idx])
        rows = np.concatenate(rows) if rows else np.zeros(0, int)
        out = make_output(self._X[rows], self.var_names, self.label_key, np.concatenate(labs))
        return out

    def save(self, path):
        path = Path(path)
        self._write_meta(path)
        sp.save_npz(path / "cells.npz", self._X)
        np.save(path / "labels.npy", self._y.astype(str))

    @classmethod
    def load(cls, path):
        gen = cls._read_meta(Path(path))
        gen._X = sp.load_npz(Path(path) / "cells.npz").tocsr()
        gen._y = np.load(Path(path) / "labels.npy")
        return gen


def permute_columns(X, rng: np.random.Generator) -> sp.csr_matrix:
    """Each column of ``X`` permuted independently across rows (a uniformly random permutation per
    column, drawn from ``rng`` column by column): every column keeps its values (its marginal),
    and every dependence between columns is destroyed. Sparse input stays sparse: a column's
    non-zero values go to a uniformly random subset of rows, in random order, which is the same
    distribution as permuting the whole column."""
    if not sp.issparse(X):
        return sp.csr_matrix(rng.permuted(np.asarray(X, dtype=np.float32), axis=0))
    X = sp.csc_matrix(X, dtype=np.float32)
    X.sum_duplicates()
    n = X.shape[0]
    indices = X.indices.copy()
    for j in range(X.shape[1]):
        lo, hi = X.indptr[j], X.indptr[j + 1]
        if hi > lo:
            indices[lo:hi] = rng.choice(n, size=hi - lo, replace=False)
    out = sp.csc_matrix((X.data.copy(), indices, X.indptr.copy()), shape=X.shape)
    out.sort_indices()
    return out.tocsr()


class ShuffledControl(RealControl):
    """Negative control: training cells with each gene permuted independently across cells.

    Every gene keeps its distribution of counts (all marginals), every gene-gene correlation and
    every cell type is destroyed: the floor that scaled scores map to 0 (openproblems-style
    controls). Fit permutes the raw counts (``layers['counts']``, else X) once, seeded; generation
    samples rows of the permuted matrix like the ``real`` control (so "conditional" only in form: a
    per-label request gets the requested number of cells per label, and those cells carry no type).
    Output scale: counts, so the evaluation normalises the new library sizes like any model's.
    """

    name = "shuffled"
    conditional = True
    output_scale = "counts"
    description = "Negative control: training cells with each gene permuted independently across cells"
    paper = "negative control (openproblems-style scaled scores)"

    def fit(self, train, ctx: FitContext) -> FitResult:
        counts = train.layers.get("counts", train.X)
        self._X = permute_columns(counts, np.random.default_rng(ctx.seed))
        self._y = train.obs[ctx.label_key].astype(str).to_numpy()
        return FitResult()


class NegativeBinomial(Generator):
    """Per-cell-type negative-binomial baseline (the simple model every deep generator must beat).

    Within each cell type, every gene's counts get a mean ``mu`` and a dispersion fit by moments
    (``var = mu + mu^2 / r``, so ``r = mu^2 / (var - mu)``; genes with ``var <= mu`` are Poisson).
    Generation draws each gene independently, then normalises each cell to 20,000 like the training
    data. Fit on ``layers['counts']`` when present, else on X.
    """

    name = "nb"
    conditional = True
    output_scale = "library-size-20000"
    description = "Per-cell-type negative binomial, moments fit, genes independent"
    paper = "baseline (this package)"
    parameters = {"min_dispersion": 1e-3}
    bounds = {"min_dispersion": "(0, inf)"}
    resources = {"cpus": 1, "gpus": 0, "mem_gb": 4, "time_min": 10}

    def fit(self, train, ctx: FitContext) -> FitResult:
        counts = train.layers.get("counts", train.X)
        y = train.obs[ctx.label_key].astype(str).to_numpy()
        self._mu, size, self._weights = nb_moments(counts, y, self.labels, self.params["min_dispersion"])
        self._size = np.vstack([self._adjust_size(s, ctx.seed) for s in size])
        return FitResult()

    def _adjust_size(self, size: np.ndarray, seed: int) -> np.ndarray:
        """Hook for subclasses (the regression tests break the model here on purpose)."""
        return size

    def _sample(self, label_idx: int, n: int, rng: np.random.Generator) -> np.ndarray:
        return draw_nb(self._mu[label_idx], self._size[label_idx], n, rng)

    def generate(self, n_cells, *, seed) -> ad.AnnData:
        rng = np.random.default_rng(seed)
        labels = label_plan(self.labels, self._weights, n_cells, rng)
        X = np.zeros((labels.size, len(self.var_names)), dtype=np.float32)
        for i, lab in enumerate(self.labels):
            rows = np.flatnonzero(labels == lab)
            if rows.size:
                X[rows] = self._sample(i, rows.size, rng)
        X = to_library_size(X)
        # a cell that drew no counts at all cannot be normalised: redraw it from its type
        for r in np.flatnonzero(X.sum(axis=1) == 0):
            i = self.labels.index(labels[r])
            for _ in range(100):
                x = self._sample(i, 1, rng)
                if x.sum() > 0:
                    X[r] = to_library_size(x)[0]
                    break
        return make_output(X, self.var_names, self.label_key, labels)

    def save(self, path):
        path = Path(path)
        self._write_meta(path)
        np.savez(path / "nb.npz", mu=self._mu, size=self._size, weights=self._weights)

    @classmethod
    def load(cls, path):
        gen = cls._read_meta(Path(path))
        with np.load(Path(path) / "nb.npz") as z:
            gen._mu, gen._size, gen._weights = z["mu"], z["size"], z["weights"]
        return gen
