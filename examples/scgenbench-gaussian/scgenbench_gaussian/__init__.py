"""A complete minimal scgenbench generator plugin.

Per cell type, fit a Gaussian to the training cells' 20 leading principal components of
log1p-expression; generate by sampling it and mapping back to genes. Declares its output scale as
"log1p", so the harness knows how to compare it with real cells.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from bench.api import FitContext, FitResult, Generator, make_output, split_request


class PcaGaussian(Generator):
    name = "pca_gaussian"
    conditional = True
    output_scale = "log1p"
    description = "Example plugin: per-cell-type Gaussian in PCA space"
    parameters = {"n_components": 20}
    profiles = {"quick": {"n_components": 10}}

    def fit(self, train, ctx: FitContext) -> FitResult:
        # the harness has set self.var_names, self.labels and self.label_key, and times this call
        X = np.log1p(train.X.toarray())
        self._pca = PCA(self.params["n_components"], random_state=ctx.seed).fit(X)
        Z = self._pca.transform(X)
        y = train.obs[ctx.label_key].astype(str).to_numpy()
        self._stats = {lab: (Z[y == lab].mean(0), np.cov(Z[y == lab].T) + 1e-6 * np.eye(Z.shape[1]))
                       for lab in self.labels}  # fmt: skip
        self._weights = np.array([(y == lab).mean() for lab in self.labels])
        return FitResult()

    def generate(self, n_cells, *, seed):
        rng = np.random.default_rng(seed)
        total, per_label = split_request(n_cells)
        if per_label is None:
            labels = rng.choice(self.labels, size=total, p=self._weights)
        else:
            labels = np.repeat(list(per_label), list(per_label.values()))
        Z = np.zeros((total, self._pca.n_components_))
        for lab in set(labels):
            rows = labels == lab
            Z[rows] = rng.multivariate_normal(*self._stats[lab], size=int(rows.sum()))
        X = np.clip(self._pca.inverse_transform(Z), 0, None)
        return make_output(X, self.var_names, self.label_key, labels)

    # save/load are optional: the harness never calls them in a run
