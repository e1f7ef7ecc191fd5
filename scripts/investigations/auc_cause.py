"""What does the real-vs-synthetic forest key on? (issue 12: ACTIVA's AUC of 1.0)

Fits MODEL with PROFILE on pbmc3k (2,000 HVGs, seed 0), generates as many cells as the test split
holds, and scores the forest's AUC (200 trees) on: all genes; the detection pattern only (x > 0);
the number of detected genes only; the generated cells discretised to Poisson counts at real
library sizes (and the same discretisation of real test cells, the transform's control); the 50
PCs. Also the zero fractions and the forest's top genes with their zero fraction in real and
generated cells. Writes results/investigations/auc-MODEL-PROFILE.json.

    python scripts/investigations/auc_cause.py activa quick
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from bench import datasets
from bench.evaluation import EvalContext, lognorm, to_lognorm
from bench.metrics import auc, make_forest
from bench.pipeline import Pipeline
from bench.registry import get_generator


def dense(X) -> np.ndarray:
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def main(model: str, profile: str) -> dict:
    p = datasets.prepare("pbmc3k", n_top_genes=2000)
    cls = get_generator(model)
    t = time.time()
    with tempfile.TemporaryDirectory() as work:
        pipe = Pipeline(cls, cls.params_for_profile(profile), p.train, p.label_key, work_dir=work)
        fitted = pipe.fit_model(p.train, 0)
    n = p.test.n_obs
    Xg, Xr = dense(pipe.generate_cells(fitted, n, seed=1).X), dense(p.test.X)
    res: dict = {"model": model, "profile": profile, "fit_seconds": round(time.time() - t, 1)}
    res["zero_frac_real"], res["zero_frac_gen"] = float((Xr == 0).mean()), float((Xg == 0).mean())
    nz = Xg[Xg > 0]
    res["gen_nonzero_below_real_min_share"] = float((nz < Xr[Xr > 0].min()).mean()) if nz.size else 0.0
    real_log, gen_log = lognorm(Xr), to_lognorm(Xg, cls.output_scale)
    res["auc_genes"] = auc(real_log, gen_log, seed=0, n_trees=200).auc
    X = sp.vstack([real_log, gen_log]).toarray()
    rf = make_forest(200, 0).fit(X, np.r_[np.zeros(n), np.ones(n)])
    top = np.argsort(rf.feature_importances_)[::-1][:10]
    res["top_genes"] = [
        {
            "gene": str(p.train.var_names[i]),
            "importance": float(rf.feature_importances_[i]),
            "zero_frac_real": float((Xr[:, i] == 0).mean()),
            "zero_frac_gen": float((Xg[:, i] == 0).mean()),
        }
        for i in top
    ]
    det = (real_log > 0).astype(np.float32), (gen_log > 0).astype(np.float32)
    res["auc_detected_only"] = auc(*det, seed=0, n_trees=200).auc
    n_det = [np.asarray(d.sum(1)).reshape(-1, 1).astype(np.float32) for d in det]
    res["auc_n_detected_only"] = auc(*n_det, seed=0, n_trees=200).auc
    rng = np.random.default_rng(0)
    lib = np.asarray(p.train.layers["counts"].sum(1)).ravel()
    counts = rng.poisson(Xg / np.maximum(Xg.sum(1, keepdims=True), 1e-12) * rng.choice(lib, size=n)[:, None])
    res["auc_genes_poisson_discretised"] = auc(
        real_log, lognorm(counts.astype(np.float32)), seed=0, n_trees=200
    ).auc
    res["zero_frac_gen_discretised"] = float((counts == 0).mean())
    real_counts = rng.poisson(Xr / Xr.sum(1, keepdims=True) * rng.choice(lib, size=n)[:, None])
    res["auc_real_vs_real_discretised"] = auc(
        real_log, lognorm(real_counts.astype(np.float32)), seed=0, n_trees=200
    ).auc
    ctx = EvalContext(dataset="pbmc3k", train=p.train, test=p.test, label_key=p.label_key)
    res["auc_pca50"] = auc(ctx.test_pcs, ctx.project(gen_log), seed=0, n_trees=200).auc
    res["auc_pca50_discretised"] = auc(
        ctx.test_pcs, ctx.project(lognorm(counts.astype(np.float32))), seed=0, n_trees=200
    ).auc
    out = Path(f"results/investigations/auc-{model}-{profile}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "quick"), indent=1))
