"""The ``copula`` generator: scDesign2's model (Sun et al. 2021) in numpy/scipy, no R.

Per cell type: a count marginal per gene (NB, Poisson where the variance does not exceed the mean,
ZINB as an option; :mod:`.marginals`) and a Gaussian copula over the type's most expressed genes,
whose correlation is that of the normal scores of the randomised PIT of the training counts.
Generation draws multivariate normals, maps them through the standard normal CDF and the
marginals' inverse CDFs; the other genes are drawn independently. See docs/models/copula.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy import special

from bench.api import INTEGER_1, FitContext, FitResult, Generator, TaskFailed, make_output
from bench.generators.baselines import draw_nb, label_plan
from bench.generators.copula.marginals import Marginals, cdf_tables, fit_marginals, quantile, randomised_pit
from bench.generators.counts import training_counts

MODEL_FILE = "copula.npz"
CHUNK = 2048  # cells drawn at once per type (bounds the dense block in memory)


class TypeModel:
    """One cell type's fitted model: marginals of every gene, the copula genes and a factor ``A``
    of their correlation matrix (``A @ A.T`` = R; ``genes x rank``)."""

    def __init__(self, marginals: Marginals, genes: np.ndarray, factor: np.ndarray):
        self.marginals, self.genes, self.factor = marginals, genes, factor
        self._tables: list[np.ndarray] | None = None  # CDF tables of the copula genes, built on first use
        self._indep = np.setdiff1d(np.arange(marginals.n_genes), genes)

    @property
    def tables(self) -> list[np.ndarray]:
        if self._tables is None:
            self._tables = cdf_tables(self.marginals.subset(self.genes))
        return self._tables

    @property
    def correlation(self) -> np.ndarray:
        return self.factor @ self.factor.T

    def sample(self, n: int, rng: np.random.Generator) -> sp.csr_matrix:
        """``n`` cells (rows) of this type, all genes, as counts."""
        blocks = []
        indep = self.marginals.subset(self._indep)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            X = np.zeros((m, self.marginals.n_genes), dtype=np.float32)
            if self.genes.size:
                z = rng.standard_normal((m, self.factor.shape[1])) @ self.factor.T
                X[:, self.genes] = quantile(special.ndtr(z), self.tables, self.marginals.subset(self.genes))
            X[:, self._indep] = draw_nb(indep.mu, indep.size, m, rng, pi=indep.pi)
            blocks.append(sp.csr_matrix(X))
        return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, self.marginals.n_genes))


def correlation_factor(z: np.ndarray) -> np.ndarray:
    """A factor ``A`` (genes x rank) with ``A @ A.T`` = the Pearson correlation of the columns of
    ``z``: the standardised data themselves when there are no more cells than genes (rank n - 1;
    exact, no decomposition), else the Cholesky factor (eigenvectors if it is not positive definite).
    A constant column (only without jitter: equal counts in every cell) gets a zero row: its copula
    draw is always 0, i.e. the marginal's median."""
    n = z.shape[0]
    zs = z - z.mean(axis=0)
    sd = np.sqrt((zs**2).sum(axis=0) / (n - 1))
    varies = sd > 1e-12  # normal scores lie within +-5: below this a column is constant up to rounding
    zs = zs[:, varies] / sd[varies]
    g = zs.shape[1]
    if n <= g:
        sub = zs.T / np.sqrt(n - 1)
    else:
        corr = (zs.T @ zs) / (n - 1)
        try:
            sub = np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            w, v = np.linalg.eigh(corr)
            keep = w > 1e-10 * w.max()
            sub = v[:, keep] * np.sqrt(w[keep])
    A = np.zeros((z.shape[1], sub.shape[1]))
    A[varies] = sub
    return A


class GaussianCopula(Generator):
    """scDesign2-style simulator: per-type NB marginals joined by a Gaussian copula."""

    name = "copula"
    conditional = True
    output_scale = "counts"
    paper = "Sun et al., scDesign2, Genome Biology 22:163 (2021), doi:10.1186/s13059-021-02367-2"
    code_url = "https://github.com/JSB-UCLA/scDesign2"
    description = "scDesign2-style per-type NB marginals + Gaussian copula over the top genes (numpy/scipy)"
    parameters: dict[str, Any] = {
        "copula_genes": 1000,  # per type, the most expressed genes (by mean count) joined by the copula
        "zp_cutoff": 1.0,  # copula genes also need a zero proportion below this (scDesign2: 0.8)
        "zero_inflation": False,  # ZINB marginals where they beat NB (scDesign2 marginal = 'zinb')
        "min_nonzero": 2,  # genes with fewer non-zero counts in a type are always 0 there (scDesign2)
        "jitter": True,  # randomised PIT (False: v = 0.5)
    }
    # copula_genes 0: genes independent; zp_cutoff 1.0: no cut (scDesign2: 0.8); min_nonzero: scDesign2's 2
    bounds = {"copula_genes": "[0, inf) integer", "zp_cutoff": "(0, 1]", "min_nonzero": INTEGER_1}
    resources = {"cpus": 2, "gpus": 0, "mem_gb": 8, "time_min": 30}

    def __init__(self, **params: Any):
        super().__init__(**params)  # types and bounds of every parameter
        self._models: list[TypeModel] = []
        self._weights = np.zeros(0)

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, train: ad.AnnData, ctx: FitContext) -> FitResult:
        counts, rounded = training_counts(train, self.name)
        y = train.obs[ctx.label_key].astype(str).to_numpy()
        rng = np.random.default_rng(ctx.seed)
        self._models, sizes = [], []
        for lab in self.labels:
            ctx.check_deadline(self.name)
            rows = counts[y == lab]
            self._models.append(self._fit_type(rows, rng))
            sizes.append(rows.shape[0])
        self._weights = np.asarray(sizes, dtype=np.float64) / max(sum(sizes), 1)
        return FitResult(
            extra={
                "copula_genes": {
                    lab: int(m.genes.size) for lab, m in zip(self.labels, self._models, strict=True)
                },
                "zero_inflated_genes": int(sum(int((m.marginals.pi > 0).sum()) for m in self._models)),
                "counts_rounded": rounded,
            },
        )

    def _fit_type(self, rows: sp.csr_matrix, rng: np.random.Generator) -> TypeModel:
        p = self.params
        n = rows.shape[0]
        marg = fit_marginals(
            rows, zero_inflation=bool(p["zero_inflation"]), min_nonzero=int(p["min_nonzero"])
        )
        zero_prop = 1.0 - np.bincount(rows.indices, minlength=rows.shape[1]) / max(n, 1)
        candidates = np.flatnonzero((marg.mu > 0) & (zero_prop < float(p["zp_cutoff"])))
        order = candidates[np.argsort(-marg.mu[candidates], kind="stable")]
        genes = np.sort(order[: int(p["copula_genes"])])
        if genes.size < 2 or n < 3:  # no correlation to estimate: genes independent
            return TypeModel(marg, np.zeros(0, dtype=np.int64), np.zeros((0, 0)))
        x = rows[:, genes].toarray()
        sub = marg.subset(genes)
        v = rng.random(x.shape) if p["jitter"] else np.full(x.shape, 0.5)
        tables = cdf_tables(sub, upto=x.max(axis=0).astype(np.int64))
        factor = correlation_factor(special.ndtri(randomised_pit(x, tables, v)))
        return TypeModel(marg, genes, factor)

    # -- generate ---------------------------------------------------------------------------------
    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        if not self._models:
            raise TaskFailed("copula: generate() called before fit() or load()")
        rng = np.random.default_rng(seed)
        labels = label_plan(self.labels, self._weights, n_cells, rng)
        blocks, order = [], []
        for i, lab in enumerate(self.labels):
            rows = np.flatnonzero(labels == lab)
            if rows.size:
                blocks.append(self._models[i].sample(rows.size, rng))
                order.append(rows)
        X = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, len(self.var_names)))
        if order:  # back into the order of the label plan
            X = X[np.argsort(np.concatenate(order), kind="stable")]
        return make_output(X, self.var_names, self.label_key, labels)

    # -- save / load ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        path = Path(path)
        self._write_meta(path)
        arrays: dict[str, np.ndarray] = {"weights": self._weights}
        for i, m in enumerate(self._models):
            arrays |= {
                f"mu{i}": m.marginals.mu,
                f"size{i}": m.marginals.size,
                f"pi{i}": m.marginals.pi,
                f"genes{i}": m.genes,
                f"factor{i}": m.factor,
            }
        np.savez(path / MODEL_FILE, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> GaussianCopula:
        path = Path(path)
        gen = cls._read_meta(path)
        with np.load(path / MODEL_FILE) as z:
            gen._weights = z["weights"]
            gen._models = [
                TypeModel(Marginals(z[f"mu{i}"], z[f"size{i}"], z[f"pi{i}"]), z[f"genes{i}"], z[f"factor{i}"])
                for i in range(len(gen.labels))
            ]
        return gen
