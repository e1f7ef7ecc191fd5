"""Cells a PCA was fit on score worse than new cells (why the evaluation keeps a control reserve).

On pbmc3k (2,000 HVGs, the quick/standard preparation), per seed: fit the 50-PC PCA on all
training cells or on a random half A of them, and compare with the test cells (a) training cells
the PCA was fit on and (b) training cells from the other half B, by their total variance over the
50 PCs and their MMD to the test cells. Writes results/investigations/pca-in-sample.json.

    python scripts/investigations/pca_in_sample.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from bench import datasets
from bench.evaluation import lognorm
from bench.metrics import mmd


def main() -> None:
    p = datasets.prepare("pbmc3k", n_top_genes=2000)
    tr, te = lognorm(p.train.X).toarray(), lognorm(p.test.X).toarray()
    rng = np.random.default_rng(0)
    n = te.shape[0]
    rows = []
    for seed in range(3):
        idx = rng.permutation(tr.shape[0])
        half_a, half_b = idx[: tr.shape[0] // 2], idx[tr.shape[0] // 2 :]
        for fit_on, name in ((tr, "all_train"), (tr[half_a], "half_A")):
            pca = PCA(50, svd_solver="arpack", random_state=seed).fit(fit_on)
            zt = pca.transform(te)
            ins = pca.transform(tr[rng.choice(half_a, n, replace=False)])  # in the fit either way
            oos = pca.transform(tr[rng.choice(half_b, n, replace=False)])  # new cells for the half-A fit
            rows.append(
                {
                    "seed": seed,
                    "pca_fit": name,
                    "var_ratio_insample_vs_test": float(ins.var(0).sum() / zt.var(0).sum()),
                    "var_ratio_heldout_vs_test": float(oos.var(0).sum() / zt.var(0).sum()),
                    "mmd_insample_vs_test": float(mmd(ins, zt, seed=seed).mmd),
                    "mmd_heldout_vs_test": float(mmd(oos, zt, seed=seed).mmd),
                }
            )
            print(rows[-1], flush=True)
    out = Path("results/investigations/pca-in-sample.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n_train": int(tr.shape[0]), "n_test": int(n), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
